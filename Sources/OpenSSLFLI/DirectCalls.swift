import COpenSSL
import Foundation

/// One generated direct call, as data: the seeds' "which functions are provided" table.
public struct DirectCallInfo: Sendable, Hashable {
    public enum Kind: String, Sendable { case function, macro, stub, stack, alias }
    /// The C name, which is also the Swift name of the wrapper.
    public var name: String
    /// The LispWorks-style name (`ssl-ctx-use-rsaprivatekey-file`).
    public var lispName: String
    public var kind: Kind
    /// The C prototype, or the `#define` of a macro.
    public var prototype: String
    /// The OpenSSL version that introduced the function; nil for 3.0 or earlier.
    public var since: String?

    /// Whether the running libssl/libcrypto exports the function (a macro is always there: it is
    /// compiled into the wrapper).
    ///
    /// - Corresponds: `dlsym` on the process's global symbol scope.
    public var libraryHasIt: Bool {
        guard kind == .function else { return true }
        guard let handle = dlopen(nil, RTLD_NOW) else { return false }
        return dlsym(handle, name) != nil
    }

    /// Whether the wrapper calls the library's function: the headers the package was built with have it
    /// (otherwise the wrapper is the stand-in that refuses, naming ``since``).
    public var isCallable: Bool {
        guard let since else { return true }
        let headers = UInt(OPENSSL_VERSION_MAJOR) << 28 | UInt(OPENSSL_VERSION_MINOR) << 20 | UInt(OPENSSL_VERSION_PATCH) << 4
        return versionNumber(since) <= headers
    }
}

/// `3.2.0` → 0x30200000, OPENSSL_VERSION_NUMBER's layout.
func versionNumber(_ v: String) -> UInt {
    let p = v.split(separator: ".").compactMap { UInt($0) } + [0, 0, 0]
    return p[0] << 28 | p[1] << 20 | p[2] << 4
}

/// Every generated wrapper, from the generator's table (Generated/CallTable.swift).
public let directCalls: [DirectCallInfo] = directCallTable.split(separator: "\n").compactMap { line in
    let f = line.split(separator: "\t", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
    guard f.count == 5, let kind = DirectCallInfo.Kind(rawValue: f[2]) else { return nil }
    return DirectCallInfo(name: f[0], lispName: f[1], kind: kind, prototype: f[4], since: f[3].isEmpty ? nil : f[3])
}

private let directCallIndex: [String: DirectCallInfo] = {
    var index: [String: DirectCallInfo] = [:]
    for c in directCalls { index[c.name] = c }
    for c in directCalls where index[c.lispName] == nil { index[c.lispName] = c }
    return index
}()

/// The generated wrapper of that C name (`SSL_CTX_set_options`) or LispWorks name
/// (`ssl-ctx-set-options`, any case), or nil.
public func directCall(named name: String) -> DirectCallInfo? {
    directCallIndex[name] ?? directCallIndex[name.lowercased()]
}

/// The wrappers whose C or Lisp name contains `pattern` (case-insensitive); all for an empty pattern.
public func directCalls(matching pattern: String) -> [DirectCallInfo] {
    let p = pattern.lowercased()
    return p.isEmpty ? directCalls : directCalls.filter { $0.name.lowercased().contains(p) || $0.lispName.contains(p) }
}
