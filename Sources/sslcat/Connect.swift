import ArgumentParser
import Foundation
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

    @Option(help: "Seconds allowed for connecting, for the handshake, and for the server to finish after stdin ends.")
    var timeout: Double = 10

    func validate() throws {
        _ = try parseHostPort(address)
        if tls12 && tls13 { throw ValidationError("--tls1.2 and --tls1.3 exclude each other") }
        if dtls && (tls12 || tls13 || starttls != nil) { throw ValidationError("--dtls excludes --tls1.2, --tls1.3 and --starttls") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if let alpn { _ = try alpnProtocols(alpn) }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        try checkReadable(cafile, option: "--cafile")
        try checkReadable(cert, option: "--cert")
        try checkReadable(key, option: "--key")
    }

    func run() throws {
        let (host, port) = try parseHostPort(address)
        if dtls { return try runDTLS(host: host, port: port) }
        let stream = try openTCPStream(host: host, port: port, connectTimeout: timeout, readTimeout: nil, writeTimeout: timeout)
        defer { try? stream.close() }
        if let starttls {
            try startTLSClient(stream, protocol: starttls, serverName: servername ?? host, timeout: timeout, plainLine: starttlsLine)
        }
        try attach(stream, host: host)
        for line in handshakeSummary(stream) { printError("sslcat: " + line) }
        try relay(stream, idleAfterInput: timeout)
        try stream.close()
    }

    /// The security the options ask for.
    var security: SSLSecurity {
        var security = insecure ? SSLSecurity.insecure : SSLSecurity.secure
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
    }

    func attach(_ stream: SocketStream, host: String) throws {
        let proto: SSLProtocol = tls12 ? .tlsV1_2 : (tls13 ? .tlsV1_3 : .default)
        try stream.attachSSL(ctx: .protocol(proto), side: .client, ctxConfigure: configure,
                             handshakeTimeout: timeout, hostName: servername ?? host, security: security)
    }

    /// `--dtls`: lines of stdin out as datagrams, datagrams in to stdout.
    func runDTLS(host: String, port: Int) throws {
        let socket = try openDTLS(host: host, port: port, ctxConfigure: configure, handshakeTimeout: timeout,
                                  hostName: servername ?? host, security: security)
        defer { try? socket.close() }
        for line in handshakeSummary(ssl: socket.ssl) { printError("sslcat: " + line) }
        try relayDatagrams(socket, idleAfterInput: timeout)
    }
}
