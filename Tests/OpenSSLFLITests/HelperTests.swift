import Foundation
import XCTest
import TestSupport
import OpenSSL
import OpenSSLFLI

final class HelperTests: XCTestCase {
    func testEnsureSSLIsIdempotentAndThreadSafe() throws {
        let failures = ReleaseCount()  // counts the threads whose ensureSSL threw
        DispatchQueue.concurrentPerform(iterations: 32) { _ in
            do { try ensureSSL() } catch { failures.add() }
        }
        XCTAssertEqual(failures.value, 0, "ensureSSL threw on some threads")
        try ensureSSL(alreadyDone: true)
        XCTAssertGreaterThanOrEqual(openSSLVersion.major, 3)
        XCTAssertTrue(openSSLVersion.text.hasPrefix("OpenSSL 3"), openSSLVersion.text)
        try doRandSeed()
    }

    func testMakeSSLCtxForEveryProtocol() throws {
        for proto in SSLProtocol.allCases {
            for side in [SSLSide.client, .server, .both] {
                if proto == .v2 || proto == .v3 {
                    XCTAssertThrowsError(try makeSSLCtx(protocol: proto, side: side)) { error in
                        let e = error as? SSLError
                        XCTAssertEqual(e?.kind, .error)
                        XCTAssertTrue(e?.message.contains("OpenSSL 3 removed it") ?? false, "\(error)")
                    }
                    continue
                }
                let ctx = try makeSSLCtx(protocol: proto, side: side)
                if proto == .tlsV1_3 { XCTAssertEqual(SSL_CTX_get_max_proto_version(ctx), Int(TLS1_3_VERSION)) }
                let ssl = try sslNew(ctx)
                XCTAssertEqual(SSL_get_SSL_CTX(ssl), ctx)
                destroySSL(ssl)
                destroySSLCtx(ctx)
            }
        }
    }

    func testSetSSLCtxOptions() throws {
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let set = setSSLCtxOptions(ctx, options: [.noTicket, .cipherServerPreference])
        XCTAssertTrue(set.contains([.noTicket, .cipherServerPreference]))
        XCTAssertEqual(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET, SSL_OP_NO_TICKET)
        let cleared = setSSLCtxOptions(ctx, options: [], clear: .noTicket)
        XCTAssertFalse(cleared.contains(.noTicket))
        XCTAssertTrue(cleared.contains(.cipherServerPreference))
        XCTAssertEqual(SSLContextOptions.noTLSv1_3.rawValue, SSL_OP_NO_TLSv1_3)
    }

    /// Closures live in ex_data: freeing the context releases them, and replacing one releases the old.
    func testCallbackClosuresAreReleased() throws {
        let released = ReleaseCount()
        let ctx = try makeSSLCtx()
        do {
            let token = ReleaseToken(released)
            try setSSLCtxPasswordCallback(ctx, callback: { _, _ in _ = token; return "x" })
        }
        XCTAssertEqual(released.value, 0)
        do {
            let token = ReleaseToken(released)
            try setSSLCtxPasswordCallback(ctx, callback: { _, _ in _ = token; return "y" })
        }
        XCTAssertEqual(released.value, 1, "replacing the callback releases the old closure")
        destroySSLCtx(ctx)
        XCTAssertEqual(released.value, 2, "freeing the context releases the closure")
    }

    func testDHParams() throws {
        let pki = try TestPKI.shared
        let a = try readDHParams(file: pki.dhParams)
        let b = try readDHParams(file: pki.dhParams)
        XCTAssertEqual(a, b, "cached per file")
        let c = try readDHParams(file: pki.dhParams, force: true)
        XCTAssertEqual(EVP_PKEY_get_bits(c), 2048)
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        try setSSLCtxDH(ctx, filename: pki.dhParams)
        try setSSLCtxDH(ctx, dh: c)
        try setSSLCtxDH(ctx, filenameList: [pki.missing, pki.dhParams])
        try setSSLCtxDH(ctx)  // auto
        XCTAssertThrowsError(try setSSLCtxDH(ctx, filenameList: [pki.missing], auto: false))
        XCTAssertThrowsError(try readDHParams(file: pki.caCert)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .error)
        }
        clearOpenSSLErrors()
    }

    func testSSLErrorFromIO() throws {
        let ctx = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        // No BIO at all: the handshake fails locally.
        let r = SSL_do_handshake(ssl)
        XCTAssertLessThanOrEqual(r, 0)
        let e = SSLError.fromIO(ssl: ssl, returnCode: r, call: "SSL_do_handshake")
        XCTAssertEqual(e.call, "SSL_do_handshake")
        XCTAssertNotNil(e.status)
        XCTAssertEqual(ERR_peek_error(), 0)
    }
}
