/// LispWorks' names for OpenSSL's calls and how they are resolved to C names.
///
/// LispWorks names a C call by lower-casing it and turning `_` into `-` (`SSL_CTX_use_RSAPrivateKey_file` is
/// `ssl-ctx-use-rsaprivatekey-file`); the special casings (`RSAPrivateKey`, `PrivateKey`, `CA`, `ASN1`) are
/// recovered by matching against the C names the headers declare, case-insensitively. A name may come
/// printed as a symbol (`COMM:SSL-CTX-NEW`, `comm::ssl-new`); the package prefix is dropped.
///
/// The generator resolves the `lisp` lines of `codegen/spec.txt` with this, and the `FuzzLispNames` target
/// of `Fuzz/` feeds it arbitrary bytes.

/// The Lisp-style name of a C name: lower case, `_` → `-`.
public func lispName(forC c: String) -> String {
    String(decoding: c.utf8.map { $0 == UInt8(ascii: "_") ? UInt8(ascii: "-") : asciiLower($0) }, as: UTF8.self)
}

@inline(__always) private func asciiLower(_ b: UInt8) -> UInt8 {
    b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b + 32 : b
}

/// Why a Lisp-style name could not be resolved.
public enum LispNameProblem: Error, Equatable, CustomStringConvertible {
    /// Not a name at all: empty, a character outside `A-Z a-z 0-9 -`, or a malformed package prefix.
    case invalid(name: String, reason: String)
    /// No C function or macro has this name.
    case unknown(name: String)
    /// More than one C name lower-cases to it (the candidates, sorted).
    case ambiguous(name: String, candidates: [String])
    /// An explicit C name that is not among the known ones.
    case unknownExplicit(name: String, cName: String)

    public var description: String {
        switch self {
        case .invalid(let name, let reason): return "\(printable(name)): not a Lisp name (\(reason))"
        case .unknown(let name): return "\(printable(name)): unknown name (no C function or macro matches)"
        case .ambiguous(let name, let candidates): return "\(printable(name)): ambiguous (\(candidates.joined(separator: ", ")))"
        case .unknownExplicit(let name, let cName): return "\(printable(name)): \(printable(cName)) is not generated"
        }
    }
}

/// A name as it may be shown in a message: control characters escaped, at most 80 characters.
func printable(_ s: String) -> String {
    var out = ""
    for scalar in s.unicodeScalars.prefix(80) {
        out += scalar.value < 0x20 || scalar.value == 0x7f ? scalar.escaped(asASCII: true) : String(scalar)
    }
    return s.unicodeScalars.count > 80 ? out + "…" : out
}

/// Resolves Lisp-style names against a set of C names.
public struct LispNameResolver: Sendable {
    private var index: [String: [String]] = [:]
    private var known: Set<String> = []

    /// A resolver over these C names (duplicates are ignored).
    public init<S: Sequence>(cNames: S) where S.Element == String {
        for c in cNames where known.insert(c).inserted {
            index[lispName(forC: c), default: []].append(c)
        }
        for key in index.keys { index[key]!.sort() }
    }

    /// The canonical form of a Lisp-style name: the package prefix (`comm:` or `comm::`, any case) dropped,
    /// ASCII lower case. Only `A-Z a-z 0-9 -` are allowed in the name; it must not start or end with `-`.
    public static func normalize(_ name: String) -> Result<String, LispNameProblem> {
        var bytes = Array(name.utf8)
        if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            var rest = colon + 1
            if rest < bytes.count && bytes[rest] == UInt8(ascii: ":") { rest += 1 }
            let package = bytes[..<colon].map(asciiLower)
            guard !package.isEmpty, package.allSatisfy(isNameByte) else {
                return .failure(.invalid(name: name, reason: "bad package prefix"))
            }
            bytes = Array(bytes[rest...])
        }
        guard !bytes.isEmpty else { return .failure(.invalid(name: name, reason: "empty")) }
        guard bytes.allSatisfy(isNameByte) else {
            return .failure(.invalid(name: name, reason: "only letters, digits and - are allowed"))
        }
        guard bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else {
            return .failure(.invalid(name: name, reason: "starts or ends with -"))
        }
        return .success(String(decoding: bytes.map(asciiLower), as: UTF8.self))
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) ||
            (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-")
    }

    /// The C name a Lisp-style name stands for. With `explicit`, that C name is taken as it is, provided it is known.
    public func resolve(_ name: String, explicit: String? = nil) -> Result<String, LispNameProblem> {
        let canonical: String
        switch Self.normalize(name) {
        case .failure(let problem): return .failure(problem)
        case .success(let n): canonical = n
        }
        if let explicit {
            return known.contains(explicit) ? .success(explicit) : .failure(.unknownExplicit(name: name, cName: explicit))
        }
        let candidates = index[canonical] ?? []
        switch candidates.count {
        case 0: return .failure(.unknown(name: name))
        case 1: return .success(candidates[0])
        default: return .failure(.ambiguous(name: name, candidates: candidates))
        }
    }
}

/// One `lisp` line of `codegen/spec.txt`: `lisp NAME [= C_NAME] [| note]`.
public struct LispNameEntry: Equatable, Sendable {
    public var lisp: String
    public var explicit: String?
    public var note: String?

    public init(lisp: String, explicit: String? = nil, note: String? = nil) {
        self.lisp = lisp; self.explicit = explicit; self.note = note
    }

    /// Parses a line (comments already removed). Returns nil when the line is not of that form.
    /// The syntax is read scalar by scalar, not by `Character`: a combining mark after a blank or a `|`
    /// would otherwise join it into one grapheme, hiding the separator (found by FuzzLispNames).
    public static func parse(_ line: String) -> LispNameEntry? {
        let scalars = line.unicodeScalars
        let bar = scalars.firstIndex(of: "|")
        let head = bar.map { scalars[..<$0] } ?? scalars[...]
        let note = bar.map { String(String.UnicodeScalarView(scalars[scalars.index(after: $0)...])).trimmingASCIIWhitespace() }
        let w = head.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String(String.UnicodeScalarView($0)) }
        guard w.first == "lisp" else { return nil }
        if w.count == 2 { return LispNameEntry(lisp: w[1], explicit: nil, note: note) }
        if w.count == 4 && w[2] == "=" { return LispNameEntry(lisp: w[1], explicit: w[3], note: note) }
        return nil
    }

    /// The line this entry is written as (`parse` of it gives the entry back when its parts have no
    /// blanks or `|` in them and the note has no surrounding blanks).
    public var line: String {
        var s = "lisp \(lisp)"
        if let explicit { s += " = \(explicit)" }
        if let note { s += " | \(note)" }
        return s
    }
}

extension String {
    /// Drops blanks and tabs at both ends, scalar by scalar (see `LispNameEntry.parse`).
    func trimmingASCIIWhitespace() -> String {
        let isBlank: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" }
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !isBlank($0) }) else { return "" }
        let end = scalars.lastIndex(where: { !isBlank($0) })!
        return String(String.UnicodeScalarView(scalars[start...end]))
    }
}
