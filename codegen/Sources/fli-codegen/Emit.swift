import Foundation
import LispNames

extension Generator {
    /// Values the integer macros of the wholesale headers that Swift does not import (and those the
    /// spec retypes) by compiling and running a small C program against the headers pkg-config names.
    mutating func probeConstants(clang: String, shim: String, tmp: URL, cflags: [String], libs: [String]) throws {
        var candidates: [String] = []
        // The wholesale headers' macros, and the `constants` headers' macros that the spec retypes.
        var headerOf = macroHeader
        for header in spec.constantHeaders {
            for name in constantHeaderNames[header] ?? [] where headerOf[name] == nil { headerOf[name] = header }
        }
        for (name, _) in headerOf.sorted(by: { $0.key < $1.key }) {
            guard let m = macros.macros[name], m.params == nil, !m.body.isEmpty else { continue }
            if ast.functions[m.body] != nil { continue }  // alias of a function
            if name.hasPrefix("OPENSSL_") || name.hasPrefix("HEADER_") { continue }
            let retyped = spec.constTypes.contains { name.hasPrefix($0.prefix) }
            if macroHeader[name] == nil && !retyped { continue }
            if swift.constants[name] != nil && !retyped { continue }
            candidates.append(name)
        }
        var remaining = candidates
        var output = ""
        for _ in 0..<8 {
            var lines = ["#include \"\(shim)\"", "#include <stdio.h>",
                         "#define K(x) _Generic((x), int: \"Int32\", unsigned int: \"UInt32\", long: \"Int\", unsigned long: \"UInt\", long long: \"Int64\", unsigned long long: \"UInt64\", default: \"-\")",
                         "int main(void) {"]
            let first = lines.count + 1
            for name in remaining {
                lines.append("printf(\"%s %s %d %lld %llu\\n\", \"\(name)\", K(\(name)), __builtin_constant_p(\(name)), (long long)(\(name)), (unsigned long long)(\(name)));")
            }
            lines.append("return 0; }")
            let source = tmp.appendingPathComponent("probe.c").path
            let binary = tmp.appendingPathComponent("probe").path
            try lines.joined(separator: "\n").write(toFile: source, atomically: true, encoding: .utf8)
            let result = try run(clang, cflags + ["-w", "-DFLI_CODEGEN_KEEP_DEPRECATED", "-o", binary, source] + libs, allowFailure: true)
            if result.status == 0 {
                output = try run(binary, []).out
                break
            }
            // Drop the lines the compiler rejected and try again.
            var bad = Set<Int>()
            for errLine in result.err.split(separator: "\n") where errLine.contains("error:") && errLine.hasPrefix(source) {
                let parts = errLine.dropFirst(source.count + 1).split(separator: ":")
                if let n = Int(parts.first ?? ""), n >= first, n - first < remaining.count { bad.insert(n - first) }
            }
            if bad.isEmpty { throw GeneratorError("constant probe does not compile:\n\(result.err.prefix(3000))") }
            remaining = remaining.enumerated().filter { !bad.contains($0.offset) }.map(\.element)
        }
        for line in output.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 5, f[1] != "-", f[2] == "1" else { continue }
            let name = f[0]
            let override = spec.constTypes.first { name.hasPrefix($0.prefix) }?.type
            let type = override ?? f[1]
            let signed = f[1].hasPrefix("Int")
            let literal: String
            if signed, f[3].hasPrefix("-") {
                guard !type.hasPrefix("UInt") else { throw GeneratorError("\(name) is negative but spec types it \(type)") }
                literal = f[3]
            } else {
                let v = UInt64(f[4])!
                literal = v > 9 ? "0x" + String(v, radix: 16, uppercase: true) : String(v)
            }
            let cValue = signed ? "(\(f[3])LL)" : "(\(f[4])ULL)"
            constants.append((name, headerOf[name]!, type, literal, macros.macros[name]!.body, cValue))
        }
    }

    /// Importable constants of the wholesale and `constants` headers, re-declared in OpenSSLFLI so that
    /// a client needs only `import OpenSSLFLI` (COpenSSL is not re-exported: its functions would clash
    /// with the typed wrappers of the same names).
    var reexported: [(name: String, header: String, type: String, body: String)] {
        var seen = Set(constants.map(\.name))
        var result: [(String, String, String, String)] = []
        let simple: Set<String> = ["Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64", "String", "Double"]
        for header in spec.headers + spec.constantHeaders {
            guard let names = constantHeaderNames[header] else { continue }
            for name in names.sorted() where !seen.contains(name) {
                guard let m = macros.macros[name], m.params == nil, let type = swift.constants[name], simple.contains(type) else { continue }
                if byName[name] != nil { continue }
                seen.insert(name)
                result.append((name, header, type, m.body))
            }
        }
        return result
    }

    /// Every generated file, path relative to the repository root → text.
    func emit(lispRows: [(lisp: String, c: String, note: String?)], helpers: [String: [String]] = [:]) -> [String: String] {
        let banner = "// Generated by fli-codegen from codegen/spec.txt and the OpenSSL headers. Do not edit:\n" +
            "// run `swift run --package-path codegen fli-codegen` instead.\n\nimport COpenSSL\n"
        var files: [String: String] = [:]

        // Handles.
        // Why a handle may be Sendable, on each @unchecked line: it is an immutable address, like an Int.
        let handleSendableReason = "an immutable address; OpenSSL's rules say which threads may use the object"
        var handles = banner + "\n"
        for h in spec.handles {
            handles += docLines(["A typed, non-owning handle for `\(h.cNames[0]) *`\(h.doc.isEmpty ? "." : ": " + h.doc)",
                                 "", "See ``OpenSSLHandle``: it owns nothing and frees nothing."])
            handles += "public struct \(h.swiftName): OpenSSLHandle, @unchecked Sendable {  // \(handleSendableReason)\n    public let rawValue: OpaquePointer\n" +
                "    @inlinable public init(_ rawValue: OpaquePointer) { self.rawValue = rawValue }\n}\n\n"
        }
        for s in spec.stacks {
            handles += docLines(["A typed, non-owning handle for `STACK_OF(\(s.element)) *`.",
                                 "", "Use the generated `sk_\(s.element)_*` functions on it."])
            handles += "public struct \(s.swiftName): OpenSSLHandle, @unchecked Sendable {  // \(handleSendableReason)\n    public let rawValue: OpaquePointer\n" +
                "    @inlinable public init(_ rawValue: OpaquePointer) { self.rawValue = rawValue }\n}\n\n"
        }
        files["Sources/OpenSSLFLI/Generated/HandleTypes.swift"] = String(handles.dropLast())

        // Wrappers and constants, one file per header.
        var byHeader: [String: [String]] = [:]
        var cryptoByHeader: [String: [String]] = [:]
        for w in wrappers.sorted(by: { $0.name < $1.name }) {
            if w.module == "OpenSSLCrypto" { cryptoByHeader[w.header, default: []].append(w.code) }
            else { byHeader[w.header, default: []].append(w.code) }
        }
        for (header, chunks) in cryptoByHeader {
            // Files of at most 400 wrappers keep the type checker's batches small.
            let base = header.replacingOccurrences(of: ".h", with: "_h")
            for (i, start) in stride(from: 0, to: chunks.count, by: 400).enumerated() {
                let part = chunks[start..<min(start + 400, chunks.count)]
                files["Sources/OpenSSLCrypto/Generated/" + base + (i == 0 ? "" : "_\(i + 1)") + ".swift"] = banner.replacingOccurrences(of: "import COpenSSL\n", with: "import COpenSSL\nimport OpenSSLFLI\n") +
                    "// libcrypto's direct calls of <openssl/\(header)> (the non-deprecated functions the upper layers do not use).\n\n" + part.joined(separator: "\n")
            }
        }
        for c in constants {
            let doc = docLines(["`#define \(c.name) \(c.body)`", "",
                                "An integer macro of `<openssl/\(c.header)>`, with the headers' value."])
            byHeader[c.header, default: []].append(doc + "@inlinable public var \(c.name): \(c.type) { \(c.literal) }\n")
        }
        for c in reexported {
            byHeader[c.header, default: []].append(
                "/// `#define \(c.name) \(c.body)` from `<openssl/\(c.header)>`.\n@inlinable public var \(c.name): \(c.type) { COpenSSL.\(c.name) }\n")
        }
        for (header, chunks) in byHeader {
            let file = header == "stack" ? "Stacks.swift" : header.replacingOccurrences(of: ".h", with: "_h") + ".swift"
            let intro = header == "stack" ? "// Typed stack functions for the STACK_OF types in the handle table.\n"
                                          : "// Direct calls, macros and constants of <openssl/\(header)>.\n"
            files["Sources/OpenSSLFLI/Generated/" + file] = banner + intro + "\n" + chunks.joined(separator: "\n")
        }

        // The header check.
        var check = "/* Generated by fli-codegen. Compiled by the tests against the OpenSSL headers pkg-config names: it\n" +
            "   fails to compile if a wrapped prototype, macro or constant no longer matches what was generated. */\n" +
            "#define FLI_CODEGEN_KEEP_DEPRECATED 1\n#include \"shim.h\"\n\n"
        for w in wrappers.sorted(by: { $0.name < $1.name }) { check += w.check }
        check += "\n"
        for c in reexported {
            check += "#ifndef \(c.name)\n#error \"\(c.name) is no longer defined\"\n#endif\n"
        }
        for c in constants {
            let cast = c.cValue.hasSuffix("ULL)") ? "(unsigned long long)" : "(long long)"
            check += "_Static_assert(\(cast)(\(c.name)) == \(c.cValue), \"\(c.name)\");\n"
        }
        files["Tests/HeaderCheck/header_check.c"] = check

        files.merge(signatureCheck(), uniquingKeysWith: { a, _ in a })

        // The run-time table of every wrapper (one line each: C name, Lisp name, kind, version, prototype).
        var lispOf: [String: String] = [:]
        for row in lispRows { lispOf[row.c] = row.lisp }
        var callTable = ""
        for w in wrappers.sorted(by: { $0.name < $1.name }) {
            let firstDoc = w.code.split(separator: "\n").first.map(String.init) ?? ""
            var prototype = firstDoc.hasPrefix("/// `") ? String(firstDoc.dropFirst(5).dropLast()) : w.name
            prototype = prototype.replacingOccurrences(of: "\t", with: " ")
            let kind: String
            switch w.kind { case .function: kind = "function"; case .macro: kind = "macro"; case .stub: kind = "stub"
                            case .stack: kind = "stack"; case .alias: kind = "alias" }
            callTable += "\(w.name)\t\(lispOf[w.name] ?? lispName(forC: w.name))\t\(kind)\t\(since[w.name] ?? "")\t\(prototype)\n"
        }
        files["Sources/OpenSSLFLI/Generated/CallTable.swift"] = banner +
            "// Every generated wrapper, as data: read by DirectCalls.swift (directCall(named:), directCalls).\n\n" +
            "/// One line per wrapper: C name, LispWorks name, kind, the OpenSSL version that introduced it (empty: 3.0\n" +
            "/// or earlier) and its C prototype (or `#define`), separated by tabs.\n" +
            "let directCallTable = #\"\"\"\n" + callTable + "\"\"\"#\n"

        // Stand-ins for functions newer than the headers a build uses (and for 3.0.x patch additions).
        var since = "/* Generated by fli-codegen. Do not edit. For each wrapped function that a release after OpenSSL 3.0.0\n" +
            "   introduced, a stand-in compiled only with older headers: it does nothing, queues ERR_R_UNSUPPORTED naming\n" +
            "   the version it needs, and returns 0. With newer headers the library's own function is called. */\n" +
            "#ifndef FLI_SINCE_H\n#define FLI_SINCE_H\n#include <openssl/err.h>\n#include <openssl/opensslv.h>\n\n"
        for w in wrappers.sorted(by: { $0.name < $1.name }) where w.kind == .function {
            guard let v = self.since[w.name], let f = fallbacks[w.name] ?? ast.functions[w.name] else { continue }
            since += Generator.fallback(f, since: v, library: f.header == "ssl.h" || f.header == "tls1.h" ? "ERR_LIB_SSL" : "ERR_LIB_CRYPTO")
        }
        files["Sources/COpenSSL/fli_since.h"] = since + "\n#endif\n"

        // The table of every wrapper: C name, Lisp-style name, Swift signature, and the hand-written
        // helpers whose `- Corresponds:` line names it.
        var notes: [String: String] = [:]
        for row in lispRows { if let n = row.note { notes[row.c] = n } }
        var table = "# Direct calls\n\n<!-- Generated by fli-codegen. Do not edit. -->\n\n" +
            "Every generated direct call: the C name (the OpenSSL man page of that name documents it), the\n" +
            "LispWorks-style name, the Swift signature, and the Swift helpers that call it (those whose doc\n" +
            "comment names it in a `- Corresponds:` line). Deprecated calls are marked †.\n\n" +
            "| C name | Lisp-style name | Swift signature | Swift helpers |\n|---|---|---|---|\n"
        for w in wrappers.sorted(by: { $0.name < $1.name }) {
            let users = (helpers[w.name] ?? []).map { "`\($0)`" }.joined(separator: ", ")
            table += "| `\(w.name)`\(w.deprecated ? " †" : "") | `\(lispName(forC: w.name))` | `\(w.signature.replacingOccurrences(of: "|", with: "\\|"))` | \(users) |\n"
        }
        files["docs/DirectCalls.md"] = table

        var lisp = "| LispWorks name | C name | Swift signature |\n|---|---|---|\n"
        for row in lispRows {
            let w = byName[row.c]!
            lisp += "| `\(row.lisp)` | `\(row.c)`\(w.deprecated ? " †" : "")\(row.note.map { " (\($0))" } ?? "") | `\(w.signature)` |\n"
        }
        files["docs/LispWorksNames.md"] = "# LispWorks direct calls\n\n<!-- Generated by fli-codegen. Do not edit. -->\n\n" +
            "Each of LispWorks' `comm` direct calls and the generated Swift wrapper it resolves to. † marks calls\n" +
            "OpenSSL 3 deprecated or turned into stubs; their doc comments name the replacement.\n\n" + lisp
        return files
    }
}

