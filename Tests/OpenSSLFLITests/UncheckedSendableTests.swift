import Foundation
import XCTest

/// Every `@unchecked Sendable`, `nonisolated(unsafe)` and `@exclusivity(unchecked)` in the package's
/// sources and tests says why it is safe, in a `//` comment on its line or on the line above (issue 20:
/// the compiler does not check these, so the reason is what a reviewer checks). Generated files count too: the generator writes the
/// reason of the handle structs.
final class UncheckedSendableTests: XCTestCase {
    func testEveryUncheckedSendableSaysWhy() throws {
        let root = SwiftSourceScan.sourceRoot().deletingLastPathComponent()
        var found = 0
        var missing: [String] = []
        for directory in ["Sources", "Tests"] {
            let base = root.appendingPathComponent(directory)
            guard let walker = FileManager.default.enumerator(atPath: base.path) else { continue }
            for case let relative as String in walker where relative.hasSuffix(".swift") {
                let file = "\(directory)/\(relative)"
                if file.hasPrefix("Tests/ReadmeSnippetTests/Snippets/") || file == "Tests/OpenSSLFLITests/UncheckedSendableTests.swift" { continue }
                let text = try String(contentsOf: base.appendingPathComponent(relative), encoding: .utf8)
                let result = Self.unjustified(in: text)
                found += result.uses
                missing += result.lines.map { "\(file):\($0)" }
            }
        }
        XCTAssertGreaterThan(found, 100, "the scan finds the uses (else it is broken)")
        XCTAssertEqual(missing, [], "@unchecked Sendable / nonisolated(unsafe) / @exclusivity(unchecked) without a reason on its line or the line above")
    }

    /// The check itself, on text whose answer is known.
    func testScanTellsAReasonFromNone() {
        let text = """
            final class A: @unchecked Sendable {}
            final class B: @unchecked Sendable {}  // state under `lock`
            // immutable after init
            final class C: @unchecked Sendable {}
            nonisolated(unsafe) var d = 0
            /// Documentation is not a reason.
            final class F: @unchecked Sendable {}
            let e = "@unchecked Sendable"
            @exclusivity(unchecked) var g = 0
            @exclusivity(unchecked) var h = 0  // one thread at a time
            """
        let result = Self.unjustified(in: text)
        XCTAssertEqual(result.uses, 7)
        XCTAssertEqual(result.lines, [1, 5, 7, 9])
    }

    /// The markers that switch a compiler check off.
    static let markers = ["@unchecked Sendable", "nonisolated(unsafe)", "@exclusivity(unchecked)"]

    /// The uses in `text` (outside string literals) and the lines of those with no `//` reason.
    static func unjustified(in text: String) -> (uses: Int, lines: [Int]) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var uses = 0
        var bad: [Int] = []
        for (index, line) in lines.enumerated() {
            let code = line.components(separatedBy: "//").first ?? line
            guard let use = Self.markers.compactMap({ code.range(of: $0)?.lowerBound }).min() else { continue }
            // A use inside a string literal is not a declaration.
            if let quote = code.firstIndex(of: "\""), quote < use { continue }
            uses += 1
            // A `//` comment, not the declaration's `///` documentation.
            let sameLine = line.contains("//")
            let above = index > 0 ? lines[index - 1].trimmingCharacters(in: .whitespaces) : ""
            let lineAbove = above.hasPrefix("//") && !above.hasPrefix("///")
            if !sameLine && !lineAbove { bad.append(index + 1) }
        }
        return (uses, bad)
    }
}
