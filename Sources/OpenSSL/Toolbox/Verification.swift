import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.X509_V_ERR_APPLICATION_VERIFICATION
import var OpenSSLFLI.X509_V_FLAG_CRL_CHECK
import var OpenSSLFLI.X509_V_FLAG_CRL_CHECK_ALL
import var OpenSSLFLI.X509_V_OK

/// The `SSL_VERIFY_*` flags of a context or connection, as an option set.
public struct SSLVerifyFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `SSL_VERIFY_PEER`: verify the peer's certificate (a server asks the client for one).
    public static let peer = SSLVerifyFlags(rawValue: COpenSSL.SSL_VERIFY_PEER)
    /// `SSL_VERIFY_FAIL_IF_NO_PEER_CERT`: a server refuses a client that sends no certificate.
    public static let failIfNoPeerCertificate = SSLVerifyFlags(rawValue: COpenSSL.SSL_VERIFY_FAIL_IF_NO_PEER_CERT)
    /// `SSL_VERIFY_CLIENT_ONCE`: a server asks for the client certificate in the first handshake only.
    public static let clientOnce = SSLVerifyFlags(rawValue: COpenSSL.SSL_VERIFY_CLIENT_ONCE)
    /// `SSL_VERIFY_POST_HANDSHAKE`: a TLS 1.3 server may ask for a certificate after the handshake.
    public static let postHandshake = SSLVerifyFlags(rawValue: COpenSSL.SSL_VERIFY_POST_HANDSHAKE)
    /// `SSL_VERIFY_NONE`.
    public static let none = SSLVerifyFlags([])

    public var description: String {
        if isEmpty { return "SSL_VERIFY_NONE" }
        let names: [(SSLVerifyFlags, String)] = [(.peer, "SSL_VERIFY_PEER"), (.failIfNoPeerCertificate, "SSL_VERIFY_FAIL_IF_NO_PEER_CERT"),
                                                 (.clientOnce, "SSL_VERIFY_CLIENT_ONCE"), (.postHandshake, "SSL_VERIFY_POST_HANDSHAKE")]
        return names.filter { contains($0.0) }.map(\.1).joined(separator: "|")
    }
}

/// LispWorks' verification modes (`set-verification-mode`'s `mode` argument).
public enum SSLVerificationMode: Sendable, Hashable {
    /// Verify nothing (`SSL_VERIFY_NONE`).
    case never
    /// Client: verify the server. Server: require and verify a client certificate in every handshake.
    case always
    /// Client: as `.always`. Server: require and verify a client certificate in the first handshake only.
    case once
    /// Exactly these flags (LispWorks' integer mode).
    case flags(SSLVerifyFlags)

    /// The flags this mode means for `side` (`.both` is read as a server, where the flags differ).
    public func flags(for side: SSLSide) -> SSLVerifyFlags {
        switch self {
        case .never: return .none
        case .always: return side == .client ? .peer : [.peer, .failIfNoPeerCertificate]
        case .once: return side == .client ? .peer : [.peer, .failIfNoPeerCertificate, .clientOnce]
        case .flags(let flags): return flags
        }
    }
}

/// A verify callback (`SSL_CTX_set_verify`'s `verify_callback`): called for each certificate of the
/// peer's chain, from the root (highest depth) to the peer's own certificate (depth 0), and once more
/// for each failure. Return true to accept what is being checked (even when `preverifyOK` is false),
/// false to fail the handshake (the verify result is then OpenSSL's error, or
/// `X509_V_ERR_APPLICATION_VERIFICATION` when there was none); a thrown error fails the handshake and is rethrown by the call that
/// drove it.
public typealias SSLVerifyCallback = @Sendable (_ preverifyOK: Bool, _ store: X509StoreContext) throws -> Bool

/// The verification in progress that a verify callback is looking at (`X509_STORE_CTX`). Valid only
/// during the callback.
public struct X509StoreContext {
    /// The `X509_STORE_CTX`, for direct calls.
    public let pointer: X509StoreContextPointer

