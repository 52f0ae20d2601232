import COpenSSL
import XCTest
import OpenSSL
import OpenSSLFLI

/// `SSLContextOptions` and `SSLContextMode` against what OpenSSL itself stores.
final class ContextModeAndOptionTests: XCTestCase {
    /// Every option that is not 0 in OpenSSL 3, alone, goes through `SSL_CTX_set_options` /
    /// `SSL_CTX_get_options` (real functions in 3.0) unchanged, and the single-bit ones are distinct.
    func testEveryOptionRoundTripsThroughOpenSSL() throws {
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let options: [(String, SSLContextOptions)] = [
            ("dontInsertEmptyFragments", .dontInsertEmptyFragments), ("all", .all), ("noQueryMTU", .noQueryMTU),
            ("cookieExchange", .cookieExchange), ("noTicket", .noTicket),
            ("cipherServerPreference", .cipherServerPreference), ("tlsRollbackBug", .tlsRollbackBug),
            ("noSSLv3", .noSSLv3), ("noTLSv1", .noTLSv1), ("noTLSv1_1", .noTLSv1_1), ("noTLSv1_2", .noTLSv1_2),
            ("noTLSv1_3", .noTLSv1_3), ("noCompression", .noCompression), ("noRenegotiation", .noRenegotiation),
            ("ignoreUnexpectedEOF", .ignoreUnexpectedEOF), ("enableKTLS", .enableKTLS),
        ]
        // The list above is every member: the source declares no other, and none as `[]`.
        let source = try String(contentsOfFile: #filePath.replacingOccurrences(
            of: "Tests/OpenSSLFLITests/ContextModeAndOptionTests.swift", with: "Sources/OpenSSL/ContextOptions.swift"),
            encoding: .utf8)
        let declared = source.split(separator: "\n").filter { $0.contains("public static let ") }
        XCTAssertEqual(declared.count, options.count, "a member of SSLContextOptions is missing from this test")
        XCTAssertFalse(source.contains("SSLContextOptions([])"), "an option that is 0 would make contains() always true")
        var singleBits: UInt64 = 0
        for (name, option) in options {
            XCTAssertNotEqual(option.rawValue, 0, name)
            _ = COpenSSL.SSL_CTX_clear_options(ctx.rawValue, UInt64.max)
            XCTAssertEqual(COpenSSL.SSL_CTX_set_options(ctx.rawValue, option.rawValue), option.rawValue, name)
            XCTAssertEqual(COpenSSL.SSL_CTX_get_options(ctx.rawValue), option.rawValue, name)
            if name != "all" {
                XCTAssertEqual(option.rawValue.nonzeroBitCount, 1, name)
                XCTAssertEqual(singleBits & option.rawValue, 0, "\(name) overlaps another option")
                singleBits |= option.rawValue
            }
        }
        // The helper returns the mask in force.
        _ = COpenSSL.SSL_CTX_clear_options(ctx.rawValue, UInt64.max)
        let now = setSSLCtxOptions(ctx, options: [.noTicket, .noTLSv1_3])
        XCTAssertEqual(now, [.noTicket, .noTLSv1_3])
        XCTAssertEqual(setSSLCtxOptions(ctx, options: [], clear: .noTLSv1_3), .noTicket)
    }

    func testContextModeSetGetAndClear() throws {
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        XCTAssertTrue(getSSLCtxMode(ctx).contains(.autoRetry), "OpenSSL 3 sets AUTO_RETRY by default")
        let mode = setSSLCtxMode(ctx, mode: [.enablePartialWrite, .acceptMovingWriteBuffer], clear: .autoRetry)
        XCTAssertEqual(mode, [.enablePartialWrite, .acceptMovingWriteBuffer])
        XCTAssertEqual(getSSLCtxMode(ctx), mode)
        XCTAssertEqual(COpenSSL.SSL_CTX_ctrl(ctx.rawValue, COpenSSL.SSL_CTRL_MODE, 0, nil), mode.rawValue)
        // A new connection starts with the context's mode; its own can then change alone.
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        XCTAssertEqual(getSSLMode(ssl), mode)
        XCTAssertEqual(setSSLMode(ssl, mode: .releaseBuffers, clear: .enablePartialWrite),
                       [.acceptMovingWriteBuffer, .releaseBuffers])
        XCTAssertEqual(getSSLCtxMode(ctx), mode)
        XCTAssertEqual(SSLContextMode.async.rawValue, 0x100)
        XCTAssertEqual(SSLContextMode.releaseBuffers.rawValue, 0x10)
    }
}
