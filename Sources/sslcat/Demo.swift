import ArgumentParser
import Dispatch
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// `sslcat demo`: the package end to end on a fresh machine. A CA and a server certificate made in
/// memory, a TLS server on a loopback port, a client that verifies it, and a plaintext → STARTTLS →
/// plaintext round trip with attachSSL / detachSSL — printing what happened and the direct calls made.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve TLS on loopback, connect a verifying client, STARTTLS and back, and print what happened.")

    @Option(help: "Seconds allowed for each handshake and each reply.")
    var timeout: Double = 10

    func run() throws {
        try ensureSSL()
        print("swift-openssl-fli demo — \(OpenSSL_version(OPENSSL_VERSION) ?? "OpenSSL ?")")

        section("1. A CA and a server certificate, made in memory")
        let caKey = try PrivateKey.generateEC()
        let ca = try makeCertificate(.authority("swift-openssl-fli demo CA"), key: caKey)
        let serverKey = try PrivateKey.generateEC()
        let serverCert = try makeCertificate(.server(hosts: ["localhost", "127.0.0.1"]), key: serverKey, issuer: (ca, caKey))
        call("EVP_PKEY_keygen ×2 (EC P-256), X509_new, X509V3_EXT_conf_nid, X509_sign", "2 certificates")
        print("  CA:     \(ca.subject)")
        print("  server: \(serverCert.subject), issued by \(serverCert.issuer), for localhost and 127.0.0.1")
        print("          SHA-256 \(serverCert.fingerprintSHA256)")

        section("2. The server's SSL_CTX, with direct calls")
        guard let serverCtx = SSL_CTX_new(TLS_server_method()) else { throw SSLError.fromQueue(call: "SSL_CTX_new") }
        defer { SSL_CTX_free(serverCtx) }
        call("SSL_CTX_new(TLS_server_method())", "SSLContextPointer")
        try check(SSL_CTX_use_certificate(serverCtx, serverCert.pointer), "SSL_CTX_use_certificate(ctx, cert)")
        try check(SSL_CTX_use_PrivateKey(serverCtx, serverKey.pointer), "SSL_CTX_use_PrivateKey(ctx, key)")
        try check(SSL_CTX_check_private_key(serverCtx), "SSL_CTX_check_private_key(ctx)")
        try check(Int32(SSL_CTX_set_min_proto_version(serverCtx, Int(TLS1_2_VERSION))), "SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)")

        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        section("3. Plaintext on 127.0.0.1:\(listener.port)")
        let server = DemoServer(listener: listener, ctx: serverCtx, timeout: timeout)
        let serverDone = DispatchGroup()
        serverDone.enter()
        Thread.detachNewThread { server.run(); serverDone.leave() }
        defer { _ = serverDone.wait(timeout: .now() + timeout) }

        let client = try openTCPStream(host: "localhost", port: listener.port, connectTimeout: timeout, readTimeout: timeout, writeTimeout: timeout)
        defer { try? client.close() }
        try exchange(client, "EHLO demo")
        try exchange(client, "STARTTLS")
        let plainBefore = (client.bytesSent, client.bytesReceived)

        section("4. attachSSL on both ends (the server attaches when it reads STARTTLS)")
        print("  client: attachSSL(ctx: .default, side: .client, ctxConfigure: …, handshakeTimeout: \(timeout), hostName: \"localhost\")")
        var security = TLSConfiguration.secure
        security.trustSystemStore = false  // trust exactly the demo CA
        try client.attachSSL(ctx: .default, side: .client, ctxConfigure: { ctx in
            let store = SSL_CTX_get_cert_store(ctx)
            try check(X509_STORE_add_cert(store, ca.pointer), "  ctxConfigure: X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca)")
        }, handshakeTimeout: timeout, hostName: "localhost", security: security)
        let ssl = try require(client.ssl, "client.ssl")
        call("SSL_get_version(ssl)", "\"\(SSL_get_version(ssl) ?? "?")\"")
        let cipher = SSL_get_current_cipher(ssl)
        call("SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))", "\"\(SSL_CIPHER_get_name(cipher) ?? "?")\"")
        let bits = SSL_CIPHER_get_bits(cipher)
        call("SSL_CIPHER_get_bits(cipher)", "(bits: \(bits.bits), algBits: \(bits.algBits))")
        if let chain = SSL_get_peer_cert_chain(ssl) {
            call("sk_X509_num(SSL_get_peer_cert_chain(ssl))", "\(sk_X509_num(chain))")
            for i in 0..<sk_X509_num(chain) {
                if let x509 = sk_X509_value(chain, i) {
                    let c = Certificate(retaining: x509)
                    print("    [\(i)] subject \(c.subject); issuer \(c.issuer)")
                }
            }
        }
        let verify = SSL_get_verify_result(ssl)
        call("SSL_get_verify_result(ssl)", "\(verify) (\(X509_verify_cert_error_string(verify) ?? "?"))")
        guard verify == Int(X509_V_OK) else { throw SSLCatFailure("the server's certificate did not verify") }
        try exchange(client, "MAIL FROM:<demo@localhost> (over TLS)")
        try exchange(client, "STOPTLS")
        let tlsSent = client.bytesSent - plainBefore.0, tlsReceived = client.bytesReceived - plainBefore.1

        section("5. detachSSL on both ends: close_notify each way, then plaintext again")
        try client.detachSSL()
        print("  client.ssl = \(client.ssl.map { "\($0)" } ?? "nil"), client.sslSide = \(client.sslSide.map { "\($0)" } ?? "nil")")
        try exchange(client, "QUIT")
        try client.close()
        guard serverDone.wait(timeout: .now() + timeout) == .success else { throw SSLCatFailure("the server did not finish") }
        if let failure = server.failure { throw SSLCatFailure("server: \(failure)") }

        section("Bytes moved by the client")
        print("  sent \(client.bytesSent) bytes, received \(client.bytesReceived) (TLS part: sent \(tlsSent), received \(tlsReceived), handshake included)")
        print("  the server saw SNI \"\(server.serverName ?? "none")\" and \(server.tlsLines) line(s) over TLS")
        print("\ndemo: OK")
    }

    func section(_ title: String) { print("\n== \(title)") }

    func call(_ text: String, _ result: String) { print("  \(text) → \(result)") }

    func check(_ result: Int32, _ text: String) throws {
        print("  \(text) → \(result)")
        guard result == 1 else { throw SSLError.fromQueue(call: text) }
    }

    func require<T>(_ value: T?, _ what: String) throws -> T {
        guard let value else { throw SSLCatFailure("\(what) is nil") }
        return value
    }

    func exchange(_ client: SocketStream, _ line: String) throws {
        let tls = client.ssl != nil ? " (TLS)" : ""
        try client.writeLine(line)
        guard let answer = try client.readLine() else { throw SSLCatFailure("the server closed the connection after \"\(line)\"") }
        print("  C\(tls): \(line)")
        print("  S\(tls): \(answer)")
    }
}