    public init(_ pointer: X509StoreContextPointer) { self.pointer = pointer }

    /// The depth of the certificate being checked: 0 is the peer's own certificate.
    /// - Corresponds: `X509_STORE_CTX_get_error_depth`.
    public var depth: Int32 { COpenSSL.X509_STORE_CTX_get_error_depth(pointer.rawValue) }

    /// The verification error so far (`X509_V_OK` when none); setting it changes what verification reports.
    /// - Corresponds: `X509_STORE_CTX_get_error`, `X509_STORE_CTX_set_error`.
    public var error: Int32 {
        get { COpenSSL.X509_STORE_CTX_get_error(pointer.rawValue) }
        nonmutating set { COpenSSL.X509_STORE_CTX_set_error(pointer.rawValue, newValue) }
    }

    /// The text of ``error`` ("certificate has expired" …).
    /// - Corresponds: `X509_verify_cert_error_string`.
    public var errorString: String {
        COpenSSL.X509_verify_cert_error_string(Int(error)).map { String(cString: $0) } ?? "verify error \(error)"
    }

    /// The certificate being checked (a new reference).
    /// - Corresponds: `X509_STORE_CTX_get_current_cert`.
    public var currentCertificate: Certificate? {
        COpenSSL.X509_STORE_CTX_get_current_cert(pointer.rawValue).map { Certificate(retaining: X509Pointer($0)) }
    }

    /// The chain built so far, the peer's certificate first.
    /// - Corresponds: `X509_STORE_CTX_get0_chain`.
    public var chain: [Certificate] {
        guard let stack = COpenSSL.X509_STORE_CTX_get0_chain(pointer.rawValue) else { return [] }
        return certificates(in: stack)
    }

    /// The TLS connection being verified.
    /// - Corresponds: `SSL_get_ex_data_X509_STORE_CTX_idx`, `X509_STORE_CTX_get_ex_data`.
    public var ssl: SSLPointer? {
        SSLPointer(raw: COpenSSL.X509_STORE_CTX_get_ex_data(pointer.rawValue, COpenSSL.SSL_get_ex_data_X509_STORE_CTX_idx()))
    }
}

/// The certificates of a `STACK_OF(X509)`, each with its own reference.
func certificates(in stack: OpaquePointer) -> [Certificate] {
    let count = COpenSSL.OPENSSL_sk_num(stack)
    guard count > 0 else { return [] }
    return (0..<count).compactMap { i in
        COpenSSL.OPENSSL_sk_value(stack, i).map { Certificate(retaining: X509Pointer(OpaquePointer($0))) }
    }
}

/// The C verify callback: runs the Swift closure stored for the connection or its context.
private let verifyTrampoline: @convention(c) (Int32, OpaquePointer?) -> Int32 = { preverify, store in
    guard let store else { return preverify }
    let context = X509StoreContext(X509StoreContextPointer(store))
    guard let ssl = context.ssl, let callback: SSLVerifyCallback = CallbackRegistry.lookup(.verify, for: ssl) else {
        return preverify
    }
    do {
        if try callback(preverify == 1, context) { return 1 }
        // A refusal with no error of OpenSSL's is reported as the application's ("application
        // verification failure"), not as "unspecified".
        if context.error == X509_V_OK { context.error = X509_V_ERR_APPLICATION_VERIFICATION }
        return 0
    } catch {
        CallbackRegistry.storePendingError(error)
        if context.error == X509_V_OK { context.error = X509_V_ERR_APPLICATION_VERIFICATION }
        return 0
    }
}

/// Sets the verification mode of a context (LispWorks' `set-verification-mode`) and, optionally, a
/// verify callback (nil removes the one set before). `side` decides what `.always` and `.once` mean.
/// - Corresponds: `SSL_CTX_set_verify`.
public func setVerificationMode(_ ctx: SSLContextPointer, side: SSLSide, mode: SSLVerificationMode,
                                callback: SSLVerifyCallback? = nil) {
    CallbackRegistry.of(ctx).setClosure(.verify, callback)
    COpenSSL.SSL_CTX_set_verify(ctx.rawValue, mode.flags(for: side).rawValue, callback == nil ? nil : verifyTrampoline)
}

