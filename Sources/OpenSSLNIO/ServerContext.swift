import Foundation
import NIOCore
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

/// One `SSL_CTX` that a server shares by all its connections, made once from the one configuration
/// value, and the ``OpenSSLHandler``s that run them — what a server framework (Hummingbird, Vapor, a
/// plain `ServerBootstrap`) holds in place of swift-nio-ssl's `NIOSSLContext`.
///
/// The context is made as a protocol symbol makes one (`SSLContextArgument`): the configuration's
/// context settings (trust, certificate chain and key, server verification), then its `ctxConfigure`,
/// then the `ctxConfigure` given here — the place for what is set once per server (OCSP stapling,
/// session-ticket keys, a key-log file, ALPN selection, ciphers). Each ``makeHandler(sslConfigure:onPeerClose:)``
/// makes one `SSL` on it with the configuration's connection settings and `sslConfigure` hooks, as
/// every entry point does; the handler frees its `SSL`, never the context. The context is freed when
/// this object and every `SSL` made on it are gone (`SSL_new` holds a reference).
///
/// Sendable: `SSL_new` on a shared context is thread-safe, so handlers may be made on any event loop.
/// Change the context (``pointer``) only before connections are accepted.
public final class OpenSSLServerContext: Sendable {
    /// The configuration every connection runs with.
    public let configuration: TLSConfiguration
    /// The shared context (LispWorks' `SSL_CTX` that a server passes to each attach).
    public let context: SSLContext
    /// Its handle, for direct calls.
    public var pointer: SSLContextPointer { context.pointer }
    private let holder: TLSContextHolder

    /// Makes the server's context.
    /// - Parameters:
    ///   - configuration: the one configuration value (`TLSConfiguration`): usually
    ///     `TLSConfiguration.server(certificateChainFile:privateKeyFile:)` with changes.
    ///   - proto: (`protocol:`) the protocol symbol (`SSLProtocol.default`: TLS 1.2 or 1.3).
    ///   - ctxConfigure: runs once, right after the configuration's own `ctxConfigure`.
    /// - Throws: `SSLError` (a file that does not load, a key that does not match, a refused protocol)
    ///   or what a configure hook threw; nothing is kept then.
    /// - Corresponds: `SSL_CTX_new`, `SSL_CTX_up_ref`, and those of `TLSConfiguration`'s context settings.
    public init(configuration: TLSConfiguration, protocol proto: SSLProtocol = .default,
                ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil) throws {
        let holder = try TLSContextHolder.make(.protocol(proto), side: .server, configuration: configuration,
                                               ctxConfigure: ctxConfigure, call: "OpenSSLServerContext")
        self.holder = holder
        self.configuration = configuration
        self.context = SSLContext(sharing: holder.ctx)
    }

    /// A server-side handler for one accepted connection, on this context: put it first in the
    /// connection's pipeline (see ``OpenSSLHandler``).
    /// - Parameters:
    ///   - sslConfigure: runs right after the `SSL` was made, after the configuration's own.
    ///   - onPeerClose: what to do when the client's close_notify arrives unasked.
    /// - Corresponds: `SSL_new`, `SSL_set_accept_state`, and those of `TLSConfiguration`'s connection settings.
    public func makeHandler(sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                            onPeerClose: PeerCloseAction = .automatic) throws -> OpenSSLHandler {
        let objects = try TLSObjects.make(on: holder, side: .server, configuration: configuration, sslConfigure: sslConfigure,
                                          hostName: nil, call: "OpenSSLServerContext.makeHandler", takeContext: false)
        return try OpenSSLHandler(objects: objects, side: .server, handshakeTimeout: nil, hostNameGiven: false,
                                  security: configuration, onPeerClose: onPeerClose, madeSSL: true)
    }
}
