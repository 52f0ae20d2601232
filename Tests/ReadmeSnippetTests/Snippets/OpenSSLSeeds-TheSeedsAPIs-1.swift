// Generated from OpenSSLSeeds.docc/TheSeedsAPIs.md, line 15, by SnippetFreshnessTests. Do not edit.
import OpenSSLSeeds

func snippet_OpenSSLSeeds_TheSeedsAPIs_1() async throws {

    let context = try sslMakeClientContext(protocol: .default)
    let (input, output) = try sslConnect(host: "example.org", port: 443, context: context)
    try output.write("HEAD / HTTP/1.0\r\n\r\n")
    print(String(decoding: try input.read(maxLength: 4096), as: UTF8.self))
}
