import Foundation

/// The hand-written helpers that name a C call in a `- Corresponds:` doc line, by C name: the "Swift
/// helper" column of docs/DirectCalls.md. Reads the public modules' sources (not Generated/).
enum HelperIndex {
    static let modules = ["OpenSSLFLI", "OpenSSL", "OpenSSLTLS", "OpenSSLStreams", "OpenSSLSeeds", "OpenSSLNIO"]

    static func build(root: String) throws -> [String: [String]] {
        var index: [String: Set<String>] = [:]
        for module in modules {
            let dir = root + "/Sources/" + module
            guard let walker = FileManager.default.enumerator(atPath: dir) else { continue }
            for case let relative as String in walker
            where relative.hasSuffix(".swift") && !relative.hasPrefix("Generated/") {
                let text = try String(contentsOfFile: dir + "/" + relative, encoding: .utf8)
                for (helper, names) in scan(text) {
                    for name in names { index[name, default: []].insert(helper) }
                }
            }
        }
        return index.mapValues { $0.sorted() }
    }

    /// (helper, C names) for each declaration whose doc comment has a `- Corresponds:` line.
    static func scan(_ text: String) -> [(String, [String])] {
        var result: [(String, [String])] = []
        var owner: String?
        var corresponds: [String] = []
        var inCorresponds = false
        let typeDecl = try! NSRegularExpression(pattern: #"^(?:public |package |final |open )*(?:extension|class|struct|enum|actor)\s+([A-Za-z_][\w.]*)"#)
        let memberDecl = try! NSRegularExpression(pattern: #"^\s*(?:@[\w()":., ]+\s+)*(?:public|open|package)\s+(?:(?:static|class|final|override|convenience|mutating|nonisolated|required)\s+)*(func|init|var|subscript)\b\s*([A-Za-z_]\w*)?"#)
        let cName = try! NSRegularExpression(pattern: #"`([A-Za-z_][A-Za-z0-9_]*)`"#)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let range = NSRange(line.startIndex..., in: line)
            if let m = typeDecl.firstMatch(in: line, range: range), let r = Range(m.range(at: 1), in: line) {
                owner = String(line[r])
            }
            if trimmed.hasPrefix("///") {
                let body = trimmed.dropFirst(3).trimmingCharacters(in: .whitespaces)
                if body.hasPrefix("- Corresponds:") { inCorresponds = true }
                else if body.hasPrefix("- ") || body.isEmpty { inCorresponds = false }
                if inCorresponds {
                    let r = NSRange(trimmed.startIndex..., in: trimmed)
                    corresponds += cName.matches(in: trimmed, range: r).compactMap { Range($0.range(at: 1), in: trimmed).map { String(trimmed[$0]) } }
                        .filter { $0.contains("_") || $0.hasPrefix("SSL") }
                }
                continue
            }
            inCorresponds = false
            if trimmed.hasPrefix("@") { continue }
            if !corresponds.isEmpty, let m = memberDecl.firstMatch(in: line, range: range) {
                let kind = Range(m.range(at: 1), in: line).map { String(line[$0]) } ?? ""
                let name = Range(m.range(at: 2), in: line).map { String(line[$0]) } ?? kind
                let indented = line.hasPrefix(" ")
                let helper = indented && owner != nil ? "\(owner!).\(kind == "init" ? "init" : name)" : name
                result.append((helper, corresponds))
            }
            corresponds = []
        }
        return result
    }
}
