import Foundation
import LispNames

/// Arbitrary bytes into the LispWorks-name resolver of the code generator (codegen/Sources/LispNames), over
/// the C names of every generated wrapper (read from docs/DirectCalls.md). The first byte picks what is
/// fuzzed: a name, a name with an explicit C name, or a `lisp` line of spec.txt. Each result is checked.
let cNames: [String] = {
    let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../docs/DirectCalls.md")
    guard let text = try? String(contentsOf: docs, encoding: .utf8) else { fatalError("cannot read \(docs.path)") }
    let names = text.split(separator: "\n").compactMap { line -> String? in
        guard line.hasPrefix("| `") else { return nil }
        return line.dropFirst(3).split(separator: "`").first.map(String.init)
    }
    guard names.count > 500 else { fatalError("only \(names.count) C names in \(docs.path)") }
    return names
}()
let resolver = LispNameResolver(cNames: cNames)
let known = Set(cNames)

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLispNames(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let mode = data[0] % 3
    let text = String(decoding: UnsafeBufferPointer(start: data + 1, count: size - 1), as: UTF8.self)
    switch mode {
    case 0:
        let normalized = LispNameResolver.normalize(text)
        if case .success(let n) = normalized {
            check(n.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }, "normalize gave \(n.debugDescription)")
            check(LispNameResolver.normalize(n) == .success(n), "normalize is not idempotent on \(n.debugDescription)")
        }
        switch resolver.resolve(text) {
        case .success(let c):
            check(known.contains(c), "resolved to an unknown name \(c)")
            check(.success(lispName(forC: c)) == normalized, "\(text.debugDescription) resolved to \(c)")
        case .failure(.ambiguous(_, let candidates)):
            check(candidates.count > 1 && candidates.allSatisfy { .success(lispName(forC: $0)) == normalized }, "bad ambiguity \(candidates)")
        case .failure(let problem):
            _ = problem.description
        }
    case 1:
        let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let explicit = parts.count > 1 ? parts[1] : nil
        switch resolver.resolve(parts[0], explicit: explicit) {
        case .success(let c):
            check(known.contains(c), "resolved to an unknown name \(c)")
            if let explicit { check(c == explicit, "explicit \(explicit) gave \(c)") }
            else { check(.success(lispName(forC: c)) == LispNameResolver.normalize(parts[0]), "\(parts[0].debugDescription) resolved to \(c)") }
        case .failure(let problem): _ = problem.description
        }
    default:
        if let entry = LispNameEntry.parse(text) {
            check(!entry.lisp.isEmpty && !entry.lisp.contains("|"), "parsed a bad name \(entry.lisp.debugDescription)")
            check(LispNameEntry.parse(entry.line) == entry, "\(entry.line.debugDescription) does not parse back to \(entry)")
            _ = resolver.resolve(entry.lisp, explicit: entry.explicit)
        }
    }
    return 0
}
