import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_CTRL_SET_DH_AUTO

/// What ``pemRead(_:file:passPhrase:callback:errorp:)`` reads.
public enum PEMKind: Sendable, Hashable {
    case x509, privateKey, publicKey, parameters, x509CRL
}

/// An object read from a PEM file. The caller owns it: ``free()`` it.
public enum PEMObject {
    case x509(X509Pointer)
    case privateKey(EVPPKeyPointer)
    case publicKey(EVPPKeyPointer)
    case parameters(EVPPKeyPointer)
    case x509CRL(X509CRLPointer)

    /// Frees the object with the matching `*_free` call.
    /// - Corresponds: `EVP_PKEY_free`, `X509_CRL_free`, `X509_free`.
    public func free() {
        switch self {
        case .x509(let x): COpenSSL.X509_free(x.rawValue)
        case .privateKey(let k), .publicKey(let k), .parameters(let k): COpenSSL.EVP_PKEY_free(k.rawValue)
        case .x509CRL(let c): COpenSSL.X509_CRL_free(c.rawValue)
        }
    }
}

/// The file-type argument of the `*_file` loading calls.
public enum SSLFileType: Int32, Sendable {
    case pem = 1   // SSL_FILETYPE_PEM
    case asn1 = 2  // SSL_FILETYPE_ASN1
}

/// The `errno` of a file that cannot be read, or nil when it can.
private func unreadable(_ path: String) -> Int32? {
    access(path, R_OK) == 0 ? nil : errno
}

/// Checks a path before a C call opens it, so that what C would do silently or forever is a clear error
/// instead: a NUL byte (C would read a shorter path), a file that cannot be read (its `errno`), and a
/// FIFO, socket or device (opening or reading one can block without end).
/// - Parameter directory: the path must be a directory (else a regular file).
/// - Corresponds: `stat(2)`, `access(2)`.
package func checkReadablePath(_ path: String, call: String, directory: Bool = false) throws {
    guard !path.utf8.contains(0) else {
        throw SSLError(kind: .error, call: call, file: path.replacingOccurrences(of: "\0", with: "\\0"), errno: EINVAL,
                       message: "the path contains a NUL byte")
    }
    var info = stat()
    guard stat(path, &info) == 0 else { throw fileError(call, path, errno) }
    let type = info.st_mode & S_IFMT
    if directory {
        guard type == S_IFDIR else {
            throw SSLError(kind: .error, call: call, file: path, errno: ENOTDIR, message: "not a directory")
        }
    } else if type == S_IFDIR {
        throw SSLError(kind: .error, call: call, file: path, errno: EISDIR, message: "is a directory, not a file")
    } else if type != S_IFREG {
        throw SSLError(kind: .error, call: call, file: path, errno: EINVAL,
                       message: "not a regular file (a FIFO, socket or device could block the read)")
    }
    if let code = unreadable(path) { throw fileError(call, path, code) }
}

private func fileError(_ call: String, _ path: String, _ code: Int32) -> SSLError {
    SSLError(kind: .error, call: call, file: path, errno: code,
             message: "cannot read the file: \(String(cString: strerror(code)))")
}

/// Holds the password source of one PEM read while OpenSSL may call back.
private final class PEMPasswordSource {
    let callback: SSLPasswordCallback?
    let registry = CallbackRegistry()
    init(_ callback: SSLPasswordCallback?) { self.callback = callback }
}

/// Reads one object from a PEM file (LispWorks' `pem-read`).
///
/// A pass phrase for an encrypted key comes from `passPhrase`, else from `callback`; a callback's
/// thrown error is rethrown. With `errorp` false a failure returns nil instead of throwing (the error
/// queue is cleared either way). The caller owns the result.
public func pemRead(_ kind: PEMKind, file: String, passPhrase: String? = nil, callback: SSLPasswordCallback? = nil,
                    errorp: Bool = true) throws -> PEMObject? {
    do {
        return try pemReadOrThrow(kind, file: file, passPhrase: passPhrase, callback: callback)
    } catch {
        if errorp { throw error }
        return nil
    }
}