/// Sets the verification mode of one connection, and optionally its own verify callback.
/// - Corresponds: `SSL_set_verify`.
public func setVerificationMode(_ ssl: SSLPointer, side: SSLSide, mode: SSLVerificationMode,
                                callback: SSLVerifyCallback? = nil) {
    CallbackRegistry.of(ssl).setClosure(.verify, callback)
    COpenSSL.SSL_set_verify(ssl.rawValue, mode.flags(for: side).rawValue, callback == nil ? nil : verifyTrampoline)
}

/// The verification flags of a context (LispWorks' `get-verification-mode`).
/// - Corresponds: `SSL_CTX_get_verify_mode`.
public func getVerificationMode(_ ctx: SSLContextPointer) -> SSLVerifyFlags {
    SSLVerifyFlags(rawValue: COpenSSL.SSL_CTX_get_verify_mode(ctx.rawValue))
}

/// The verification flags of a connection.
/// - Corresponds: `SSL_get_verify_mode`.
public func getVerificationMode(_ ssl: SSLPointer) -> SSLVerifyFlags {
    SSLVerifyFlags(rawValue: COpenSSL.SSL_get_verify_mode(ssl.rawValue))
}

/// Whether and how far certificate revocation lists are checked.
public enum CRLChecking: Sendable, Hashable {
    /// No CRL check (OpenSSL's default).
    case off
    /// The peer's certificate is checked against its issuer's CRL (`X509_V_FLAG_CRL_CHECK`).
    case leaf
    /// Every certificate of the chain is checked (`X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL`).
    case chain
}

extension SSLContextPointer {
    /// Trusts the system's certificate store (`SSL_CTX_set_default_verify_paths`).
    /// - Corresponds: `SSL_CTX_set_default_verify_paths`.
    public func trustSystemStore() throws {
        guard COpenSSL.SSL_CTX_set_default_verify_paths(rawValue) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_default_verify_paths")
        }
    }

    /// Trusts the certificates of a PEM file and/or a hashed directory (`SSL_CTX_load_verify_locations`).
    public func trust(file: String? = nil, directory: String? = nil) throws {
        try loadVerifyLocations(self, file: file, directory: directory)
    }

    /// Trusts in-memory certificates.
    public func trust(_ certificates: [Certificate]) throws {
        for certificate in certificates { try addTrustedCertificate(self, certificate) }
    }

    /// The longest chain accepted below the peer's certificate (`SSL_CTX_set_verify_depth`).
    /// - Corresponds: `SSL_CTX_get_verify_depth`, `SSL_CTX_set_verify_depth`.
    public var verifyDepth: Int32 {
        get { COpenSSL.SSL_CTX_get_verify_depth(rawValue) }
        nonmutating set { COpenSSL.SSL_CTX_set_verify_depth(rawValue, newValue) }
    }

    /// Turns checking of certificate revocation lists on or off. CRLs come from the trust store
    /// (``addCRL(_:)``, or CRL PEM blocks in a trusted file or directory); with checking on, a
    /// certificate whose CRL is missing fails ("unable to get certificate CRL").
    /// - Corresponds: `SSL_CTX_get0_param`, `X509_VERIFY_PARAM_clear_flags`, `X509_VERIFY_PARAM_set_flags`.
    public func setCRLChecking(_ checking: CRLChecking) throws {
        guard let param = COpenSSL.SSL_CTX_get0_param(rawValue) else { throw SSLError.fromQueue(call: "SSL_CTX_get0_param") }
        let both = UInt(X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL)
        _ = COpenSSL.X509_VERIFY_PARAM_clear_flags(param, both)
        switch checking {
        case .off: break
        case .leaf: _ = COpenSSL.X509_VERIFY_PARAM_set_flags(param, UInt(X509_V_FLAG_CRL_CHECK))
        case .chain: _ = COpenSSL.X509_VERIFY_PARAM_set_flags(param, both)
        }
    }

    /// Adds a certificate revocation list to the context's trust store.
    /// - Corresponds: `SSL_CTX_get_cert_store`, `X509_STORE_add_crl`.
    public func addCRL(_ crl: CertificateRevocationList) throws {
        guard let store = COpenSSL.SSL_CTX_get_cert_store(rawValue),
              COpenSSL.X509_STORE_add_crl(store, crl.pointer.rawValue) == 1 else {
            throw SSLError.fromQueue(call: "X509_STORE_add_crl")
        }
    }
}