extension Generator {
    /// The signature check: a Swift file, compiled in the SignatureTests target, that binds every wrapper
    /// to its declared Swift function type and the C declaration it stands for to the type worked out
    /// from the wrapper's types (handle → `OpaquePointer?`, `String` → `UnsafePointer<CChar>?`, an
    /// out-parameter → a pointer to it). A macro has no C declaration, so its C parameter types (from
    /// the spec's `marg` lines and the callee) are declared as a C function type that Swift imports.
    /// A spec fact whose Swift type is not what Swift makes of its C type fails to compile.
    func signatureCheck() -> [String: String] {
        var header = "/* Generated by fli-codegen. The C parameter types of every generated macro wrapper, as C function\n" +
            "   types: Tests/SignatureCheck/Swift compares what Swift imports for them with the wrappers' Swift types. */\n" +
            "#ifndef FLI_SIGNATURE_TYPES_H\n#define FLI_SIGNATURE_TYPES_H\n#include \"../../../../Sources/COpenSSL/shim.h\"\n\n"
        var chunks: [[String]] = [[]]
        var count = 0
        for w in wrappers.sorted(by: { $0.name < $1.name }) {
            var lines = ["    // \(w.name)", "    fliSameType(fliTypeOf(\(w.module).\(w.name)), (\(w.functionType)).self)"]
            if let p = w.pointerFormType {
                // The pointer form takes exactly what the C declaration takes for each `const char *`.
                lines.append("    fliSameType(fliTypeOf(\(w.module).\(w.name)), (\(p)).self)")
            }
            if let view = w.importView {
                if let cTypes = w.macroCTypes {
                    header += "typedef void (*fli_sig_\(w.name))(\(cTypes.isEmpty ? "void" : cTypes.map { cDeclaration($0, "") }.joined(separator: ", ")));\n"
                    lines.append("    fliSameType(fli_sig_\(w.name).self, (@convention(c) (\(view.params.joined(separator: ", "))) -> Void).self)")
                } else {
                    lines.append("    fliSameType(fliTypeOf(COpenSSL.\(w.name)), ((\(view.params.joined(separator: ", "))) -> \(view.result)).self)")
                }
            }
            if chunks[chunks.count - 1].count >= 60 { chunks.append([]) }
            chunks[chunks.count - 1].append(lines.joined(separator: "\n"))
            count += 1
        }
        // consttype facts: each retyped constant family is passed to the call the spec names.
        var constChecks: [String] = []
        for ct in spec.constTypes {
            guard let use = ct.use, let first = constants.first(where: { $0.name.hasPrefix(ct.prefix) }),
                  let w = byName[use.function], w.params.indices.contains(use.index - 1) else {
                constChecks.append("    #error(\"consttype \(ct.prefix): name a generated constant family and a wrapper with that argument\")")
                continue
            }
            let args = w.params.indices.map { $0 == use.index - 1 ? "OpenSSLFLI.\(first.name)" : "fliAny()" }
            constChecks.append("    // consttype \(ct.prefix) \(ct.type): \(first.name) is a \(ct.type) argument of \(use.function)\n" +
                "    fliSameType(fliTypeOf(OpenSSLFLI.\(first.name)), \(ct.type).self)\n" +
                "    _ = { _ = OpenSSLFLI.\(use.function)(\(args.joined(separator: ", "))) }")
        }
        header += "\n#endif\n"
        var swift = "// Generated by fli-codegen from codegen/spec.txt and the OpenSSL headers. Do not edit.\n" +
            "// Compiling this file is the check: see Generator.signatureCheck in codegen.\n\n" +
            "import COpenSSL\nimport OpenSSLFLI\nimport OpenSSLCrypto\nimport FLISignatureTypes\n\n" +
            "@inline(never) func fliSameType<T>(_: T.Type, _: T.Type) {}\nfunc fliTypeOf<T>(_: T) -> T.Type { T.self }\n" +
            "func fliAny<T>() -> T { fatalError(\"never called\") }\n\n" +
            "/// How many wrappers this file checks.\nlet checkedWrapperCount = \(count)\n\n"
        for (i, chunk) in chunks.enumerated() {
            swift += "@available(*, deprecated, message: \"references deprecated wrappers on purpose\")\nfunc signatures\(i)() {\n" +
                chunk.joined(separator: "\n") + "\n}\n\n"
        }
        swift += "@available(*, deprecated, message: \"references deprecated wrappers on purpose\")\nfunc constantTypes() {\n" +
            constChecks.joined(separator: "\n") + "\n}\n"
        return ["Tests/SignatureCheck/CTypes/include/fli_signature_types.h": header,
                "Tests/SignatureCheck/Swift/Signatures.swift": swift]
    }
}
