import OpenSSLFLI

/// A key and a self-signed certificate made in memory with direct calls, for the demo and the
/// benchmarks (nothing is written to disk).
struct SelfSignedIdentity {
    let key: EVPPKeyPointer
    let certificate: X509Pointer

    struct Failure: Error, CustomStringConvertible {
        let call: String
        let reason: String
        init(call: String) {
            self.call = call
            let code = ERR_get_error()
            reason = code == 0 ? "no OpenSSL error" : (ERR_reason_error_string(code) ?? "error \(code)")
            ERR_clear_error()
        }
        var description: String { "\(call) failed: \(reason)" }
    }

    /// An EC P-256 key and a certificate for `commonName` (also its DNS subjectAltName-free CN), valid
    /// for a day.
    init(commonName: String) throws {
        guard let pctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw Failure(call: "EVP_PKEY_CTX_new_from_name") }
        defer { EVP_PKEY_CTX_free(pctx) }
        guard EVP_PKEY_keygen_init(pctx) == 1 else { throw Failure(call: "EVP_PKEY_keygen_init") }
        guard EVP_PKEY_CTX_set_group_name(pctx, "P-256") == 1 else { throw Failure(call: "EVP_PKEY_CTX_set_group_name") }
        let generated = EVP_PKEY_generate(pctx)
        guard generated.ok == 1, let key = generated.ppkey else { throw Failure(call: "EVP_PKEY_generate") }
        guard let x509 = X509_new() else { EVP_PKEY_free(key); throw Failure(call: "X509_new") }
        var ok = X509_set_version(x509, 2) == 1
        ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(x509), 1) == 1
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(x509), -60) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(x509), 86_400) != nil
        ok = ok && X509_set_pubkey(x509, key) == 1
        if ok, let name = X509_get_subject_name(x509) {
            let cn = Array(commonName.utf8)
            ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, Int32(cn.count), -1, 0) == 1
            ok = ok && X509_set_issuer_name(x509, name) == 1
        }
        ok = ok && X509_sign(x509, key, EVP_sha256()) > 0
        guard ok else {
            X509_free(x509); EVP_PKEY_free(key)
            throw Failure(call: "X509_sign")
        }
        self.key = key
        self.certificate = x509
    }

    func free() {
        X509_free(certificate)
        EVP_PKEY_free(key)
    }
}
