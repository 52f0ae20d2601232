import Foundation
import LispNames

/// What `codegen/spec.txt` says: which headers to wrap wholesale, which single functions to add, how C
/// types map to handle types, which parameters are out-parameters, and the LispWorks names to resolve.
struct Spec {
    /// A handle type: Swift name and the C names (typedef names and struct tags) it stands for.
    struct Handle { var swiftName: String; var cNames: [String]; var doc: String }
    /// A stack handle: `STACK_OF(element)`; typed `sk_<element>_*` wrappers are made for it.
    struct Stack { var swiftName: String; var element: String; var elementHandle: String? }
    /// An out-parameter of a function, and the label of the C return value in the result tuple.
    struct OutParams { var params: [String]; var resultLabel: String }
    /// A buffer out-parameter: the C function writes up to `size` elements to `param` and their count to
    /// `lengthParam`; the wrapper passes a buffer of that size and returns the elements written.
    struct OutBuffer { var param: String; var size: String; var lengthParam: String; var resultLabel: String }
    /// A typed argument of a function-like macro: its Swift type and the C type it stands for.
    struct MacroArg { var swiftType: String; var cType: String; var isOut: Bool }
    /// A macro whose body is a constant: the Swift parameters it gets and why it is deprecated.
    struct Stub { var params: [(name: String, type: String)] }

    var headers: [String] = []
    /// Headers whose importable constants are re-exported (clients need not import COpenSSL).
    var constantHeaders: [String] = []
    /// Headers whose function coverage the generator prints (libcrypto's, for issue 17's target).
    var coverageHeaders: [String] = []
    /// libcrypto headers whose non-deprecated functions are wrapped wholesale into OpenSSLCrypto.
    var cryptoHeaders: [String] = []
    var functions: [(name: String, header: String)] = []
    var handles: [Handle] = []
    var stacks: [Stack] = []
    var outParams: [String: OutParams] = [:]
    var outBuffers: [String: OutBuffer] = [:]
    var macroArgs: [String: [String: MacroArg]] = [:]
    var stubs: [String: Stub] = [:]
    /// consttype PREFIX SwiftType [FUNCTION ARG]: the constants are passed as argument ARG (from 1) of FUNCTION.
    var constTypes: [(prefix: String, type: String, use: (function: String, index: Int)?)] = []
    var replacements: [String: String] = [:]
    var lispNames: [LispNameEntry] = []
    var skip: [String: String] = [:]
    /// params FUNCTION NAME…: the parameter names to generate, whatever the installed header says (for
    /// functions whose names changed between 3.x patch releases, so that Generated/ is the same on each).
    var paramNames: [String: [String]] = [:]

