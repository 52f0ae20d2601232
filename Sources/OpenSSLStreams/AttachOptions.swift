import COpenSSL
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
    /// `.protocol(.tlsV1_3)`: TLS 1.3 only.
    public static let tlsV1_3 = SSLContextArgument.protocol(.tlsV1_3)
}

/// The secure defaults a stream applies, and the switches to turn each off.
///
/// Context-level settings (``verifyPeer``, the trust settings, ``minimumVersion``) apply to contexts
/// the stream makes from a protocol symbol, before `ctxConfigure` runs (so `ctxConfigure` may still
/// change them). Connection-level settings (``checkHostName``, ``sendServerName``) apply to every `SSL`
/// the stream makes for the client side, before `sslConfigure` runs. A caller's `SSLPointer` is used
/// as it is.
public struct SSLSecurity: Sendable, Hashable {
    /// Verify the peer's certificate. nil (the default) means: yes for a client; for a server, no
    /// client certificate is asked for. `true` on a server asks for one and refuses a client without it.
    public var verifyPeer: Bool?
    /// On a client, check that the certificate is for the host name (or IP address) connected to
    /// (`SSL_set1_host`, or the IP check of `X509_VERIFY_PARAM_set1_ip_asc`).
    public var checkHostName: Bool
    /// On a client, send the host name as SNI (`SSL_set_tlsext_host_name`) when it is a DNS name.
    public var sendServerName: Bool
    /// Trust the system's certificate store (`SSL_CTX_set_default_verify_paths`).
    public var trustSystemStore: Bool
    /// Trust the certificates in this PEM file too (`SSL_CTX_load_verify_locations`).
    public var caFile: String?
    /// Trust the hashed certificate directory too.
    public var caDirectory: String?
    /// The lowest protocol version accepted (`TLS1_2_VERSION` by default; nil for the library's own
    /// minimum). A protocol symbol that pins a version wins over this.
    public var minimumVersion: Int32?

    public init(verifyPeer: Bool? = nil, checkHostName: Bool = true, sendServerName: Bool = true,
                trustSystemStore: Bool = true, caFile: String? = nil, caDirectory: String? = nil,
                minimumVersion: Int32? = COpenSSL.TLS1_2_VERSION) {
        self.verifyPeer = verifyPeer; self.checkHostName = checkHostName; self.sendServerName = sendServerName
        self.trustSystemStore = trustSystemStore; self.caFile = caFile; self.caDirectory = caDirectory
        self.minimumVersion = minimumVersion
    }

    /// Verify the peer and its name, trust the system store, TLS 1.2 or later.
    public static let secure = SSLSecurity()

    /// Trust `caFile` (and not the system store); otherwise as ``secure``.
    public static func trusting(caFile: String) -> SSLSecurity {
        SSLSecurity(trustSystemStore: false, caFile: caFile)
    }

    /// No verification at all (no certificate check, no host name check): for tests and for peers
    /// authenticated some other way. SNI is still sent.
    public static let insecure = SSLSecurity(verifyPeer: false, checkHostName: false, trustSystemStore: false)

    /// Applies the context-level settings to a context the stream made.
    func configure(context ctx: SSLContextPointer, side: SSLSide, pinned: Bool, datagram: Bool = false) throws {
        if var minimumVersion, !pinned {
            // DTLS numbers its versions apart: TLS 1.2's floor is DTLS 1.2's (DTLS 1.0 is TLS 1.1's).
            if datagram { minimumVersion = minimumVersion >= COpenSSL.TLS1_2_VERSION ? COpenSSL.DTLS1_2_VERSION : COpenSSL.DTLS1_VERSION }
            guard SSL_CTX_set_min_proto_version(ctx, Int(minimumVersion)) == 1 else {
                throw SSLError.fromQueue(call: "SSL_CTX_set_min_proto_version", message: "cannot set the minimum protocol version")
            }
        }
        let verify = verifyPeer ?? (side == .client)
        if verify {
            var mode = COpenSSL.SSL_VERIFY_PEER
            if side == .server { mode |= COpenSSL.SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
            COpenSSL.SSL_CTX_set_verify(ctx.rawValue, mode, nil)
        } else {
            COpenSSL.SSL_CTX_set_verify(ctx.rawValue, COpenSSL.SSL_VERIFY_NONE, nil)
        }
        if verify || caFile != nil || caDirectory != nil {
            if trustSystemStore && COpenSSL.SSL_CTX_set_default_verify_paths(ctx.rawValue) != 1 {
                throw SSLError.fromQueue(call: "SSL_CTX_set_default_verify_paths")
            }
            if caFile != nil || caDirectory != nil {
                try loadVerifyLocations(ctx, file: caFile, directory: caDirectory)
            }
        }
    }

    /// Applies the connection-level settings to an `SSL` the stream made for the client side.
    func configure(connection ssl: SSLPointer, hostName: String?) throws {
        guard let hostName, !hostName.isEmpty else { return }
        // C sees a name up to its first NUL: "good.example\0evil" must not be checked as "good.example".
        guard !hostName.utf8.contains(0) else { throw SSLError.usage("the host name contains a NUL byte", call: "SSL_set1_host") }
        let ip = isIPAddress(hostName)
        if checkHostName {
            if ip {
                guard let param = COpenSSL.SSL_get0_param(ssl.rawValue),
                      COpenSSL.X509_VERIFY_PARAM_set1_ip_asc(param, hostName) == 1 else {
                    throw SSLError.fromQueue(call: "X509_VERIFY_PARAM_set1_ip_asc", message: "cannot check IP address \(hostName)")
                }
            } else if COpenSSL.SSL_set1_host(ssl.rawValue, hostName) != 1 {
                throw SSLError.fromQueue(call: "SSL_set1_host", message: "cannot check host name \(hostName)")
            }
        }
        if sendServerName && !ip {
            guard SSL_set_tlsext_host_name(ssl, hostName) == 1 else {
                throw SSLError.fromQueue(call: "SSL_set_tlsext_host_name", message: "cannot send server name \(hostName)")
            }
        }
    }
}