extension SSLPointer {
    /// Checks the peer's certificate against a host name, or an IP address when `name` is one
    /// (`SSL_set1_host`, or `X509_VERIFY_PARAM_set1_ip_asc`). Verification must be on.
    /// - Corresponds: `SSL_get0_param`, `SSL_set1_host`, `X509_VERIFY_PARAM_set1_ip_asc`.
    public func setExpectedHost(_ name: String) throws {
        guard !name.isEmpty else { throw SSLError.usage("the host name is empty", call: "SSL_set1_host") }
        guard !name.utf8.contains(0) else { throw SSLError.usage("the host name contains a NUL byte", call: "SSL_set1_host") }
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1 {
            guard let param = COpenSSL.SSL_get0_param(rawValue), COpenSSL.X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 else {
                throw SSLError.fromQueue(call: "X509_VERIFY_PARAM_set1_ip_asc", message: "cannot check IP address \(name)")
            }
        } else if COpenSSL.SSL_set1_host(rawValue, name) != 1 {
            throw SSLError.fromQueue(call: "SSL_set1_host", message: "cannot check host name \(name)")
        }
    }

    /// The result of verifying the peer (`SSL_get_verify_result`): `X509_V_OK` or an error code.
    /// - Corresponds: `SSL_get_verify_result`.
    public var verifyResult: Int { COpenSSL.SSL_get_verify_result(rawValue) }

    /// The text of ``verifyResult`` ("ok", "certificate has expired" …).
    /// - Corresponds: `X509_verify_cert_error_string`.
    public var verifyResultText: String {
        COpenSSL.X509_verify_cert_error_string(verifyResult).map { String(cString: $0) } ?? "verify result \(verifyResult)"
    }

    /// The peer's certificate (`SSL_get1_peer_certificate`), if it sent one.
    /// - Corresponds: `SSL_get1_peer_certificate`.
    public var peerCertificate: Certificate? {
        COpenSSL.SSL_get1_peer_certificate(rawValue).map { Certificate(taking: X509Pointer($0)) }
    }

    /// The chain the peer sent (`SSL_get_peer_cert_chain`; on a client it starts with the server's
    /// certificate, on a server it does not include the client's).
    /// - Corresponds: `SSL_get_peer_cert_chain`.
    public var peerCertificateChain: [Certificate] {
        guard let stack = COpenSSL.SSL_get_peer_cert_chain(rawValue) else { return [] }
        return certificates(in: stack)
    }

    /// The verified chain, the peer's certificate first and the trust anchor last (`SSL_get0_verified_chain`).
    /// - Corresponds: `SSL_get0_verified_chain`.
    public var verifiedChain: [Certificate] {
        guard let stack = COpenSSL.SSL_get0_verified_chain(rawValue) else { return [] }
        return certificates(in: stack)
    }

    /// The longest chain accepted below the peer's certificate (`SSL_set_verify_depth`).
    /// - Corresponds: `SSL_get_verify_depth`, `SSL_set_verify_depth`.
    public var verifyDepth: Int32 {
        get { COpenSSL.SSL_get_verify_depth(rawValue) }
        nonmutating set { COpenSSL.SSL_set_verify_depth(rawValue, newValue) }
    }
}
