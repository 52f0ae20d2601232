import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import func OpenSSLFLI.ERR_GET_LIB
import func OpenSSLFLI.ERR_GET_REASON
import var OpenSSLFLI.BIO_CTRL_INFO
import var OpenSSLFLI.ERR_LIB_PEM
import var OpenSSLFLI.GEN_DNS
import var OpenSSLFLI.GEN_EMAIL
import var OpenSSLFLI.GEN_IPADD
import var OpenSSLFLI.GEN_URI

extension Certificate {
    /// Reads a DER certificate (`d2i_X509`).
    /// - Corresponds: `d2i_X509`.
    public convenience init(der: [UInt8]) throws {
        try ensureSSL()
        let x509: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return COpenSSL.d2i_X509(nil, &cursor, buffer.count)
        }
        guard let x509 else { throw SSLError.fromQueue(call: "d2i_X509", message: "not a DER certificate") }
        self.init(taking: X509Pointer(x509))
    }

    /// Reads every certificate of a PEM text (a chain or a bundle), in order. A block that does not
    /// read (corrupt, or encrypted: nothing is ever asked on the terminal) fails the whole call, naming
    /// how many certificates came before it: a bundle is never cut short silently.
    /// - Corresponds: `PEM_read_bio_X509`, `ERR_peek_last_error`.
    public static func all(pem: String) throws -> [Certificate] {
        try ensureSSL()
        return try withMemoryBIO(pem) { bio in
            var result: [Certificate] = []
            COpenSSL.ERR_clear_error()
            while let x509 = COpenSSL.PEM_read_bio_X509(bio, nil, refusePassword, nil) { result.append(Certificate(taking: X509Pointer(x509))) }
            // The end of the text reads as "no start line"; anything else is a block that failed.
            let last = COpenSSL.ERR_peek_last_error()
            if last != 0 && !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
                throw SSLError.fromQueue(call: "PEM_read_bio_X509",
                                         message: "certificate \(result.count + 1) of the PEM text does not read (after \(result.count) that did)")
            }
            COpenSSL.ERR_clear_error()
            if result.isEmpty { throw SSLError(kind: .error, call: "PEM_read_bio_X509", message: "no certificate in the PEM text") }
            return result
        }
    }

    /// The certificate in DER form (`i2d_X509`).
    /// - Corresponds: `i2d_X509`.
    public func der() throws -> [UInt8] {
        let length = COpenSSL.i2d_X509(pointer.rawValue, nil)
        guard length > 0 else { throw SSLError.fromQueue(call: "i2d_X509") }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        _ = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return COpenSSL.i2d_X509(pointer.rawValue, &cursor)
        }
        return bytes
    }

    /// The subjectAltName entries, as "DNS:name", "IP:address", "email:…" or "URI:…".
    /// - Corresponds: `GENERAL_NAMES_free`, `OPENSSL_sk_num`, `OPENSSL_sk_value`, `X509_get_ext_d2i`.
    public var subjectAlternativeNames: [String] {
        guard let names = COpenSSL.X509_get_ext_d2i(pointer.rawValue, NID_subject_alt_name, nil, nil) else { return [] }
        let stack = OpaquePointer(names)
        defer { COpenSSL.GENERAL_NAMES_free(stack) }
        var result: [String] = []
        for i in 0..<COpenSSL.OPENSSL_sk_num(stack) {
            guard let raw = COpenSSL.OPENSSL_sk_value(stack, i) else { continue }
            let name = raw.assumingMemoryBound(to: GENERAL_NAME.self)
            switch name.pointee.type {
            case GEN_DNS: result.append("DNS:" + asn1Text(name.pointee.d.dNSName))
            case GEN_EMAIL: result.append("email:" + asn1Text(name.pointee.d.rfc822Name))
            case GEN_URI: result.append("URI:" + asn1Text(name.pointee.d.uniformResourceIdentifier))
            case GEN_IPADD:
                let octets = asn1Bytes(name.pointee.d.iPAddress)
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                if octets.count == 4 || octets.count == 16,
                   inet_ntop(octets.count == 4 ? AF_INET : AF_INET6, octets, &text, socklen_t(text.count)) != nil {
                    result.append("IP:" + text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
                }
            default: continue
            }
        }
        return result
    }

    /// The DNS names of the subjectAltName extension.
    public var dnsNames: [String] { subjectAlternativeNames.filter { $0.hasPrefix("DNS:") }.map { String($0.dropFirst(4)) } }
    /// The IP addresses of the subjectAltName extension.
    public var ipAddresses: [String] { subjectAlternativeNames.filter { $0.hasPrefix("IP:") }.map { String($0.dropFirst(3)) } }

    /// The start of the validity period.
    /// - Corresponds: `X509_get0_notBefore`.
    public var notBefore: Date? { date(COpenSSL.X509_get0_notBefore(pointer.rawValue)) }
    /// The end of the validity period.
    /// - Corresponds: `X509_get0_notAfter`.
    public var notAfter: Date? { date(COpenSSL.X509_get0_notAfter(pointer.rawValue)) }

    /// The serial number, as upper-case hex.
    /// - Corresponds: `ASN1_INTEGER_to_BN`, `BN_bn2hex`, `BN_free`, `CRYPTO_free`, `X509_get0_serialNumber`.
    public var serialNumber: String {
        guard let serial = COpenSSL.X509_get0_serialNumber(pointer.rawValue),
              let bn = COpenSSL.ASN1_INTEGER_to_BN(serial, nil) else { return "" }
        defer { COpenSSL.BN_free(bn) }
        guard let hex = COpenSSL.BN_bn2hex(bn) else { return "" }
        defer { COpenSSL.CRYPTO_free(hex, #fileID, #line) }
        return String(cString: hex)
    }

    /// The SHA-1 fingerprint, as colon-separated upper-case hex (what older tools print).
    /// - Corresponds: `EVP_sha1`, `X509_digest`.
    public var fingerprintSHA1: String {
        var digest = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        guard COpenSSL.X509_digest(pointer.rawValue, COpenSSL.EVP_sha1(), &digest, &length) == 1 else { return "" }
        return digest.prefix(Int(length)).map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    /// Whether `key` is the private key of this certificate (`X509_check_private_key`).
    /// - Corresponds: `ERR_clear_error`, `X509_check_private_key`.
    public func matches(_ key: PrivateKey) -> Bool {
        defer { COpenSSL.ERR_clear_error() }
        return COpenSSL.X509_check_private_key(pointer.rawValue, key.pointer.rawValue) == 1
    }

    /// Whether the certificate is for `host` (a DNS name, or an IP address), by its subjectAltName.
    /// - Corresponds: `X509_check_host`, `X509_check_ip_asc`.
    public func isValid(forHost host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 {
            return COpenSSL.X509_check_ip_asc(pointer.rawValue, host, 0) == 1
        }
        return COpenSSL.X509_check_host(pointer.rawValue, host, host.utf8.count, 0, nil) == 1
    }

    private func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date? {
        guard let time else { return nil }
        var tm = tm()
        guard COpenSSL.ASN1_TIME_to_tm(time, &tm) == 1 else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
    }
}

private func asn1Text(_ string: UnsafeMutablePointer<asn1_string_st>?) -> String {
    String(decoding: asn1Bytes(string), as: UTF8.self)
}

private func asn1Bytes(_ string: UnsafeMutablePointer<asn1_string_st>?) -> [UInt8] {
    guard let string, let data = COpenSSL.ASN1_STRING_get0_data(string) else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: Int(COpenSSL.ASN1_STRING_length(string))))
}

extension PrivateKey {
    /// Reads a DER private key (PKCS#8 or the traditional form; `d2i_AutoPrivateKey`).
    /// - Corresponds: `d2i_AutoPrivateKey`.
    public convenience init(der: [UInt8]) throws {
        try ensureSSL()
        let key: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return COpenSSL.d2i_AutoPrivateKey(nil, &cursor, buffer.count)
        }
        guard let key else { throw SSLError.fromQueue(call: "d2i_AutoPrivateKey", message: "not a DER private key") }
        self.init(taking: EVPPKeyPointer(key))
    }

    /// The key in DER form (PKCS#8, `i2d_PKCS8PrivateKey_bio`).
    /// - Corresponds: `BIO_ctrl`, `BIO_free`, `BIO_new`, `BIO_s_mem`, `i2d_PKCS8PrivateKey_bio`.
    public func der() throws -> [UInt8] {
        guard let bio = COpenSSL.BIO_new(COpenSSL.BIO_s_mem()) else { throw SSLError.fromQueue(call: "BIO_new") }
        defer { COpenSSL.BIO_free(bio) }
        guard COpenSSL.i2d_PKCS8PrivateKey_bio(bio, pointer.rawValue, nil, nil, 0, nil, nil) == 1 else {
            throw SSLError.fromQueue(call: "i2d_PKCS8PrivateKey_bio")
        }
        var data: UnsafeMutablePointer<CChar>?
        let length = COpenSSL.BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data)
        guard length > 0, let data else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: length))
    }

    /// The key as PEM encrypted with AES-256-CBC under `passphrase` ("-----BEGIN ENCRYPTED PRIVATE KEY-----").
    /// - Corresponds: `EVP_aes_256_cbc`, `PEM_write_bio_PKCS8PrivateKey`.
    public func pem(passphrase: String) throws -> String {
        guard !passphrase.isEmpty else { throw SSLError.usage("the passphrase is empty", call: "PEM_write_bio_PKCS8PrivateKey") }
        return try memoryBIOText(call: "PEM_write_bio_PKCS8PrivateKey") { bio in
            COpenSSL.PEM_write_bio_PKCS8PrivateKey(bio, pointer.rawValue, COpenSSL.EVP_aes_256_cbc(), passphrase,
                                                   Int32(passphrase.utf8.count), nil, nil)
        }
    }

    /// A new RSA key (`EVP_RSA_gen`); 2048 bits or more for Debian's default security level.
    /// - Corresponds: `EVP_PKEY_CTX_free`, `EVP_PKEY_CTX_new_from_name`, `EVP_PKEY_CTX_set_rsa_keygen_bits`,
    ///   `EVP_PKEY_generate`, `EVP_PKEY_keygen_init`.
    public static func generateRSA(bits: UInt32 = 2048) throws -> PrivateKey {
        try ensureSSL()
        guard bits >= 1024 else { throw SSLError.usage("an RSA key has at least 1024 bits", call: "EVP_RSA_gen") }
        guard let pctx = COpenSSL.EVP_PKEY_CTX_new_from_name(nil, "RSA", nil) else { throw SSLError.fromQueue(call: "EVP_PKEY_CTX_new_from_name") }
        defer { COpenSSL.EVP_PKEY_CTX_free(pctx) }
        guard COpenSSL.EVP_PKEY_keygen_init(pctx) == 1, COpenSSL.EVP_PKEY_CTX_set_rsa_keygen_bits(pctx, Int32(bits)) == 1 else {
            throw SSLError.fromQueue(call: "EVP_PKEY_CTX_set_rsa_keygen_bits")
        }
        var key: OpaquePointer?
        guard COpenSSL.EVP_PKEY_generate(pctx, &key) == 1, let key else { throw SSLError.fromQueue(call: "EVP_PKEY_generate") }
        return PrivateKey(taking: EVPPKeyPointer(key))
    }
}

