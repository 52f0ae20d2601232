import Foundation

/// A parameter of a generated wrapper.
struct WParam {
    var name: String        // Swift parameter name (C name, made safe)
    var swiftType: String   // as the wrapper declares it
    var cType: String       // the C type, for documentation and the header check
}

/// One generated wrapper: its Swift text and what the docs/DirectCalls.md table and the header check need.
struct Wrapper {
    enum Kind { case function, macro, stub, stack, alias }
    var name: String
    var header: String
    var kind: Kind
    var params: [WParam]
    var result: String
    var code: String
    var deprecated: Bool
    /// C text appended to the header check for this wrapper.
    var check: String
    /// How Swift must import the C declaration this wrapper stands for, worked out from the wrapper's own
    /// types (a handle is `OpaquePointer?`, a `String` is `UnsafePointer<CChar>?`, an out-parameter is a
    /// pointer to its type): parameter types in C order and the result. The signature check compiles it
    /// against the real import.
    var importView: (params: [String], result: String)? = nil
    /// For a macro: the C parameter types the spec and the callee give it, in order (the signature check
    /// declares a C function type from them, and Swift imports that).
    var macroCTypes: [String]? = nil
    /// The Swift function type of the wrapper's pointer form (every `const char *` parameter an
    /// `UnsafePointer<CChar>?`), when it has one.
    var pointerFormType: String? = nil
    /// The Swift module the wrapper is emitted in: OpenSSLFLI, or OpenSSLCrypto for libcrypto's wholesale headers.
    var module: String = "OpenSSLFLI"
    /// The Swift function type of the wrapper.
    var functionType: String {
        "(" + params.map(\.swiftType).joined(separator: ", ") + ") -> " + (result.isEmpty ? "Void" : result)
    }
    var signature: String {
        "(" + params.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ") + ")" + (result == "Void" ? "" : " -> \(result)")
    }
}

let swiftKeywords: Set<String> = [
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init", "inout",
    "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows", "static", "struct",
    "subscript", "typealias", "var", "break", "case", "continue", "default", "defer", "do", "else",
    "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch", "where", "while", "as", "Any",
    "catch", "false", "is", "nil", "super", "self", "Self", "throw", "throws", "true", "try", "some", "any",
]

func safeName(_ name: String, index: Int) -> String {
    if name.isEmpty { return "arg\(index)" }
    if swiftKeywords.contains(name) { return name + "_" }
    return name
}

/// `alg_bits` → `algBits`.
func camelCase(_ s: String) -> String {
    let parts = s.split(separator: "_")
    guard let first = parts.first else { return s }
    return String(first) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
}

/// The pointee of a one-level C pointer type (`const SSL_CIPHER *` → `SSL_CIPHER`), or nil.
func pointee(_ cType: String) -> String? {
    var t = cType.trimmingCharacters(in: .whitespaces)
    guard t.hasSuffix("*") else { return nil }
    t = String(t.dropLast()).trimmingCharacters(in: .whitespaces)
    if t.hasSuffix("*") || t.contains("(") { return nil }
    t = t.replacingOccurrences(of: "const ", with: "").replacingOccurrences(of: " const", with: "")
    t = t.replacingOccurrences(of: "struct ", with: "").trimmingCharacters(in: .whitespaces)
    return t
}

/// `type name` as C declares a parameter.
func cDeclaration(_ type: String, _ name: String) -> String {
    if type.contains("(*)") { return type.replacingOccurrences(of: "(*)", with: "(*\(name))", options: [], range: type.range(of: "(*)")) }
    if type.hasSuffix("*") { return type + name }
    if let bracket = type.firstIndex(of: "[") { return type[..<bracket].trimmingCharacters(in: .whitespaces) + " " + name + type[bracket...] }
    return type + " " + name
}

func cPrototype(_ f: CFunction) -> String {
    if f.returnType == f.type { return "\(f.name): \(f.type)" }
    var params = f.params.enumerated().map { cDeclaration($0.element.type, $0.element.name.isEmpty ? "" : $0.element.name) }
    if params.isEmpty { params = ["void"] }
    if f.variadic { params.append("...") }
    let ret = f.returnType.hasSuffix("*") ? f.returnType : f.returnType + " "
    return "\(ret)\(f.name)(\(params.joined(separator: ", ")))"
}

/// Doc-comment lines, each starting with `/// `.
func docLines(_ lines: [String]) -> String {
    lines.map { $0.isEmpty ? "///" : "/// " + $0 }.joined(separator: "\n") + "\n"
}

func isIntegerType(_ t: String) -> Bool {
    ["Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64", "CChar", "CInt", "CLong"].contains(t)
}
