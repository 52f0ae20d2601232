import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI

/// What `attachSSL`, `openTCPStream` and `accept` are given as LispWorks' `ssl-ctx` argument, and with
/// it who frees what:
///
/// | case | the stream makes | the stream frees | callbacks called |
/// |---|---|---|---|
/// | `.protocol(p)` | an `SSL_CTX` and an `SSL` | both | `ctxConfigure`, then `sslConfigure` |
/// | `.context(ctx)` | an `SSL` | the `SSL` only | `sslConfigure` |
/// | `.connection(ssl)` | nothing | nothing | none |
public enum SSLContextArgument: Sendable, Hashable {
    /// A protocol symbol: the stream makes (and frees) a new `SSL_CTX` with the secure defaults of
    /// ``SSLSecurity``, then an `SSL`.
    case `protocol`(SSLProtocol)
    /// The caller's `SSL_CTX`: used for a new `SSL`, never freed by the stream; one context can serve
    /// many streams at once and stays usable after they close.
    case context(SSLContextPointer)
    /// The caller's `SSL`: used as it is and never freed (its BIOs are replaced by the stream's while
    /// attached and removed again by detach or close).
    case connection(SSLPointer)

    /// `.protocol(.default)`: TLS 1.2 or 1.3.
    public static let `default` = SSLContextArgument.protocol(.default)
    /// `.protocol(.tlsV1_2)`: TLS 1.2 only.
    public static let tlsV1_2 = SSLContextArgument.protocol(.tlsV1_2)
    /// An owned context: used for a new `SSL`, never freed by the entry point (the `SSL` holds OpenSSL's
    /// own reference to it, so the object may go first).
    public static func context(_ context: SSLContext) -> SSLContextArgument { .context(context.pointer) }

    /// `.protocol(.tlsV1_3)`: TLS 1.3 only.
    public static let tlsV1_3 = SSLContextArgument.protocol(.tlsV1_3)
}

/// The former name of ``TLSConfiguration``.
public typealias SSLSecurity = TLSConfiguration

