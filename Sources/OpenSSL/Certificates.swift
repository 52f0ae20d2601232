import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.BIO_CTRL_INFO
import var OpenSSLFLI.MBSTRING_ASC
import var OpenSSLFLI.SSL_CTRL_CHAIN_CERT

/// A private key that frees itself (`EVP_PKEY_free`) — a Swift-owned wrapper over `EVPPKeyPointer`.
public final class PrivateKey: @unchecked Sendable {  // immutable handle; OpenSSL 3 allows concurrent use of an object that nobody changes
    /// The key, valid while this object lives. Pass it to direct calls; do not free it.
    public let pointer: EVPPKeyPointer

    /// Takes ownership of a key (it is freed with this object).
    public init(taking pointer: EVPPKeyPointer) { self.pointer = pointer }

    deinit { COpenSSL.EVP_PKEY_free(pointer.rawValue) }

    /// A new EC key on a named curve (`EVP_PKEY_keygen` with the group name; "P-256" by default).
    /// - Corresponds: `EVP_PKEY_CTX_free`, `EVP_PKEY_CTX_new_from_name`, `EVP_PKEY_CTX_set_group_name`,
    ///   `EVP_PKEY_generate`, `EVP_PKEY_keygen_init`.
    public static func generateEC(curve: String = "P-256") throws -> PrivateKey {
        try ensureSSL()
        guard let pctx = COpenSSL.EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else {
            throw SSLError.fromQueue(call: "EVP_PKEY_CTX_new_from_name")
        }
        defer { COpenSSL.EVP_PKEY_CTX_free(pctx) }
        guard COpenSSL.EVP_PKEY_keygen_init(pctx) == 1 else { throw SSLError.fromQueue(call: "EVP_PKEY_keygen_init") }
        guard COpenSSL.EVP_PKEY_CTX_set_group_name(pctx, curve) == 1 else {
            throw SSLError.fromQueue(call: "EVP_PKEY_CTX_set_group_name", message: "unknown curve \(curve)")
        }
        var key: OpaquePointer?
        guard COpenSSL.EVP_PKEY_generate(pctx, &key) == 1, let key else {
            throw SSLError.fromQueue(call: "EVP_PKEY_generate", message: "cannot make an EC key on curve \(curve)")
        }
        return PrivateKey(taking: EVPPKeyPointer(key))
    }

    /// Reads a PEM private key (unencrypted, or with `passphrase`).
    /// - Corresponds: `PEM_read_bio_PrivateKey`.
    public init(pem: String, passphrase: String? = nil) throws {
        try ensureSSL()
        if let passphrase, passphrase.utf8.contains(0) {
            // C would see the pass phrase up to its first NUL.
            throw SSLError.usage("the pass phrase contains a NUL byte", call: "PEM_read_bio_PrivateKey")
        }
        let key: OpaquePointer? = try withMemoryBIO(pem) { bio in
            if let passphrase {
                return passphrase.withCString { p in
                    COpenSSL.PEM_read_bio_PrivateKey(bio, nil, nil, UnsafeMutableRawPointer(mutating: p))
                }
            }
            // No pass phrase: refuse encrypted keys at once (OpenSSL's default would prompt on the terminal).
            return COpenSSL.PEM_read_bio_PrivateKey(bio, nil, refusePassword, nil)
        }
        guard let key else {
            let queue = drainOpenSSLErrors()
            let encrypted = pem.contains("ENCRYPTED")
            throw SSLError(kind: .error, call: "PEM_read_bio_PrivateKey", queue: queue,
                           message: encrypted && passphrase == nil ? "the key is encrypted and no pass phrase was given"
                               : encrypted ? "cannot decrypt the key with this pass phrase (\(queue.last?.reason ?? "bad decrypt"))"
                               : "not a readable PEM private key (\(queue.last?.reason ?? "no key"))")
        }
        pointer = EVPPKeyPointer(key)
    }

    /// The key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
    /// - Corresponds: `PEM_write_bio_PrivateKey`.
    public func pem() throws -> String {
        try memoryBIOText(call: "PEM_write_bio_PrivateKey") { bio in
            COpenSSL.PEM_write_bio_PrivateKey(bio, pointer.rawValue, nil, nil, 0, nil, nil)
        }
    }
}

