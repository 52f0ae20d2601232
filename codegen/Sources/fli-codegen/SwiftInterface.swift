import Foundation

/// The Swift view of the C module, read from `swift-synthesize-interface`: exactly how the Swift
/// importer spells each function's parameter and result types, and which macros it imports as
/// constants.
struct SwiftInterface {
    struct Function { var name: String; var params: [(label: String, type: String)]; var result: String }
    var functions: [String: Function] = [:]
    /// Imported constants (macros and enum cases), name → Swift type.
    var constants: [String: String] = [:]
    /// Imported type names (typealiases, structs, enums).
    var types: Set<String> = []

    init(text: String) {
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("public func ") {
                if let fn = SwiftInterface.parseFunction(String(line.dropFirst("public func ".count))) {
                    functions[fn.name] = fn
                }
            } else if line.hasPrefix("public var ") || line.hasPrefix("public let ") {
                let body = line.dropFirst("public var ".count)
                if let colon = body.firstIndex(of: ":") {
                    let name = String(body[..<colon])
                    var type = body[body.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    if let brace = type.range(of: " {") { type = String(type[..<brace.lowerBound]) }
                    constants[name] = type
                }
            } else {
                for prefix in ["public typealias ", "public struct ", "public enum "] where line.hasPrefix(prefix) {
                    let rest = line.dropFirst(prefix.count)
                    let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                    types.insert(String(name))
                }
            }
        }
    }

    /// Parses `NAME(_ a: T, _ b: U) -> R`.
    static func parseFunction(_ s: String) -> Function? {
        guard let open = s.firstIndex(of: "(") else { return nil }
        let name = String(s[..<open])
        guard let close = matchingClose(s, open) else { return nil }
        let inside = String(s[s.index(after: open)..<close])
        var result = "Void"
        let after = s[s.index(after: close)...].trimmingCharacters(in: .whitespaces)
        if after.hasPrefix("->") { result = after.dropFirst(2).trimmingCharacters(in: .whitespaces) }
        var params: [(String, String)] = []
        for part in splitTopLevel(inside, separator: ",") where !part.isEmpty {
            guard let colon = topLevelColon(part) else { return nil }
            let label = part[..<colon].trimmingCharacters(in: .whitespaces)
            let type = part[part.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            params.append((label, type))
        }
        return Function(name: name, params: params, result: result)
    }

    static func matchingClose(_ s: String, _ open: String.Index) -> String.Index? {
        var depth = 0, inString = false
        var i = open
        while i < s.endIndex {
            let c = s[i]
            if inString { if c == "\"" { inString = false } }
            else if c == "\"" { inString = true }
            else if c == "(" || c == "<" || c == "[" { depth += 1 }
            else if c == ")" || c == ">" || c == "]" {
                // `->` is not a closing angle bracket.
                if c == ">" && i > s.startIndex && s[s.index(before: i)] == "-" { i = s.index(after: i); continue }
                depth -= 1
                if depth == 0 { return i }
            }
            i = s.index(after: i)
        }
        return nil
    }

    /// Splits at separators that are outside brackets and string literals.
    static func splitTopLevel(_ s: String, separator: Character) -> [String] {
        var parts: [String] = [], current = "", depth = 0, inString = false
        var previous: Character = " "
        for c in s {
            if inString { if c == "\"" { inString = false } }
            else if c == "\"" { inString = true }
            else if c == "(" || c == "<" || c == "[" { depth += 1 }
            else if c == ")" || c == "]" || (c == ">" && previous != "-") { depth -= 1 }
            if c == separator && depth == 0 && !inString {
                parts.append(current.trimmingCharacters(in: .whitespaces)); current = ""
            } else { current.append(c) }
            previous = c
        }
        let last = current.trimmingCharacters(in: .whitespaces)
        if !last.isEmpty { parts.append(last) }
        return parts
    }

    static func topLevelColon(_ s: String) -> String.Index? {
        var depth = 0, inString = false
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if inString { if c == "\"" { inString = false } }
            else if c == "\"" { inString = true }
            else if c == "(" || c == "<" || c == "[" { depth += 1 }
            else if c == ")" || c == ">" || c == "]" { depth -= 1 }
            else if c == ":" && depth == 0 { return i }
            i = s.index(after: i)
        }
        return nil
    }
}

/// Turns an importer type spelling into the one the wrappers use: implicitly unwrapped optionals
/// become plain optionals, and `@convention(c, cType: "…")` loses its clang type (which ordinary Swift
/// source may not spell).
func cleanSwiftType(_ t: String) -> String {
    var s = t
    while let r = s.range(of: ", cType: \"") {
        guard let end = s[r.upperBound...].firstIndex(of: "\"") else { break }
        s.replaceSubrange(r.lowerBound...end, with: "")
    }
    if s.hasSuffix("!") { s = String(s.dropLast()) + "?" }
    s = s.replacingOccurrences(of: "!>", with: "?>").replacingOccurrences(of: "!,", with: "?,")
        .replacingOccurrences(of: "!)", with: "?)")
    return s
}
