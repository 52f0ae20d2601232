import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_BUILD_CHAIN_FLAG_NO_ROOT
import var OpenSSLFLI.SSL_CTRL_GET_CHAIN_CERTS

/// Protocol versions by name, for `SSLContextPointer.setProtocolVersions(minimum:maximum:)`.
public enum TLSVersion: Int32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case tls1_0 = 0x0301, tls1_1 = 0x0302, tls1_2 = 0x0303, tls1_3 = 0x0304

    /// The name OpenSSL prints (`SSL_get_version`): "TLSv1.2" …
    public var description: String {
        switch self {
        case .tls1_0: return "TLSv1"
        case .tls1_1: return "TLSv1.1"
        case .tls1_2: return "TLSv1.2"
        case .tls1_3: return "TLSv1.3"
        }
    }
}

extension SSLContextPointer {
    /// The lowest and highest protocol versions (`SSL_CTX_set_min_proto_version` /
    /// `SSL_CTX_set_max_proto_version`); nil means the library's own limit.
    /// - Corresponds: `SSL_CTX_set_max_proto_version`, `SSL_CTX_set_min_proto_version`.
    public func setProtocolVersions(minimum: TLSVersion?, maximum: TLSVersion? = nil) throws {
        if let minimum, let maximum, minimum.rawValue > maximum.rawValue {
            throw SSLError.usage("the minimum version \(minimum) is above the maximum \(maximum)", call: "SSL_CTX_set_min_proto_version")
        }
        guard SSL_CTX_set_min_proto_version(self, Int(minimum?.rawValue ?? 0)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_min_proto_version")
        }
        guard SSL_CTX_set_max_proto_version(self, Int(maximum?.rawValue ?? 0)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_max_proto_version")
        }
    }

    /// The lowest protocol version set (nil: the library's own).
    /// - Corresponds: `SSL_CTX_get_min_proto_version`.
    public var minimumProtocolVersion: TLSVersion? { TLSVersion(rawValue: Int32(SSL_CTX_get_min_proto_version(self))) }
    /// The highest protocol version set (nil: the library's own).
    /// - Corresponds: `SSL_CTX_get_max_proto_version`.
    public var maximumProtocolVersion: TLSVersion? { TLSVersion(rawValue: Int32(SSL_CTX_get_max_proto_version(self))) }