/// The one configuration value every entry point takes: verification, trust, identity, versions, ALPN,
/// the server-name policy, the handshake deadline and configure hooks. Its policy is written here once
/// and applied the same way by streams, listeners, the TLS engine, TLS over byte streams, DTLS, the NIO
/// handler and the seed functions.
///
/// ## What it does, and to what
/// - To every `SSL` the library makes (whoever made the `SSL_CTX`), before `sslConfigure` runs:
///   verification (`SSL_set_verify`, keeping the context's verify callback), the peer identity check
///   and SNI (``PeerIdentity``), the version range (`SSL_set_min_proto_version` /
///   `SSL_set_max_proto_version`), ALPN for a client (`SSL_set_alpn_protos`), and renegotiation refusal
///   (`SSL_OP_NO_RENEGOTIATION`). So `.context(yourCtx)` with the default ``secure`` configuration
///   verifies the peer and its name, with the trust store of your context.
/// - To an `SSL_CTX` the library makes (a protocol symbol), before `ctxConfigure` runs: trust
///   (``trustSystemStore``, ``caFile``, ``caDirectory``) and identity (``certificateChainFile``,
///   ``privateKeyFile``).
/// - A caller's `SSL_CTX` is never changed: given one, a configuration that names trust files or an
///   identity is refused with a usage error (load them into your context, or pass a protocol symbol).
/// - A caller's `SSL` is used as it is (LispWorks' rule): nothing is applied and no hook runs.
///
/// A client always checks the peer's name unless ``checkHostName`` is false or verification is off:
/// an entry point that cannot know the peer's name (``TLSEngine``, TLS over byte streams) then needs
/// one (`hostName:`), and an empty name is refused (see ``PeerIdentity``).
public struct TLSConfiguration: Sendable {
    /// Verify the peer's certificate. nil (the default) means: yes for a client; for a server, what the
    /// context says (a context the library made asks for no client certificate). `true` on a server asks
    /// for one and refuses a client without it.
    public var verifyPeer: Bool?
    /// On a client, check that the certificate is for the host name (or IP address) expected.
    public var checkHostName: Bool
    /// On a client, send the host name as SNI (`SSL_set_tlsext_host_name`) when it is a DNS name.
    public var sendServerName: Bool
    /// Trust the system's certificate store (`SSL_CTX_set_default_verify_paths`).
    public var trustSystemStore: Bool
    /// Trust the certificates in this PEM file too (`SSL_CTX_load_verify_locations`).
    public var caFile: String?
    /// Trust the hashed certificate directory too.
    public var caDirectory: String?
    /// The lowest protocol version accepted (TLS 1.2 by default; nil for the library's own minimum). A
    /// protocol symbol that pins a version wins over this. DTLS maps it onto its own numbering.
    public var minimumVersion: TLSVersion?
    /// The highest protocol version offered (nil: the library's own maximum).
    public var maximumVersion: TLSVersion?
    /// This end's certificate chain (PEM: the leaf first), for a context the library makes.
    public var certificateChainFile: String?
    /// This end's private key (PEM), for a context the library makes.
    public var privateKeyFile: String?
    /// ALPN protocols a client offers, most preferred first (empty: no ALPN).
    public var alpn: [String]
    /// Allow TLS 1.2 renegotiation (off: OpenSSL refuses it with an alert).
    public var allowRenegotiation: Bool
    /// The total handshake deadline; nil means ``TLSTimeouts/handshake`` (see ``TimeoutValue`` for
    /// the meaning of every value). An entry point's own `handshakeTimeout:` wins over this.
    public var handshakeTimeout: TimeInterval?
    /// Runs right after the library made a new `SSL_CTX` and applied this configuration, before the
    /// entry point's own `ctxConfigure`.
    public var ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)?
    /// Runs right after the library made a new `SSL` and applied this configuration, before the entry
    /// point's own `sslConfigure`.
    public var sslConfigure: (@Sendable (SSLPointer) throws -> Void)?

    public init(verifyPeer: Bool? = nil, checkHostName: Bool = true, sendServerName: Bool = true,
                trustSystemStore: Bool = true, caFile: String? = nil, caDirectory: String? = nil,
                minimumVersion: TLSVersion? = .tls1_2, maximumVersion: TLSVersion? = nil,
                certificateChainFile: String? = nil, privateKeyFile: String? = nil, alpn: [String] = [],
                allowRenegotiation: Bool = false, handshakeTimeout: TimeInterval? = nil,
                ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil) {
        self.verifyPeer = verifyPeer; self.checkHostName = checkHostName; self.sendServerName = sendServerName
        self.trustSystemStore = trustSystemStore; self.caFile = caFile; self.caDirectory = caDirectory
        self.minimumVersion = minimumVersion; self.maximumVersion = maximumVersion
        self.certificateChainFile = certificateChainFile; self.privateKeyFile = privateKeyFile
        self.alpn = alpn; self.allowRenegotiation = allowRenegotiation; self.handshakeTimeout = handshakeTimeout
        self.ctxConfigure = ctxConfigure; self.sslConfigure = sslConfigure
    }

    /// The secure client default: verify the peer and its name, trust the system store, TLS 1.2 or later.
    public static let secure = TLSConfiguration()

    /// A client that trusts `caFile` (and not the system store); otherwise as ``secure``.
    public static func trusting(caFile: String) -> TLSConfiguration {
        TLSConfiguration(trustSystemStore: false, caFile: caFile)
    }

    /// A server with this certificate chain and key; no client certificate asked for.
    public static func server(certificateChainFile: String, privateKeyFile: String) -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: certificateChainFile, privateKeyFile: privateKeyFile)
    }

    /// No verification at all (no certificate check, no host name check): for tests and for peers
    /// authenticated some other way. SNI is still sent. The explicit opt-out.
    public static let insecure = TLSConfiguration(verifyPeer: false, checkHostName: false, trustSystemStore: false)

    /// Whether `side` verifies the peer on this configuration.
    public func verifies(_ side: SSLSide) -> Bool { verifyPeer ?? (side == .client) }

    /// The handshake limit an entry point runs with: its own parameter if given, else this
    /// configuration's, else the default (see ``TimeoutValue``).
    public func handshakeLimit(_ parameter: TimeInterval?, allowsDeferred: Bool = false, call: String) throws -> TimeoutValue {
        try TimeoutValue.resolve(parameter ?? handshakeTimeout, default: TLSTimeouts.handshake, allowsDeferred: allowsDeferred,
                                 name: "the handshake timeout", call: call)
    }

    // MARK: Applying

    /// Applies the context-level settings (trust, identity) to a context the library made.
    /// - Corresponds: `SSL_CTX_set_default_verify_paths`, `SSL_CTX_load_verify_locations`,
    ///   `SSL_CTX_use_certificate_chain_file`, `SSL_CTX_use_PrivateKey_file`, `SSL_CTX_check_private_key`.
    package func configure(context ctx: SSLContextPointer, side: SSLSide) throws {
        if verifies(side) || caFile != nil || caDirectory != nil {
            if trustSystemStore && COpenSSL.SSL_CTX_set_default_verify_paths(ctx.rawValue) != 1 {
                throw SSLError.fromQueue(call: "SSL_CTX_set_default_verify_paths")
            }
            if caFile != nil || caDirectory != nil {
                try loadVerifyLocations(ctx, file: caFile, directory: caDirectory)
            }
        }
        if let certificateChainFile {
            try useCertificateChainFile(ctx, file: certificateChainFile)
            try usePrivateKeyFile(ctx, file: privateKeyFile ?? certificateChainFile)
            guard COpenSSL.SSL_CTX_check_private_key(ctx.rawValue) == 1 else {
                throw SSLError.fromQueue(call: "SSL_CTX_check_private_key", file: privateKeyFile ?? certificateChainFile, message: "the private key does not match the certificate")
            }
        } else if privateKeyFile != nil {
            throw SSLError.usage("a private key without a certificate chain (set certificateChainFile)", call: "SSL_CTX_use_PrivateKey_file")
        }
        // Server verification of a context the library made: asked here, so the SSLs inherit it.
        if side == .server, let verifyPeer {
            COpenSSL.SSL_CTX_set_verify(ctx.rawValue, verifyPeer ? (COpenSSL.SSL_VERIFY_PEER | COpenSSL.SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : COpenSSL.SSL_VERIFY_NONE, nil)
        }
    }

    /// Refuses what cannot be applied to a caller's context (trust files, an identity).
    package func checkApplicable(toCallersContext call: String) throws {
        if caFile != nil || caDirectory != nil || certificateChainFile != nil || privateKeyFile != nil {
            throw SSLError.usage("the configuration names trust files or an identity, which apply to contexts the library makes: load them into your SSL_CTX, or pass a protocol symbol", call: call)
        }
    }

    /// Applies the connection-level settings to an `SSL` the library made, for `side`.
    /// - Parameters:
    ///   - identity: the peer a client expects (nil only when no check is asked for).
    ///   - pinned: the protocol pins one version (no range is set then).
    ///   - datagram: DTLS (its versions are numbered apart).
    /// - Corresponds: `SSL_set_verify`, `SSL_get_verify_callback`, `SSL_set_min_proto_version`,
    ///   `SSL_set_max_proto_version`, `SSL_set_alpn_protos`, `SSL_set_options`, and those of
    ///   ``PeerIdentity/apply(to:check:sendServerName:)``.
    ///   - identityLater: the transport learns the peer's address only later (the NIO handler, before
    ///     its channel is active) and applies ``PeerIdentity`` itself then; no host name is required now.
    package func configure(connection ssl: SSLPointer, side: SSLSide, identity: PeerIdentity?, pinned: Bool, datagram: Bool,
                           identityLater: Bool = false, call: String) throws {
        if !allowRenegotiation { _ = SSL_set_options(ssl, UInt64(SSL_OP_NO_RENEGOTIATION)) }
        if !pinned {
            if let minimumVersion { try setVersion(ssl, minimumVersion, minimum: true, datagram: datagram) }
            if let maximumVersion { try setVersion(ssl, maximumVersion, minimum: false, datagram: datagram) }
        }
        if let verifyPeer, side == .server {
            COpenSSL.SSL_set_verify(ssl.rawValue, verifyPeer ? (COpenSSL.SSL_VERIFY_PEER | COpenSSL.SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : COpenSSL.SSL_VERIFY_NONE,
                                    COpenSSL.SSL_get_verify_callback(ssl.rawValue))
        }
        guard side == .client else { return }
        let verify = verifies(.client)
        // The context's verify callback (if any) stays: it sees every certificate and may decide.
        COpenSSL.SSL_set_verify(ssl.rawValue, verify ? COpenSSL.SSL_VERIFY_PEER : COpenSSL.SSL_VERIFY_NONE, COpenSSL.SSL_get_verify_callback(ssl.rawValue))
        if let identity {
            try identity.apply(to: ssl, check: verify && checkHostName, sendServerName: sendServerName)
        } else if verify && checkHostName && !identityLater {
            throw SSLError.usage("a client that verifies the peer needs its host name (hostName:), or checkHostName: false", call: call)
        }
        if !alpn.isEmpty {
            let wire = try alpnWireFormat(alpn, call: "SSL_set_alpn_protos")
            guard COpenSSL.SSL_set_alpn_protos(ssl.rawValue, wire, UInt32(wire.count)) == 0 else {
                throw SSLError.fromQueue(call: "SSL_set_alpn_protos")
            }
        }
    }

    /// Narrows the `SSL`'s version range to the configuration's, never widening what its context set: a
    /// minimum is raised only, a maximum lowered only (0, OpenSSL's "no limit", is the widest).
    private func setVersion(_ ssl: SSLPointer, _ version: TLSVersion, minimum: Bool, datagram: Bool) throws {
        var value = Int(version.rawValue)
        // DTLS numbers its versions apart (downwards): DTLS 1.2 goes with TLS 1.2, DTLS 1.0 with TLS 1.1
        // and below.
        if datagram { value = Int(value >= Int(TLSVersion.tls1_2.rawValue) ? COpenSSL.DTLS1_2_VERSION : COpenSSL.DTLS1_VERSION) }
        let current = minimum ? SSL_get_min_proto_version(ssl) : SSL_get_max_proto_version(ssl)
        if current != 0 {
            // DTLS versions count down (0xFEFD is 1.2, 0xFEFF is 1.0): compare them the other way round.
            let stricter = datagram ? (minimum ? value < current : value > current) : (minimum ? value > current : value < current)
            if !stricter { return }
        }
        let call = minimum ? "SSL_set_min_proto_version" : "SSL_set_max_proto_version"
        let ok = minimum ? SSL_set_min_proto_version(ssl, value) : SSL_set_max_proto_version(ssl, value)
        guard ok == 1 else { throw SSLError.fromQueue(call: call, message: "cannot set the \(minimum ? "minimum" : "maximum") protocol version \(version)") }
    }
}
