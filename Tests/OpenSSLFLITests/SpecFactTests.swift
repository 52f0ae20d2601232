import Foundation
import XCTest
import TestSupport

/// The hand-written facts of codegen/spec.txt (`marg`, `out`, `outbuf`, `stub`) checked against sources
/// the generator does not read: OpenSSL's own manual (the SYNOPSIS prototypes of libssl-doc's man pages)
/// and the `#define` lines of the headers pkg-config names. (Their Swift side is checked by compiling
/// Tests/SignatureCheck; `consttype` is checked there too.)
final class SpecFactTests: XCTestCase {
    static let root = GeneratedCodeTests.root

    struct Fact { var directive: String; var name: String; var words: [String]; var cType: String?; var line: String }

    /// spec.txt's lines of the given directives, parsed here, not by the generator.
    static func facts(_ directives: Set<String>) throws -> [Fact] {
        let text = try String(contentsOfFile: root + "/codegen/spec.txt", encoding: .utf8)
        return text.split(separator: "\n").compactMap { raw -> Fact? in
            var line = String(raw)
            if let hash = line.range(of: " #") { line = String(line[..<hash.lowerBound]) }
            let parts = line.components(separatedBy: "|")
            let words = parts[0].split(separator: " ").map(String.init)
            guard let d = words.first, directives.contains(d), words.count >= 2 else { return nil }
            return Fact(directive: d, name: words[1], words: Array(words.dropFirst(2)),
                        cType: parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : nil, line: line)
        }
    }