/// A certificate that frees itself (`X509_free`) — a Swift-owned wrapper over `X509Pointer`.
public final class Certificate: @unchecked Sendable {  // immutable handle; OpenSSL 3 allows concurrent use of an object that nobody changes
    /// The certificate, valid while this object lives. Pass it to direct calls; do not free it.
    public let pointer: X509Pointer

    /// Takes ownership of a certificate (it is freed with this object).
    public init(taking pointer: X509Pointer) { self.pointer = pointer }

    /// Keeps a certificate OpenSSL owns (takes a reference with `X509_up_ref`).
    /// - Corresponds: `X509_up_ref`.
    public init(retaining pointer: X509Pointer) {
        COpenSSL.X509_up_ref(pointer.rawValue)
        self.pointer = pointer
    }

    deinit { COpenSSL.X509_free(pointer.rawValue) }

    /// Reads the first certificate of a PEM text.
    /// - Corresponds: `PEM_read_bio_X509`.
    public init(pem: String) throws {
        try ensureSSL()
        // An encrypted block is refused at once (OpenSSL's default would prompt on the terminal).
        let x509 = try withMemoryBIO(pem) { COpenSSL.PEM_read_bio_X509($0, nil, refusePassword, nil) }
        guard let x509 else { throw SSLError.fromQueue(call: "PEM_read_bio_X509", message: "not a readable PEM certificate") }
        pointer = X509Pointer(x509)
    }

    /// The certificate as PEM ("-----BEGIN CERTIFICATE-----").
    /// - Corresponds: `PEM_write_bio_X509`.
    public func pem() throws -> String {
        try memoryBIOText(call: "PEM_write_bio_X509") { COpenSSL.PEM_write_bio_X509($0, pointer.rawValue) }
    }

    /// The subject in OpenSSL's one-line form, RFC 2253 style ("CN=localhost,O=…").
    /// - Corresponds: `X509_get_subject_name`.
    public var subject: String { nameText(COpenSSL.X509_get_subject_name(pointer.rawValue)) }
    /// The issuer, same form.
    /// - Corresponds: `X509_get_issuer_name`.
    public var issuer: String { nameText(COpenSSL.X509_get_issuer_name(pointer.rawValue)) }

    /// The SHA-256 fingerprint, as colon-separated upper-case hex.
    /// - Corresponds: `EVP_sha256`, `X509_digest`.
    public var fingerprintSHA256: String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard COpenSSL.X509_digest(pointer.rawValue, COpenSSL.EVP_sha256(), &digest, &length) == 1 else { return "" }
        return digest.prefix(Int(length)).map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    private func nameText(_ name: OpaquePointer?) -> String {
        (try? memoryBIOText(call: "X509_NAME_print_ex") { bio in
            COpenSSL.X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 ? 1 : 0
        }) ?? ""
    }
}

/// What a generated certificate is for.
public struct CertificateProfile: Sendable, Hashable {
    /// The subject's common name.
    public var commonName: String
    /// DNS names for the subjectAltName extension.
    public var dnsNames: [String]
    /// IPv4 / IPv6 addresses for the subjectAltName extension.
    public var ipAddresses: [String]
    /// A certificate authority (basicConstraints CA:TRUE, keyCertSign) rather than a leaf.
    public var isCA: Bool
    /// For a leaf: may authenticate a TLS server (extendedKeyUsage serverAuth).
    public var serverAuth: Bool
    /// For a leaf: may authenticate a TLS client (extendedKeyUsage clientAuth).
    public var clientAuth: Bool
    /// Seconds from now the validity starts (negative: in the past) and how long it lasts.
    public var notBeforeOffset: Int
    public var validity: Int
    /// The serial number.
    public var serial: Int

    public init(commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [], isCA: Bool = false,
                serverAuth: Bool = true, clientAuth: Bool = false, notBeforeOffset: Int = -300,
                validity: Int = 30 * 86_400, serial: Int = Int.random(in: 1...Int(Int32.max))) {
        self.commonName = commonName; self.dnsNames = dnsNames; self.ipAddresses = ipAddresses; self.isCA = isCA
        self.serverAuth = serverAuth; self.clientAuth = clientAuth; self.notBeforeOffset = notBeforeOffset
        self.validity = validity; self.serial = serial
    }

    /// A certificate authority named `commonName`.
    public static func authority(_ commonName: String) -> CertificateProfile {
        CertificateProfile(commonName: commonName, isCA: true, serverAuth: false)
    }

