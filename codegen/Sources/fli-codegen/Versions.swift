import Foundation

/// Which OpenSSL introduced each function, and the functions later than the 3.0 baseline.
///
/// Generated/ is made from OpenSSL 3.0's headers (the oldest OpenSSL 3 that distributions ship) plus
/// `codegen/openssl-additions.json`: the functions of the wrapped headers that later releases added,
/// as clang and Swift see them in the newest headers (written by `fli-codegen` run against those, e.g.
/// on Debian 13). For each, `Sources/COpenSSL/fli_since.h` declares a stand-in that is compiled only
/// when the headers are older than the version that introduced it: it does nothing, queues an
/// ERR_R_UNSUPPORTED error naming that version and returns 0. Built against newer headers the wrapper
/// calls the library's function directly, at the cost of the C call.

/// An entry of openssl-additions.json.
struct Addition: Codable {
    var name: String
    var since: String
    var c: CFunction
    var swiftParams: [String]
    var swiftResult: String
}

/// `NAME@OPENSSL_3.2.0` symbol versions of the dynamic libraries: name → "3.2.0" (only versions after 3.0.0).
func symbolVersions(libDir: String) throws -> [String: String] {
    let readelf = try findTool("readelf", envVar: "FLI_READELF")
    var result: [String: String] = [:]
    for lib in ["libssl.so", "libcrypto.so"] {
        let out = try run(readelf, ["--dyn-syms", "-W", libDir + "/" + lib]).out
        for line in out.split(separator: "\n") {
            guard let word = line.split(separator: " ").last, let at = word.range(of: "@OPENSSL_") else { continue }
            let name = word[..<at.lowerBound].replacingOccurrences(of: "@", with: "")
            let version = String(word[at.upperBound...])
            if version != "3.0.0" && !version.hasPrefix("1.") { result[name] = version }
        }
    }
    return result
}

/// `3.2.0` → `0x30200000L` (OPENSSL_VERSION_NUMBER's layout: 0xMNN00PP0).
func versionNumber(_ v: String) -> String {
    let parts = v.split(separator: ".").compactMap { Int($0) }
    let (major, minor, patch) = (parts.first ?? 0, parts.count > 1 ? parts[1] : 0, parts.count > 2 ? parts[2] : 0)
    return "0x" + String(major, radix: 16) + String(format: "%02x", minor) + "00" + String(format: "%02x", patch) + "0L"
}

extension Generator {
    /// The stand-in of a function for headers older than `since`.
    static func fallback(_ f: CFunction, since v: String, library: String) -> String {
        let params = f.params.enumerated().map { cDeclaration($0.element.type, "a\($0.offset)") }
        let ret = f.returnType.hasSuffix("*") ? f.returnType : f.returnType + " "
        var body = f.params.indices.map { "(void)a\($0); " }.joined()
        body += "ERR_raise_data(\(library), ERR_R_UNSUPPORTED, \"\(f.name) needs OpenSSL \(v); this program was built with the headers of %s\", OPENSSL_VERSION_TEXT);"
        if f.returnType != "void" { body += " return 0;" }
        return "#if OPENSSL_VERSION_NUMBER < \(versionNumber(v))\n" +
            "static inline \(ret)\(f.name)(\(params.isEmpty ? "void" : params.joined(separator: ", "))) { \(body) }\n#endif\n"
    }
}
