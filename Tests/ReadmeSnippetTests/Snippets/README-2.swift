// Generated from README.md, line 88, by SnippetFreshnessTests. Do not edit.
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

func snippet_README_2() async throws {

    // A client: connect, attach TLS at once (verifies the certificate and the host name by default).
    let stream = try openTCPStream(host: "example.org", port: 443, sslCtx: .default, handshakeTimeout: 10)
    try stream.writeLine("GET / HTTP/1.0")
    print(try stream.readLine() ?? "no status line")

    // STARTTLS and back on one connection.
    let smtp = try openTCPStream(host: "mail.example.org", port: 587, readTimeout: 30)
    _ = try smtp.readLine(); try smtp.writeLine("EHLO me"); /* … */ try smtp.writeLine("STARTTLS")
    try smtp.attachSSL(ctx: .tlsV1_3, side: .client,
                       ctxConfigure: { ctx in _ = SSL_CTX_set_cipher_list(ctx, "HIGH") },  // new SSL_CTX only
                       sslConfigure: { ssl in /* new SSL only */ }, handshakeTimeout: 10)
    try smtp.detachSSL()          // close_notify both ways; the stream carries plaintext again

    // A server: one SSL_CTX shared by every connection.
    let ctx = try makeSSLCtx(side: .server)
    try useCertificateChainFile(ctx, file: "server.pem"); try usePrivateKeyFile(ctx, file: "server.key")
    let listener = try listen(port: 0, host: "127.0.0.1")      // port 0: any free port, read listener.port
    let conn = try listener.accept(sslCtx: .context(ctx), handshakeTimeout: 10, timeout: 60)
    try conn.close()
}
