import Foundation
import XCTest

/// The check itself is Signatures.swift compiling (see its header). This test makes sure it covers every
/// generated wrapper: as many as docs/DirectCalls.md lists.
final class SignatureTests: XCTestCase {
    func testEveryWrapperIsInTheSignatureCheck() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        let table = try String(contentsOfFile: root + "/docs/DirectCalls.md", encoding: .utf8)
        let rows = table.split(separator: "\n").filter { $0.hasPrefix("| `") }.count
        XCTAssertGreaterThan(rows, 900)
        XCTAssertEqual(checkedWrapperCount, rows, "Signatures.swift checks every wrapper in docs/DirectCalls.md")
    }
}
