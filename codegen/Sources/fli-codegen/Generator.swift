import Foundation

/// Builds every wrapper from the spec, the AST, the macro table and the Swift interface.
struct Generator {
    let spec: Spec
    let ast: ClangAST
    var swift: SwiftInterface
    /// The OpenSSL version that introduced each function (its symbol version in libssl/libcrypto), when
    /// later than 3.0.0; absent: 3.0.0 or earlier.
    var since: [String: String] = [:]
    /// Functions the wrapped headers of OpenSSL 3.0 lack, as newer headers declare them.
    var fallbacks: [String: CFunction] = [:]
    let macros: MacroTable
    /// Macros that disappear with OPENSSL_NO_DEPRECATED: deprecated ones.
    let deprecatedMacros: Set<String>
    /// Header of each `#define`d name in the wholesale headers.
    let macroHeader: [String: String]
    /// `#define`d names of each header whose constants are re-exported.
    var constantHeaderNames: [String: [String]] = [:]

    var wrappers: [Wrapper] = []
    var byName: [String: Wrapper] = [:]
    var skipped: [(name: String, header: String, reason: String)] = []
    var unknownOpaque: [String: Set<String>] = [:]
    var missingReplacement: [String] = []
    /// Hand-written spec facts that contradict the headers: the generator fails with these.
    var specErrors: [String] = []
    /// Generated constants: name → (header, Swift type, literal, macro body).
    var constants: [(name: String, header: String, type: String, literal: String, body: String, cValue: String)] = []

    init(spec: Spec, ast: ClangAST, swift: SwiftInterface, macros: MacroTable,
         deprecatedMacros: Set<String>, macroHeader: [String: String]) {
        self.spec = spec; self.ast = ast; self.swift = swift; self.macros = macros
        self.deprecatedMacros = deprecatedMacros; self.macroHeader = macroHeader
    }

    func deprecationMessage(_ name: String, cMessage: String?) -> String? {
        if let r = spec.replacements[name] { return r }
        guard let m = cMessage else { return nil }
        return m.isEmpty ? "deprecated in OpenSSL 3.0" : "\(m)"
    }

    /// The module of the wrappers being made (OpenSSLCrypto while wrapping the crypto headers).
    var currentModule = "OpenSSLFLI"

    mutating func add(_ w: Wrapper) {
        guard byName[w.name] == nil else { return }
        var w = w
        w.module = currentModule
        wrappers.append(w); byName[w.name] = w
    }

    // MARK: functions