    /// A TLS server certificate for host names and IP addresses (the first name is the common name).
    public static func server(hosts: [String]) -> CertificateProfile {
        var dns: [String] = [], ips: [String] = []
        for host in hosts {
            var v4 = in_addr(), v6 = in6_addr()
            if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { ips.append(host) } else { dns.append(host) }
        }
        return CertificateProfile(commonName: hosts.first ?? "localhost", dnsNames: dns, ipAddresses: ips)
    }

    /// A TLS client certificate.
    public static func client(_ commonName: String) -> CertificateProfile {
        CertificateProfile(commonName: commonName, serverAuth: false, clientAuth: true)
    }
}

/// Makes an X.509 v3 certificate for `key`, signed with SHA-256 by `issuer` (certificate and key), or
/// self-signed when `issuer` is nil. All in memory, with direct calls (`X509_new`, `X509_set_pubkey`,
/// `X509V3_EXT_conf_nid`, `X509_sign` …): no `openssl` command is needed.
/// - Corresponds: `ASN1_INTEGER_set`, `EVP_sha256`, `X509V3_EXT_conf_nid`, `X509V3_set_ctx`, `X509_EXTENSION_free`,
///   `X509_NAME_add_entry_by_txt`, `X509_add_ext`, `X509_free`, `X509_get_serialNumber`, `X509_get_subject_name`,
///   `X509_getm_notAfter`, `X509_getm_notBefore`, `X509_gmtime_adj`, `X509_new`, `X509_set_issuer_name`,
///   `X509_set_pubkey`, `X509_set_version`, `X509_sign`.
public func makeCertificate(_ profile: CertificateProfile, key: PrivateKey,
                            issuer: (certificate: Certificate, key: PrivateKey)? = nil) throws -> Certificate {
    try ensureSSL()
    guard let x509 = COpenSSL.X509_new() else { throw SSLError.fromQueue(call: "X509_new") }
    func fail(_ call: String) -> SSLError {
        COpenSSL.X509_free(x509)
        return SSLError.fromQueue(call: call, message: "cannot make the certificate for \(profile.commonName)")
    }
    guard COpenSSL.X509_set_version(x509, 2) == 1,
          COpenSSL.ASN1_INTEGER_set(COpenSSL.X509_get_serialNumber(x509), profile.serial) == 1 else { throw fail("ASN1_INTEGER_set") }
    guard COpenSSL.X509_gmtime_adj(COpenSSL.X509_getm_notBefore(x509), profile.notBeforeOffset) != nil,
          COpenSSL.X509_gmtime_adj(COpenSSL.X509_getm_notAfter(x509), profile.notBeforeOffset + profile.validity) != nil
    else { throw fail("X509_gmtime_adj") }
    guard COpenSSL.X509_set_pubkey(x509, key.pointer.rawValue) == 1 else { throw fail("X509_set_pubkey") }
    let cn = Array(profile.commonName.utf8)
    guard let name = COpenSSL.X509_get_subject_name(x509),
          COpenSSL.X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, Int32(cn.count), -1, 0) == 1
    else { throw fail("X509_NAME_add_entry_by_txt") }
    let issuerName = issuer.map { COpenSSL.X509_get_subject_name($0.certificate.pointer.rawValue) } ?? name
    guard COpenSSL.X509_set_issuer_name(x509, issuerName) == 1 else { throw fail("X509_set_issuer_name") }

    var extensions: [(Int32, String)] = []
    if profile.isCA {
        extensions += [(NID_basic_constraints, "critical,CA:TRUE"), (NID_key_usage, "critical,keyCertSign,cRLSign")]
    } else {
        extensions.append((NID_basic_constraints, "CA:FALSE"))
        extensions.append((NID_key_usage, "critical,digitalSignature,keyEncipherment"))
        let usages = (profile.serverAuth ? ["serverAuth"] : []) + (profile.clientAuth ? ["clientAuth"] : [])
        if !usages.isEmpty { extensions.append((NID_ext_key_usage, usages.joined(separator: ","))) }
    }
    let altNames = profile.dnsNames.map { "DNS:" + $0 } + profile.ipAddresses.map { "IP:" + $0 }
    if !altNames.isEmpty { extensions.append((NID_subject_alt_name, altNames.joined(separator: ","))) }
    extensions.append((NID_subject_key_identifier, "hash"))
    if issuer != nil { extensions.append((NID_authority_key_identifier, "keyid:always")) }

    var v3 = X509V3_CTX()
    COpenSSL.X509V3_set_ctx(&v3, issuer?.certificate.pointer.rawValue ?? x509, x509, nil, nil, 0)
    for (nid, value) in extensions {
        guard let ext = COpenSSL.X509V3_EXT_conf_nid(nil, &v3, nid, value) else {
            COpenSSL.X509_free(x509)
            throw SSLError.fromQueue(call: "X509V3_EXT_conf_nid", message: "bad extension value \(value)")
        }
        let added = COpenSSL.X509_add_ext(x509, ext, -1)
        COpenSSL.X509_EXTENSION_free(ext)
        guard added == 1 else { throw fail("X509_add_ext") }
    }
    let signer = issuer?.key ?? key
    guard COpenSSL.X509_sign(x509, signer.pointer.rawValue, COpenSSL.EVP_sha256()) > 0 else { throw fail("X509_sign") }
    return Certificate(taking: X509Pointer(x509))
}

