import Foundation

// Expression macros: function-like macros whose body is a C expression over calls, not one call
// (`SSL_in_connect_init(a)` is `(SSL_in_init(a) && !SSL_is_server(a))`). They are parsed into a small
// expression tree and translated into the same expression over the C calls, typed by what Swift imports
// for each callee; a macro the translator cannot type is skipped with the reason.

indirect enum CExpr {
    case ident(String), number(String), null
    case call(String, [CExpr])
    case unary(String, CExpr)
    case binary(String, CExpr, CExpr)
    case ternary(CExpr, CExpr, CExpr)
    case cast(String, CExpr)
}

struct ExprError: Error { let reason: String; init(_ r: String) { reason = r } }

/// A recursive-descent parser for the C expressions OpenSSL's macros use.
struct ExprParser {
    let tokens: [Token]
    var i = 0
    static let precedence: [String: Int] = [
        "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
        "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
    ]
    /// C type names a cast may use (integer types map to Swift in `castType`).
    static let castTypes: [String: String] = [
        "int": "Int32", "long": "Int", "uint64_t": "UInt64", "uint32_t": "UInt32", "unsigned": "UInt32",
        "size_t": "Int", "void": "Void",
    ]

    init(_ tokens: [Token]) { self.tokens = tokens }

    static func parse(_ tokens: [Token]) throws -> CExpr {
        var p = ExprParser(tokens)
        let e = try p.ternary()
        guard p.i == tokens.count else { throw ExprError("unexpected `\(tokens[p.i])` in the expression") }
        return e
    }

    var peek: Token? { i < tokens.count ? tokens[i] : nil }

    mutating func expect(_ p: String) throws {
        guard peek == .punct(p) else { throw ExprError("expected `\(p)`") }
        i += 1
    }

    mutating func ternary() throws -> CExpr {
        let c = try binary(1)
        guard peek == .punct("?") else { return c }
        i += 1
        let a = try ternary()
        try expect(":")
        return .ternary(c, a, try ternary())
    }

    mutating func binary(_ minPrec: Int) throws -> CExpr {
        var lhs = try unary()
        while case .punct(let op)? = peek, let prec = ExprParser.precedence[op], prec >= minPrec {
            i += 1
            lhs = .binary(op, lhs, try binary(prec + 1))
        }
        return lhs
    }

    mutating func unary() throws -> CExpr {
        if case .punct(let op)? = peek, ["!", "-", "~"].contains(op) {
            i += 1
            return .unary(op, try unary())
        }
        // A cast: `(type)`, `(type *)`.
        if peek == .punct("("), i + 2 < tokens.count, case .ident(let t) = tokens[i + 1], ExprParser.castTypes[t] != nil || t == "unsigned" {
            var j = i + 1
            var name: [String] = []
            while j < tokens.count, case .ident(let w) = tokens[j] { name.append(w); j += 1 }
            var pointer = false
            while j < tokens.count, tokens[j] == .punct("*") { pointer = true; j += 1 }
            if j < tokens.count, tokens[j] == .punct(")") {
                i = j + 1
                let operand = try unary()
                if pointer {
                    if case .number("0") = operand { return .null }
                    throw ExprError("pointer cast `(\(name.joined(separator: " ")) *)`")
                }
                return .cast(name.joined(separator: " "), operand)
            }
        }
        return try primary()
    }

    mutating func primary() throws -> CExpr {
        guard let t = peek else { throw ExprError("the expression ends early") }
        i += 1
        switch t {
        case .number(let n): return .number(n)
        case .ident("NULL"): return .null
        case .ident(let name):
            guard peek == .punct("(") else { return .ident(name) }
            i += 1
            var args: [CExpr] = []
            if peek == .punct(")") { i += 1; return .call(name, args) }
            while true {
                args.append(try ternary())
                if peek == .punct(",") { i += 1; continue }
                try expect(")")
                return .call(name, args)
            }
        case .punct("("):
            let e = try ternary()
            try expect(")")
            return e
        default:
            throw ExprError("`\(t)` is not supported in a translated expression")
        }
    }
}

