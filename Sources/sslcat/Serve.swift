import ArgumentParser
import Foundation
import OpenSSLFLI
import OpenSSLStreams

/// `sslcat serve --port N`: a TLS server that echoes, or relays one connection to stdin/stdout.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve TLS on a port: echo what clients send (--echo), or relay a connection to stdin/stdout.")

    @Option(help: "The port to listen on; 0 picks a free one (printed on stderr).")
    var port: Int

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The server certificate (PEM); without it a self-signed one is made in memory.")
    var cert: String?

    @Option(help: "The certificate's private key (PEM).")
    var key: String?

    @Option(help: "CA certificates (PEM) that client certificates are checked against.")
    var cafile: String?

    @Flag(help: "Require a client certificate that verifies against --cafile.")
    var verifyClient = false

    @Flag(help: "Serve DTLS 1.2 over UDP: datagrams in, datagrams out (with --echo each is sent back; otherwise each line of stdin is one datagram).")
    var dtls = false

    @Option(help: "ALPN protocols the server accepts, comma-separated, preferred first (e.g. h2,http/1.1).")
    var alpn: String?

    @Flag(help: "Echo what each client sends back to it (each client in its own thread).")
    var echo = false

    @Flag(help: "Serve one connection, then exit.")
    var once = false

    @Option(help: "Seconds a client has for its handshake.")
    var timeout: Double = 10

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535 (0 picks a free port)") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if verifyClient && cafile == nil { throw ValidationError("--verify-client needs --cafile") }
        try checkReadable(cert, option: "--cert")
        try checkReadable(key, option: "--key")
        try checkReadable(cafile, option: "--cafile")
        if let alpn { _ = try alpnProtocols(alpn) }
    }

    func run() throws {
        let ctx = try makeSSLCtx(protocol: dtls ? .dtls : .default, side: .server)
        defer { destroySSLCtx(ctx) }
        if let cert, let key {
            try useCertificateChainFile(ctx, file: cert)
            try usePrivateKeyFile(ctx, file: key)
            try checkPrivateKey(ctx)
            let pem = try String(contentsOfFile: cert, encoding: .utf8)
            printError("sslcat: certificate \(try Certificate(pem: pem).subject), SHA-256 \(try Certificate(pem: pem).fingerprintSHA256)")
        } else {
            let key = try PrivateKey.generateEC()
            let certificate = try makeCertificate(.server(hosts: ["localhost", host]), key: key)
            try useIdentity(ctx, certificate: certificate, key: key)
            printError("sslcat: self-signed certificate \(certificate.subject), SHA-256 \(certificate.fingerprintSHA256)")
        }
        _ = SSL_CTX_set_min_proto_version(ctx, Int(dtls ? DTLS1_2_VERSION : TLS1_2_VERSION))
        if let cafile {
            try loadVerifyLocations(ctx, file: cafile)
            if verifyClient { setVerificationMode(ctx, side: .server, mode: .always) }
        }
        if let alpn { ctx.setALPNServerProtocols(try alpnProtocols(alpn)) }
        if dtls { return try serveDTLS(ctx) }
        let listener = try listen(port: port, host: host)
        defer { listener.close() }
        printError("sslcat: listening on \(listener.address)")
        repeat {
            let stream: SocketStream
            do {
                stream = try listener.accept(sslCtx: .context(ctx), handshakeTimeout: timeout)
                try stream.handshake(timeout: timeout)
            } catch {
                printError("sslcat: connection refused: \(error)")
                if once { throw ExitCode(1) }
                continue
            }
            printError("sslcat: connection from \(stream.peerAddress ?? "?")")
            for line in handshakeSummary(stream) { printError("sslcat: " + line) }
            if echo {
                if once { echoLoop(stream) } else {
                    let box = StreamBox(stream)
                    Thread.detachNewThread { echoLoop(box.stream) }
                }
            } else {
                do { try relay(stream, idleAfterInput: timeout) } catch { printError("sslcat: \(error)") }
                try? stream.close()
            }
        } while !once
    }
}

/// Hands a stream to another thread (it is then used there only).
final class StreamBox: @unchecked Sendable {
    let stream: SocketStream
    init(_ stream: SocketStream) { self.stream = stream }
}

/// Echoes what the client sends until it closes.
func echoLoop(_ stream: SocketStream) {
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    do {
        while true {
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { break }
            try buffer.withUnsafeBytes { try stream.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            try stream.flush()
        }
        printError("sslcat: \(stream.peerAddress ?? "client") closed; \(stream.bytesReceived) bytes in, \(stream.bytesSent) out")
    } catch {
        printError("sslcat: \(stream.peerAddress ?? "client"): \(error)")
    }
    try? stream.close()
}