    /// The TLS 1.2-and-earlier cipher list, in OpenSSL's syntax (`SSL_CTX_set_cipher_list`,
    /// "ECDHE+AESGCM:!aNULL"). Throws when it selects nothing.
    /// - Corresponds: `SSL_CTX_set_cipher_list`.
    public func setCipherList(_ list: String) throws {
        guard COpenSSL.SSL_CTX_set_cipher_list(rawValue, list) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_cipher_list", message: "no cipher matches \"\(list)\"")
        }
    }

    /// The TLS 1.3 cipher suites, colon-separated (`SSL_CTX_set_ciphersuites`, "TLS_AES_256_GCM_SHA384").
    /// - Corresponds: `SSL_CTX_set_ciphersuites`.
    public func setCiphersuites(_ list: String) throws {
        guard COpenSSL.SSL_CTX_set_ciphersuites(rawValue, list) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_ciphersuites", message: "not a valid TLS 1.3 cipher suite list: \"\(list)\"")
        }
    }

    /// The key exchange groups (curves), most preferred first (`SSL_CTX_set1_groups_list`, "X25519:P-256").
    /// - Corresponds: `SSL_CTX_set1_groups_list`.
    public func setGroups(_ list: String) throws {
        guard SSL_CTX_set1_groups_list(self, list) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set1_groups_list", message: "not a valid group list: \"\(list)\"")
        }
    }

    /// The signature algorithms offered (`SSL_CTX_set1_sigalgs_list`, "ECDSA+SHA256:RSA-PSS+SHA256").
    /// - Corresponds: `SSL_CTX_set1_sigalgs_list`.
    public func setSignatureAlgorithms(_ list: String) throws {
        guard SSL_CTX_set1_sigalgs_list(self, list) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set1_sigalgs_list", message: "not a valid signature algorithm list: \"\(list)\"")
        }
    }

    /// OpenSSL's security level, 0 … 5 (`SSL_CTX_set_security_level`): the smallest key sizes and
    /// algorithms accepted for this context's certificates, keys and peers. Debian's default is 2.
    /// - Corresponds: `SSL_CTX_get_security_level`, `SSL_CTX_set_security_level`.
    public var securityLevel: Int32 {
        get { COpenSSL.SSL_CTX_get_security_level(rawValue) }
        nonmutating set { COpenSSL.SSL_CTX_set_security_level(rawValue, newValue) }
    }

    /// The cipher suites the context would offer, in order (TLS 1.3 first), by OpenSSL name.
    /// - Corresponds: `OPENSSL_sk_num`, `OPENSSL_sk_value`, `SSL_CIPHER_get_name`, `SSL_CTX_get_ciphers`.
    public var cipherNames: [String] {
        guard let stack = COpenSSL.SSL_CTX_get_ciphers(rawValue) else { return [] }
        let count = COpenSSL.OPENSSL_sk_num(stack)
        return (0..<max(count, 0)).compactMap { i in
            COpenSSL.OPENSSL_sk_value(stack, i).flatMap { COpenSSL.SSL_CIPHER_get_name(OpaquePointer($0)) }.map { String(cString: $0) }
        }
    }

    // MARK: Certificate chains

    /// Adds a certificate to the chain sent after the context's own certificate (`SSL_CTX_add1_chain_cert`).
    /// - Corresponds: `SSL_CTX_add1_chain_cert`.
    public func addChainCertificate(_ certificate: Certificate) throws {
        guard SSL_CTX_add1_chain_cert(self, certificate.pointer) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_add1_chain_cert")
        }
    }

    /// Builds the chain sent with the context's certificate from the certificates the context trusts
    /// (its chain store if one is set, else its verify store; `SSL_CTX_build_cert_chain`):
    /// intermediates are found and sent, the root is left out unless `includeRoot`. Throws when no
    /// chain up to a trusted root can be built.
    /// - Corresponds: `SSL_CTX_build_cert_chain`.
    public func buildCertificateChain(includeRoot: Bool = false) throws {
        // SSL_BUILD_CHAIN_FLAG_CHECK is not used: it checks against a separate verify store
        // (SSL_CTX_set1_verify_cert_store), which contexts do not have by default.
        let flags = includeRoot ? 0 : Int(SSL_BUILD_CHAIN_FLAG_NO_ROOT)
        guard SSL_CTX_build_cert_chain(self, flags) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_build_cert_chain", message: "cannot build a certificate chain for the context's certificate")
        }
    }

    /// The context's own certificate (the one used last, `SSL_CTX_get0_certificate`).
    /// - Corresponds: `SSL_CTX_get0_certificate`.
    public var certificate: Certificate? {
        COpenSSL.SSL_CTX_get0_certificate(rawValue).map { Certificate(retaining: X509Pointer($0)) }
    }

    /// The chain sent after the context's certificate (`SSL_CTX_get0_chain_certs`).
    /// - Corresponds: `SSL_CTX_ctrl`.
    public var chainCertificates: [Certificate] {
        var stack: OpaquePointer?
        guard SSL_CTX_ctrl(self, SSL_CTRL_GET_CHAIN_CERTS, 0, &stack) == 1, let stack else { return [] }
        return certificates(in: stack)
    }
}

extension SSLPointer {
    /// The negotiated protocol version (`SSL_version`), nil before the handshake is done or for DTLS.
    /// - Corresponds: `SSL_is_init_finished`, `SSL_version`.
    public var protocolVersion: TLSVersion? {
        guard COpenSSL.SSL_is_init_finished(rawValue) == 1 else { return nil }
        return TLSVersion(rawValue: COpenSSL.SSL_version(rawValue))
    }

    /// The name of the negotiated cipher suite (`SSL_CIPHER_get_name`), nil before the handshake.
    /// - Corresponds: `SSL_CIPHER_get_name`, `SSL_get_current_cipher`.
    public var cipherName: String? {
        COpenSSL.SSL_get_current_cipher(rawValue).flatMap { COpenSSL.SSL_CIPHER_get_name($0) }.map { String(cString: $0) }
    }

    /// The key exchange group negotiated ("X25519", "secp256r1" …; `SSL_get_negotiated_group`).
    /// - Corresponds: `OBJ_nid2sn`, `SSL_get_negotiated_group`.
    public var negotiatedGroup: String? {
        let nid = SSL_get_negotiated_group(self)
        guard nid > 0 else { return nil }
        return COpenSSL.OBJ_nid2sn(Int32(nid)).map { String(cString: $0) }
    }
}