private func pemReadOrThrow(_ kind: PEMKind, file: String, passPhrase: String?, callback: SSLPasswordCallback?) throws -> PEMObject {
    try ensureSSL()
    clearOpenSSLErrors()
    try checkReadablePath(file, call: "BIO_new_file")
    guard let bio = COpenSSL.BIO_new_file(file, "r") else { throw SSLError.fromQueue(call: "BIO_new_file", file: file) }
    defer { COpenSSL.BIO_free(bio) }
    let source = PEMPasswordSource(passPhrase.map { fixed in { @Sendable _, _ in fixed } } ?? callback)
    let userdata = Unmanaged.passUnretained(source).toOpaque()
    let passwordCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { buffer, size, rwflag, u in
        guard let u else { return -1 }
        let source = Unmanaged<PEMPasswordSource>.fromOpaque(u).takeUnretainedValue()
        guard let callback = source.callback else { return -1 }
        return deliverPassword(callback, buffer: buffer, size: size, encrypting: rwflag != 0, registry: source.registry, call: "pem_password_cb")
    }
    let (call, raw): (String, OpaquePointer?) = withExtendedLifetime(source) {
        switch kind {
        case .x509: return ("PEM_read_bio_X509", COpenSSL.PEM_read_bio_X509(bio, nil, passwordCallback, userdata))
        case .privateKey: return ("PEM_read_bio_PrivateKey", COpenSSL.PEM_read_bio_PrivateKey(bio, nil, passwordCallback, userdata))
        case .publicKey: return ("PEM_read_bio_PUBKEY", COpenSSL.PEM_read_bio_PUBKEY(bio, nil, passwordCallback, userdata))
        case .parameters: return ("PEM_read_bio_Parameters", COpenSSL.PEM_read_bio_Parameters(bio, nil))
        case .x509CRL: return ("PEM_read_bio_X509_CRL", COpenSSL.PEM_read_bio_X509_CRL(bio, nil, passwordCallback, userdata))
        }
    }
    if let thrown = source.registry.takeError() {
        if let raw { PEMObject.make(kind, raw).free() }
        clearOpenSSLErrors()
        throw thrown
    }
    guard let raw else { throw SSLError.fromQueue(call: call, file: file) }
    return PEMObject.make(kind, raw)
}

extension PEMObject {
    static func make(_ kind: PEMKind, _ raw: OpaquePointer) -> PEMObject {
        switch kind {
        case .x509: return .x509(X509Pointer(raw))
        case .privateKey: return .privateKey(EVPPKeyPointer(raw))
        case .publicKey: return .publicKey(EVPPKeyPointer(raw))
        case .parameters: return .parameters(EVPPKeyPointer(raw))
        case .x509CRL: return .x509CRL(X509CRLPointer(raw))
        }
    }
}

// MARK: loading into a context, with typed errors

/// Loads a certificate chain (leaf first) into a context: `SSL_CTX_use_certificate_chain_file`.
/// - Corresponds: `SSL_CTX_use_certificate_chain_file`.
public func useCertificateChainFile(_ ctx: SSLContextPointer, file: String) throws {
    try checkReadablePath(file, call: "SSL_CTX_use_certificate_chain_file")
    clearOpenSSLErrors()
    let r = try CallbackRegistry.of(ctx).rethrowingCallbackErrors { SSL_CTX_use_certificate_chain_file(ctx, file) }
    guard r == 1 else { throw SSLError.fromQueue(call: "SSL_CTX_use_certificate_chain_file", file: file, returnCode: Int(r)) }
}

/// Loads a private key into a context: `SSL_CTX_use_PrivateKey_file`. An encrypted key asks the
/// password callback (``setSSLCtxPasswordCallback(_:callback:password:)``); its error is rethrown.
/// - Corresponds: `SSL_CTX_use_PrivateKey_file`.
public func usePrivateKeyFile(_ ctx: SSLContextPointer, file: String, type: SSLFileType = .pem) throws {
    try checkReadablePath(file, call: "SSL_CTX_use_PrivateKey_file")
    clearOpenSSLErrors()
    let r = try CallbackRegistry.of(ctx).rethrowingCallbackErrors {
        withoutTerminalPrompt(ctx) { SSL_CTX_use_PrivateKey_file(ctx, file, type.rawValue) }
    }
    guard r == 1 else { throw SSLError.fromQueue(call: "SSL_CTX_use_PrivateKey_file", file: file, returnCode: Int(r)) }
}

/// Runs `body` with a password callback on the context: OpenSSL's default one would prompt on the
/// terminal for an encrypted key when the application set none. Without one, an encrypted key fails.
func withoutTerminalPrompt<T>(_ ctx: SSLContextPointer, _ body: () throws -> T) rethrows -> T {
    guard COpenSSL.SSL_CTX_get_default_passwd_cb(ctx.rawValue) == nil else { return try body() }
    COpenSSL.SSL_CTX_set_default_passwd_cb(ctx.rawValue, refusePassword)
    defer { COpenSSL.SSL_CTX_set_default_passwd_cb(ctx.rawValue, nil) }
    return try body()
}

/// Checks that the context's private key matches its certificate: `SSL_CTX_check_private_key`.
/// - Corresponds: `SSL_CTX_check_private_key`.
public func checkPrivateKey(_ ctx: SSLContextPointer) throws {
    clearOpenSSLErrors()
    let r = SSL_CTX_check_private_key(ctx)
    guard r == 1 else {
        throw SSLError.fromQueue(call: "SSL_CTX_check_private_key", message: nil, returnCode: Int(r))
    }
}