/// The demo's server: a tiny SMTP-like dialogue with STARTTLS and STOPTLS.
final class DemoServer: @unchecked Sendable {  // the vars are written by the server thread, read after it ended
    let listener: TCPListener
    let ctx: SSLContextPointer
    let timeout: Double
    var failure: Error?
    var serverName: String?
    var tlsLines = 0

    init(listener: TCPListener, ctx: SSLContextPointer, timeout: Double) {
        self.listener = listener; self.ctx = ctx; self.timeout = timeout
    }

    func run() {
        do {
            let s = try listener.accept(timeout: timeout, readTimeout: timeout, writeTimeout: timeout)
            defer { try? s.close() }
            while let line = try s.readLine() {
                if s.ssl != nil { tlsLines += 1 }
                switch line {
                case "EHLO demo": try s.writeLine("250 STARTTLS")
                case "STARTTLS":
                    try s.writeLine("220 ready to start TLS")
                    try s.attachSSL(ctx: .context(ctx), side: .server, handshakeTimeout: timeout)
                    try s.handshake(timeout: timeout)
                    serverName = SSL_get_servername(s.ssl, Int32(TLSEXT_NAMETYPE_host_name))
                case "STOPTLS":
                    try s.writeLine("220 TLS off after this line")
                    try s.detachSSL()
                case "QUIT":
                    try s.writeLine("221 bye (plaintext again)")
                    return
                default:
                    try s.writeLine("250 ok: \(line.count) bytes received\(s.ssl != nil ? " over \(SSL_get_version(s.ssl) ?? "TLS")" : "")")
                }
            }
        } catch {
            failure = error
        }
    }
}
