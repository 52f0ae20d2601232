// Generated from OpenSSLFLI.docc/DirectCallsAndLispWorksNames.md, line 33, by SnippetFreshnessTests. Do not edit.
import OpenSSLFLI

func snippet_OpenSSLFLI_DirectCallsAndLispWorksNames_1() async throws {

    if let call = directCall(named: "ssl-get0-group-name") {
        print(call.name, call.prototype, call.since ?? "3.0", call.libraryHasIt)
    }
}
