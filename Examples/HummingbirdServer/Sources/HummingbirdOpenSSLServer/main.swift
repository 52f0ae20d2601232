import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdOpenSSL
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLTLS

/// An HTTPS server on Hummingbird 2 whose TLS is the system OpenSSL (OpenSSLHandler), HTTP/2 or
/// HTTP/1.1 by ALPN; `--tls niossl` runs the same routes on Hummingbird's own NIOSSL TLS (for bench.sh).
@main
struct HummingbirdOpenSSLServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hummingbird-openssl",
        abstract: "Serve HTTPS from Hummingbird with the system OpenSSL (HTTP/2 and HTTP/1.1 by ALPN).")

    enum TLSStack: String, ExpressibleByArgument { case openssl, niossl }

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free one; the port is printed).") var port = 8443
    @Option(help: "The certificate chain (PEM, leaf first).") var cert: String
    @Option(help: "The private key (PEM).") var key: String
    @Option(help: "Ask clients for a certificate (optional) and verify it against this CA file (PEM).") var clientCA: String?
    @Option(help: "A DER OCSP response to staple (from `openssl ocsp -respout`).") var ocspResponse: String?
    @Option(help: "Session-ticket keys: 160 hex digits (16-byte name, 32-byte HMAC key, 32-byte AES key).") var ticketKey: String?
    @Option(help: "Append TLS secrets to this file, in SSLKEYLOGFILE format (for Wireshark).") var keylog: String?
    @Option(help: "The TLS stack: openssl (OpenSSLHandler) or niossl (HummingbirdTLS, for comparison).") var tls: TLSStack = .openssl
    @Flag(help: "HTTP/1.1 only (no ALPN, no HTTP/2).") var http1Only = false

    func run() async throws {
        let router = Router(context: ConnectionRequestContext.self)
        router.get("/") { _, _ in "hello from Hummingbird over \(tls == .openssl ? "the system OpenSSL" : "NIOSSL")\n" }
        router.get("/session") { _, context -> Response in
            let facts = try await context.channel.withOpenSSLConnection { try TLSConnectionFacts($0) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var body = try encoder.encode(facts)
            body.append(0x0A)
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        var logger = Logger(label: "hummingbird-openssl")
        logger.logLevel = .warning
        let app = Application(router: router, server: try serverBuilder(),
                              configuration: .init(address: .hostname(host, port: port), serverName: "hummingbird-openssl"),
                              onServerRunning: { channel in
                                  print("listening on \(host):\(channel.localAddress?.port ?? 0)")
                                  fflush(stdout)
                              },
                              logger: logger)
        try await app.runService()
    }

    /// The server: OpenSSL's context made once from the one configuration value, or NIOSSL's.
    func serverBuilder() throws -> HTTPServerBuilder {
        switch tls {
        case .openssl:
            let context = try OpenSSLServerContext(configuration: tlsConfiguration(), ctxConfigure: configureContext)
            return http1Only ? .openSSL(context: context) : .openSSLHTTP2Upgrade(context: context)
        case .niossl:
            let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            let configuration = NIOSSL.TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            return http1Only ? try .tls(tlsConfiguration: configuration) : try .http2Upgrade(tlsConfiguration: configuration)
        }
    }

    /// The one configuration value: this server's identity and, with `--client-ca`, the CA that client
    /// certificates are verified against.
    func tlsConfiguration() -> OpenSSLTLS.TLSConfiguration {
        var configuration = OpenSSLTLS.TLSConfiguration.server(certificateChainFile: cert, privateKeyFile: key)
        configuration.trustSystemStore = false
        configuration.caFile = clientCA
        return configuration
    }

    /// What swift-nio-ssl cannot do, set once on the shared `SSL_CTX`.
    /// - Corresponds: `SSL_CTX_set_tlsext_status_cb` + `SSL_set_tlsext_status_ocsp_resp` (stapling),
    ///   `SSL_CTX_set_tlsext_ticket_keys`, `SSL_CTX_set_keylog_callback`, `SSL_CTX_set_verify`,
    ///   `SSL_CTX_set_client_CA_list`, `SSL_CTX_set_session_id_context`.
    func configureContext(_ ctx: SSLContextPointer) throws {
        if let ocspResponse {
            let der = try [UInt8](Data(contentsOf: URL(fileURLWithPath: ocspResponse)))
            guard !der.isEmpty else { throw ValidationError("the OCSP response \(ocspResponse) is empty") }
            ctx.setStapledOCSPResponse(der)
        }
        if let ticketKey {
            guard let keys = bytes(hex: ticketKey) else { throw ValidationError("--ticket-key takes 160 hex digits") }
            try ctx.setSessionTicketKeys(keys)
        }
        if let keylog { try ctx.writeKeylog(toFile: keylog) }
        // Resumed sessions must come from this server's context (needed once client certificates are verified).
        try ctx.setSessionIDContext("hummingbird-openssl")
        if let clientCA {
            // Ask for a client certificate, verify one that is sent, let a client without one in.
            setVerificationMode(ctx, side: .server, mode: .flags(.peer))
            guard let names = SSL_load_client_CA_file(clientCA) else {
                throw SSLError.fromQueue(call: "SSL_load_client_CA_file", file: clientCA)
            }
            SSL_CTX_set_client_CA_list(ctx, names)
        }
    }
}

/// A request context that keeps the request's channel, for routes that read its TLS connection.
struct ConnectionRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The HTTP/1.1 connection, or the HTTP/2 stream (whose parent is the connection).
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The bytes of an even number of hex digits, nil for anything else.
func bytes(hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var index = 0
    while index < digits.count {
        guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
        out.append(byte)
        index += 2
    }
    return out
}
