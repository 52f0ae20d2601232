import COpenSSL
import OpenSSLFLI

/// Sets how a context gets the pass phrase of encrypted keys (LispWorks' `set-ssl-ctx-password-callback`):
/// a fixed `password`, or a `callback` asked each time. Passing neither removes both.
///
/// The closure is kept in the context's ex_data and released when the context is freed or the callback
/// replaced. An error the callback throws is rethrown by the helper whose C call asked for the password
/// (``usePrivateKeyFile(_:file:type:)`` …).
/// - Corresponds: `SSL_CTX_set_default_passwd_cb`, `SSL_CTX_set_default_passwd_cb_userdata`.
public func setSSLCtxPasswordCallback(_ ctx: SSLContextPointer, callback: SSLPasswordCallback? = nil, password: String? = nil) throws {
    if callback != nil && password != nil {
        throw SSLError.usage("give either a callback or a password, not both", call: "setSSLCtxPasswordCallback")
    }
    let registry = CallbackRegistry.of(ctx)
    let effective: SSLPasswordCallback? = callback ?? password.map { fixed in { @Sendable _, _ in fixed } }
    registry.setClosure(.password, effective)
    if effective == nil {
        COpenSSL.SSL_CTX_set_default_passwd_cb(ctx.rawValue, nil)
        COpenSSL.SSL_CTX_set_default_passwd_cb_userdata(ctx.rawValue, nil)
        return
    }
    COpenSSL.SSL_CTX_set_default_passwd_cb_userdata(ctx.rawValue, Unmanaged.passUnretained(registry).toOpaque())
    COpenSSL.SSL_CTX_set_default_passwd_cb(ctx.rawValue) { buffer, size, rwflag, userdata in
        guard let userdata else { return -1 }
        let registry = Unmanaged<CallbackRegistry>.fromOpaque(userdata).takeUnretainedValue()
        guard let callback: SSLPasswordCallback = registry.closure(.password) else { return -1 }
        return deliverPassword(callback, buffer: buffer, size: size, encrypting: rwflag != 0, registry: registry,
                               call: "SSL_CTX_set_default_passwd_cb")
    }
}
