import Foundation
import XCTest

/// Every Swift snippet of README.md, of docs/*.md and of the DocC articles is compiled: each is copied into a file of
/// this target (`Snippets/`), as the body of an `async throws` function, with its own imports at the top
/// of its own file, so that it compiles only if it would compile pasted into a `main.swift`. This test
/// fails when a snippet changed and its copy did not: run
/// `FLI_UPDATE_SNIPPETS=1 swift test --filter SnippetFreshnessTests` to rewrite the copies, then build.
///
/// A snippet whose first line is `// Package.swift` is a manifest fragment and is not copied. A snippet
/// whose first line is `// Excerpt of PATH` is not copied either: its other lines must appear, verbatim and
/// in one piece, in that file of the repository (a file another package compiles, such as the
/// Hummingbird example, which CI builds), so it cannot go stale any more than a copy could.
final class SnippetFreshnessTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let snippetDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snippets")

    func testEverySnippetHasAnUpToDateCompiledCopy() throws {
        let expected = try Self.expectedFiles()
        XCTAssertGreaterThan(expected.count, 5, "the snippets were found")
        if ProcessInfo.processInfo.environment["FLI_UPDATE_SNIPPETS"] == "1" {
            try? FileManager.default.removeItem(at: Self.snippetDirectory)
            try FileManager.default.createDirectory(at: Self.snippetDirectory, withIntermediateDirectories: true)
            for (name, text) in expected {
                try text.write(to: Self.snippetDirectory.appendingPathComponent(name), atomically: true, encoding: .utf8)
            }
            return
        }
        let present = try FileManager.default.contentsOfDirectory(atPath: Self.snippetDirectory.path).filter { $0.hasSuffix(".swift") }
        XCTAssertEqual(Set(present), Set(expected.keys), "snippet files differ from the documents' snippets; see this test's doc comment")
        for (name, text) in expected {
            let file = Self.snippetDirectory.appendingPathComponent(name)
            XCTAssertEqual(try? String(contentsOf: file, encoding: .utf8), text,
                           "\(name) is stale: FLI_UPDATE_SNIPPETS=1 swift test --filter SnippetFreshnessTests")
        }
    }

    /// The extraction on a known document.
    func testExtractionTakesSwiftBlocksAndHoistsImports() {
        let document = """
            Text.
            ```swift
            import OpenSSLFLI
            let x = 1
            print(x)
            ```
            ```sh
            swift test
            ```
            ```swift
            // Package.swift
            dependencies: []
            ```
            """
        let snippets = Self.snippets(in: document)
        XCTAssertEqual(snippets.count, 1)
        XCTAssertEqual(snippets.first?.line, 2)
        let file = Self.compiledForm(snippets[0], document: "Doc.md", index: 1)
        XCTAssertTrue(file.hasPrefix("// Generated from Doc.md, line 2"), file)
        XCTAssertTrue(file.contains("import OpenSSLFLI\n\n"), file)
        XCTAssertTrue(file.contains("func snippet_Doc_1() async throws {\n    let x = 1\n    print(x)\n}\n"), file)
    }

    /// Every `// Excerpt of PATH` snippet is a contiguous run of lines of PATH.
    func testEveryExcerptIsVerbatimInItsFile() throws {
        var excerpts = 0
        for document in try Self.documents() {
            for snippet in Self.allSnippets(in: document.text) {
                guard let path = Self.excerptPath(snippet) else { continue }
                excerpts += 1
                let file = try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8)
                let lines = file.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                let excerpt = Array(snippet.code.dropFirst())
                XCTAssertFalse(excerpt.isEmpty, "\(document.name), line \(snippet.line): an empty excerpt")
                let found = lines.count >= excerpt.count && (0...(lines.count - excerpt.count)).contains {
                    Array(lines[$0..<$0 + excerpt.count]) == excerpt
                }
                XCTAssertTrue(found, "\(document.name), line \(snippet.line): the excerpt is not, verbatim, in \(path)")
            }
        }
        XCTAssertGreaterThan(excerpts, 0, "the excerpts were found")
    }

    /// The excerpt check on a known document: a changed line is not found.
    func testExcerptMarkerIsRecognised() {
        let document = """
            ```swift
            // Excerpt of Examples/X/main.swift
            let x = 1
            ```
            """
        let all = Self.allSnippets(in: document)
        XCTAssertEqual(all.count, 1)
        XCTAssertEqual(Self.excerptPath(all[0]), "Examples/X/main.swift")
        XCTAssertEqual(Self.snippets(in: document).count, 0, "an excerpt is not copied")
    }

    struct Snippet { var line: Int; var code: [String] }

    /// The path of an `// Excerpt of PATH` snippet.
    static func excerptPath(_ snippet: Snippet) -> String? {
        guard let first = snippet.code.first?.trimmingCharacters(in: .whitespaces), first.hasPrefix("// Excerpt of ") else { return nil }
        return String(first.dropFirst("// Excerpt of ".count))
    }

    /// Every ```swift block, excerpts and manifest fragments included.
    static func allSnippets(in text: String) -> [Snippet] {
        var result: [Snippet] = []
        var current: Snippet?
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if var snippet = current {
                if trimmed == "```" { result.append(snippet); current = nil } else { snippet.code.append(String(line)); current = snippet }
            } else if trimmed == "```swift" {
                current = Snippet(line: number + 1, code: [])
            }
        }
        return result
    }

    static func documents() throws -> [(name: String, text: String)] {
        var result = [(name: "README.md", text: try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8))]
        let docs = root.appendingPathComponent("docs")
        for file in try FileManager.default.contentsOfDirectory(atPath: docs.path).sorted() where file.hasSuffix(".md") {
            result.append((name: "docs/\(file)", text: try String(contentsOf: docs.appendingPathComponent(file), encoding: .utf8)))
        }
        let sources = root.appendingPathComponent("Sources")
        for module in try FileManager.default.contentsOfDirectory(atPath: sources.path).sorted() {
            let catalog = sources.appendingPathComponent(module).appendingPathComponent("\(module).docc")
            guard let articles = try? FileManager.default.contentsOfDirectory(atPath: catalog.path) else { continue }
            for article in articles.sorted() where article.hasSuffix(".md") {
                result.append((name: "\(module).docc/\(article)",
                               text: try String(contentsOf: catalog.appendingPathComponent(article), encoding: .utf8)))
            }
        }
        return result
    }

    /// The snippets that are copied and compiled: neither manifest fragments nor excerpts.
    static func snippets(in text: String) -> [Snippet] {
        allSnippets(in: text).filter { $0.code.first?.hasPrefix("// Package.swift") != true && excerptPath($0) == nil }
    }

    static func compiledForm(_ snippet: Snippet, document: String, index: Int) -> String {
        let imports = snippet.code.filter { $0.hasPrefix("import ") }
        let body = snippet.code.filter { !$0.hasPrefix("import ") }
        let name = document.replacingOccurrences(of: ".docc/", with: "_").replacingOccurrences(of: ".md", with: "")
            .map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
        var out = "// Generated from \(document), line \(snippet.line), by SnippetFreshnessTests. Do not edit.\n"
        out += imports.joined(separator: "\n") + "\n\n"
        out += "func snippet_\(name)_\(index)() async throws {\n"
        out += body.map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n") + "\n}\n"
        return out
    }

    static func expectedFiles() throws -> [String: String] {
        var files: [String: String] = [:]
        for document in try documents() {
            for (i, snippet) in snippets(in: document.text).enumerated() {
                let form = compiledForm(snippet, document: document.name, index: i + 1)
                let base = document.name.replacingOccurrences(of: ".docc/", with: "-").replacingOccurrences(of: ".md", with: "")
                    .replacingOccurrences(of: "/", with: "-")
                files["\(base)-\(i + 1).swift"] = form
            }
        }
        return files
    }
}