    /// Every prototype in the SYNOPSIS sections of the libssl-doc man pages: name → parameter declarations.
    static func manualPrototypes() throws -> [String: [String]] {
        let dir = "/usr/share/man/man3"
        let pages = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".3ssl.gz") }
        guard pages.count > 100 else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("libssl-doc is not installed in CI") }
            throw XCTSkip("libssl-doc is not installed (apt-get install libssl-doc): no OpenSSL manual to check spec.txt against")
        }
        let result = try runProcess("/bin/sh", ["-c", "cd \(dir) && zcat -f -- *.3ssl.gz"], timeout: 120)
        var prototypes: [String: [String]] = [:]
        var pending = ""
        for raw in result.stdout.split(separator: "\n") {
            guard raw.hasPrefix("\\&") else { pending = ""; continue }
            var line = raw.dropFirst(2).replacingOccurrences(of: "\\e", with: "\\").replacingOccurrences(of: "\\-", with: "-")
            line = line.trimmingCharacters(in: .whitespaces)
            pending = pending.isEmpty ? line : pending + " " + line
            guard pending.hasSuffix(";") else {
                if !pending.contains("(") || pending.count > 600 { pending = "" }
                continue
            }
            defer { pending = "" }
            guard let open = pending.firstIndex(of: "("), let close = pending.lastIndex(of: ")") else { continue }
            let head = pending[..<open].trimmingCharacters(in: .whitespaces)
            let name = String(head.split(whereSeparator: { $0 == " " || $0 == "*" }).last ?? "")
            guard !name.isEmpty, prototypes[name] == nil else { continue }
            let inside = String(pending[pending.index(after: open)..<close])
            prototypes[name] = splitTopLevel(inside)
        }
        return prototypes
    }

    static func splitTopLevel(_ s: String) -> [String] {
        var parts: [String] = [], current = "", depth = 0
        for c in s {
            if c == "(" { depth += 1 } else if c == ")" { depth -= 1 }
            if c == "," && depth == 0 { parts.append(current.trimmingCharacters(in: .whitespaces)); current = "" } else { current.append(c) }
        }
        if !current.trimmingCharacters(in: .whitespaces).isEmpty { parts.append(current.trimmingCharacters(in: .whitespaces)) }
        return parts
    }

    /// A C type with declarator names, `const`, `struct` and spaces removed: `const int *glist` → `int*`,
    /// `int (*cb)(SSL *s, int *al, void *arg)` → `int(*)(SSL*,int*,void*)`.
    static func normalizedType(_ declaration: String) -> String {
        func dropName(_ p: String) -> String {
            let t = p.trimmingCharacters(in: .whitespaces)
            if let open = t.range(of: "(*") {  // a function pointer: drop its name and its parameters' names
                guard let close = t[open.upperBound...].firstIndex(of: ")"),
                      let argsOpen = t[close...].firstIndex(of: "("), let argsClose = t.lastIndex(of: ")") else { return t }
                let ret = t[..<open.lowerBound]
                let args = splitTopLevel(String(t[t.index(after: argsOpen)..<argsClose])).map(dropName)
                return ret + "(*)(" + args.joined(separator: ",") + ")"
            }
            // The last identifier is the name, unless the declaration is a bare type (`void`, `int`, `SSL *`).
            var tokens = t.replacingOccurrences(of: "*", with: " * ").split(separator: " ").map(String.init)
            let typeWords: Set<String> = ["void", "int", "long", "char", "short", "unsigned", "signed", "size_t", "const", "struct"]
            if tokens.count >= 2, let last = tokens.last, last != "*", !typeWords.contains(last),
               tokens.dropLast().contains(where: { $0 != "const" }) {
                tokens.removeLast()
            }
            return tokens.joined(separator: " ")
        }
        return dropName(declaration).replacingOccurrences(of: "const", with: "").replacingOccurrences(of: "struct ", with: "")
            .replacingOccurrences(of: " ", with: "")
    }

    /// Facts the manual cannot confirm, each with the reason and what confirms it instead.
    static let manualExceptions: [String: String] = [
        "marg DTLSv1_get_timeout arg": "undocumented in the manual; OpenSSL's dtls1_ctrl (DTLS_CTRL_GET_TIMEOUT) writes a struct timeval through parg",
        "out ERR_peek_last_error_all func": "OpenSSL 3.0's manual misprints `const char *func` for this one call; the header and ERR_get_error_all's prototype beside it say `const char **func`",
    ]

    /// The parameter names of each function-like macro in the headers pkg-config names; an object-like
    /// alias (`#define SSL_CTX_set1_curves SSL_CTX_set1_groups`) has its target's.
    static func macroParameters() throws -> [String: [String]] {
        let include = try runProcess("/usr/bin/pkg-config", ["--variable=includedir", "openssl"], timeout: 30)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var result: [String: [String]] = [:]
        var aliases: [String: String] = [:]
        let dir = include + "/openssl"
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) where file.hasSuffix(".h") {
            let text = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let t = line.trimmingCharacters(in: .whitespaces)
                guard t.hasPrefix("#") else { continue }
                let d = t.dropFirst().trimmingCharacters(in: .whitespaces)
                guard d.hasPrefix("define ") else { continue }
                let rest = d.dropFirst("define ".count).trimmingCharacters(in: .whitespaces)
                let words = rest.split(separator: " ", omittingEmptySubsequences: true)
                if words.count == 2, !words[0].contains("("), words[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                    aliases[String(words[0])] = String(words[1])
                }
                guard let open = rest.firstIndex(of: "("), let close = rest.firstIndex(of: ")") else { continue }
                let name = String(rest[..<open])
                guard !name.contains(" "), result[name] == nil else { continue }
                result[name] = rest[rest.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
        }
        for (a, target) in aliases where result[a] == nil { result[a] = result[target] }
        return result
    }

    /// Each `marg MACRO PARAM … | C type` names the C type OpenSSL's manual gives that parameter.
    func testMacroArgumentTypesMatchTheManual() throws {
        let manual = try Self.manualPrototypes()
        let macros = try Self.macroParameters()
        var problems: [String] = [], checked = 0
        for fact in try Self.facts(["marg"]) {
            guard let param = fact.words.first, let cType = fact.cType else { problems.append("unparsable: \(fact.line)"); continue }
            guard let params = macros[fact.name], let index = params.firstIndex(of: param) else {
                problems.append("\(fact.line): the headers define no macro \(fact.name) with a parameter \(param)"); continue
            }
            if Self.manualExceptions["marg \(fact.name) \(param)"] != nil { continue }
            guard let proto = manual[fact.name] else {
                problems.append("\(fact.line): the OpenSSL manual has no prototype for \(fact.name)"); continue
            }
            guard index < proto.count else { problems.append("\(fact.line): the manual's \(fact.name) has \(proto.count) parameters"); continue }
            let want = Self.normalizedType(proto[index]), have = Self.normalizedType(cType)
            if want != have { problems.append("\(fact.line): the manual declares `\(proto[index])` (\(want)), the spec says \(cType) (\(have))") }
            checked += 1
        }
        XCTAssertEqual(problems, [], problems.joined(separator: "\n"))
        XCTAssertGreaterThan(checked, 40)
    }

    /// Each `out FUNCTION params` names pointer parameters of FUNCTION that are not byte buffers, and
    /// each `outbuf FUNCTION param SIZE len` names a byte buffer whose manual page gives SIZE.
    func testOutParametersMatchTheManual() throws {
        let manual = try Self.manualPrototypes()
        var problems: [String] = []
        func declaration(_ fn: String, _ param: String) -> String? {
            manual[fn]?.first { decl in
                let d = decl.replacingOccurrences(of: "*", with: " ").split(separator: " ")
                return d.last.map(String.init) == param
            }
        }
        for fact in try Self.facts(["out"]) {
            guard manual[fact.name] != nil else { problems.append("\(fact.line): no prototype of \(fact.name) in the manual"); continue }
            for p in fact.words.first!.split(separator: ",").map(String.init) {
                guard let d = declaration(fact.name, p) else { problems.append("\(fact.line): the manual's \(fact.name) has no parameter \(p)"); continue }
                if Self.manualExceptions["out \(fact.name) \(p)"] != nil { continue }
                let t = Self.normalizedType(d)
                if !t.hasSuffix("*") { problems.append("\(fact.line): \(p) is `\(d)`, not a pointer") }
                if t == "unsignedchar*" || t == "char*" { problems.append("\(fact.line): \(p) is `\(d)`, a byte buffer: use outbuf") }
            }
        }
        let pages = "/usr/share/man/man3/"
        for fact in try Self.facts(["outbuf"]) {
            guard fact.words.count >= 3 else { problems.append("unparsable: \(fact.line)"); continue }
            let (buf, size, len) = (fact.words[0], fact.words[1], fact.words[2])
            guard let d = declaration(fact.name, buf), Self.normalizedType(d) == "unsignedchar*" || Self.normalizedType(d) == "char*" else {
                problems.append("\(fact.line): \(buf) is not a byte buffer of \(fact.name) in the manual"); continue
            }
            if declaration(fact.name, len).map({ Self.normalizedType($0).hasSuffix("*") }) != true {
                problems.append("\(fact.line): \(len) is not a pointer parameter of \(fact.name) in the manual")
            }
            let page = try runProcess("/bin/sh", ["-c", "zcat -f \(pages)\(fact.name).3ssl.gz"], timeout: 30).stdout
            if !page.contains(size) { problems.append("\(fact.line): the manual page of \(fact.name) does not give \(size) as the buffer size") }
        }
        XCTAssertEqual(problems, [], problems.joined(separator: "\n"))
    }

    /// Each `stub MACRO name:Type…` has the macro's parameters, by name and number.
    func testStubParametersMatchTheHeaders() throws {
        let macros = try Self.macroParameters()
        for fact in try Self.facts(["stub"]) {
            let names = fact.words.map { String($0.split(separator: ":").first ?? "") }
            XCTAssertEqual(macros[fact.name], names, "\(fact.line): the header's #define \(fact.name) has other parameters")
        }
    }
}
