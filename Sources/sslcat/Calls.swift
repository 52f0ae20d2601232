import ArgumentParser
import OpenSSLFLI

/// `sslcat calls [PATTERN]`: the generated direct calls, from the library's own table.
struct Calls: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the generated direct calls (C name, Lisp name, version needed, whether this OpenSSL has it, C prototype).")

    @Argument(help: "Show only calls whose C or LispWorks name contains this (case-insensitive).")
    var pattern: String = ""

    func run() throws {
        let loaded = loadedOpenSSL
        let calls = directCalls(matching: pattern)
        print("# \(calls.count) of \(directCalls.count) direct calls; running \(loaded)")
        for c in calls {
            let has = !c.libraryHasIt ? "absent" : (c.isCallable ? "yes" : "stand-in")
            print([c.name, c.lispName, c.kind.rawValue, "since " + (c.since ?? "3.0"), has, c.prototype].joined(separator: "\t"))
        }
        if calls.isEmpty { throw ValidationError("no direct call matches \(pattern)") }
    }
}
