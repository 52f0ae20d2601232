// Generated from OpenSSLStreams.docc/STARTTLSWithAttachAndDetach.md, line 12, by SnippetFreshnessTests. Do not edit.
import OpenSSLStreams

func snippet_OpenSSLStreams_STARTTLSWithAttachAndDetach_1() async throws {

    let smtp = try openTCPStream(host: "mail.example.org", port: 587, readTimeout: 30)
    _ = try smtp.readLine()                        // 220 greeting
    try smtp.writeLine("EHLO client.example.org")
    while let line = try smtp.readLine(), line.hasPrefix("250-") {}
    try smtp.writeLine("STARTTLS")
    _ = try smtp.readLine()                        // 220 ready to start TLS
    try smtp.attachSSL(ctx: .default, side: .client, handshakeTimeout: 10)
    try smtp.writeLine("EHLO client.example.org")  // now encrypted
}
