import Foundation
import XCTest

/// Every hand-written public function, initializer, computed property or subscript whose body calls an
/// OpenSSL function names its C calls in a `- Corresponds:` line of its doc comment (issue 20, as
/// rust-openssl's `#[corresponds]`). Generated wrappers are exempt: their doc comment is the C prototype.
final class CorrespondsTests: XCTestCase {
    static let modules = ["OpenSSLFLI", "OpenSSL", "OpenSSLTLS", "OpenSSLStreams", "OpenSSLSeeds", "OpenSSLNIO"]

    func testEveryPublicWrapperNamesItsCCalls() throws {
        let declarations = try Self.modules.flatMap { try SwiftSourceScan.publicWrappers(inModule: $0) }
        XCTAssertGreaterThan(declarations.count, 100, "the scan finds the wrappers (else it is broken)")
        let missing = declarations.filter { !$0.hasCorresponds }
        XCTAssertEqual(missing.count, 0, """
            public declarations that call OpenSSL without a `- Corresponds:` doc line:
            \(missing.prefix(40).map { "\($0.file):\($0.line): \($0.signature) calls \($0.calls.joined(separator: ", "))" }.joined(separator: "\n"))
            """)
    }

    /// The scanner itself, on text whose answer is known.
    func testScannerFindsBodiesAndIgnoresStoredPropertiesAndStrings() {
        let source = #"""
        /// Frees it.
        public func free(_ p: OpaquePointer?) { SSL_free(p) }
        /// A stored property is not a wrapper.
        public var name = "SSL_new()"
        /// Documented.
        /// - Corresponds: `SSL_CTX_new`.
        public init(side: Int, body: () -> Void = { _ = 1 }) throws {
            let s = "{ not a brace"
            ctx = COpenSSL.SSL_CTX_new(TLS_method())
        }
        /// A computed property.
        public var pending: Int { Int(SSL_pending(ssl)) }
        /// No C call.
        public func plain() -> Int { return count("SSL_read(") }
        """#
        let found = SwiftSourceScan.publicWrappers(in: source, file: "inline")
        XCTAssertEqual(found.map(\.line), [2, 7, 12])
        XCTAssertEqual(found.map(\.calls), [["SSL_free"], ["SSL_CTX_new", "TLS_method"], ["SSL_pending"]])
        XCTAssertEqual(found.map(\.hasCorresponds), [false, true, false])
    }
}

/// A small scanner of Swift source text: enough to find public declarations, their doc comments and
/// the OpenSSL calls in their bodies (string literals and comments are skipped).
enum SwiftSourceScan {
    struct Declaration {
        var file: String
        var line: Int
        var signature: String
        var calls: [String]
        var hasCorresponds: Bool
    }

    static let declaration = try! NSRegularExpression(pattern:
        #"^\s*(?:@[\w().,": ]+\s+)*(?:public|open)\s+(?:(?:static|class|final|override|convenience|mutating|nonisolated|required)\s+)*(?:func|init|var|subscript)\b"#)
    /// An OpenSSL function called: an upper-case library prefix, `_`, a name with a lower-case letter
    /// (constants such as `SSL_ERROR_WANT_READ` are all upper case), then `(`.
    static let cCall = try! NSRegularExpression(pattern:
        #"(?<![\w.])(?:COpenSSL\.)?((?:[A-Z][A-Z0-9]*_[A-Za-z0-9_]*[a-z][A-Za-z0-9_]*)|(?:d2i|i2d)_\w+)\s*\("#)

    static func sourceRoot() -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
    }

    static func publicWrappers(inModule module: String) throws -> [Declaration] {
        let root = sourceRoot().appendingPathComponent(module)
        guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var result: [Declaration] = []
        for case let relative as String in walker
        where relative.hasSuffix(".swift") && !relative.hasPrefix("Generated/") && !relative.contains(".docc/") {
            let text = try String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
            result += publicWrappers(in: text, file: "Sources/\(module)/\(relative)")
        }
        return result
    }

    static func publicWrappers(in text: String, file: String) -> [Declaration] {
        let chars = Array(text.utf8)
        var lineStarts = [0]
        for (i, c) in chars.enumerated() where c == UInt8(ascii: "\n") { lineStarts.append(i + 1) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var found: [Declaration] = []
        for (index, line) in lines.enumerated() {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("//") { continue }
            let range = NSRange(line.startIndex..., in: line)
            guard let match = declaration.firstMatch(in: line, range: range),
                  let end = Range(match.range, in: line)?.upperBound else { continue }
            let start = lineStarts[index] + line[..<end].utf8.count
            guard let body = bodyRange(chars, from: start) else { continue }
            let bodyText = String(decoding: chars[body], as: UTF8.self)
            let stripped = stripStringsAndComments(bodyText)
            let calls = Set(cCall.matches(in: stripped, range: NSRange(stripped.startIndex..., in: stripped)).compactMap {
                Range($0.range(at: 1), in: stripped).map { String(stripped[$0]) }
            })
            guard !calls.isEmpty else { continue }
            var doc = index - 1
            var hasCorresponds = false
            while doc >= 0 {
                let t = lines[doc].trimmingCharacters(in: .whitespaces)
                guard t.hasPrefix("///") || t.hasPrefix("@") else { break }
                if t.contains("- Corresponds:") { hasCorresponds = true }
                doc -= 1
            }
            found.append(Declaration(file: file, line: index + 1, signature: line.trimmingCharacters(in: .whitespaces),
                                     calls: calls.sorted(), hasCorresponds: hasCorresponds))
        }
        return found
    }

    /// The body of the declaration whose signature starts at `start`: from the first `{` outside
    /// parentheses to its matching `}`. Nil for a stored property (`=` first) or a requirement without a
    /// body (the signature ends at a line that does not go on with `throws`, `->`, `where` or `{`).
    static func bodyRange(_ c: [UInt8], from start: Int) -> Range<Int>? {
        var depth = 0
        var i = start
        while i < c.count {
            switch c[i] {
            case UInt8(ascii: "\""): i = skipString(c, i); continue
            case UInt8(ascii: "("), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: ")"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: "{") where depth == 0:
                return i..<matchingBrace(c, i)
            case UInt8(ascii: "=") where depth == 0:
                let next = i + 1 < c.count ? c[i + 1] : 0
                let previous = c[i - 1]
                if next != UInt8(ascii: "=") && ![UInt8(ascii: "!"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "=")].contains(previous) {
                    return nil
                }
            case UInt8(ascii: "\n") where depth == 0:
                var k = i + 1
                while k < c.count, c[k] == UInt8(ascii: " ") || c[k] == UInt8(ascii: "\t") { k += 1 }
                let rest = String(decoding: c[k..<min(k + 8, c.count)], as: UTF8.self)
                if !["throws", "->", "where", "rethrows", "async", "{"].contains(where: { rest.hasPrefix($0) }) { return nil }
            default: break
            }
            i += 1
        }
        return nil
    }

    static func matchingBrace(_ c: [UInt8], _ open: Int) -> Int {
        var depth = 0
        var i = open
        while i < c.count {
            if c[i] == UInt8(ascii: "\"") { i = skipString(c, i); continue }
            if c[i] == UInt8(ascii: "/"), i + 1 < c.count, c[i + 1] == UInt8(ascii: "/") {
                while i < c.count, c[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            if c[i] == UInt8(ascii: "{") { depth += 1 }
            if c[i] == UInt8(ascii: "}") { depth -= 1; if depth == 0 { return i + 1 } }
            i += 1
        }
        return c.count
    }

    /// The index after the string literal that starts at `i` (plain or multi-line).
    static func skipString(_ c: [UInt8], _ i: Int) -> Int {
        let quote = UInt8(ascii: "\"")
        if i + 2 < c.count, c[i + 1] == quote, c[i + 2] == quote {
            var j = i + 3
            while j + 2 < c.count, !(c[j] == quote && c[j + 1] == quote && c[j + 2] == quote) { j += 1 }
            return min(j + 3, c.count)
        }
        var j = i + 1
        while j < c.count, c[j] != quote, c[j] != UInt8(ascii: "\n") {
            if c[j] == UInt8(ascii: "\\") { j += 1 }
            j += 1
        }
        return min(j + 1, c.count)
    }

    /// The text with string literals and `//` comments blanked, so that names inside them are not calls.
    static func stripStringsAndComments(_ text: String) -> String {
        let c = Array(text.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < c.count {
            if c[i] == UInt8(ascii: "\"") {
                let end = skipString(c, i)
                out.append(UInt8(ascii: "\"")); out.append(UInt8(ascii: "\""))
                i = end
                continue
            }
            if c[i] == UInt8(ascii: "/"), i + 1 < c.count, c[i + 1] == UInt8(ascii: "/") {
                while i < c.count, c[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            out.append(c[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
