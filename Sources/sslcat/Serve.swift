import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// `sslcat serve --port N`: a TLS server that echoes, shows an HTTP page, or relays a connection to
/// stdin/stdout. The accept loop only accepts: each connection's handshake (with its total deadline,
/// from the stream layer) and its traffic run in a thread of its own, at most `--max-connections` at once,
/// and a connection quiet for `--idle-timeout` is closed, so threads and descriptors stay bounded.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve TLS on a port: echo what clients send (--echo), show the session as an HTTP page (--http), or relay a connection to stdin/stdout.")

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

    @Flag(help: "Require a client certificate that verifies against --cafile (its subject and chain are printed).")
    var verifyClient = false

    @Flag(help: "Serve DTLS 1.2 over UDP: datagrams in, datagrams out (with --echo each is sent back; otherwise each line of stdin is one datagram).")
    var dtls = false

    @Option(help: "ALPN protocols the server accepts, comma-separated, preferred first (e.g. h2,http/1.1). A client offering none of them gets the no_application_protocol alert, unless --alpn-optional.")
    var alpn: String?

    @Flag(help: "With --alpn: go on without ALPN when the client offers none of the protocols.")
    var alpnOptional = false

    @Flag(help: "Echo what each client sends back to it.")
    var echo = false

    @Flag(help: "Answer each HTTP/1.1 request with a page showing the session (protocol, cipher, group, ALPN, SNI, client certificate, resumption).")
    var http = false

    @Flag(help: "Serve one connection, then exit.")
    var once = false

    @Option(help: "Offer STARTTLS first, in this protocol's plaintext dialogue: smtp, imap, pop3, ftp, xmpp, ldap, postgres, or plain (wait for the --starttls-line line, answer OK).")
    var starttls: StartTLSProtocol?

    @Option(help: "The line that switches to TLS with --starttls plain.")
    var starttlsLine = "STARTTLS"

    @Option(help: "Seconds a client has for its whole handshake.")
    var timeout: Double = 10

    @Option(help: "Seconds a connection (or DTLS association) may stay quiet before it is closed.")
    var idleTimeout: Double = 60

    @Option(help: "Connections (or DTLS associations) served at once; more are closed at once, with a log line.")
    var maxConnections = 100

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535 (0 picks a free port)") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if verifyClient && cafile == nil { throw ValidationError("--verify-client needs --cafile") }
        if echo && http { throw ValidationError("--echo and --http exclude each other") }
        if dtls && http { throw ValidationError("--http needs TLS, not --dtls") }
        if dtls && starttls != nil { throw ValidationError("--starttls needs TCP, not --dtls") }
        if alpnOptional && alpn == nil { throw ValidationError("--alpn-optional needs --alpn") }
        try checkTimeoutOption(timeout)
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
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
        if let alpn { ctx.setALPNServerProtocols(try alpnProtocols(alpn), required: !alpnOptional) }
        let slots = ConnectionSlots(limit: maxConnections)
        if dtls { return try serveDTLS(ctx, slots: slots) }
        let listener = try listen(port: port, host: host)
        defer { listener.close() }
        printError("sslcat: listening on \(listener.address)")
        while true {
            let stream: SocketStream
            do {
                stream = try listener.accept()
            } catch {
                printError("sslcat: accept: \(error)")
                if once { throw ExitCode(1) }
                continue
            }
            if once {
                guard serveConnection(stream, ctx: ctx) else { throw ExitCode(1) }
                return
            }
            guard slots.take() else {
                try? stream.close()  // before any TLS: the client sees the connection closed
                continue
            }
            startThread(stackSize: connectionStackSize) {  // the stream is the new thread's from here
                _ = serveConnection(stream, ctx: ctx)
                slots.release()
            }
        }
    }

    /// One connection, in its own thread: the handshake within `--timeout`, then echo, the HTTP page
    /// or the relay, each closing the connection after `--idle-timeout` of silence. False when the
    /// handshake failed.
    func serveConnection(_ stream: SocketStream, ctx: SSLContextPointer) -> Bool {
        let peer = stream.peerAddress ?? "?"
        do {
            if let starttls {
                try startTLSServer(stream, protocol: starttls, hostName: host, timeout: timeout, plainLine: starttlsLine)
            }
            try stream.attachSSL(ctx: .context(ctx), side: .server, handshakeTimeout: timeout)
            try stream.handshake(timeout: timeout)
        } catch {
            printError("sslcat: \(peer): handshake failed: \(error)")
            try? stream.close()
            return false
        }
        printError("sslcat: connection from \(peer)")
        for line in handshakeSummary(stream) { printError("sslcat: " + line) }
        stream.readTimeout = idleTimeout
        stream.writeTimeout = idleTimeout
        if echo {
            echoLoop(stream)
        } else if http {
            serveHTTP(stream)
        } else if RelayClaim.shared.claim() {
            defer { RelayClaim.shared.release() }
            do { _ = try relay(stream, RelayOptions(waitAfterInput: idleTimeout)) } catch { printError("sslcat: \(peer): \(error)") }
            try? stream.close()
        } else {
            printError("sslcat: \(peer): stdin is relayed to another client; closing (use --echo or --http to serve many)")
            try? stream.close()
        }
        return true
    }
}

/// Counts the connections being served against `--max-connections`; logs when the limit is reached and
/// when there is room again.
final class ConnectionSlots: @unchecked Sendable {  // its counts are only touched under `lock`
    let limit: Int
    private let lock = NSLock()
    private var active = 0
    private var refused = 0

    init(limit: Int) { self.limit = limit }

    /// Takes a slot; false (and a log line) when all are taken.
    func take() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard active < limit else {
            refused += 1
            if refused == 1 {
                printError("sslcat: connection limit reached (\(limit) at once, --max-connections): closing new connections until one ends")
            }
            return false
        }
        active += 1
        return true
    }

    /// Gives a slot back; says how many were refused meanwhile.
    func release() {
        lock.lock(); defer { lock.unlock() }
        active -= 1
        if refused > 0 {
            printError("sslcat: below the connection limit again; \(refused) connection(s) were closed while at the limit")
            refused = 0
        }
    }
}

/// Only one connection at a time is relayed to stdin/stdout.
final class RelayClaim: @unchecked Sendable {  // `taken` is only touched under `lock`
    static let shared = RelayClaim()
    private let lock = NSLock()
    private var taken = false
    func claim() -> Bool { lock.lock(); defer { lock.unlock() }; if taken { return false }; taken = true; return true }
    func release() { lock.lock(); taken = false; lock.unlock() }
}

/// The stack of a connection's thread (connections need little).
let connectionStackSize = 512 * 1024

/// Echoes what the client sends until it closes or stays quiet for the stream's read timeout.
func echoLoop(_ stream: SocketStream) {
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    let peer = stream.peerAddress ?? "client"
    do {
        while true {
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { break }
            try buffer.withUnsafeBytes { try stream.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            try stream.flush()
        }
        printError("sslcat: \(peer) closed; \(stream.bytesReceived) bytes in, \(stream.bytesSent) out")
    } catch {
        reportConnectionError(error, peer: peer, idleTimeout: stream.readTimeout)
    }
    try? stream.close()
}

/// The log line for a connection (or association) that ended with `error`: the idle timeout by its name.
func reportConnectionError(_ error: Error, peer: String, idleTimeout: TimeInterval?) {
    if let error = error as? SocketError, error.errno == ETIMEDOUT {
        printError("sslcat: \(peer): idle for \(Int(idleTimeout ?? 0)) s (--idle-timeout); closed")
    } else {
        printError("sslcat: \(peer): \(error)")
    }
}
