import NIOCore
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO

extension Channel {
    /// Runs `body` with the `SSL` of the TLS connection this channel is part of — the channel itself
    /// (an HTTP/1.1 connection), or its parent for an HTTP/2 stream channel — on that connection's
    /// event loop, where its ``OpenSSLHandler`` runs it. Use it from a route with the request's channel.
    /// - Throws: ``SSLError`` (usage) when no OpenSSLHandler is on the connection, or what `body` threw.
    public func withOpenSSLConnection<Result: Sendable>(_ body: @escaping @Sendable (SSLPointer) throws -> Result) async throws -> Result {
        let channel = self
        return try await eventLoop.submit {
            // A stream's parent is its connection (same event loop); a connection's parent is the
            // listening channel, which has no handler.
            var candidate: (any Channel)? = channel
            while let current = candidate, current.eventLoop.inEventLoop {
                if let handler = current.pipeline.syncOperations.openSSLHandler { return try body(handler.ssl) }
                candidate = current.parent
            }
            throw SSLError.usage("the connection has no OpenSSLHandler (is its TLS OpenSSL's?)", call: "withOpenSSLConnection")
        }.get()
    }
}

/// What a TLS connection negotiated, read from its `SSL` once the handshake is done (the facts that
/// swift-nio-ssl keeps hidden): version, cipher suite, key-exchange group, ALPN, SNI, the client's
/// certificate chain, whether the session was resumed, and keying material exported from its secrets.
public struct TLSConnectionFacts: Sendable, Codable, Hashable {
    /// "TLSv1.3" (`SSL_get_version`).
    public var `protocol`: String?
    /// The cipher suite (`SSL_CIPHER_get_name`).
    public var cipher: String?
    /// The key-exchange group (`SSL_get_negotiated_group`).
    public var group: String?
    /// The ALPN protocol selected (`SSL_get0_alpn_selected`).
    public var alpn: String?
    /// The name the client sent as SNI (`SSL_get_servername`).
    public var sni: String?
    /// The client certificate's subject, nil without one (`SSL_get1_peer_certificate`).
    public var clientSubject: String?
    /// The subjects of the client's verified chain, its certificate first and the trust anchor last
    /// (`SSL_get0_verified_chain`; empty without a client certificate and on a resumed session).
    public var clientChain: [String]
    /// Whether the session was resumed (`SSL_session_reused`).
    public var resumed: Bool
    /// Hex of `exportLength` bytes exported with `exportLabel` (`SSL_export_keying_material`).
    public var exportedKeyingMaterial: String?

    /// Reads the facts of `ssl` (on its event loop), exporting `exportLength` bytes with `exportLabel`.
    /// - Corresponds: `SSL_get_version`, `SSL_get_current_cipher`, `SSL_CIPHER_get_name`,
    ///   `SSL_get_negotiated_group`, `SSL_get0_alpn_selected`, `SSL_get_servername`,
    ///   `SSL_get1_peer_certificate`, `SSL_get0_verified_chain`, `SSL_session_reused`,
    ///   `SSL_export_keying_material`.
    public init(_ ssl: SSLPointer, exportLabel: String = "EXPORTER-hummingbird-openssl", exportLength: Int = 32) throws {
        `protocol` = SSL_get_version(ssl)
        cipher = ssl.cipherName
        group = ssl.negotiatedGroup
        alpn = ssl.alpnSelected
        sni = ssl.serverName
        clientSubject = ssl.peerCertificate?.subject
        clientChain = ssl.verifiedChain.map(\.subject)
        resumed = ssl.isSessionReused
        exportedKeyingMaterial = try ssl.exportKeyingMaterial(label: exportLabel, length: exportLength)
            .map { String(format: "%02x", $0) }.joined()
    }
}