/// A certificate revocation list that frees itself (`X509_CRL_free`).
public final class CertificateRevocationList: @unchecked Sendable {  // immutable handle; OpenSSL 3 allows concurrent use of an object that nobody changes
    /// The CRL, valid while this object lives.
    public let pointer: X509CRLPointer

    /// Takes ownership of a CRL.
    public init(taking pointer: X509CRLPointer) { self.pointer = pointer }

    deinit { COpenSSL.X509_CRL_free(pointer.rawValue) }

    /// Reads a PEM CRL ("-----BEGIN X509 CRL-----").
    /// - Corresponds: `PEM_read_bio_X509_CRL`.
    public init(pem: String) throws {
        try ensureSSL()
        let crl = try withMemoryBIO(pem) { COpenSSL.PEM_read_bio_X509_CRL($0, nil, refusePassword, nil) }
        guard let crl else { throw SSLError.fromQueue(call: "PEM_read_bio_X509_CRL", message: "not a readable PEM CRL") }
        pointer = X509CRLPointer(crl)
    }

    /// The CRL as PEM.
    /// - Corresponds: `PEM_write_bio_X509_CRL`.
    public func pem() throws -> String {
        try memoryBIOText(call: "PEM_write_bio_X509_CRL") { COpenSSL.PEM_write_bio_X509_CRL($0, pointer.rawValue) }
    }

