import COpenSSL

/// A running SHA-256 (OpenSSL's EVP), for checking what crossed a connection.
final class SHA256Digest: @unchecked Sendable {  // updated by one thread at a time (the connection's), read after it ended
    private let context = COpenSSL.EVP_MD_CTX_new()
    private(set) var count = 0

    init() { COpenSSL.EVP_DigestInit_ex(context, COpenSSL.EVP_sha256(), nil) }
    deinit { COpenSSL.EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        COpenSSL.EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
        count += bytes.count
    }

    func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest in hex (the digest cannot be updated afterwards).
    func finish() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        COpenSSL.EVP_DigestFinal_ex(context, &digest, &length)
        return digest.prefix(Int(length)).map(hexByte).joined()
    }
}

private func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}