    mutating func wrapFunction(_ f: CFunction) {
        if let reason = spec.skip[f.name] { skipped.append((f.name, f.header, reason)); return }
        if f.variadic { skipped.append((f.name, f.header, "variadic: Swift cannot call C variadic functions")); return }
        guard let sf = swift.functions[f.name] else {
            skipped.append((f.name, f.header, "not imported by Swift")); return
        }
        guard sf.params.count == f.params.count else {
            skipped.append((f.name, f.header, "parameter count differs between clang and the Swift importer")); return
        }
        let outs = spec.outParams[f.name]
        let outBuffer = spec.outBuffers[f.name]
        if let outBuffer, !f.params.contains(where: { $0.name == outBuffer.param }) || !f.params.contains(where: { $0.name == outBuffer.lengthParam }) {
            specErrors.append("outbuf \(f.name): \(f.name) has no parameter \(outBuffer.param) or \(outBuffer.lengthParam)"); return
        }
        var callWrap: ((String) -> String)?
        var outBufferResult: (label: String, type: String, expr: String)?
        var params: [WParam] = []
        var args: [String] = []
        var prelude: [String] = []
        var outResults: [(label: String, type: String, expr: String)] = []
        var view: [String] = []
        for (i, p) in f.params.enumerated() {
            let name = safeName(p.name, index: i)
            let raw = cleanSwiftType(sf.params[i].type)
            if let outBuffer, outBuffer.param == p.name {
                // A buffer the C function fills: passed at its real size, returned cut to the length written.
                guard raw.hasPrefix("UnsafeMutablePointer<"), raw.hasSuffix(">?"),
                      ["UInt8", "Int8", "CChar"].contains(String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2))) else {
                    specErrors.append("outbuf \(f.name) \(p.name): the parameter is \(raw), not a byte buffer"); return
                }
                let element = String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2))
                guard let size = constantExpression(outBuffer.size, to: "Int") ?? Int(outBuffer.size).map(String.init) else {
                    specErrors.append("outbuf \(f.name): size \(outBuffer.size) is neither a constant Swift can see nor a number"); return
                }
                view.append("UnsafeMutablePointer<\(element)>?")
                prelude.append("var \(name) = [\(element)](repeating: 0, count: \(size))")
                args.append("__\(name).baseAddress")
                callWrap = { "\(name).withUnsafeMutableBufferPointer { __\(name) in \($0) }" }
                outBufferResult = (camelCase(p.name), "[\(element)]", name)
                continue
            }
            if let outBuffer, outBuffer.lengthParam == p.name {
                guard raw.hasPrefix("UnsafeMutablePointer<"), raw.hasSuffix(">?"),
                      isIntegerType(String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2))) else {
                    specErrors.append("outbuf \(f.name) \(p.name): the length parameter is \(raw), not a pointer to an integer"); return
                }
                view.append("UnsafeMutablePointer<\(String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2)))>?")
                prelude.append("var \(name) = \(String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2)))()")
                args.append("&\(name)")
                continue
            }
            if let outs, outs.params.contains(p.name) {
                guard raw.hasPrefix("UnsafeMutablePointer<"), raw.hasSuffix(">?") else {
                    specErrors.append("out \(f.name) \(p.name): an out-parameter must be a mutable pointer to one value, but Swift imports it as \(raw)"); return
                }
                let inner = String(raw.dropFirst("UnsafeMutablePointer<".count).dropLast(2))
                if ["unsigned char *", "char *", "signed char *"].contains(p.type.trimmingCharacters(in: .whitespaces)) {
                    // `unsigned char *` / `char *` is a buffer in OpenSSL's API, never one byte (a single
                    // byte is spelled `uint8_t *`, as in SSL_get0_dane_tlsa).
                    specErrors.append("out \(f.name) \(p.name): \(p.type) is a byte buffer, not one value: declare it with `outbuf \(f.name) \(p.name) SIZE LENGTH-PARAM`"); return
                }
                let innerC = String(p.type.trimmingCharacters(in: .whitespaces).dropLast()).trimmingCharacters(in: .whitespaces)
                if inner == "OpaquePointer?", let pt = pointee(innerC), let h = spec.handle(forC: pt) {
                    prelude.append("var \(name): OpaquePointer? = nil")
                    outResults.append((camelCase(p.name), "\(h)?", "\(h)(\(name))"))
                } else if inner.hasSuffix("?") {
                    prelude.append("var \(name): \(inner) = nil")
                    outResults.append((camelCase(p.name), inner, name))
                } else {
                    prelude.append("var \(name) = \(inner)()")
                    outResults.append((camelCase(p.name), inner, name))
                }
                view.append("UnsafeMutablePointer<\(importedType(outResults.last!.type))>?")
                args.append("&\(name)")
                continue
            }
            if raw == "OpaquePointer?" {
                guard let pt = pointee(p.type), let h = spec.handle(forC: pt) else {
                    unknownOpaque[pointee(p.type) ?? p.type, default: []].insert(f.name); return
                }
                // Optional, as in C: NULL goes through, and a result handle (always optional) chains
                // into the next call without unwrapping. A non-optional handle converts implicitly.
                params.append(WParam(name: name, swiftType: "\(h)?", cType: p.type))
                args.append("\(name)?.rawValue")
            } else if p.type == "const char *" && raw == "UnsafePointer<CChar>?" {
                params.append(WParam(name: name, swiftType: "String?", cType: p.type))
                args.append(name)
            } else {
                params.append(WParam(name: name, swiftType: raw, cType: p.type))
                args.append(name)
            }
            view.append(importedType(params.last!.swiftType))
        }
        if let outs, outs.params.count != outResults.count {
            specErrors.append("out \(f.name): spec names out-parameters \(outs.params), \(f.name) has \(f.params.map(\.name))"); return
        }
        // The result.
        let rawResult = cleanSwiftType(sf.result)
        var resultType = rawResult
        var convert: (String) -> String = { $0 }
        if rawResult == "OpaquePointer?" {
            guard let pt = pointee(f.returnType), let h = spec.handle(forC: pt) else {
                unknownOpaque[pointee(f.returnType) ?? f.returnType, default: []].insert(f.name); return
            }
            resultType = "\(h)?"
            convert = { "\(h)(\($0) as OpaquePointer?)" }
        } else if f.returnType == "const char *" && rawResult == "UnsafePointer<CChar>?" {
            resultType = "String?"
            convert = { "\($0).map { String(cString: $0) }" }
        }
        let convertedResultType = resultType
        var call = "COpenSSL.\(f.name)(\(args.joined(separator: ", ")))"
        if let callWrap { call = callWrap(call) }
        var body: [String] = prelude
        if let buffer = outBufferResult, let outBuffer {
            // The elements written: the length the call reports, never more than the buffer holds.
            let lengthName = safeName(outBuffer.lengthParam, index: 0)
            let cut = "\(buffer.expr).removeLast(\(buffer.expr).count - min(Int(\(lengthName)), \(buffer.expr).count))"
            if rawResult == "Void" {
                body.append(call); body.append(cut); body.append("return \(buffer.expr)")
                resultType = buffer.type
            } else {
                body.append("let __result = \(convert(call))")
                body.append(cut)
                body.append("return (\(outBuffer.resultLabel): __result, \(buffer.label): \(buffer.expr))")
                resultType = "(\(outBuffer.resultLabel): \(resultType), \(buffer.label): \(buffer.type))"
            }
        } else if outResults.isEmpty {
            body.append((rawResult == "Void" ? "" : "return ") + convert(call))
        } else {
            var elements = outResults.map { "\($0.label): \($0.expr)" }
            var types = outResults.map { "\($0.label): \($0.type)" }
            if rawResult != "Void" {
                body.append("let __result = \(convert(call))")
                elements.insert("\(outs!.resultLabel): __result", at: 0)
                types.insert("\(outs!.resultLabel): \(resultType)", at: 0)
            } else {
                body.append(call)
            }
            if elements.count == 1 {
                body.append("return \(outResults[0].expr)")
                resultType = outResults[0].type
            } else {
                body.append("return (\(elements.joined(separator: ", ")))")
                resultType = "(\(types.joined(separator: ", ")))"
            }
        }
        var doc = ["`\(cPrototype(f))`", "",
                   "Direct call to the C function of this name, declared in `<openssl/\(f.header)>`; see `man \(f.name)`."]
        if let v = since[f.name] {
            doc.append("Since OpenSSL \(v). Built against older headers it does nothing, returns 0 (NULL) and queues " +
                       "an ERR_R_UNSUPPORTED error naming \(v); `directCall(named:)` tells whether the running library has it.")
        } else {
            doc.append("Since OpenSSL 3.0 or earlier.")
        }
        if let outBuffer, let buffer = outBufferResult {
            doc.append("`\(outBuffer.param)` is a buffer of `\(outBuffer.size)` elements; `\(buffer.label)` in the result holds the `\(outBuffer.lengthParam)` elements the call wrote.")
        }
        if !outResults.isEmpty {
            doc.append("The out-parameter\(outResults.count > 1 ? "s" : "") \(outResults.map { "`\($0.label)`" }.joined(separator: ", ")) \(outResults.count > 1 ? "are" : "is") returned in the result.")
        }
        var attrs = "@inlinable\n"
        let dep = deprecationMessage(f.name, cMessage: f.deprecated)
        if f.deprecated != nil, spec.replacements[f.name] == nil { missingReplacement.append(f.name) }
        if let dep { attrs += "@available(*, deprecated, message: \"\(dep)\")\n" }
        let resultDecl = resultType == "Void" ? "" : " -> \(resultType)"
        let bodyText = body.map { "    " + $0 }.joined(separator: "\n") + "\n}\n"
        var code = docLines(doc) + attrs + (params.contains { $0.swiftType == "String?" } ? "@_disfavoredOverload\n" : "") +
            "public func \(f.name)(\(params.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(resultDecl) {\n" + bodyText
        // The pointer form: the same call with each `const char *` taken as the pointer C takes.
        let pointerParams = params.map { $0.swiftType == "String?" ? WParam(name: $0.name, swiftType: "UnsafePointer<CChar>?", cType: $0.cType) : $0 }
        let hasPointerForm = params.contains { $0.swiftType == "String?" }
        if hasPointerForm {
            code += "\n" + docLines(["`\(cPrototype(f))`", "", pointerFormDoc(f.name)]) + attrs +
                "public func \(f.name)(\(pointerParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(resultDecl) {\n" + bodyText
        }
        // clang prints a va_list parameter as its decayed `struct __va_list_tag *`; spelled va_list, it adjusts alike.
        let exact = "__builtin_types_compatible_p(__typeof__(\(f.name)), \(f.type.replacingOccurrences(of: "struct __va_list_tag *", with: "va_list")))"
        // A later release may make opaque pointer parameters const (OpenSSL 3.5's X509_REQ_get0_pubkey):
        // Swift imports both as OpaquePointer, so the wrapper is the same; the check accepts each such
        // combination (up to three such parameters).
        let cParams = f.params.map { $0.type.trimmingCharacters(in: .whitespaces) }
        let handleIndices = cParams.indices.filter { i in
            let t = cParams[i]
            guard !t.hasPrefix("const "), t.hasSuffix(" *"), let pt = pointee(t), !pt.contains("*") else { return false }
            return spec.handle(forC: pt) != nil
        }
        var alternatives: [String] = []
        if !handleIndices.isEmpty, handleIndices.count <= 3, !f.variadic, !f.type.contains("__va_list_tag"), !f.returnType.contains("("),
           !cParams.contains(where: { $0.contains("(") || $0.contains("[") }) {
            for mask in 1..<(1 << handleIndices.count) {
                var ps = cParams
                for (bit, i) in handleIndices.enumerated() where mask & (1 << bit) != 0 { ps[i] = "const " + ps[i] }
                alternatives.append(" || __builtin_types_compatible_p(__typeof__(\(f.name)), \(f.returnType) (\(ps.joined(separator: ", "))))")
            }
        }
        let check = "_Static_assert(" + exact + alternatives.joined() + ", \"\(f.name)\");\n"
        var w = Wrapper(name: f.name, header: f.header, kind: .function, params: params, result: resultType,
                        code: code, deprecated: dep != nil, check: check)
        // The C result as the wrapper sees it: the first tuple element when out-parameters are returned.
        w.importView = (view, importedType(convertedResultType))
        if hasPointerForm { w.pointerFormType = "(" + pointerParams.map(\.swiftType).joined(separator: ", ") + ") -> " + resultType }
        add(w)
    }

    /// The doc line of a wrapper's pointer form.
    func pointerFormDoc(_ name: String) -> String {
        "The pointer form of `\(name)`: each `const char *` is the `UnsafePointer<CChar>?` C takes, so nothing " +
        "is bridged or allocated. A string literal or `nil` picks this form (a literal is passed as its static, " +
        "NUL-terminated storage); a `String` value picks the `String` form, which bridges it for the call."
    }

    // MARK: function-like macros

    /// Conversion of a macro parameter of Swift type `from` to a callee parameter of type `to`.
    func convertArgument(_ name: String, from: String, to: String) -> (expr: String, wrap: ((String) -> String)?)? {
        if from == to { return (name, nil) }
        if to == "UnsafeMutableRawPointer?" {
            if from == "String" {
                return ("UnsafeMutableRawPointer(mutating: __\(name))", { "\(name).withCString { __\(name) in \($0) }" })
            }
            if isHandle(from) {
                return ("\(name).map { UnsafeMutableRawPointer($0.rawValue) }", nil)
            }
            if isHandle(from + "?") || from.hasSuffix("Pointer") && isHandle(from) {
                return ("UnsafeMutableRawPointer(\(name).rawValue)", nil)
            }
            if from.hasPrefix("UnsafePointer<") || from.hasPrefix("UnsafeRawPointer") {
                return ("UnsafeMutableRawPointer(mutating: \(name))", nil)
            }
            if from.hasPrefix("UnsafeMutablePointer<") || from.hasPrefix("UnsafeMutableRawPointer") {
                return (name, nil)
            }
        }
        if to.contains("@convention(c) () -> Void") && from.contains("@convention(c)") {
            return ("unsafeBitCast(\(name), to: \(to).self)", nil)
        }
        if isIntegerType(to) && isIntegerType(from) { return ("\(to)(\(name))", nil) }
        return nil
    }

    /// The Swift type the importer gives the C type that a wrapper's Swift type stands for.
    func importedType(_ t: String) -> String {
        if isHandle(t) { return "OpaquePointer?" }
        if t == "String" || t == "String?" { return "UnsafePointer<CChar>?" }
        return t
    }

    func isHandle(_ t: String) -> Bool {
        let base = t.hasSuffix("?") ? String(t.dropLast()) : t
        return spec.handles.contains { $0.swiftName == base } || spec.stacks.contains { $0.swiftName == base }
    }

    func constantExpression(_ c: String, to: String) -> String? {
        if let t = swift.constants[c] {
            let type = cleanSwiftType(t)
            return type == to ? "COpenSSL.\(c)" : (isIntegerType(to) && isIntegerType(type) ? "\(to)(COpenSSL.\(c))" : nil)
        }
        if let k = constants.first(where: { $0.name == c }) {
            return k.type == to ? c : (isIntegerType(to) ? "\(to)(\(c))" : nil)
        }
        return nil
    }

    mutating func wrapMacro(_ m: MacroTable.Macro, header: String) {
        if let reason = spec.skip[m.name] { skipped.append((m.name, header, reason)); return }
        let params = m.params ?? []
        let dep = deprecatedMacros.contains(m.name) ? (spec.replacements[m.name] ?? "deprecated in OpenSSL 3.0") : nil
        if deprecatedMacros.contains(m.name), spec.replacements[m.name] == nil { missingReplacement.append(m.name) }
        let define = "#define \(m.name)\(m.params.map { "(" + $0.joined(separator: ", ") + ")" } ?? "") \(m.body)"
        var attrs = "@inlinable\n"
        if let dep { attrs += "@available(*, deprecated, message: \"\(dep)\")\n" }

        // Constant stubs (macros OpenSSL 3 keeps only for source compatibility).
        if let stub = spec.stubs[m.name] {
            let ps = stub.params.map { WParam(name: $0.name, swiftType: $0.type, cType: "") }
            let isVoid = m.body.hasPrefix("while")
            let value = m.body.trimmingCharacters(in: .whitespaces)
            let result = isVoid ? "Void" : "Int32"
            let doc = ["`\(define)`", "",
                       "A macro in `<openssl/\(header)>` that OpenSSL 3 keeps only as a stub: it does nothing" +
                       (isVoid ? "." : " and evaluates to \(value).") + " Generated as the header defines it."]
            let code = docLines(doc) + attrs +
                "public func \(m.name)(\(ps.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(isVoid ? "" : " -> Int32") {\n" +
                (isVoid ? "" : "    \(value)\n") + "}\n"
            var check = "#ifndef \(m.name)\n#error \"\(m.name) is no longer a macro\"\n#endif\n"
            if !isVoid {
                check += "_Static_assert(\(m.name)(\(ps.map { _ in "0" }.joined(separator: ", "))) == \(value), \"\(m.name)\");\n"
            }
            add(Wrapper(name: m.name, header: header, kind: .stub, params: ps, result: result, code: code, deprecated: dep != nil, check: check))
            return
        }

        // The typed ASN.1 BIO macros (d2i_SSL_SESSION_bio …).
        do {
            if try wrapASN1BIOMacro(m, header: header, define: define, attrs: attrs, deprecated: dep != nil) { return }
        } catch let e as ExprError {
            skipped.append((m.name, header, e.reason)); return
        } catch { skipped.append((m.name, header, "\(error)")); return }

        // The macro must expand to one call of a wrapped function, or else to an expression over calls.
        var tokens = macros.expand(m.tokens)
        while tokens.first == .punct("("), let (_, end) = MacroTable.collectArgs(tokens, from: 0), end == tokens.count - 1 {
            tokens = Array(tokens[1..<end])
        }
        let expression = tokens
        func expressionOr(_ reason: String) {
            guard m.params != nil else { skipped.append((m.name, header, reason)); return }
            do {
                try wrapExpressionMacro(m, header: header, tokens: expression, define: define, attrs: attrs, deprecated: dep != nil)
            } catch let e as ExprError {
                skipped.append((m.name, header, "\(reason); as an expression: \(e.reason)"))
            } catch { skipped.append((m.name, header, "\(reason); \(error)")) }
        }
        // An object-like alias: `#define A B` where B is a wrapped function.
        if m.params == nil {
            guard tokens.count == 1, case .ident(let target) = tokens[0], let t = byName[target] else { return }
            let hasPointerForm = t.pointerFormType != nil
            let forward = " {\n    OpenSSLFLI.\(target)(\(t.params.map(\.name).joined(separator: ", ")))\n}\n"
            var code = docLines(["`\(define)`", "", "An alias macro in `<openssl/\(header)>`: calls `\(target)`."]) + attrs +
                (hasPointerForm ? "@_disfavoredOverload\n" : "") + "public func \(m.name)\(t.signature)" + forward
            let pointerParams = t.params.map { $0.swiftType == "String?" ? WParam(name: $0.name, swiftType: "UnsafePointer<CChar>?", cType: $0.cType) : $0 }
            if hasPointerForm {
                code += "\n" + docLines(["`\(define)`", "", pointerFormDoc(m.name)]) + attrs + "public func \(m.name)(" +
                    pointerParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ") + ")" + (t.result == "Void" ? "" : " -> \(t.result)") + forward
            }
            let check = "#ifndef \(m.name)\n#error \"\(m.name) is no longer a macro\"\n#endif\n"
            var w = Wrapper(name: m.name, header: header, kind: .alias, params: t.params, result: t.result, code: code, deprecated: dep != nil, check: check)
            w.pointerFormType = t.pointerFormType
            add(w)
            return
        }
        // `(CALL) > 0` and the like: the call's result compared with a number gives a Bool.
        var comparison: String?
        var comparedConstant: (op: String, name: String)?
        if tokens.count > 2, case .punct(let op) = tokens[tokens.count - 2], [">", "<", "==", "!=", ">=", "<="].contains(op),
           case .ident(let c) = tokens[tokens.count - 1], macros.macros[c]?.params == nil {
            // `(SSL_want(s) == SSL_READING)`: compared with a constant, typed once the callee is known.
            comparedConstant = (op, c)
            tokens = Array(tokens.dropLast(2))
            while tokens.first == .punct("("), let (_, end) = MacroTable.collectArgs(tokens, from: 0), end == tokens.count - 1 {
                tokens = Array(tokens[1..<end])
            }
        }
        if tokens.count > 2, case .number(let n) = tokens[tokens.count - 1],
           case .punct(let op) = tokens[tokens.count - 2], [">", "<", "==", "!=", ">=", "<="].contains(op) {
            comparison = "\(op) \(n)"
            tokens = Array(tokens.dropLast(2))
            while tokens.first == .punct("("), let (_, end) = MacroTable.collectArgs(tokens, from: 0), end == tokens.count - 1 {
                tokens = Array(tokens[1..<end])
            }
        }
        guard case .ident(let callee)? = tokens.first, tokens.count >= 3, tokens[1] == .punct("("),
              let (callArgs, end) = MacroTable.collectArgs(tokens, from: 1), end == tokens.count - 1 else {
            expressionOr("expands to an expression, not a single call (`\(m.body.prefix(60))`)"); return
        }
        guard let target = byName[callee], let cTarget = ast.functions[callee] else {
            expressionOr("expands to a call of \(callee), which is not wrapped"); return
        }
        if let cc = comparedConstant {
            guard let e = constantExpression(cc.name, to: target.result) else {
                skipped.append((m.name, header, "constant \(cc.name) is not available to Swift as \(target.result)")); return
            }
            comparison = "\(cc.op) \(e)"
        }
        guard callArgs.count == target.params.count else {
            expressionOr("passes \(callArgs.count) arguments to \(callee)"); return
        }
        let overrides = spec.macroArgs[m.name] ?? [:]
        var paramTypes: [String: (swift: String, c: String)] = [:]
        var exprs: [String] = []
        var wraps: [(String) -> String] = []
        var prelude: [String] = []
        var outs: [(label: String, type: String, expr: String)] = []
        /// The pointer form's argument where it differs (a `String` passed as the pointer it is).
        var pointerExprs: [Int: String] = [:]
        for (k, argTokens) in callArgs.enumerated() {
            let to = target.params[k].swiftType
            switch classifyArgument(argTokens, params: params) {
            case .param(let p):
                if let o = overrides[p], o.isOut {
                    let h = o.swiftType
                    if isHandle(h) {
                        prelude.append("var __\(p): OpaquePointer? = nil")
                        outs.append((camelCase(p), "\(h)?", "\(h)(__\(p))"))
                    } else {
                        prelude.append("var __\(p) = \(o.swiftType)()")
                        outs.append((camelCase(p), o.swiftType, "__\(p)"))
                    }
                    exprs.append("&__\(p)")
                    paramTypes[p] = ("", o.cType)
                    continue
                }
                // The first handle argument of the call is the object the macro works on: non-optional.
                let from = overrides[p]?.swiftType ?? to
                let cType = overrides[p]?.cType ?? cTarget.params[k].type
                if let existing = paramTypes[p], existing.swift != from {
                    skipped.append((m.name, header, "parameter \(p) is used with two types")); return
                }
                paramTypes[p] = (from, cType)
                let name = safeName(p, index: k)
                var conv: (expr: String, wrap: ((String) -> String)?)?
                if k == 0 && from + "?" == to { conv = (name, nil) } else { conv = convertArgument(name, from: from, to: to) }
                guard let conv else {
                    skipped.append((m.name, header, "no conversion from \(from) to \(callee)'s \(to)")); return
                }
                exprs.append(conv.expr)
                if let w = conv.wrap { wraps.append(w) }
                if from == "String" && to == "UnsafeMutableRawPointer?" {
                    pointerExprs[exprs.count - 1] = "UnsafeMutableRawPointer(mutating: \(name))"
                }
            case .constant(let c):
                guard let e = constantExpression(c, to: to) else {
                    skipped.append((m.name, header, "constant \(c) is not available to Swift as \(to)")); return
                }
                exprs.append(e)
            case .number(let n):
                exprs.append(isIntegerType(to) ? n.trimmingCharacters(in: CharacterSet(charactersIn: "uUlL")) : "\(to)(\(n))")
            case .null:
                // Typed, so that a call with only literals is not ambiguous with the C import.
                exprs.append(isHandle(to) ? "nil as \(to)" : "nil")
            case .complex(let text):
                // `A | B | …` of constants.
                let parts = text.components(separatedBy: " | ")
                let converted = parts.map { constantExpression($0, to: to) }
                if parts.count > 1, converted.allSatisfy({ $0 != nil }) {
                    exprs.append(converted.map { $0! }.joined(separator: " | "))
                    continue
                }
                expressionOr("argument `\(text)` of \(callee) is not a parameter or a constant"); return
            }
        }
        let unused = params.filter { paramTypes[$0] == nil }
        if !unused.isEmpty { skipped.append((m.name, header, "parameters \(unused) are not passed to \(callee)")); return }
        let wParams = params.enumerated().compactMap { (i, p) -> WParam? in
            guard let t = paramTypes[p], !t.swift.isEmpty else { return nil }
            return WParam(name: safeName(p, index: i), swiftType: t.swift, cType: t.c)
        }
        let hasPointerForm = wParams.contains { $0.swiftType == "String" || $0.swiftType == "String?" }
        func bodyLines(pointerForm: Bool) -> (lines: [String], resultType: String) {
            let args = exprs.enumerated().map { pointerForm ? (pointerExprs[$0.offset] ?? $0.element) : $0.element }
            var call = "OpenSSLFLI.\(callee)(\(args.joined(separator: ", ")))"
            if !pointerForm { for w in wraps.reversed() { call = w(call) } }
            var resultType = target.result
            if let comparison {
                call = "(\(call) \(comparison))"
                resultType = "Bool"
            }
            var body = prelude
            if outs.isEmpty {
                body.append((resultType == "Void" ? "" : "return ") + call)
            } else {
                body.append("let __result = \(call)")
                body.append("return (result: __result, \(outs.map { "\($0.label): \($0.expr)" }.joined(separator: ", ")))")
                resultType = "(result: \(resultType), \(outs.map { "\($0.label): \($0.type)" }.joined(separator: ", ")))"
            }
            return (body, resultType)
        }
        let (body, resultType) = bodyLines(pointerForm: false)
        let doc = ["`\(define)`", "",
                   "A function-like macro in `<openssl/\(header)>`, generated as a function that makes the same " +
                   "`\(callee)` call; see `man \(m.name)`." + (outs.isEmpty ? "" : " Out-parameters are returned in the result.")]
        var code = docLines(doc) + attrs + (hasPointerForm ? "@_disfavoredOverload\n" : "") +
            "public func \(m.name)(\(wParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(resultType == "Void" ? "" : " -> \(resultType)") {\n" +
            body.map { "    " + $0 }.joined(separator: "\n") + "\n}\n"
        let pointerParams = wParams.map { $0.swiftType == "String" || $0.swiftType == "String?" ? WParam(name: $0.name, swiftType: "UnsafePointer<CChar>?", cType: $0.cType) : $0 }
        if hasPointerForm {
            code += "\n" + docLines(["`\(define)`", "", pointerFormDoc(m.name)]) + attrs +
                "public func \(m.name)(\(pointerParams.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(resultType == "Void" ? "" : " -> \(resultType)") {\n" +
                bodyLines(pointerForm: true).lines.map { "    " + $0 }.joined(separator: "\n") + "\n}\n"
        }
        // The header check: the macro exists and accepts arguments of the C types the wrapper stands for.
        let cParams = params.enumerated().map { (i, p) in cDeclaration(paramTypes[p]!.c, "a\(i)") }
        let macroView = params.map { p -> String in
            if let o = overrides[p], o.isOut {
                return isHandle(o.swiftType) ? "UnsafeMutablePointer<OpaquePointer?>?" : "UnsafeMutablePointer<\(o.swiftType)>?"
            }
            return importedType(paramTypes[p]!.swift)
        }
        let check = "#ifndef \(m.name)\n#error \"\(m.name) is no longer a macro\"\n#endif\n" +
            "static void fli_check_\(m.name)(\(cParams.isEmpty ? "void" : cParams.joined(separator: ", "))) { (void)\(m.name)(\(params.indices.map { "a\($0)" }.joined(separator: ", "))); }\n"
        var w = Wrapper(name: m.name, header: header, kind: .macro, params: wParams, result: resultType, code: code, deprecated: dep != nil, check: check)
        w.importView = (macroView, "Void")
        w.macroCTypes = params.map { paramTypes[$0]!.c }
        if hasPointerForm { w.pointerFormType = "(" + pointerParams.map(\.swiftType).joined(separator: ", ") + ") -> " + resultType }
        add(w)
    }

    // MARK: stacks

    mutating func wrapStacks() {
        for s in spec.stacks {
            let e = s.element, h = s.swiftName
            let elem = s.elementHandle
            var ops: [(String, [WParam], String, String)] = [
                ("num", [WParam(name: "sk", swiftType: "\(h)?", cType: "")], "Int32", "COpenSSL.OPENSSL_sk_num(sk?.rawValue)"),
                ("new_null", [], "\(h)?", "\(h)(COpenSSL.OPENSSL_sk_new_null() as OpaquePointer?)"),
                ("free", [WParam(name: "sk", swiftType: "\(h)?", cType: "")], "Void", "COpenSSL.OPENSSL_sk_free(sk?.rawValue)"),
            ]
            if let elem {
                ops += [
                    ("value", [WParam(name: "sk", swiftType: "\(h)?", cType: ""), WParam(name: "idx", swiftType: "Int32", cType: "")],
                     "\(elem)?", "\(elem)(raw: COpenSSL.OPENSSL_sk_value(sk?.rawValue, idx))"),
                    ("push", [WParam(name: "sk", swiftType: "\(h)?", cType: ""), WParam(name: "ptr", swiftType: "\(elem)?", cType: "")],
                     "Int32", "COpenSSL.OPENSSL_sk_push(sk?.rawValue, ptr.map { UnsafeRawPointer($0.rawValue) })"),
                    ("pop", [WParam(name: "sk", swiftType: "\(h)?", cType: "")], "\(elem)?", "\(elem)(raw: COpenSSL.OPENSSL_sk_pop(sk?.rawValue))"),
                    ("shift", [WParam(name: "sk", swiftType: "\(h)?", cType: "")], "\(elem)?", "\(elem)(raw: COpenSSL.OPENSSL_sk_shift(sk?.rawValue))"),
                ]
            }
            for (op, params, result, expr) in ops {
                let name = "sk_\(e)_\(op)"
                guard let m = macros.macros[name] else { continue }
                let define = "#define \(name)(\((m.params ?? []).joined(separator: ", "))) \(m.body)"
                let doc = ["`\(define)`", "",
                           "The typed stack macro of `STACK_OF(\(e))`, generated as a function over `OPENSSL_sk_\(op)`; see `man DEFINE_STACK_OF`."]
                let code = docLines(doc) + "@inlinable\n" +
                    "public func \(name)(\(params.map { "_ \($0.name): \($0.swiftType)" }.joined(separator: ", ")))\(result == "Void" ? "" : " -> \(result)") {\n    \(expr)\n}\n"
                let check = "#ifndef \(name)\n#error \"\(name) is no longer a macro\"\n#endif\n"
                add(Wrapper(name: name, header: "stack", kind: .stack, params: params, result: result, code: code, deprecated: false, check: check))
            }
        }
    }
}