    static func load(_ path: String) throws -> Spec {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var spec = Spec()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = String(rawLine)
            if let hash = line.range(of: " #") { line = String(line[..<hash.lowerBound]) }
            line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fail = { (why: String) in GeneratorError("\(path):\(lineNumber): \(why): \(line)") }
            let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            let rest = { (n: Int) -> String in words.dropFirst(n).joined(separator: " ") }
            switch words[0] {
            case "header":
                guard words.count == 2 else { throw fail("expected: header NAME.h") }
                spec.headers.append(words[1])
            case "crypto":
                spec.cryptoHeaders += words.dropFirst()
            case "coverage":
                spec.coverageHeaders += words.dropFirst()
            case "constants":
                guard words.count >= 2 else { throw fail("expected: constants HEADER.h…") }
                spec.constantHeaders += words.dropFirst()
            case "function":
                guard words.count >= 3 else { throw fail("expected: function HEADER.h NAME…") }
                for name in words.dropFirst(2) { spec.functions.append((name, words[1])) }
            case "handle":
                // handle SwiftName CName [CName…] | doc
                let parts = line.components(separatedBy: "|")
                let w = parts[0].split(separator: " ").map(String.init)
                guard w.count >= 3 else { throw fail("expected: handle Swift CName… | doc") }
                spec.handles.append(Handle(swiftName: w[1], cNames: Array(w.dropFirst(2)),
                                           doc: parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""))
            case "stack":
                // stack SwiftName ELEMENT [ElementHandle]
                guard words.count == 3 || words.count == 4 else { throw fail("expected: stack Swift ELEMENT [Handle]") }
                spec.stacks.append(Stack(swiftName: words[1], element: words[2], elementHandle: words.count == 4 ? words[3] : nil))
            case "out":
                // out FUNCTION param[,param] [-> resultLabel]
                guard words.count >= 3 else { throw fail("expected: out FUNCTION params [-> label]") }
                var label = "result"
                if let arrow = words.firstIndex(of: "->"), arrow + 1 < words.count { label = words[arrow + 1] }
                spec.outParams[words[1]] = OutParams(params: words[2].split(separator: ",").map(String.init), resultLabel: label)
            case "outbuf":
                // outbuf FUNCTION param SIZE lengthParam [-> resultLabel]
                guard words.count >= 5 else { throw fail("expected: outbuf FUNCTION param SIZE lengthParam [-> label]") }
                var label = "result"
                if let arrow = words.firstIndex(of: "->"), arrow + 1 < words.count { label = words[arrow + 1] }
                spec.outBuffers[words[1]] = OutBuffer(param: words[2], size: words[3], lengthParam: words[4], resultLabel: label)
            case "marg":
                // marg MACRO PARAM [out] SwiftType | C type
                let parts = line.components(separatedBy: "|")
                guard parts.count == 2 else { throw fail("expected: marg MACRO PARAM [out] SwiftType | CType") }
                var w = parts[0].split(separator: " ").map(String.init)
                guard w.count >= 4 else { throw fail("expected: marg MACRO PARAM [out] SwiftType | CType") }
                let isOut = w[3] == "out"
                if isOut { w.remove(at: 3) }
                spec.macroArgs[w[1], default: [:]][w[2]] = MacroArg(
                    swiftType: w.dropFirst(3).joined(separator: " "),
                    cType: parts[1].trimmingCharacters(in: .whitespaces), isOut: isOut)
            case "stub":
                // stub MACRO name:Type name:Type
                guard words.count >= 2 else { throw fail("expected: stub MACRO name:Type…") }
                let params = try words.dropFirst(2).map { p -> (String, String) in
                    let kv = p.split(separator: ":", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { throw fail("bad stub parameter \(p)") }
                    return (kv[0], kv[1])
                }
                spec.stubs[words[1]] = Stub(params: params)
            case "consttype":
                guard words.count == 3 || words.count == 5 else { throw fail("expected: consttype PREFIX SwiftType [FUNCTION ARG-INDEX]") }
                var use: (String, Int)?
                if words.count == 5 { guard let n = Int(words[4]) else { throw fail("argument index is not a number") }; use = (words[3], n) }
                spec.constTypes.append((words[1], words[2], use))
            case "replaced":
                // replaced NAME message…
                guard words.count >= 3 else { throw fail("expected: replaced NAME message") }
                spec.replacements[words[1]] = rest(2)
            case "skip":
                guard words.count >= 3 else { throw fail("expected: skip NAME reason") }
                spec.skip[words[1]] = rest(2)
            case "params":
                guard words.count >= 3 else { throw fail("expected: params FUNCTION NAME…") }
                spec.paramNames[words[1]] = Array(words.dropFirst(2))
            case "lisp":
                // lisp lisp-name [= C_NAME] [| note]
                guard let entry = LispNameEntry.parse(line) else { throw fail("expected: lisp NAME [= C_NAME] [| note]") }
                spec.lispNames.append(entry)
            default:
                throw fail("unknown directive \(words[0])")
            }
        }
        return spec
    }

    /// The handle type for a C type name (typedef or struct tag), if any.
    func handle(forC name: String) -> String? {
        for h in handles where h.cNames.contains(name) { return h.swiftName }
        for s in stacks where "stack_st_" + s.element == name { return s.swiftName }
        return nil
    }
}