/// A translated sub-expression: its Swift code, its Swift type ("Bool", "Int32", "OpaquePointer?" …;
/// "literal" for a number that takes the type around it, "nil" for NULL) and, for a call result, the C type.
struct TypedExpr { var code: String; var type: String; var cType: String = "" }

extension Generator {
    /// The C calls an expression makes.
    static func calls(in e: CExpr) -> [String] {
        switch e {
        case .ident, .number, .null: return []
        case .call(let f, let args): return [f] + args.flatMap { calls(in: $0) }
        case .unary(_, let x), .cast(_, let x): return calls(in: x)
        case .binary(_, let a, let b): return calls(in: a) + calls(in: b)
        case .ternary(let c, let a, let b): return calls(in: c) + calls(in: a) + calls(in: b)
        }
    }

    /// Translates an expression macro; throws with the reason when it cannot.
    mutating func wrapExpressionMacro(_ m: MacroTable.Macro, header: String, tokens: [Token], define: String, attrs: String, deprecated: Bool) throws {
        let params = m.params ?? []
        let overrides = spec.macroArgs[m.name] ?? [:]
        var paramTypes: [String: (swift: String, c: String)] = [:]
        for (p, o) in overrides where !o.isOut { paramTypes[p] = (o.swiftType, o.cType) }
        let tree = try ExprParser.parse(tokens)

        func asBool(_ t: TypedExpr) throws -> String {
            if t.type == "Bool" { return t.code }
            if isIntegerType(t.type) || t.type == "literal" { return "(\(t.code) != 0)" }
            if t.type.hasSuffix("?") { return "(\(t.code) != nil)" }
            throw ExprError("\(t.type) used as a condition")
        }
        func coerce(_ t: TypedExpr, to want: String) throws -> String {
            if t.type == want || t.type == "literal" && isIntegerType(want) || t.type == "nil" && want.hasSuffix("?") { return t.code }
            if isIntegerType(want) && isIntegerType(t.type) { return "\(want)(\(t.code))" }
            throw ExprError("no conversion from \(t.type) to \(want)")
        }
        func unify(_ a: TypedExpr, _ b: TypedExpr) throws -> (String, String, String) {
            if a.type == b.type { return (a.code, b.code, a.type) }
            if a.type == "literal" { return (a.code, b.code, b.type) }
            if b.type == "literal" { return (a.code, b.code, a.type) }
            if isIntegerType(a.type) && isIntegerType(b.type) { return (a.code, "\(a.type)(\(b.code))", a.type) }
            throw ExprError("operands of types \(a.type) and \(b.type)")
        }
        func translate(_ e: CExpr, want: (swift: String, c: String)?) throws -> TypedExpr {
            switch e {
            case .null: return TypedExpr(code: "nil", type: "nil")
            case .number(let n):
                return TypedExpr(code: n.trimmingCharacters(in: CharacterSet(charactersIn: "uUlL")), type: "literal")
            case .ident(let name) where params.contains(name):
                if paramTypes[name] == nil {
                    guard let want else { throw ExprError("the type of parameter \(name) is not fixed by a call (declare it with marg)") }
                    if want.swift == "OpaquePointer?" {
                        guard let pt = pointee(want.c), let h = spec.handle(forC: pt) else { throw ExprError("no handle for \(want.c)") }
                        paramTypes[name] = ("\(h)?", want.c)
                    } else {
                        paramTypes[name] = (want.swift, want.c)
                    }
                }
                let t = paramTypes[name]!
                let code = safeName(name, index: 0)
                if isHandle(t.swift) { return TypedExpr(code: "\(code)\(t.swift.hasSuffix("?") ? "?" : "").rawValue", type: "OpaquePointer?") }
                return TypedExpr(code: code, type: t.swift)
            case .ident(let c):
                let to = want?.swift ?? cleanSwiftType(swift.constants[c] ?? "")
                guard !to.isEmpty, let code = constantExpression(c, to: to) else { throw ExprError("constant \(c) is not available to Swift") }
                return TypedExpr(code: code, type: to)
            case .call(let f, let args):
                guard let cf = ast.functions[f], let sf = swift.functions[f] else { throw ExprError("calls \(f), which Swift does not import") }
                guard args.count == sf.params.count else { throw ExprError("passes \(args.count) arguments to \(f)") }
                var codes: [String] = []
                for (k, a) in args.enumerated() {
                    let to = cleanSwiftType(sf.params[k].type)
                    codes.append(try coerce(try translate(a, want: (to, cf.params[k].type)), to: to))
                }
                return TypedExpr(code: "COpenSSL.\(f)(\(codes.joined(separator: ", ")))", type: cleanSwiftType(sf.result), cType: cf.returnType)
            case .unary("!", let x):
                return TypedExpr(code: "!\(try asBool(try translate(x, want: nil)))", type: "Bool")
            case .unary(let op, let x):
                let t = try translate(x, want: want)
                return TypedExpr(code: "\(op)\(t.code)", type: t.type)
            case .binary(let op, let a, let b) where op == "&&" || op == "||":
                return TypedExpr(code: "(\(try asBool(try translate(a, want: nil))) \(op) \(try asBool(try translate(b, want: nil))))", type: "Bool")
            case .binary(let op, let a, let b) where ["==", "!=", "<", ">", "<=", ">="].contains(op):
                var l = try translate(a, want: nil)
                let r = try translate(b, want: l.type == "literal" ? nil : (l.type, ""))
                if l.type == "literal" && r.type != "literal" { l = try translate(a, want: (r.type, "")) }
                let (lc, rc, _) = try unify(l, r)
                return TypedExpr(code: "(\(lc) \(op) \(rc))", type: "Bool")
            case .binary(let op, let a, let b):
                let l = try translate(a, want: want)
                let r = try translate(b, want: op == "<<" || op == ">>" ? nil : (l.type == "literal" ? want : (l.type, "")))
                if op == "<<" || op == ">>" {
                    // Swift's shifts take any integer on the right.
                    return TypedExpr(code: "(\(l.code) \(op) \(r.code))", type: l.type)
                }
                let (lc, rc, type) = try unify(l, r)
                return TypedExpr(code: "(\(lc) \(op) \(rc))", type: type)
            case .ternary(let c, let a, let b):
                let cond = try asBool(try translate(c, want: nil))
                let (ac, bc, type) = try unify(try translate(a, want: want), try translate(b, want: want))
                return TypedExpr(code: "(\(cond) ? \(ac) : \(bc))", type: type)
            case .cast(let name, let x):
                guard let to = ExprParser.castTypes[name] ?? (name.hasPrefix("unsigned") ? "UInt32" : nil) else { throw ExprError("cast to \(name)") }
                if to == "Void" { return TypedExpr(code: "_ = \(try translate(x, want: nil).code)", type: "Void") }
                let t = try translate(x, want: (to, name))
                return TypedExpr(code: t.type == to ? t.code : "\(to)(\(t.code))", type: to)
            }
        }

        var result = try translate(tree, want: nil)
        let unused = params.filter { paramTypes[$0] == nil }
        if !unused.isEmpty { throw ExprError("parameters \(unused) are not passed to a call (declare them with marg)") }
        // The result as the function wrappers give it: a typed handle, a String, C's int for a literal.
        var resultType = result.type
        if result.type == "OpaquePointer?" {
            guard let pt = pointee(result.cType), let h = spec.handle(forC: pt) else { throw ExprError("no handle for the result \(result.cType)") }
            resultType = "\(h)?"
            result.code = "\(h)(\(result.code) as OpaquePointer?)"
        } else if result.type == "UnsafePointer<CChar>?" && result.cType == "const char *" {
            resultType = "String?"
            result.code = "\(result.code).map { String(cString: $0) }"
        } else if result.type == "literal" {
            resultType = "Int32"
        } else if result.type == "nil" {
            throw ExprError("evaluates to NULL")
        }
        let wParams = params.enumerated().map { (i, p) in WParam(name: safeName(p, index: i), swiftType: paramTypes[p]!.swift, cType: paramTypes[p]!.c) }
        let calls = Generator.calls(in: tree)
        let callsText = calls.isEmpty
            ? "It calls nothing: the parameters it does not use are kept so that C code ports unchanged."
            : "It calls " + Array(NSOrderedSet(array: calls)).map { "`\($0)`" }.joined(separator: ", ") + "."
        let doc = ["`\(define)`", "",
                   "An expression macro in `<openssl/\(header)>`, generated as a function that evaluates the same " +
                   "expression; see `man \(m.name)`. " + callsText +
                   (result.type == "Bool" ? " A C comparison or logical operator (an `int` 0 or 1) is a `Bool` here." : "")]
        let code = docLines(doc) + attrs +
            "public func \(m.name)(\(wParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(resultType == "Void" ? "" : " -> \(resultType)") {\n" +
            "    " + (resultType == "Void" ? "" : "return ") + result.code + "\n}\n"
        let cParams = params.enumerated().map { (i, p) in cDeclaration(paramTypes[p]!.c, "a\(i)") }
        let check = "#ifndef \(m.name)\n#error \"\(m.name) is no longer a macro\"\n#endif\n" +
            "static void fli_check_\(m.name)(\(cParams.isEmpty ? "void" : cParams.joined(separator: ", "))) { (void)\(m.name)(\(params.indices.map { "a\($0)" }.joined(separator: ", "))); }\n"
        var w = Wrapper(name: m.name, header: header, kind: .macro, params: wParams, result: resultType, code: code, deprecated: deprecated, check: check)
        w.importView = (params.map { importedType(paramTypes[$0]!.swift) }, "Void")
        w.macroCTypes = params.map { paramTypes[$0]!.c }
        add(w)
    }

