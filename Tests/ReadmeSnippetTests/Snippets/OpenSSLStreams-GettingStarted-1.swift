// Generated from OpenSSLStreams.docc/GettingStarted.md, line 40, by SnippetFreshnessTests. Do not edit.
import OpenSSLStreams

func snippet_OpenSSLStreams_GettingStarted_1() async throws {

    let stream = try openTCPStream(host: "example.org", port: 443, sslCtx: .default)
    try stream.write("HEAD / HTTP/1.0\r\nHost: example.org\r\n\r\n")
    try stream.flush()
    print(try stream.readLine() ?? "")
    try stream.close()
}
