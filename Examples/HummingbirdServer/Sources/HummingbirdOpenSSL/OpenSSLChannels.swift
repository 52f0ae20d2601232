import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOHTTP2
import NIOTLS
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO

/// A Hummingbird server child channel with TLS by the system OpenSSL: an ``OpenSSLHandler`` made on a
/// shared ``OpenSSLServerContext`` goes first in each accepted connection's pipeline, then the base
/// channel's handlers (HTTP/1.1 for `.http1()`). HummingbirdTLS's `TLSChannel`, with OpenSSL in place
/// of NIOSSL.
public struct OpenSSLTLSChannel<BaseChannel: ServerChildChannel>: ServerChildChannel {
    public typealias Value = BaseChannel.Value

    /// The context every connection runs on.
    public let context: OpenSSLServerContext
    var baseChannel: BaseChannel

    /// Wraps `baseChannel` with TLS on `context`.
    public init(_ baseChannel: BaseChannel, context: OpenSSLServerContext) {
        self.baseChannel = baseChannel
        self.context = context
    }

    /// Adds the TLS handler, then the base channel's handlers.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(context.makeHandler())
        }.flatMap {
            self.baseChannel.setup(channel: channel, logger: logger)
        }
    }

    /// Runs the base channel.
    public func handle(value: BaseChannel.Value, logger: Logger) async {
        await baseChannel.handle(value: value, logger: logger)
    }
}

extension OpenSSLTLSChannel: HTTPChannelHandler where BaseChannel: HTTPChannelHandler {
    public var responder: HTTPChannelHandler.Responder { baseChannel.responder }
}

/// HTTPS with HTTP/2 or HTTP/1.1 chosen by ALPN, TLS by the system OpenSSL: HummingbirdHTTP2's
/// `HTTP2UpgradeChannel`, with an ``OpenSSLHandler`` in place of NIOSSL. The handler's
/// `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)` drives NIOTLS's ALPN negotiation handler:
/// `h2` gets Hummingbird's HTTP/2 channel, `http/1.1` or no ALPN its HTTP/1.1 channel.
public struct OpenSSLHTTP2UpgradeChannel: HTTPChannelHandler {
    public typealias Configuration = HTTP2ChannelConfiguration
    /// The negotiated connection.
    public struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<NIONegotiatedHTTPVersion<HTTP1Channel.Value, HTTP2Channel.Value>>
        public let channel: any Channel
    }

    /// The context every connection runs on.
    public let context: OpenSSLServerContext
    public let configuration: Configuration
    private let http1: HTTP1Channel
    private let http2: HTTP2Channel
    public var responder: Responder { http1.responder }

    /// Serves `responder` on `context`, whose ALPN selection is set to `h2`, `http/1.1`
    /// (`NIOHTTP2SupportedALPNProtocols`), as HummingbirdHTTP2 does for NIOSSL.
    /// - Corresponds: `SSL_CTX_set_alpn_select_cb` (through `setALPNServerProtocols`).
    public init(context: OpenSSLServerContext, configuration: Configuration = .init(),
                responder: @escaping HTTPChannelHandler.Responder) {
        context.pointer.setALPNServerProtocols(NIOHTTP2SupportedALPNProtocols)
        self.context = context
        self.configuration = configuration
        self.http1 = HTTP1Channel(responder: responder, configuration: configuration.streamConfiguration)
        self.http2 = HTTP2Channel(responder: responder, configuration: configuration)
    }

    /// Adds the TLS handler and the ALPN negotiation handler, which sets up HTTP/2 or HTTP/1.1 once
    /// the handshake finished.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let http1 = self.http1, http2 = self.http2
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(context.makeHandler())
            let negotiation = NIOTypedApplicationProtocolNegotiationHandler<NIONegotiatedHTTPVersion<HTTP1Channel.Value, HTTP2Channel.Value>> { result in
                switch result {
                case .negotiated("h2"):
                    return http2.setup(channel: channel, logger: logger).map { .http2($0) }
                case .negotiated("http/1.1"), .fallback:
                    return http1.setup(channel: channel, logger: logger).map { .http1_1($0) }
                case .negotiated:
                    return channel.close().flatMap { channel.eventLoop.makeFailedFuture(NIOHTTP2Errors.invalidALPNToken()) }
                }
            }
            try channel.pipeline.syncOperations.addHandler(negotiation)
            return Value(negotiated: negotiation.protocolNegotiationResult, channel: channel)
        }
    }

    /// Runs the HTTP/2 or HTTP/1.1 channel that was negotiated.
    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1_1(let connection): await http1.handle(value: connection, logger: logger)
            case .http2(let connection): await http2.handle(value: connection, logger: logger)
            }
        } catch {
            logger.debug("TLS or ALPN negotiation failed: \(error)")
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 over TLS by the system OpenSSL, on `context`:
    /// `Application(router: router, server: .openSSL(context: context))`.
    public static func openSSL(context: OpenSSLServerContext,
                               configuration: HTTP1Channel.Configuration = .init()) -> HTTPServerBuilder {
        .init { responder in
            OpenSSLTLSChannel(HTTP1Channel(responder: responder, configuration: configuration), context: context)
        }
    }

    /// HTTP/2 and HTTP/1.1 chosen by ALPN over TLS by the system OpenSSL, on `context`:
    /// `Application(router: router, server: .openSSLHTTP2Upgrade(context: context))`.
    public static func openSSLHTTP2Upgrade(context: OpenSSLServerContext,
                                           configuration: HTTP2ChannelConfiguration = .init()) -> HTTPServerBuilder {
        .init { responder in
            OpenSSLHTTP2UpgradeChannel(context: context, configuration: configuration, responder: responder)
        }
    }
}