    /// `ASN1_d2i_bio_of(TYPE, NEW, D2I, in, x)` and `ASN1_i2d_bio_of(TYPE, I2D, out, x)`: the typed
    /// ASN.1-over-BIO macros, generated as the `ASN1_d2i_bio` / `ASN1_i2d_bio` calls they make, with the
    /// type's own functions passed as the C function pointers.
    mutating func wrapASN1BIOMacro(_ m: MacroTable.Macro, header: String, define: String, attrs: String, deprecated: Bool) throws -> Bool {
        guard case .ident(let kind)? = m.tokens.first, kind == "ASN1_d2i_bio_of" || kind == "ASN1_i2d_bio_of",
              let (args, _) = MacroTable.collectArgs(m.tokens, from: 1) else { return false }
        let names = args.map { $0.map(\.description).joined() }
        let params = m.params ?? []
        func cFunctionType(_ f: String) throws -> String {
            guard let sf = swift.functions[f] else { throw ExprError("\(f) is not imported by Swift") }
            return "@convention(c) (\(sf.params.map { cleanSwiftType($0.type) }.joined(separator: ", "))) -> \(cleanSwiftType(sf.result))"
        }
        // A literal closure that forwards to the C function: Swift 6 forms a C function pointer from a
        // literal closure or an unqualified name, not from a module-qualified one (`COpenSSL.f`), and the
        // unqualified name would be this module's wrapper.
        func cFunctionValue(_ f: String) throws -> String {
            guard let sf = swift.functions[f] else { throw ExprError("\(f) is not imported by Swift") }
            return "{ COpenSSL.\(f)(\(sf.params.indices.map { "$\($0)" }.joined(separator: ", "))) }"
        }
        func target(_ callee: String, _ k: Int) throws -> String {
            guard let sf = swift.functions[callee] else { throw ExprError("\(callee) is not imported by Swift") }
            var t = cleanSwiftType(sf.params[k].type)
            if t.hasSuffix("?") { t = String(t.dropLast()) }
            if t.hasPrefix("("), t.hasSuffix(")") { t = String(t.dropFirst().dropLast()) }
            return t
        }
        let type = names[0]
        guard let h = spec.handle(forC: type) else { throw ExprError("no handle for \(type)") }
        var code: String, wParams: [WParam], resultType: String, cTypes: [String], view: [String]
        if kind == "ASN1_d2i_bio_of" {
            guard names.count == 5, params.count == 2, names[3] == params[0], names[4] == params[1] else { throw ExprError("unexpected ASN1_d2i_bio_of arguments") }
            let xnew = names[1], d2i = names[2]
            wParams = [WParam(name: safeName(params[0], index: 0), swiftType: "BIOPointer?", cType: "BIO *"),
                       WParam(name: safeName(params[1], index: 1), swiftType: "UnsafeMutablePointer<OpaquePointer?>?", cType: "\(type) **")]
            resultType = "\(h)?"
            code = """
                let __new: \(try cFunctionType(xnew)) = \(try cFunctionValue(xnew))
                let __d2i: \(try cFunctionType(d2i)) = \(try cFunctionValue(d2i))
                return \(h)(raw: COpenSSL.ASN1_d2i_bio(unsafeBitCast(__new, to: (\(try target("ASN1_d2i_bio", 0))).self), unsafeBitCast(__d2i, to: (\(try target("ASN1_d2i_bio", 1))).self), \(wParams[0].name)?.rawValue, UnsafeMutableRawPointer(\(wParams[1].name))?.assumingMemoryBound(to: UnsafeMutableRawPointer?.self)))
                """
            cTypes = ["BIO *", "\(type) **"]
            view = ["OpaquePointer?", "UnsafeMutablePointer<OpaquePointer?>?"]
        } else {
            guard names.count == 4, params.count == 2, names[2] == params[0], names[3] == params[1] else { throw ExprError("unexpected ASN1_i2d_bio_of arguments") }
            let i2d = names[1]
            wParams = [WParam(name: safeName(params[0], index: 0), swiftType: "BIOPointer?", cType: "BIO *"),
                       WParam(name: safeName(params[1], index: 1), swiftType: "\(h)?", cType: "const \(type) *")]
            resultType = "Int32"
            code = """
                let __i2d: \(try cFunctionType(i2d)) = \(try cFunctionValue(i2d))
                return COpenSSL.ASN1_i2d_bio(unsafeBitCast(__i2d, to: (\(try target("ASN1_i2d_bio", 0))).self), \(wParams[0].name)?.rawValue, \(wParams[1].name).map { UnsafeRawPointer($0.rawValue) })
                """
            cTypes = ["BIO *", "const \(type) *"]
            view = ["OpaquePointer?", "OpaquePointer?"]
        }
        let doc = ["`\(define)`", "",
                   "A typed ASN.1 BIO macro in `<openssl/\(header)>`, generated as the `\(kind == "ASN1_d2i_bio_of" ? "ASN1_d2i_bio" : "ASN1_i2d_bio")` " +
                   "call it makes, with \(names.dropFirst().prefix(kind == "ASN1_d2i_bio_of" ? 2 : 1).map { "`\($0)`" }.joined(separator: " and ")) as the C function pointers; see `man \(m.name)`."]
        let text = docLines(doc) + attrs +
            "public func \(m.name)(\(wParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", "))) -> \(resultType) {\n" +
            code.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") + "\n}\n"
        let check = "#ifndef \(m.name)\n#error \"\(m.name) is no longer a macro\"\n#endif\n" +
            "static void fli_check_\(m.name)(\(cTypes.enumerated().map { cDeclaration($0.element, "a\($0.offset)") }.joined(separator: ", "))) { (void)\(m.name)(a0, a1); }\n"
        var w = Wrapper(name: m.name, header: header, kind: .macro, params: wParams, result: resultType, code: text, deprecated: deprecated, check: check)
        w.importView = (view, "Void")
        w.macroCTypes = cTypes
        add(w)
        return true
    }
}
