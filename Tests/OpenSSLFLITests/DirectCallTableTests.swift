import Foundation
import XCTest
import OpenSSLFLI

/// The run-time table of the generated wrappers: found by C or LispWorks name, with prototype and version.
final class DirectCallTableTests: XCTestCase {
    func testLookUpByCAndLispName() throws {
        let byC = try XCTUnwrap(directCall(named: "SSL_CTX_use_RSAPrivateKey_file"))
        XCTAssertEqual(byC.lispName, "ssl-ctx-use-rsaprivatekey-file")
        XCTAssertEqual(directCall(named: "ssl-ctx-use-rsaprivatekey-file"), byC)
        XCTAssertEqual(directCall(named: "SSL-CTX-USE-RSAPRIVATEKEY-FILE"), byC)
        XCTAssertTrue(byC.prototype.contains("SSL_CTX_use_RSAPrivateKey_file(SSL_CTX *ctx"), byC.prototype)
        XCTAssertNil(byC.since)
        XCTAssertTrue(byC.libraryHasIt && byC.isCallable)
        let macro = try XCTUnwrap(directCall(named: "SSL_CTX_set_mode"))
        XCTAssertEqual(macro.kind, .macro)
        XCTAssertTrue(macro.prototype.hasPrefix("#define SSL_CTX_set_mode"), macro.prototype)
        XCTAssertNil(directCall(named: "SSL_no_such_call"))
    }

    func testVersionedCallsTellWhetherTheRunningLibraryHasThem() throws {
        let call = try XCTUnwrap(directCall(named: "SSL_get0_group_name"))
        XCTAssertEqual(call.since, "3.2.0")
        let running = openSSLVersion.minor
        XCTAssertEqual(call.libraryHasIt, running >= 2, "libssl \(openSSLVersion.text)")
        XCTAssertEqual(call.isCallable, running >= 2)
        XCTAssertEqual(directCalls.count, Set(directCalls.map(\.name)).count)
        XCTAssertGreaterThan(directCalls.count, 1000)
        XCTAssertTrue(directCalls(matching: "get0_group").contains(call))
    }
}
