import COpenSSL
import XCTest
import TestSupport
import OpenSSL
import OpenSSLFLI

/// `SSLError.fromIO` on real failures over in-memory transports: which condition kind it picks.
final class SSLErrorClassificationTests: XCTestCase {
    override func tearDown() {
        XCTAssertEqual(COpenSSL.ERR_peek_error(), 0, "the error queue should be empty after each test")
        clearOpenSSLErrors()
    }

    /// A client and a server joined by a BIO pair; `pump` drives both handshakes until one fails.
    struct Pair {
        let client: SSLPointer, server: SSLPointer
        func free() { destroySSL(client); destroySSL(server) }

        /// Returns the first failing side's error (client first), or nil when both finish.
        func pump(clientCall: String = "SSL_connect") -> SSLError? {
            var clientDone = false, serverDone = false
            for _ in 0..<50 where !(clientDone && serverDone) {
                if !clientDone {
                    let r = COpenSSL.SSL_connect(client.rawValue)
                    if r == 1 { clientDone = true } else {
                        let e = SSLError.fromIO(ssl: client, returnCode: r, call: clientCall)
                        if e.status != .wantRead && e.status != .wantWrite { return e }
                    }
                }
                if !serverDone {
                    let r = COpenSSL.SSL_accept(server.rawValue)
                    if r == 1 { serverDone = true } else {
                        let e = SSLError.fromIO(ssl: server, returnCode: r, call: "SSL_accept")
                        if e.status != .wantRead && e.status != .wantWrite { return e }
                    }
                }
            }
            return nil
        }
    }

    func makePair(client: SSLContextPointer, server: SSLContextPointer) throws -> Pair {
        let c = try sslNew(client), s = try sslNew(server)
        var one: OpaquePointer?, two: OpaquePointer?
        XCTAssertEqual(COpenSSL.BIO_new_bio_pair(&one, 0, &two, 0), 1)
        COpenSSL.SSL_set_bio(c.rawValue, one, one)  // one reference each, taken by the SSL
        COpenSSL.SSL_set_bio(s.rawValue, two, two)
        return Pair(client: c, server: s)
    }

    func serverContext() throws -> SSLContextPointer {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        try useCertificateChainFile(ctx, file: pki.serverCert)
        try usePrivateKeyFile(ctx, file: pki.serverKey)
        try checkPrivateKey(ctx)
        return ctx
    }

    /// A client that trusts nothing fails to verify the server: `.verificationFailure`, with
    /// `SSL_get_verify_result`'s code and text; the call name does not matter.
    func testUntrustedServerIsAVerificationFailure() throws {
        let server = try serverContext()
        let client = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(server); destroySSLCtx(client) }
        COpenSSL.SSL_CTX_set_verify(client.rawValue, COpenSSL.SSL_VERIFY_PEER, nil)
        let pair = try makePair(client: client, server: server)
        defer { pair.free() }
        let error = try XCTUnwrap(pair.pump(clientCall: "SSL_connect"))
        XCTAssertEqual(error.kind, .verificationFailure, "\(error)")
        XCTAssertEqual(error.call, "SSL_connect")
        XCTAssertEqual(error.status, .ssl)
        XCTAssertEqual(error.verifyResult, Int(COpenSSL.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
        XCTAssertNotNil(error.verifyResultText)
        XCTAssertTrue(error.description.contains("SSL_connect"), "\(error)")
        XCTAssertTrue(error.reasons.contains { $0.contains("certificate verify failed") }, "\(error.reasons)")
    }

    /// A client that trusts the CA completes the handshake: no error at all.
    func testTrustedServerHandshakes() throws {
        let server = try serverContext()
        let client = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(server); destroySSLCtx(client) }
        COpenSSL.SSL_CTX_set_verify(client.rawValue, COpenSSL.SSL_VERIFY_PEER, nil)
        try loadVerifyLocations(client, file: try TestPKI.shared.caCert)
        let pair = try makePair(client: client, server: server)
        defer { pair.free() }
        XCTAssertNil(pair.pump())
    }

    /// The transport ends (EOF) in the middle of the handshake: OpenSSL 3 reports `SSL_ERROR_SSL` with
    /// "unexpected eof while reading": LispWorks' ssl-error (not ssl-closed, which is close_notify only).
    func testEOFWithoutCloseNotifyIsAnError() throws {
        let ctx = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        let input = try XCTUnwrap(COpenSSL.BIO_new(COpenSSL.BIO_s_mem()))
        let output = try XCTUnwrap(COpenSSL.BIO_new(COpenSSL.BIO_s_mem()))
        _ = COpenSSL.BIO_ctrl(input, COpenSSL.BIO_C_SET_BUF_MEM_EOF_RETURN, 0, nil)  // empty = end of file
        COpenSSL.SSL_set_bio(ssl.rawValue, input, output)
        let r = COpenSSL.SSL_connect(ssl.rawValue)
        XCTAssertLessThanOrEqual(r, 0)
        let error = SSLError.fromIO(ssl: ssl, returnCode: r, call: "SSL_connect")
        XCTAssertEqual(error.kind, .error, "\(error)")
        XCTAssertTrue(error.isUnexpectedEOF, "\(error)")
    }

    /// A missing file is reported as missing: errno, the file, and the call.
    func testMissingFileCarriesErrnoAndFile() throws {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        XCTAssertThrowsError(try loadVerifyLocations(ctx, file: pki.missing)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .error)
            XCTAssertEqual(e?.call, "SSL_CTX_load_verify_locations")
            XCTAssertEqual(e?.file, pki.missing)
            XCTAssertEqual(e?.errno, ENOENT)
            XCTAssertTrue("\(error)".contains("No such file"), "\(error)")
        }
    }
}
