import Foundation

/// A C function as clang's AST declares it.
struct CFunction: Codable {
    struct Param: Codable { var name: String; var type: String; var desugared: String }
    var name: String
    /// The header it is declared in, e.g. `ssl.h`.
    var header: String
    /// The function's type as clang prints it, e.g. `int (const SSL_CIPHER *, int *)`.
    var type: String
    var returnType: String
    var params: [Param]
    var variadic: Bool
    /// The deprecation message, if the declaration carries a deprecated attribute.
    var deprecated: String?
    var isInline: Bool
}

/// Reads function declarations from `clang -Xclang -ast-dump=json`.
///
/// The JSON dumper writes a location's file only when it differs from the previous location it
/// printed, so the current file is carried along while walking the whole tree in print order
/// (loc, range.begin, range.end, then the children).
struct ClangAST {
    var functions: [String: CFunction] = [:]

    init(json data: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw GeneratorError("clang's AST dump is not a JSON object")
        }
        var currentFile = ""
        func track(_ loc: Any?) {
            guard let loc = loc as? [String: Any] else { return }
            if loc["spellingLoc"] != nil || loc["expansionLoc"] != nil {
                track(loc["spellingLoc"]); track(loc["expansionLoc"])
            } else if let file = loc["file"] as? String {
                currentFile = file
            }
        }
        func walk(_ node: [String: Any], topLevel: Bool) {
            track(node["loc"])
            let declFile = currentFile
            if let range = node["range"] as? [String: Any] { track(range["begin"]); track(range["end"]) }
            var deprecated: String?
            if let inner = node["inner"] as? [[String: Any]] {
                for child in inner {
                    if child["kind"] as? String == "DeprecatedAttr" {
                        deprecated = (child["message"] as? String) ?? ""
                    }
                    walk(child, topLevel: false)
                }
            }
            guard topLevel, node["kind"] as? String == "FunctionDecl",
                  let name = node["name"] as? String,
                  let type = (node["type"] as? [String: Any])?["qualType"] as? String else { return }
            let params: [CFunction.Param] = ((node["inner"] as? [[String: Any]]) ?? []).compactMap { child in
                guard child["kind"] as? String == "ParmVarDecl" else { return nil }
                let t = child["type"] as? [String: Any]
                let qual = (t?["qualType"] as? String) ?? ""
                return CFunction.Param(name: (child["name"] as? String) ?? "",
                                       type: qual, desugared: (t?["desugaredQualType"] as? String) ?? qual)
            }
            let header = URL(fileURLWithPath: declFile).lastPathComponent
            let fn = CFunction(name: name, header: header, type: type,
                               returnType: ClangAST.returnType(of: type), params: params,
                               variadic: node["variadic"] as? Bool ?? false,
                               deprecated: deprecated, isInline: node["inline"] as? Bool ?? false)
            if var existing = functions[name] {
                // A redeclaration: keep the first, but a deprecation anywhere counts.
                if existing.deprecated == nil { existing.deprecated = fn.deprecated }
                functions[name] = existing
            } else {
                functions[name] = fn
            }
        }
        for child in (root["inner"] as? [[String: Any]]) ?? [] { walk(child, topLevel: true) }
    }

    /// The return type in a function type string: everything before the top-level parameter list.
    /// For a function returning a function pointer (`void (*(const SSL_CTX *))(int)`) the whole
    /// string is returned unchanged.
    static func returnType(of functionType: String) -> String {
        guard let open = functionType.firstIndex(of: "(") else { return functionType }
        let head = functionType[..<open].trimmingCharacters(in: .whitespaces)
        if functionType[open...].hasPrefix("(*") { return functionType }
        return head
    }
}
