import Foundation
import LispNames

// fli-codegen: regenerates Sources/OpenSSLFLI/Generated/, Tests/HeaderCheck/header_check.c and
// docs/DirectCalls.md from codegen/spec.txt and the OpenSSL headers that `pkg-config openssl` names
// (the ones the COpenSSL system library binds; PKG_CONFIG_PATH selects another OpenSSL).
//
//     swift run --package-path codegen fli-codegen           # write the files
//     swift run --package-path codegen fli-codegen --check   # exit 1 if a file is stale

let arguments = CommandLine.arguments.dropFirst()
let checkOnly = arguments.contains("--check")
let quiet = arguments.contains("--quiet")
let root: String = {
    if let i = arguments.firstIndex(of: "--root"), arguments.index(after: i) < arguments.endIndex {
        return arguments[arguments.index(after: i)]
    }
    // codegen/Sources/fli-codegen/main.swift → repository root
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
}()

func log(_ s: String) { if !quiet { print(s) } }

do {
    let clang = try findTool("clang", envVar: "FLI_CLANG")
    let synthesize = try findTool("swift-synthesize-interface", envVar: "FLI_SYNTHESIZE_INTERFACE")
    // The generator reads COpenSSL's shim without the stand-ins it generates itself (fli_since.h).
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("fli-codegen-\(getpid())")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let shimDir = tmp.appendingPathComponent("COpenSSL").path
    try FileManager.default.createDirectory(atPath: shimDir, withIntermediateDirectories: true)
    for file in ["module.modulemap", "shim.h"] {
        try FileManager.default.copyItem(atPath: root + "/Sources/COpenSSL/" + file, toPath: shimDir + "/" + file)
    }
    try "/* empty while fli-codegen reads the headers */\n".write(toFile: shimDir + "/fli_since.h", atomically: true, encoding: .utf8)
    let shim = shimDir + "/shim.h"
    // The headers and libraries pkg-config names, the same ones the COpenSSL system library binds
    // (PKG_CONFIG_PATH selects another OpenSSL).
    let pkgConfig = try findTool("pkg-config", envVar: "FLI_PKG_CONFIG")
    let cflags = try run(pkgConfig, ["--cflags", "openssl"]).out.split(whereSeparator: \.isWhitespace).map(String.init)
    let libs = try run(pkgConfig, ["--libs", "openssl"]).out.split(whereSeparator: \.isWhitespace).map(String.init)
    let includeDir = try run(pkgConfig, ["--variable=includedir", "openssl"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    let libDir = try run(pkgConfig, ["--variable=libdir", "openssl"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    let headerVersion = try run(pkgConfig, ["--modversion", "openssl"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    let includeFlags = cflags.filter { $0.hasPrefix("-I") }
    log("fli-codegen: OpenSSL \(headerVersion) from pkg-config: headers \(includeDir)/openssl, libraries \(libDir)")
    let spec = try Spec.load(root + "/codegen/spec.txt")
    #if arch(x86_64)
    let triple = "x86_64-unknown-linux-gnu"
    #else
    let triple = "aarch64-unknown-linux-gnu"
    #endif

    // 1. Function prototypes from clang's AST (deprecation attributes kept).
    let astRun = try run(clang, cflags + ["-x", "c", "-fsyntax-only", "-DFLI_CODEGEN_KEEP_DEPRECATED", "-Xclang", "-ast-dump=json", shim])
    var ast = try ClangAST(json: Data(astRun.out.utf8))
    // Parameter names pinned by the spec (`params`): patch releases rename some (3.0.19's bn.h says
    // BN_nnmod(r, m, d), later ones (r, a, m)), and Generated/ must not depend on the patch release.
    for (name, names) in spec.paramNames.sorted(by: { $0.key < $1.key }) {
        guard var function = ast.functions[name] else { throw GeneratorError("spec: params \(name): no such function in the headers") }
        guard function.params.count == names.count else {
            throw GeneratorError("spec: params \(name): \(names.count) names for \(function.params.count) parameters")
        }
        for i in names.indices { function.params[i].name = names[i] }
        ast.functions[name] = function
    }
    // 2. Macros, with and without deprecated API.
    let macroDump = try run(clang, cflags + ["-x", "c", "-E", "-dM", "-DFLI_CODEGEN_KEEP_DEPRECATED", shim]).out
    let macros = MacroTable(dump: macroDump)
    let nonDeprecated = MacroTable(dump: try run(clang, cflags + ["-x", "c", "-E", "-dM", "-DOPENSSL_NO_DEPRECATED", shim]).out)
    let deprecatedMacros = Set(macros.macros.keys).subtracting(nonDeprecated.macros.keys)
    // 3. How Swift imports the module.
    let interfacePath = tmp.appendingPathComponent("COpenSSL.swift").path
    try run(synthesize, ["-module-name", "COpenSSL", "-I", shimDir] + includeFlags.flatMap { ["-I", String($0.dropFirst(2))] } +
            ["-target", triple, "-o", interfacePath])
    let swiftInterface = SwiftInterface(text: try String(contentsOfFile: interfacePath, encoding: .utf8))

    // 4. The version that introduced each function, from the libraries' symbol versions.
    let versions = try symbolVersions(libDir: libDir)
    let additionsPath = root + "/codegen/openssl-additions.json"
    let baseline = headerVersion.hasPrefix("3.0.")
    if !baseline {
        // Newer headers: record what they add to the wrapped headers (Generated/ itself is made from 3.0's).
        var additions: [Addition] = []
        let named = Set(spec.functions.map(\.name))
        for f in ast.functions.values.sorted(by: { $0.name < $1.name }) where spec.headers.contains(f.header) || named.contains(f.name) {
            guard let v = versions[f.name], !v.hasPrefix("3.0."), let sf = swiftInterface.functions[f.name] else { continue }
            additions.append(Addition(name: f.name, since: v, c: f, swiftParams: sf.params.map(\.type), swiftResult: sf.result))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let text = String(decoding: try encoder.encode(additions), as: UTF8.self) + "\n"
        let current = try? String(contentsOfFile: additionsPath, encoding: .utf8)
        log("fli-codegen: OpenSSL \(headerVersion) adds \(additions.count) functions to the wrapped headers " +
            "(\(Dictionary(grouping: additions, by: \.since).sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.count)" }.joined(separator: ", ")))")
        if current == text {
            log("fli-codegen: codegen/openssl-additions.json is up to date (Generated/ is made from OpenSSL 3.0's headers and it)")
        } else if checkOnly {
            print("fli-codegen: codegen/openssl-additions.json is stale for OpenSSL \(headerVersion) (run `swift run --package-path codegen fli-codegen` here)")
            exit(1)
        } else {
            try text.write(toFile: additionsPath, atomically: true, encoding: .utf8)
            log("fli-codegen: wrote codegen/openssl-additions.json; run the generator on OpenSSL 3.0 to regenerate Generated/")
        }
        exit(0)
    }

    var macroHeader: [String: String] = [:]
    for header in spec.headers {
        for name in try macroNames(inHeader: includeDir + "/openssl/" + header) where macroHeader[name] == nil {
            macroHeader[name] = header
        }
    }

    var gen = Generator(spec: spec, ast: ast, swift: swiftInterface, macros: macros,
                        deprecatedMacros: deprecatedMacros, macroHeader: macroHeader)

    for header in spec.headers + spec.constantHeaders {
        gen.constantHeaderNames[header] = try macroNames(inHeader: includeDir + "/openssl/" + header)
    }

    // Functions: every one declared in a wholesale header, then the named extras.
    let wholesale = ast.functions.values.filter { spec.headers.contains($0.header) }.sorted { $0.name < $1.name }
    var declared = 0
    for f in wholesale {
        if f.name.hasPrefix("ossl_check_") { continue }  // safestack's internal type checks
        declared += 1
        gen.wrapFunction(f)
    }
    // Later releases' functions: each gets a stand-in for older headers (fli_since.h) when 3.0's headers
    // can declare it; the others are skipped with the compiler's reason.
    for f in wholesale + spec.functions.compactMap({ ast.functions[$0.name] }) {
        if let v = versions[f.name] { gen.since[f.name] = v }
    }
    let additions = (try? JSONDecoder().decode([Addition].self, from: Data(contentsOf: URL(fileURLWithPath: additionsPath)))) ?? []
    var candidates = additions.filter { ast.functions[$0.name] == nil }
    var rejected: [String: String] = [:]
    for _ in 0..<10 where !candidates.isEmpty {
        let fallbacks = candidates.map { Generator.fallback($0.c, since: $0.since, library: $0.c.header == "ssl.h" || $0.c.header == "tls1.h" ? "ERR_LIB_SSL" : "ERR_LIB_CRYPTO") }
        var lines = ["#include \"\(shim)\"", "#undef OPENSSL_VERSION_NUMBER", "#define OPENSSL_VERSION_NUMBER 0x30000000L"]
        var owner: [Int] = []
        for (i, text) in fallbacks.enumerated() {
            for l in text.split(separator: "\n") { lines.append(String(l)); owner.append(i) }
        }
        let source = tmp.appendingPathComponent("fallbacks.c").path
        try lines.joined(separator: "\n").write(toFile: source, atomically: true, encoding: .utf8)
        let result = try run(clang, cflags + ["-fsyntax-only", "-Wno-deprecated-declarations", source], allowFailure: true)
        if result.status == 0 { break }
        var bad: [Int: String] = [:]
        for errLine in result.err.split(separator: "\n") where errLine.contains("error:") && errLine.hasPrefix(source) {
            let parts = errLine.dropFirst(source.count + 1).split(separator: ":", maxSplits: 3)
            if let n = Int(parts.first ?? ""), n > 3, n - 4 < owner.count, bad[owner[n - 4]] == nil {
                bad[owner[n - 4]] = parts.count > 3 ? parts[3].trimmingCharacters(in: .whitespaces) : String(errLine)
            }
        }
        if bad.isEmpty { throw GeneratorError("stand-ins do not compile:\n\(result.err.prefix(3000))") }
        for (i, why) in bad { rejected[candidates[i].name] = why }
        candidates = candidates.enumerated().filter { bad[$0.offset] == nil }.map(\.element)
    }
    for a in additions.sorted(by: { $0.name < $1.name }) where ast.functions[a.name] == nil {
        declared += 1
        if let why = rejected[a.name] {
            gen.skipped.append((a.name, a.c.header, "added in OpenSSL \(a.since); OpenSSL 3.0's headers cannot declare its stand-in (\(why))"))
            continue
        }
        gen.since[a.name] = a.since
        gen.swift.functions[a.name] = SwiftInterface.Function(name: a.name, params: a.swiftParams.map { ("_", $0) }, result: a.swiftResult)
        gen.fallbacks[a.name] = a.c
        gen.wrapFunction(a.c)
    }
    // libcrypto's wholesale headers: every non-deprecated function not named by a `function` line, into
    // the OpenSSLCrypto module (its own module, so that OpenSSLFLI's build time stays what it was).
    let namedFunctions = Set(spec.functions.map(\.name))
    gen.currentModule = "OpenSSLCrypto"
    for f in ast.functions.values.filter({ spec.cryptoHeaders.contains($0.header) }).sorted(by: { $0.name < $1.name }) {
        if f.name.hasPrefix("ossl_check_") || namedFunctions.contains(f.name) || f.deprecated != nil { continue }
        declared += 1
        gen.wrapFunction(f)
    }
    gen.currentModule = "OpenSSLFLI"
    for (name, header) in spec.functions {
        guard let f = ast.functions[name] else { throw GeneratorError("spec names function \(name), which the headers do not declare") }
        guard f.header == header else { throw GeneratorError("spec says \(name) is in \(header), but it is declared in \(f.header)") }
        declared += 1
        gen.wrapFunction(f)
    }
    if !gen.specErrors.isEmpty {
        throw GeneratorError("spec.txt contradicts the headers:\n  " + gen.specErrors.joined(separator: "\n  "))
    }
    if !gen.unknownOpaque.isEmpty {
        let list = gen.unknownOpaque.sorted { $0.key < $1.key }.map { "  \($0.key) (used by \($0.value.sorted().prefix(3).joined(separator: ", ")))" }
        throw GeneratorError("opaque C types without a handle in spec.txt:\n" + list.joined(separator: "\n"))
    }

    // Constants the Swift importer cannot import (or that the spec retypes), valued by a probe program.
    try gen.probeConstants(clang: clang, shim: shim, tmp: tmp, cflags: cflags, libs: libs + ["-Wl,-rpath," + libDir])

    // Function-like macros of the wholesale headers (ctrl calls, aliases, stubs), then stacks.
    let macroNamesSorted = macroHeader.keys.sorted()
    var ctrlMacros = 0
    for name in macroNamesSorted {
        guard let m = macros.macros[name], ast.functions[name] == nil else { continue }
        if m.params == nil && gen.byName[m.body] == nil { continue }  // object-like: constants, handled above
        if name.hasPrefix("sk_") || name.hasPrefix("lh_") { continue }  // stacks and hashes: typed below
        if m.params != nil {
            let expanded = macros.expand(m.tokens).map(\.description)
            if expanded.contains(where: { ["SSL_ctrl", "SSL_CTX_ctrl", "SSL_callback_ctrl", "SSL_CTX_callback_ctrl"].contains($0) }) {
                ctrlMacros += 1
            }
        }
        gen.wrapMacro(m, header: macroHeader[name]!)
    }
    gen.wrapStacks()

    // LispWorks names.
    var lispRows: [(lisp: String, c: String, note: String?)] = []
    let resolver = LispNameResolver(cNames: gen.wrappers.map(\.name))
    var lispErrors: [String] = []
    for l in spec.lispNames {
        switch resolver.resolve(l.lisp, explicit: l.explicit) {
        case .success(let c): lispRows.append((l.lisp, c, l.note))
        case .failure(let problem): lispErrors.append(problem.description)
        }
    }
    if !lispErrors.isEmpty { throw GeneratorError("LispWorks names in spec.txt:\n  " + lispErrors.joined(separator: "\n  ")) }

    // Emit.
    let files = gen.emit(lispRows: lispRows, helpers: try HelperIndex.build(root: root))
    var stale: [String] = []
    let generatedDir = root + "/Sources/OpenSSLFLI/Generated"
    let cryptoDir = root + "/Sources/OpenSSLCrypto/Generated"
    let existing = Set(((try? FileManager.default.contentsOfDirectory(atPath: generatedDir)) ?? []).map { "Sources/OpenSSLFLI/Generated/" + $0 })
        .union(((try? FileManager.default.contentsOfDirectory(atPath: cryptoDir)) ?? []).map { "Sources/OpenSSLCrypto/Generated/" + $0 })
    for (path, text) in files.sorted(by: { $0.key < $1.key }) {
        let full = root + "/" + path
        let current = try? String(contentsOfFile: full, encoding: .utf8)
        if current != text {
            stale.append(path)
            if !checkOnly {
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try text.write(toFile: full, atomically: true, encoding: .utf8)
            }
        }
    }
    for path in existing.subtracting(files.keys).sorted() {
        stale.append(path + " (no longer generated)")
        if !checkOnly { try FileManager.default.removeItem(atPath: root + "/" + path) }
    }

    // Coverage.
    let wrappedFunctions = gen.wrappers.filter { $0.kind == .function }.count
    let macroWrappers = gen.wrappers.filter { $0.kind == .macro }.count
    log("fli-codegen: functions wrapped \(wrappedFunctions) / declared \(declared)")
    log("fli-codegen: function-like macros wrapped \(macroWrappers) (of which ctrl-based: \(gen.wrappers.filter { $0.kind == .macro && $0.code.contains("ctrl(") }.count) / \(ctrlMacros)), stubs \(gen.wrappers.filter { $0.kind == .stub }.count), aliases \(gen.wrappers.filter { $0.kind == .alias }.count), stack functions \(gen.wrappers.filter { $0.kind == .stack }.count)")
    log("fli-codegen: constants generated \(gen.constants.count); LispWorks names resolved \(lispRows.count) / \(spec.lispNames.count)")
    log("fli-codegen: skipped \(gen.skipped.count):")
    for s in gen.skipped { log("  \(s.name) (\(s.header)): \(s.reason)") }
    // Coverage of the libcrypto headers a TLS application uses: non-deprecated functions declared there,
    // wrapped, skipped with a reason, and not (yet) named in spec.txt.
    if !spec.coverageHeaders.isEmpty {
        let skippedNames = Set(gen.skipped.map(\.name))
        var rows: [String] = []
        var total = (declared: 0, wrapped: 0, skipped: 0)
        for h in spec.coverageHeaders {
            let fs = ast.functions.values.filter { $0.header == h && $0.deprecated == nil && !$0.name.hasPrefix("ossl_check_") }
            let wrapped = fs.filter { gen.byName[$0.name]?.kind == .function }.count
            let skipped = fs.filter { skippedNames.contains($0.name) }.count
            total.declared += fs.count; total.wrapped += wrapped; total.skipped += skipped
            rows.append("| \(h) | \(fs.count) | \(wrapped) | \(skipped) | \(fs.count - wrapped - skipped) |")
        }
        let percent = total.declared == 0 ? 0 : Double(total.wrapped) * 100 / Double(total.declared)
        rows.append("| total | \(total.declared) | \(total.wrapped) (\(String(format: "%.1f", percent)) %) | \(total.skipped) | \(total.declared - total.wrapped - total.skipped) |")
        log("fli-codegen: libcrypto coverage (non-deprecated functions; OpenSSL \(headerVersion) headers):")
        log("| header | declared | wrapped | skipped (reason above) | not wrapped |")
        log("|---|---|---|---|---|")
        for r in rows { log(r) }
    }
    if !gen.missingReplacement.isEmpty {
        log("fli-codegen: deprecated without a replacement named in spec.txt: \(gen.missingReplacement.joined(separator: ", "))")
    }
    if checkOnly {
        if stale.isEmpty { log("fli-codegen: generated files are up to date") }
        else {
            print("fli-codegen: stale generated files (run `swift run --package-path codegen fli-codegen`):")
            for s in stale { print("  " + s) }
            exit(1)
        }
    } else {
        log("fli-codegen: wrote \(stale.count) changed file(s)")
    }
} catch {
    FileHandle.standardError.write(Data("fli-codegen: error: \(error)\n".utf8))
    exit(2)
}

/// `SSL_CTX_use_RSAPrivateKey_file` → `ssl-ctx-use-rsaprivatekey-file`.
