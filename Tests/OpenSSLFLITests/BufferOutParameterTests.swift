import Foundation
import XCTest
import TestSupport
import OpenSSLFLI

/// Buffer out-parameters (`outbuf` in codegen/spec.txt) are passed at their real size and come back as
/// exactly the bytes the C call wrote: checked against the `openssl` command line on a generated
/// certificate (AddressSanitizer in CI catches any overrun).
final class BufferOutParameterTests: XCTestCase {
    private func loadCertificate(_ path: String) throws -> X509Pointer {
        let bio = try XCTUnwrap(BIO_new_file(path, "r"), "BIO_new_file \(path)")
        defer { _ = BIO_free(bio) }
        return try XCTUnwrap(PEM_read_bio_X509(bio, nil, nil, nil), "PEM_read_bio_X509 \(path)")
    }

    /// `openssl x509 ARGS` on the file, the hex after `=` of its one output line, as bytes.
    private func opensslHex(_ args: [String], file: String) throws -> [UInt8] {
        let result = try runProcess("/usr/bin/openssl", ["x509", "-in", file, "-noout"] + args, timeout: 30)
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.contains("=") || $0.contains(":") })
        let hex = String(line.split(separator: "=").last ?? line[...]).replacingOccurrences(of: ":", with: "")
            .trimmingCharacters(in: .whitespaces)
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex, let j = hex.index(i, offsetBy: 2, limitedBy: hex.endIndex) {
            bytes.append(try XCTUnwrap(UInt8(hex[i..<j], radix: 16), "hex in \(line)"))
            i = j
        }
        return bytes
    }

    func testX509DigestMatchesOpenSSLFingerprint() throws {
        let pki = try TestPKI.shared
        let cert = try loadCertificate(pki.serverCert)
        defer { X509_free(cert) }
        for (md, flag, size) in [(EVP_sha256(), "-sha256", 32), (EVP_sha512(), "-sha512", 64), (EVP_sha1(), "-sha1", 20)] {
            let (ok, digest) = X509_digest(cert, md)
            XCTAssertEqual(ok, 1, flag)
            XCTAssertEqual(digest.count, size, "X509_digest \(flag) returns the whole digest")
            XCTAssertEqual(digest, try opensslHex(["-fingerprint", flag], file: pki.serverCert), "X509_digest \(flag)")
        }
    }

    func testX509PubkeyDigestMatchesOpenSSLKeyHash() throws {
        let pki = try TestPKI.shared
        let cert = try loadCertificate(pki.serverCert)
        defer { X509_free(cert) }
        // `openssl x509 -ocspid` prints the SHA-1 of the public key bits: what X509_pubkey_digest hashes.
        let result = try runProcess("/usr/bin/openssl", ["x509", "-in", pki.serverCert, "-noout", "-ocspid"], timeout: 30)
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.contains("Public key OCSP hash:") })
        let hex = line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)
        let expected = stride(from: 0, to: hex.count, by: 2).map { k -> UInt8 in
            let a = hex.index(hex.startIndex, offsetBy: k)
            return UInt8(hex[a..<hex.index(a, offsetBy: 2)], radix: 16)!
        }
        let (ok, digest) = X509_pubkey_digest(cert, EVP_sha1())
        XCTAssertEqual(ok, 1)
        XCTAssertEqual(digest, expected)
        let (ok512, digest512) = X509_pubkey_digest(cert, EVP_sha512())
        XCTAssertEqual(ok512, 1)
        XCTAssertEqual(digest512.count, 64, "X509_pubkey_digest SHA-512 returns all 64 bytes")
    }
}
