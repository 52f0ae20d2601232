import Foundation

/// A preprocessor token: what the macro analysis needs (identifiers, numbers, punctuation, literals).
enum Token: Equatable, CustomStringConvertible {
    case ident(String), number(String), punct(String), literal(String)
    var description: String {
        switch self { case .ident(let s), .number(let s), .punct(let s), .literal(let s): return s }
    }
}

func tokenize(_ s: String) -> [Token] {
    var tokens: [Token] = []
    let chars = Array(s)
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if c.isWhitespace { i += 1; continue }
        if c.isLetter || c == "_" {
            var j = i
            while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" { j += 1 }
            tokens.append(.ident(String(chars[i..<j]))); i = j
        } else if c.isNumber {
            var j = i
            while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" || chars[j] == "." { j += 1 }
            tokens.append(.number(String(chars[i..<j]))); i = j
        } else if c == "\"" || c == "'" {
            var j = i + 1
            while j < chars.count, chars[j] != c { if chars[j] == "\\" { j += 1 }; j += 1 }
            tokens.append(.literal(String(chars[i...min(j, chars.count - 1)]))); i = j + 1
        } else {
            let two = i + 1 < chars.count ? String(chars[i...i + 1]) : ""
            if ["<<", ">>", "==", "!=", "<=", ">=", "&&", "||", "->", "##"].contains(two) {
                tokens.append(.punct(two)); i += 2
            } else { tokens.append(.punct(String(c))); i += 1 }
        }
    }
    return tokens
}

/// The macro table of `clang -E -dM`, with a small expander for function-like macros.
struct MacroTable {
    struct Macro { var name: String; var params: [String]?; var body: String; var tokens: [Token] }
    var macros: [String: Macro] = [:]

    init(dump: String) {
        for line in dump.split(separator: "\n") {
            guard line.hasPrefix("#define ") else { continue }
            let rest = line.dropFirst("#define ".count)
            let nameEnd = rest.firstIndex { !($0.isLetter || $0.isNumber || $0 == "_") } ?? rest.endIndex
            let name = String(rest[..<nameEnd])
            var params: [String]? = nil
            var bodyStart = nameEnd
            if nameEnd < rest.endIndex, rest[nameEnd] == "(" {
                let close = rest[nameEnd...].firstIndex(of: ")")!
                params = rest[rest.index(after: nameEnd)..<close].split(separator: ",")
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                bodyStart = rest.index(after: close)
            }
            let body = rest[bodyStart...].trimmingCharacters(in: .whitespaces)
            macros[name] = Macro(name: name, params: params, body: body, tokens: tokenize(body))
        }
    }

    /// Expands function-like macros in `tokens` (object-like ones stay as identifiers: they are the
    /// constants the call passes).
    func expand(_ tokens: [Token], depth: Int = 0, hide: Set<String> = []) -> [Token] {
        guard depth < 32 else { return tokens }
        var out: [Token] = []
        var i = 0
        while i < tokens.count {
            if case .ident(let name) = tokens[i], !hide.contains(name), let m = macros[name], let params = m.params,
               i + 1 < tokens.count, tokens[i + 1] == .punct("("),
               let (args, end) = MacroTable.collectArgs(tokens, from: i + 1) {
                var body: [Token] = []
                for t in m.tokens {
                    if case .ident(let id) = t, let k = params.firstIndex(of: id), k < args.count {
                        body += [.punct("(")] + args[k] + [.punct(")")]
                    } else { body.append(t) }
                }
                out += expand(body, depth: depth + 1, hide: hide.union([name]))
                i = end + 1
            } else {
                out.append(tokens[i]); i += 1
            }
        }
        return out
    }

    /// Collects the comma-separated arguments of a call whose `(` is at `open`; returns them and the
    /// index of the closing `)`.
    static func collectArgs(_ tokens: [Token], from open: Int) -> ([[Token]], Int)? {
        var depth = 0, args: [[Token]] = [], current: [Token] = []
        var i = open
        while i < tokens.count {
            let t = tokens[i]
            if t == .punct("(") { depth += 1; if depth == 1 { i += 1; continue } }
            if t == .punct(")") { depth -= 1; if depth == 0 { if !current.isEmpty || !args.isEmpty { args.append(current) }; return (args, i) } }
            if t == .punct(","), depth == 1 { args.append(current); current = []; i += 1; continue }
            current.append(t); i += 1
        }
        return nil
    }
}

/// What one argument of the call a macro expands to turned out to be.
enum MacroArgument: Equatable {
    case param(String)
    case constant(String)
    case number(String)
    case null
    case complex(String)
}

/// Strips redundant parentheses and casts from an argument and classifies it.
func classifyArgument(_ tokensIn: [Token], params: [String]) -> MacroArgument {
    var tokens = tokensIn
    var changed = true
    while changed && !tokens.isEmpty {
        changed = false
        if tokens.first == .punct("("), let (_, end) = MacroTable.collectArgs(tokens, from: 0) {
            if end == tokens.count - 1 {
                tokens = Array(tokens[1..<end]); changed = true
            } else {
                // A cast if the parenthesised part names no macro parameter and looks like a type.
                let inner = tokens[1..<end]
                let mentionsParam = inner.contains { if case .ident(let s) = $0 { return params.contains(s) }; return false }
                let typeLike = inner.allSatisfy {
                    switch $0 { case .ident: return true; case .punct(let p): return ["*", "(", ")"].contains(p); default: return false }
                }
                if !mentionsParam && typeLike { tokens = Array(tokens[(end + 1)...]); changed = true }
            }
        }
    }
    if tokens.count == 1 {
        switch tokens[0] {
        case .ident(let s) where params.contains(s): return .param(s)
        case .ident("NULL"): return .null
        case .ident(let s): return .constant(s)
        case .number(let n): return .number(n)
        default: break
        }
    }
    if tokens == [.punct("("), .ident("void"), .punct("*"), .punct(")"), .number("0")] { return .null }
    return .complex(tokens.map(\.description).joined(separator: " "))
}

/// Reads `#define NAME` lines of a header file, to know which header a macro belongs to.
func macroNames(inHeader path: String) throws -> [String] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var names: [String] = []
    for line in text.split(separator: "\n") {
        var s = line.drop { $0 == " " || $0 == "\t" }
        guard s.hasPrefix("#") else { continue }
        s = s.dropFirst().drop { $0 == " " || $0 == "\t" }
        guard s.hasPrefix("define") else { continue }
        s = s.dropFirst("define".count).drop { $0 == " " || $0 == "\t" }
        let name = s.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
        if !name.isEmpty { names.append(String(name)) }
    }
    return names
}
