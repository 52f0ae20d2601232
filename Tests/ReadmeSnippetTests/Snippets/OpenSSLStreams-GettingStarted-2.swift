// Generated from OpenSSLStreams.docc/GettingStarted.md, line 55, by SnippetFreshnessTests. Do not edit.
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

func snippet_OpenSSLStreams_GettingStarted_2() async throws {

    let ctx = try SSLContext(side: .server)
    try useCertificateChainFile(ctx.pointer, file: "server.pem")
    try usePrivateKeyFile(ctx.pointer, file: "server.key")
    let listener = try listen(port: 8443, host: "127.0.0.1")
    let connection = try listener.accept(sslCtx: .context(ctx), handshakeTimeout: 10, timeout: 60)
    if let line = try connection.readLine() { try connection.writeLine(line) }
    try connection.close()
}