/// Uses an in-memory certificate and key as a context's identity (`SSL_CTX_use_certificate`,
/// `SSL_CTX_use_PrivateKey`, `SSL_CTX_check_private_key`), with `chain` sent after the certificate.
/// - Corresponds: `SSL_CTX_check_private_key`, `SSL_CTX_ctrl`, `SSL_CTX_use_PrivateKey`, `SSL_CTX_use_certificate`.
public func useIdentity(_ ctx: SSLContextPointer, certificate: Certificate, key: PrivateKey, chain: [Certificate] = []) throws {
    guard COpenSSL.SSL_CTX_use_certificate(ctx.rawValue, certificate.pointer.rawValue) == 1 else {
        throw SSLError.fromQueue(call: "SSL_CTX_use_certificate")
    }
    for extra in chain {
        // SSL_CTX_add1_chain_cert: SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 1, x509)
        guard COpenSSL.SSL_CTX_ctrl(ctx.rawValue, SSL_CTRL_CHAIN_CERT, 1, UnsafeMutableRawPointer(extra.pointer.rawValue)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_add1_chain_cert")
        }
    }
    guard COpenSSL.SSL_CTX_use_PrivateKey(ctx.rawValue, key.pointer.rawValue) == 1 else {
        throw SSLError.fromQueue(call: "SSL_CTX_use_PrivateKey")
    }
    guard COpenSSL.SSL_CTX_check_private_key(ctx.rawValue) == 1 else {
        throw SSLError.fromQueue(call: "SSL_CTX_check_private_key", message: "the key does not match the certificate")
    }
}

/// Trusts an in-memory certificate (adds it to the context's `X509_STORE`).
/// - Corresponds: `SSL_CTX_get_cert_store`, `X509_STORE_add_cert`.
public func addTrustedCertificate(_ ctx: SSLContextPointer, _ certificate: Certificate) throws {
    guard let store = COpenSSL.SSL_CTX_get_cert_store(ctx.rawValue),
          COpenSSL.X509_STORE_add_cert(store, certificate.pointer.rawValue) == 1 else {
        throw SSLError.fromQueue(call: "X509_STORE_add_cert")
    }
}

/// A `pem_password_cb` that gives no password: encrypted input fails instead of prompting on the terminal.
let refusePassword: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in -1 }

/// Runs `body` with a read-only memory BIO over `text`.
func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) throws -> T) throws -> T {
    let bytes = Array(text.utf8)
    return try bytes.withUnsafeBytes { raw in
        guard let bio = COpenSSL.BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
            throw SSLError.fromQueue(call: "BIO_new_mem_buf")
        }
        defer { COpenSSL.BIO_free(bio) }
        return try body(bio)
    }
}

/// Runs `write` on a fresh memory BIO and returns what it wrote as text.
func memoryBIOText(call: String, _ write: (OpaquePointer) -> Int32) throws -> String {
    guard let bio = COpenSSL.BIO_new(COpenSSL.BIO_s_mem()) else { throw SSLError.fromQueue(call: "BIO_new") }
    defer { COpenSSL.BIO_free(bio) }
    guard write(bio) == 1 else { throw SSLError.fromQueue(call: call) }
    var data: UnsafeMutablePointer<CChar>?
    let length = COpenSSL.BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data)  // BIO_get_mem_data
    guard length > 0, let data else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
}
