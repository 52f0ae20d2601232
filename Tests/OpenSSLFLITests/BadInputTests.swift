import Foundation
import XCTest
import TestSupport
import OpenSSL
import OpenSSLFLI

/// Bad input, each case twice: the direct call returns OpenSSL's failure code, and the helper throws a
/// typed `SSLError` naming the call, the file and OpenSSL's reason. Nothing crashes, and the error
/// queue is left empty.
final class BadInputTests: XCTestCase {
    var ctx: SSLContextPointer!

    override func setUpWithError() throws {
        ctx = try makeSSLCtx(protocol: .default, side: .server)
        clearOpenSSLErrors()
    }

    override func tearDown() {
        if let ctx { destroySSLCtx(ctx) }
        XCTAssertEqual(ERR_peek_error(), 0, "the error queue should be empty after each test")
        clearOpenSSLErrors()
    }

    func assertSSLError(_ call: String, file: String?, reasonContains: String? = nil,
                        _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard let e = error as? SSLError else { return XCTFail("not an SSLError: \(error)", line: line) }
            XCTAssertEqual(e.kind, .error, line: line)
            XCTAssertEqual(e.call, call, line: line)
            XCTAssertEqual(e.file, file, line: line)
            if let reasonContains {
                XCTAssertTrue(e.description.localizedCaseInsensitiveContains(reasonContains), "\(e)", line: line)
            }
            XCTAssertTrue(e.description.contains(call), line: line)
        }
    }

    func testMissingFile() throws {
        let pki = try TestPKI.shared
        XCTAssertEqual(SSL_CTX_use_certificate_chain_file(ctx, pki.missing), 0)
        XCTAssertNotEqual(ERR_peek_error(), 0)
        clearOpenSSLErrors()
        assertSSLError("SSL_CTX_use_certificate_chain_file", file: pki.missing, reasonContains: "No such file") {
            try useCertificateChainFile(ctx, file: pki.missing)
        }
        assertSSLError("SSL_CTX_use_PrivateKey_file", file: pki.missing, reasonContains: "No such file") {
            try usePrivateKeyFile(ctx, file: pki.missing)
        }
        assertSSLError("BIO_new_file", file: pki.missing, reasonContains: "No such file") {
            _ = try pemRead(.x509, file: pki.missing)
        }
        XCTAssertNil(try pemRead(.x509, file: pki.missing, errorp: false))
        do {
            try useCertificateChainFile(ctx, file: pki.missing)
        } catch let e as SSLError {
            XCTAssertEqual(e.errno, ENOENT)
        }
    }

    func testPEMWithGarbage() throws {
        let pki = try TestPKI.shared
        XCTAssertEqual(SSL_CTX_use_certificate_file(ctx, pki.garbagePEM, SSL_FILETYPE_PEM), 0)
        XCTAssertNotEqual(ERR_peek_error(), 0)
        clearOpenSSLErrors()
        assertSSLError("SSL_CTX_use_certificate_chain_file", file: pki.garbagePEM) {
            try useCertificateChainFile(ctx, file: pki.garbagePEM)
        }
        XCTAssertThrowsError(try pemRead(.x509, file: pki.garbagePEM)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.call, "PEM_read_bio_X509")
            XCTAssertFalse(e?.queue.isEmpty ?? true, "OpenSSL's reason should be carried")
        }
    }

    func testCertificateAndKeyThatDoNotMatch() throws {
        let pki = try TestPKI.shared
        XCTAssertEqual(SSL_CTX_use_certificate_chain_file(ctx, pki.serverCert), 1)
        // OpenSSL refuses a key that does not match the loaded certificate already when loading it.
        XCTAssertEqual(SSL_CTX_use_PrivateKey_file(ctx, pki.otherKey, SSL_FILETYPE_PEM), 0)
        XCTAssertNotEqual(ERR_peek_error(), 0)
        clearOpenSSLErrors()
        assertSSLError("SSL_CTX_use_PrivateKey_file", file: pki.otherKey, reasonContains: "values mismatch") {
            try usePrivateKeyFile(ctx, file: pki.otherKey)
        }
        // With no key at all, the check fails with its own reason.
        assertSSLError("SSL_CTX_check_private_key", file: nil, reasonContains: "no private key") {
            try checkPrivateKey(ctx)
        }
    }

    func testWrongPassPhrase() throws {
        let pki = try TestPKI.shared
        try setSSLCtxPasswordCallback(ctx, password: "wrong")
        XCTAssertEqual(SSL_CTX_use_PrivateKey_file(ctx, pki.encryptedKey, SSL_FILETYPE_PEM), 0)
        XCTAssertNotEqual(ERR_peek_error(), 0)
        clearOpenSSLErrors()
        assertSSLError("SSL_CTX_use_PrivateKey_file", file: pki.encryptedKey, reasonContains: "bad decrypt") {
            try usePrivateKeyFile(ctx, file: pki.encryptedKey)
        }
        assertSSLError("PEM_read_bio_PrivateKey", file: pki.encryptedKey, reasonContains: "bad decrypt") {
            _ = try pemRead(.privateKey, file: pki.encryptedKey, passPhrase: "wrong")
        }
        // The right one works, by fixed password and by callback.
        try setSSLCtxPasswordCallback(ctx, password: pki.encryptedKeyPassword)
        try useCertificateChainFile(ctx, file: pki.serverCert)
        try usePrivateKeyFile(ctx, file: pki.encryptedKey)
        try checkPrivateKey(ctx)
        let key = try pemRead(.privateKey, file: pki.encryptedKey, callback: { _, encrypting in
            XCTAssertFalse(encrypting)
            return pki.encryptedKeyPassword
        })
        guard case .privateKey(let pkey)? = key else { return XCTFail("expected a private key") }
        XCTAssertEqual(EVP_PKEY_get_bits(pkey), 256)
        key?.free()
    }

    func testDERPassedAsPEM() throws {
        let pki = try TestPKI.shared
        XCTAssertEqual(SSL_CTX_use_certificate_file(ctx, pki.certDER, SSL_FILETYPE_PEM), 0)
        XCTAssertEqual(SSL_CTX_use_PrivateKey_file(ctx, pki.keyDER, SSL_FILETYPE_PEM), 0)
        XCTAssertNotEqual(ERR_peek_error(), 0)
        clearOpenSSLErrors()
        assertSSLError("SSL_CTX_use_certificate_chain_file", file: pki.certDER, reasonContains: "no start line") {
            try useCertificateChainFile(ctx, file: pki.certDER)
        }
        assertSSLError("SSL_CTX_use_PrivateKey_file", file: pki.keyDER) {
            try usePrivateKeyFile(ctx, file: pki.keyDER)
        }
        // As ASN1 it loads.
        XCTAssertEqual(SSL_CTX_use_certificate_file(ctx, pki.certDER, SSL_FILETYPE_ASN1), 1)
        try usePrivateKeyFile(ctx, file: pki.keyDER, type: .asn1)
        try checkPrivateKey(ctx)
    }

    func testPasswordCallbackErrorIsRethrown() throws {
        struct Refused: Error, Equatable {}
        let pki = try TestPKI.shared
        try setSSLCtxPasswordCallback(ctx, callback: { _, _ in throw Refused() })
        XCTAssertThrowsError(try usePrivateKeyFile(ctx, file: pki.encryptedKey)) { error in
            XCTAssertEqual(error as? Refused, Refused())
        }
        clearOpenSSLErrors()
        XCTAssertThrowsError(try pemRead(.privateKey, file: pki.encryptedKey, callback: { _, _ in throw Refused() })) { error in
            XCTAssertEqual(error as? Refused, Refused())
        }
        // A password too long for OpenSSL's buffer is an error, not a truncation.
        try setSSLCtxPasswordCallback(ctx, password: String(repeating: "x", count: 5000))
        XCTAssertThrowsError(try usePrivateKeyFile(ctx, file: pki.encryptedKey)) { error in
            XCTAssertTrue("\(error)".contains("at most"), "\(error)")
        }
        clearOpenSSLErrors()
        XCTAssertThrowsError(try setSSLCtxPasswordCallback(ctx, callback: { _, _ in "a" }, password: "b"))
    }
}
