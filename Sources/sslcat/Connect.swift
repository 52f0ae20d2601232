import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// `sslcat connect HOST:PORT`: stdin → TLS → stdout, with the handshake summary on stderr.
struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to HOST:PORT over TLS and copy stdin to it and it to stdout (handshake summary on stderr).")

    @Argument(help: "Where to connect: HOST:PORT or [IPv6]:PORT.")
    var address: String

    @Option(help: "Trust the CA certificates in this PEM file (instead of the system store).")
    var cafile: String?

    @Option(help: "Trust the CA certificates in this hashed directory (instead of the system store).")
    var capath: String?

    @Flag(help: "Do not verify the server's certificate or name.")
    var insecure = false

    @Option(help: "The name to send as SNI and to check the certificate against (default: HOST).")
    var servername: String?

    @Option(help: "A client certificate (PEM) to present.")
    var cert: String?

    @Option(help: "The client certificate's private key (PEM).")
    var key: String?

    @Option(help: "ALPN protocols to offer, comma-separated (e.g. h2,http/1.1).")
    var alpn: String?

    @Option(help: "Append the TLS secrets to this file in the NSS key log format (for Wireshark). Off unless given.")
    var keylog: String?

    @Flag(help: "Speak DTLS 1.2 over UDP: each line of stdin is sent as one datagram; datagrams received are printed.")
    var dtls = false

    @Flag(name: .customLong("tls1.2"), help: "Speak TLS 1.2 only.")
    var tls12 = false

    @Flag(name: .customLong("tls1.3"), help: "Speak TLS 1.3 only.")
    var tls13 = false

    @Option(help: "Upgrade a plaintext connection first: smtp, imap, pop3, ftp (AUTH TLS), xmpp, ldap (StartTLS extended operation), postgres (SSLRequest), or plain (copy plaintext until a line from stdin equals --starttls-line, send it, read the server's answer line, then attach TLS).")
    var starttls: StartTLSProtocol?

    @Option(help: "The line that switches to TLS with --starttls plain.")
    var starttlsLine = "STARTTLS"

    @Option(help: "Seconds allowed for connecting, for the handshake, and for an answer after stdin ends.")
    var timeout: Double = 10

    @Flag(help: "After stdin ends, keep reading until the server closes (by default connect ends once the server has answered and gone quiet for 0.3 s, or after --timeout without an answer).")
    var ignEof = false

    @Flag(name: [.customShort("q"), .long], help: "Print nothing on stderr but errors; implies --ign-eof (as s_client -quiet).")
    var quiet = false

    @Flag(help: "Print one summary line of the handshake on stderr instead of the full summary.")
    var brief = false

    @Flag(help: "Send each LF of stdin as CR LF.")
    var crlf = false

    @Flag(help: "Print the certificate chain the server sent, as PEM, on stderr.")
    var showcerts = false

    @Flag(help: "Ask the server for a stapled OCSP response (certificate status) and print what came.")
    var status = false

    @Option(help: "After the connection, write its TLS session (PEM) to this file, for --sess-in.")
    var sessOut: String?

    @Option(help: "Resume the TLS session in this file (written by --sess-out); whether it was resumed is printed.")
    var sessIn: String?

    @Flag(help: "After the connection, connect 5 more times resuming its session, and print whether each was resumed.")
    var reconnect = false

    @Option(help: "Require the server certificate's SHA-256 fingerprint: sha256:HEX (colons optional), as `serve` prints it. Checked after the usual verification; with --insecure it is the only check.")
    var pin: String?

    func validate() throws {
        _ = try parseHostPort(address)
        if tls12 && tls13 { throw ValidationError("--tls1.2 and --tls1.3 exclude each other") }
        if dtls && (tls12 || tls13 || starttls != nil) { throw ValidationError("--dtls excludes --tls1.2, --tls1.3 and --starttls") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if let alpn { _ = try alpnProtocols(alpn) }
        try checkTimeoutOption(timeout)
        if dtls && (showcerts || status || sessOut != nil || sessIn != nil || reconnect) {
            throw ValidationError("--dtls excludes --showcerts, --status, --sess-out, --sess-in and --reconnect")
        }
        if let pin { _ = try pinnedFingerprint(pin) }
        try checkReadable(cafile, option: "--cafile")
        try checkReadable(sessIn, option: "--sess-in")
        try checkReadable(cert, option: "--cert")
        try checkReadable(key, option: "--key")
    }

    func run() throws {
        let (host, port) = try parseHostPort(address)
        if dtls { return try runDTLS(host: host, port: port) }
        let stream = try openTCPStream(host: host, port: port, connectTimeout: timeout > 0 ? timeout : nil, readTimeout: nil, writeTimeout: timeout)
        defer { try? stream.close() }
        if let starttls {
            try startTLSClient(stream, protocol: starttls, serverName: servername ?? host, timeout: timeout, plainLine: starttlsLine)
        }
        let session = try sessIn.map(readSession)
        try attach(stream, host: host, session: session)
        try afterHandshake(stream.ssl!, offeredSession: session != nil)
        let end = try relay(stream, RelayOptions(waitAfterInput: timeout, ignoreEOF: ignEof || quiet, crlf: crlf))
        // TLS 1.3 sends its session tickets after the handshake: the session is taken at the end.
        let last = SSL_get1_session(stream.ssl!).map(SSLSession.init(taking:))
        try? stream.close()
        if let sessOut, let last { try writeSession(last, to: sessOut) }
        if reconnect, let last { try reconnectResuming(last, host: host, port: port) }
        try Connect.exit(after: end)
    }

    /// The summary, then --showcerts, --status, --pin and whether an offered session was resumed.
    func afterHandshake(_ ssl: SSLPointer, offeredSession: Bool) throws {
        report(ssl: ssl)
        if showcerts {
            for cert in peerCertificates(ssl) { printError(try cert.pem().trimmingCharacters(in: .newlines)) }
        }
        if status && !quiet { printError("sslcat: " + ocspStatusLine(ssl)) }
        if let pin {
            let expected = try pinnedFingerprint(pin)
            guard let leaf = peerCertificates(ssl).first else { throw SSLCatFailure("--pin: the server sent no certificate") }
            let actual = leaf.fingerprintSHA256.filter { $0 != ":" }.uppercased()
            guard actual == expected else {
                throw SSLCatFailure("--pin: the server certificate's SHA-256 is \(leaf.fingerprintSHA256), not the pinned one")
            }
            if !quiet && !brief { printError("sslcat: pinned SHA-256 matches") }
        }
        if offeredSession && !quiet { printError("sslcat: session " + (SSL_session_reused(ssl) == 1 ? "resumed" : "not resumed (a new one)")) }
    }

    /// `--reconnect`: five more connections offering `session`, each closed after its handshake.
    func reconnectResuming(_ session: SSLSession, host: String, port: Int) throws {
        var resumed = 0
        for i in 1...5 {
            let stream = try openTCPStream(host: host, port: port, connectTimeout: timeout > 0 ? timeout : nil, readTimeout: nil, writeTimeout: timeout)
            defer { try? stream.close() }
            try attach(stream, host: host, session: session)
            let reused = SSL_session_reused(stream.ssl!) == 1
            if reused { resumed += 1 }
            if !quiet { printError("sslcat: reconnect \(i): \(reused ? "resumed" : "new session"), \(SSL_get_version(stream.ssl!) ?? "?")") }
        }
        if !quiet { printError("sslcat: \(resumed) of 5 reconnects resumed the session") }
    }

    /// The exit status of a relay that ended `end`: 0, or 3 with a message when the peer closed the
    /// connection without close_notify (what came before may be truncated, so scripts can tell).
    static func exit(after end: RelayEnd) throws {
        if end == .truncated {
            printError("sslcat: the peer closed the connection without close_notify (the data may be truncated)")
            throw ExitCode(truncatedExitStatus)
        }
    }

    /// The exit status of a connection that ended without close_notify.
    static let truncatedExitStatus: Int32 = 3

    /// The handshake summary on stderr, as --brief and --quiet ask.
    func report(ssl: SSLPointer?) {
        if quiet { return }
        if brief { printError("sslcat: " + briefSummary(ssl: ssl)); return }
        for line in handshakeSummary(ssl: ssl) { printError("sslcat: " + line) }
    }

    /// The security the options ask for.
    /// `--timeout` as the handshake's total limit (checked in `validate`; 0 has passed already).
    var handshakeLimit: TimeoutValue {
        (try? TimeoutValue.resolve(timeout, default: nil, name: "--timeout", call: "sslcat")) ?? .seconds(10)
    }

    var security: TLSConfiguration {
        var security = insecure ? TLSConfiguration.insecure : TLSConfiguration.secure
        // As `openssl s_client`: a server may renegotiate (TLS 1.2, RFC 5746 secure renegotiation only);
        // the library refuses it by default.
        security.allowRenegotiation = true
        if cafile != nil || capath != nil {
            security.trustSystemStore = false
            security.caFile = cafile
            security.caDirectory = capath
        }
        return security
    }

    /// Loads the client identity, ALPN and key log options into a context the tool made.
    func configure(_ ctx: SSLContextPointer) throws {
        if let cert, let key {
            try useCertificateChainFile(ctx, file: cert)
            try usePrivateKeyFile(ctx, file: key)
            try checkPrivateKey(ctx)
        }
        if let alpn { try ctx.setALPNProtocols(try alpnProtocols(alpn)) }
        if let keylog { try ctx.writeKeylog(toFile: keylog) }
        if status { try ctx.requestOCSPStatus() }
    }

    func attach(_ stream: SocketStream, host: String, session: SSLSession? = nil) throws {
        let proto: SSLProtocol = tls12 ? .tlsV1_2 : (tls13 ? .tlsV1_3 : .default)
        try stream.attachSSL(ctx: .protocol(proto), side: .client, ctxConfigure: configure, sslConfigure: { ssl in
            if let session, SSL_set_session(ssl, session.pointer) != 1 { throw SSLError.fromQueue(call: "SSL_set_session") }
        }, handshakeTimeout: handshakeLimit.asAttachTimeout, hostName: servername ?? host, security: security)
    }

    /// `--dtls`: lines of stdin out as datagrams, datagrams in to stdout.
    func runDTLS(host: String, port: Int) throws {
        let socket = try openDTLS(host: host, port: port, ctxConfigure: configure, handshakeTimeout: timeout,
                                  hostName: servername ?? host, security: security)
        defer { try? socket.close() }
        try afterHandshake(socket.ssl, offeredSession: false)
        try relayDatagrams(socket, idleAfterInput: timeout)
    }
}
