import Foundation
import XCTest
import TestSupport
import OpenSSLFLI
import OpenSSLCrypto

/// OpenSSLCrypto, the libcrypto headers wrapped wholesale: big numbers checked against Python's integers,
/// a digest against `openssl dgst`, and an ECDSA signature made here and verified by `openssl dgst -verify`.
final class CryptoWholesaleTests: XCTestCase {
    func testBignumProductAgreesWithPython() throws {
        let a = "123456789012345678901234567890123456789", b = "987654321098765432109876543210987654321"
        var x: OpaquePointer? = nil, y: OpaquePointer? = nil
        XCTAssertEqual(BN_dec2bn(&x, a), Int32(a.count))
        XCTAssertEqual(BN_dec2bn(&y, b), Int32(b.count))
        let bx = BIGNUMPointer(x), by = BIGNUMPointer(y)
        defer { BN_free(bx); BN_free(by) }
        let product = try XCTUnwrap(BN_new())
        defer { BN_free(product) }
        let ctx = try XCTUnwrap(BN_CTX_new())
        defer { BN_CTX_free(ctx) }
        XCTAssertEqual(BN_mul(product, bx, by, ctx), 1)
        let text = try XCTUnwrap(BN_bn2dec(product))
        defer { CRYPTO_free(text, nil, 0) }
        let python = try runProcess("/usr/bin/python3", ["-c", "print(\(a) * \(b))"], timeout: 20)
        XCTAssertEqual(python.status, 0, python.stderr)
        XCTAssertEqual(String(cString: text), python.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testDigestAndECDSASignatureAgainstOpenSSLCommand() throws {
        let pki = try TestPKI.shared
        let message = Array("direct calls into libcrypto\n".utf8)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fli-crypto-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(message).write(to: URL(fileURLWithPath: dir + "/msg"))

        // SHA-256 through an EVP_MD_CTX.
        let md = try XCTUnwrap(EVP_MD_CTX_new())
        defer { EVP_MD_CTX_free(md) }
        XCTAssertEqual(EVP_DigestInit_ex(md, EVP_sha256(), nil), 1)
        XCTAssertEqual(EVP_DigestUpdate(md, message, message.count), 1)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        XCTAssertEqual(EVP_DigestFinal_ex(md, &digest, &length), 1)
        XCTAssertEqual(length, 32)
        let dgst = try runProcess("/usr/bin/openssl", ["dgst", "-sha256", "-r", dir + "/msg"], timeout: 20)
        XCTAssertEqual(dgst.status, 0, dgst.stderr)
        XCTAssertEqual(digest.map { String(format: "%02x", $0) }.joined(), String(dgst.stdout.prefix(64)))

        // ECDSA with the test server's P-256 key; the openssl command verifies with the certificate's key.
        let bio = try XCTUnwrap(BIO_new_file(pki.serverKey, "r"))
        let key = try XCTUnwrap(PEM_read_bio_PrivateKey(bio, nil, nil, nil))
        _ = BIO_free(bio)
        defer { EVP_PKEY_free(key) }
        let signer = try XCTUnwrap(EVP_MD_CTX_new())
        defer { EVP_MD_CTX_free(signer) }
        XCTAssertEqual(EVP_DigestSignInit(signer, nil, EVP_sha256(), nil, key), 1)
        var signatureLength = 0
        XCTAssertEqual(EVP_DigestSign(signer, nil, &signatureLength, message, message.count), 1)
        var signature = [UInt8](repeating: 0, count: signatureLength)
        XCTAssertEqual(EVP_DigestSign(signer, &signature, &signatureLength, message, message.count), 1)
        try Data(signature.prefix(signatureLength)).write(to: URL(fileURLWithPath: dir + "/sig"))
        let pub = try runProcess("/usr/bin/openssl", ["x509", "-in", pki.serverCert, "-pubkey", "-noout", "-out", dir + "/pub.pem"], timeout: 20)
        XCTAssertEqual(pub.status, 0, pub.stderr)
        let verify = try runProcess("/usr/bin/openssl", ["dgst", "-sha256", "-verify", dir + "/pub.pem", "-signature", dir + "/sig", dir + "/msg"], timeout: 20)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("Verified OK"), verify.stdout)
        // A changed message fails the same command: the check can fail.
        try Data(message + [0x21]).write(to: URL(fileURLWithPath: dir + "/msg"))
        let bad = try runProcess("/usr/bin/openssl", ["dgst", "-sha256", "-verify", dir + "/pub.pem", "-signature", dir + "/sig", dir + "/msg"], timeout: 20)
        XCTAssertNotEqual(bad.status, 0)
    }
}