/// Loads trusted CA certificates from a file and/or a hashed directory: `SSL_CTX_load_verify_locations`.
/// - Corresponds: `SSL_CTX_load_verify_locations`.
public func loadVerifyLocations(_ ctx: SSLContextPointer, file: String? = nil, directory: String? = nil) throws {
    guard file != nil || directory != nil else {
        throw SSLError.usage("give a CA file, a CA directory or both", call: "SSL_CTX_load_verify_locations")
    }
    if let file { try checkReadablePath(file, call: "SSL_CTX_load_verify_locations") }
    // OpenSSL takes any path as a directory and only looks into it during verification.
    if let directory { try checkReadablePath(directory, call: "SSL_CTX_load_verify_locations", directory: true) }
    clearOpenSSLErrors()
    let r = SSL_CTX_load_verify_locations(ctx, file, directory)
    guard r == 1 else {
        throw SSLError.fromQueue(call: "SSL_CTX_load_verify_locations", file: file ?? directory, returnCode: Int(r))
    }
}

// MARK: Diffie-Hellman parameters

private final class DHCache: @unchecked Sendable {  // `entries` is only touched under `lock`
    let lock = NSLock()
    var entries: [String: EVPPKeyPointer] = [:]
}
private let dhCache = DHCache()

/// Reads DH parameters from a PEM file (LispWorks' `read-dh-params`), cached per path: a second call
/// for the same path returns the cached object unless `force` is true (then the file is read again and
/// the cache entry replaced). The cache owns the result: do not free it; hand it to
/// ``setSSLCtxDH(_:dh:filename:func:filenameList:auto:)``, which takes its own reference.
/// - Corresponds: `EVP_PKEY_free`, `EVP_PKEY_is_a`.
public func readDHParams(file: String, force: Bool = false) throws -> EVPPKeyPointer {
    dhCache.lock.lock()
    defer { dhCache.lock.unlock() }
    if !force, let cached = dhCache.entries[file] { return cached }
    guard case .parameters(let pkey)? = try pemRead(.parameters, file: file) else {
        throw SSLError.usage("not DH parameters", call: "PEM_read_bio_Parameters")
    }
    guard COpenSSL.EVP_PKEY_is_a(pkey.rawValue, "DH") == 1 else {
        COpenSSL.EVP_PKEY_free(pkey.rawValue)
        throw SSLError(kind: .error, call: "PEM_read_bio_Parameters", file: file, message: "the file holds parameters, but not DH parameters")
    }
    if let old = dhCache.entries[file] { COpenSSL.EVP_PKEY_free(old.rawValue) }
    dhCache.entries[file] = pkey
    return pkey
}

/// Sets the DH parameters a server context uses for DHE (LispWorks' `set-ssl-ctx-dh`), on OpenSSL 3's
/// `SSL_CTX_set0_tmp_dh_pkey`: from `dh`, else from `func`'s result, else from `filename`, else from the
/// first readable file of `filenameList`; with none of them and `auto` true, `SSL_CTX_set_dh_auto`
/// lets OpenSSL pick parameters matching the certificate's strength.
/// - Corresponds: `EVP_PKEY_free`, `EVP_PKEY_up_ref`, `SSL_CTX_ctrl`, `SSL_CTX_set0_tmp_dh_pkey`,
///   `SSL_CTX_set_dh_auto`.
public func setSSLCtxDH(_ ctx: SSLContextPointer, dh: EVPPKeyPointer? = nil, filename: String? = nil,
                        func producer: (() throws -> EVPPKeyPointer?)? = nil, filenameList: [String]? = nil,
                        auto: Bool = true) throws {
    var pkey = dh
    if pkey == nil, let producer { pkey = try producer() }
    if pkey == nil, let filename { pkey = try readDHParams(file: filename) }
    if pkey == nil, let filenameList {
        for f in filenameList where access(f, R_OK) == 0 {
            pkey = try readDHParams(file: f)
            break
        }
        if pkey == nil && !auto {
            throw SSLError.usage("none of the DH parameter files can be read: \(filenameList.joined(separator: ", "))", call: "setSSLCtxDH")
        }
    }
    clearOpenSSLErrors()
    guard let pkey else {
        guard auto else { throw SSLError.usage("no DH parameters given", call: "setSSLCtxDH") }
        guard SSL_CTX_set_dh_auto(ctx, 1) == 1 else { throw SSLError.fromQueue(call: "SSL_CTX_set_dh_auto") }
        return
    }
    _ = COpenSSL.EVP_PKEY_up_ref(pkey.rawValue)  // set0 takes this reference on success
    guard SSL_CTX_set0_tmp_dh_pkey(ctx, pkey) == 1 else {
        COpenSSL.EVP_PKEY_free(pkey.rawValue)
        throw SSLError.fromQueue(call: "SSL_CTX_set0_tmp_dh_pkey")
    }
    // OpenSSL prefers automatic parameters over the context's own while dh_auto is on: switch it off
    // so that parameters given now are the ones used, even after an earlier `setSSLCtxDH(ctx)`.
    _ = COpenSSL.SSL_CTX_ctrl(ctx.rawValue, SSL_CTRL_SET_DH_AUTO, 0, nil)
}