    /// The serial numbers it revokes, as upper-case hex.
    /// - Corresponds: `ASN1_INTEGER_to_BN`, `BN_bn2hex`, `BN_free`, `CRYPTO_free`, `OPENSSL_sk_num`,
    ///   `OPENSSL_sk_value`, `X509_CRL_get_REVOKED`, `X509_REVOKED_get0_serialNumber`.
    public var revokedSerialNumbers: [String] {
        guard let stack = COpenSSL.X509_CRL_get_REVOKED(pointer.rawValue) else { return [] }
        return (0..<max(COpenSSL.OPENSSL_sk_num(stack), 0)).compactMap { i in
            guard let revoked = COpenSSL.OPENSSL_sk_value(stack, i),
                  let serial = COpenSSL.X509_REVOKED_get0_serialNumber(OpaquePointer(revoked)),
                  let bn = COpenSSL.ASN1_INTEGER_to_BN(serial, nil) else { return nil }
            defer { COpenSSL.BN_free(bn) }
            guard let hex = COpenSSL.BN_bn2hex(bn) else { return nil }
            defer { COpenSSL.CRYPTO_free(hex, #fileID, #line) }
            return String(cString: hex)
        }
    }

    /// Makes a CRL signed by `issuer`, revoking the given certificates, valid from now for `validity` seconds.
    /// - Corresponds: `ASN1_STRING_free`, `ASN1_TIME_adj`, `EVP_sha256`, `X509_CRL_add0_revoked`, `X509_CRL_new`,
    ///   `X509_CRL_set1_lastUpdate`, `X509_CRL_set1_nextUpdate`, `X509_CRL_set_issuer_name`, `X509_CRL_set_version`,
    ///   `X509_CRL_sign`, `X509_CRL_sort`, `X509_REVOKED_free`, `X509_REVOKED_new`,
    ///   `X509_REVOKED_set_revocationDate`, `X509_REVOKED_set_serialNumber`, `X509_get_serialNumber`,
    ///   `X509_get_subject_name`.
    public static func make(issuer: (certificate: Certificate, key: PrivateKey), revoking revoked: [Certificate],
                            validity: Int = 7 * 86_400) throws -> CertificateRevocationList {
        try ensureSSL()
        guard let crl = COpenSSL.X509_CRL_new() else { throw SSLError.fromQueue(call: "X509_CRL_new") }
        let result = CertificateRevocationList(taking: X509CRLPointer(crl))
        guard COpenSSL.X509_CRL_set_version(crl, 1) == 1,
              COpenSSL.X509_CRL_set_issuer_name(crl, COpenSSL.X509_get_subject_name(issuer.certificate.pointer.rawValue)) == 1 else {
            throw SSLError.fromQueue(call: "X509_CRL_set_issuer_name")
        }
        guard let last = COpenSSL.ASN1_TIME_adj(nil, time(nil), 0, -60), let next = COpenSSL.ASN1_TIME_adj(nil, time(nil), 0, validity) else {
            throw SSLError.fromQueue(call: "ASN1_TIME_adj")
        }
        defer { COpenSSL.ASN1_STRING_free(last); COpenSSL.ASN1_STRING_free(next) }
        guard COpenSSL.X509_CRL_set1_lastUpdate(crl, last) == 1, COpenSSL.X509_CRL_set1_nextUpdate(crl, next) == 1 else {
            throw SSLError.fromQueue(call: "X509_CRL_set1_lastUpdate")
        }
        for certificate in revoked {
            guard let entry = COpenSSL.X509_REVOKED_new() else { throw SSLError.fromQueue(call: "X509_REVOKED_new") }
            guard COpenSSL.X509_REVOKED_set_serialNumber(entry, COpenSSL.X509_get_serialNumber(certificate.pointer.rawValue)) == 1,
                  COpenSSL.X509_REVOKED_set_revocationDate(entry, last) == 1,
                  COpenSSL.X509_CRL_add0_revoked(crl, entry) == 1 else {
                COpenSSL.X509_REVOKED_free(entry)
                throw SSLError.fromQueue(call: "X509_CRL_add0_revoked")
            }
        }
        _ = COpenSSL.X509_CRL_sort(crl)
        guard COpenSSL.X509_CRL_sign(crl, issuer.key.pointer.rawValue, COpenSSL.EVP_sha256()) > 0 else {
            throw SSLError.fromQueue(call: "X509_CRL_sign")
        }
        return result
    }
}
