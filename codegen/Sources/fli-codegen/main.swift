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
    let shimDir = root + "/Sources/COpenSSL"
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
    let ast = try ClangAST(json: Data(astRun.out.utf8))
    // 2. Macros, with and without deprecated API.
    let macroDump = try run(clang, cflags + ["-x", "c", "-E", "-dM", "-DFLI_CODEGEN_KEEP_DEPRECATED", shim]).out
    let macros = MacroTable(dump: macroDump)
    let nonDeprecated = MacroTable(dump: try run(clang, cflags + ["-x", "c", "-E", "-dM", "-DOPENSSL_NO_DEPRECATED", shim]).out)
    let deprecatedMacros = Set(macros.macros.keys).subtracting(nonDeprecated.macros.keys)
    // 3. How Swift imports the module.
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("fli-codegen-\(getpid())")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let interfacePath = tmp.appendingPathComponent("COpenSSL.swift").path
    try run(synthesize, ["-module-name", "COpenSSL", "-I", shimDir] + includeFlags.flatMap { ["-I", String($0.dropFirst(2))] } +
            ["-target", triple, "-o", interfacePath])
    let swiftInterface = SwiftInterface(text: try String(contentsOfFile: interfacePath, encoding: .utf8))

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
    let files = gen.emit(lispRows: lispRows)
    var stale: [String] = []
    let generatedDir = root + "/Sources/OpenSSLFLI/Generated"
    let existing = Set(((try? FileManager.default.contentsOfDirectory(atPath: generatedDir)) ?? []).map { "Sources/OpenSSLFLI/Generated/" + $0 })
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
