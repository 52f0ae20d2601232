import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

// MARK: Client (LispWorks' create-async-io-state-and-connected-tcp-socket)

/// Connects to `host`:`port` and attaches TLS as a client (LispWorks'
/// `create-async-io-state-and-connected-tcp-socket`). The future succeeds with the channel once the
/// handshake finished; it fails with the connection's or the handshake's error (the channel is closed
/// then).
///
/// - Parameters:
///   - host: where to connect (a name, IPv4 or IPv6 address).
///   - port: the TCP port.
///   - group: the event loops to run on.
///   - argument: (`ctx:`) what to make and free, as for
///     ``OpenSSLHandler/init(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:onPeerClose:)``.
///   - ctxConfigure: called with a new `SSL_CTX` (on the channel's event loop, once per connection
///     attempt).
///   - sslConfigure: called with the new `SSL` (on the channel's event loop).
///   - handshakeTimeout: seconds the whole handshake may take (nil: `TLSTimeouts.handshake`).
///   - security: the secure defaults and their switches (`TLSConfiguration.secure`).
///   - onPeerClose: what to do when the peer's close_notify arrives (``PeerCloseAction``).
///   - hostName: the name to check the certificate against and send as SNI; `host` by default.
///   - connectTimeout: how long connecting may take.
///   - channelInitializer: adds the application's handlers (after the TLS handler).
public func connectTLSChannel(host: String, port: Int, group: EventLoopGroup,
                              ctx argument: SSLContextArgument = .default,
                              ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                              sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                              handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                              security: TLSConfiguration = .secure, onPeerClose: PeerCloseAction = .automatic,
                              connectTimeout: TimeAmount = .seconds(10),
                              channelInitializer: (@Sendable (Channel) -> EventLoopFuture<Void>)? = nil) -> EventLoopFuture<Channel> {
    let target: (connect: String, name: String)
    do {
        target = try clientTarget(host: host, hostName: hostName, handshakeTimeout: handshakeTimeout, security: security)
    } catch {
        return group.next().makeFailedFuture(error)
    }
    let name = target.name
    // The handshake's outcome is taken when the handler is made: by the time the connect future
    // completes, a failed handshake may have closed the channel and removed the handler already.
    final class HandshakeSlot: @unchecked Sendable { var handshake: EventLoopFuture<Void>? }  // used on the channel's loop only
    let slot = HandshakeSlot()
    return ClientBootstrap(group: group)
        .connectTimeout(connectTimeout)
        .channelInitializer { channel in
            do {
                let handler = try OpenSSLHandler(ctx: argument, side: .client, ctxConfigure: ctxConfigure,
                                                 sslConfigure: sslConfigure, handshakeTimeout: handshakeTimeout,
                                                 hostName: name, security: security, onPeerClose: onPeerClose)
                try channel.pipeline.syncOperations.addHandler(handler)
                slot.handshake = handler.handshakeFuture(on: channel.eventLoop)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return channelInitializer?(channel) ?? channel.eventLoop.makeSucceededVoidFuture()
        }
        .connect(host: target.connect, port: port)
        .flatMap { channel in
            channel.eventLoop.flatSubmit {
                guard let handshake = slot.handshake else {
                    return channel.eventLoop.makeFailedFuture(SSLError.usage("the TLS handler was not added", call: "connectTLSChannel"))
                }
                return handshake.map { channel }
            }
        }
}

/// Connects, attaches TLS as a client and wraps the channel for `async` code once the handshake
/// finished (see the future-returning `connectTLSChannel` for the arguments). Read and write plaintext
/// with the returned channel's `inbound` / `outbound` (`executeThenClose`).
public func connectTLSChannel(host: String, port: Int, group: EventLoopGroup,
                              ctx argument: SSLContextArgument = .default,
                              ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                              sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                              handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                              security: TLSConfiguration = .secure, onPeerClose: PeerCloseAction = .automatic,
                              connectTimeout: TimeAmount = .seconds(10),
                              configuration: NIOAsyncChannel<ByteBuffer, ByteBuffer>.Configuration = .init()) async throws
    -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
    let target = try clientTarget(host: host, hostName: hostName, handshakeTimeout: handshakeTimeout, security: security)
    let name = target.name
    let (channel, handshake) = try await ClientBootstrap(group: group)
        .connectTimeout(connectTimeout)
        .connect(host: target.connect, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = try OpenSSLHandler(ctx: argument, side: .client, ctxConfigure: ctxConfigure,
                                                 sslConfigure: sslConfigure, handshakeTimeout: handshakeTimeout,
                                                 hostName: name, security: security, onPeerClose: onPeerClose)
                try channel.pipeline.syncOperations.addHandler(handler)
                let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel,
                                                                           configuration: configuration)
                return (wrapped, handler.handshakeFuture(on: channel.eventLoop))
            }
        }
    do {
        // Task cancellation ends the handshake by closing the channel.
        try await withTaskCancellationHandler { try await handshake.get() } onCancel: { channel.channel.close(promise: nil) }
    } catch {
        // A NIOAsyncChannel must not be dropped unfinished (NIO stops the process: "Deinited
        // NIOAsyncWriter without calling finish()"): executeThenClose finishes its writer and closes
        // the channel, then the handshake's error is reported.
        try? await channel.executeThenClose { _, _ in }
        throw error
    }
    return channel
}

/// Checks a client's arguments before anything connects, so that a bad one fails as itself (not
/// wrapped in NIO's connection error): the handshake limit (``TimeoutValue``) and the peer's name
/// (``PeerIdentity``; `[::1]` connects to `::1` and is checked as that address).
private func clientTarget(host: String, hostName: String?, handshakeTimeout: TimeInterval?,
                          security: TLSConfiguration) throws -> (connect: String, name: String) {
    _ = try security.handshakeLimit(handshakeTimeout, call: "connectTLSChannel")
    let name = hostName ?? host
    _ = try PeerIdentity(name, call: "connectTLSChannel")
    return (unbracketedHost(host), name)
}

// MARK: Server (LispWorks' accept-tcp-connections-creating-async-io-states)

/// Listens on `host`:`port` and attaches TLS as a server to every accepted connection (LispWorks'
/// `accept-tcp-connections-creating-async-io-states`). The future succeeds with the listening channel
/// (`localAddress` tells the port when `port` is 0); close it to stop accepting.
///
/// - Parameters:
///   - host: the address to listen on.
///   - port: the TCP port; 0 picks a free one.
///   - group: the event loops that accept.
///   - childGroup: the event loops the connections run on (`group` by default).
///   - backlog: how many connections may wait to be accepted.
///   - argument: (`ctx:`) for a server, usually `.context(ctx)` with your certificate loaded, shared by
///     every connection (the handler makes and frees one `SSL` per connection). A protocol symbol makes
///     (and frees) one `SSL_CTX` per connection, configured by `ctxConfigure` each time.
///   - ctxConfigure: called with each new `SSL_CTX` (with a protocol symbol only).
///   - sslConfigure: called with each connection's new `SSL`.
///   - handshakeTimeout: seconds each handshake may take in all (nil: `TLSTimeouts.handshake`).
///   - security: the configuration applied to each connection (`TLSConfiguration`).
///   - onPeerClose: what to do when a peer's close_notify arrives (``PeerCloseAction``).
///   - sslErrorCallback: called (on the connection's event loop) with the connection and the error
///     when attaching or the handshake fails (LispWorks' `ssl-error-callback`); the connection is closed.
///   - childChannelInitializer: adds the application's handlers to each connection, after the TLS
///     handler; they see plaintext (writes made before the handshake finished are kept until it has).
public func acceptTLSChannels(host: String, port: Int, group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                              ctx argument: SSLContextArgument,
                              ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                              sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                              handshakeTimeout: TimeInterval? = nil, security: TLSConfiguration = .secure,
                              onPeerClose: PeerCloseAction = .automatic, backlog: Int32 = 256,
                              sslErrorCallback: (@Sendable (Channel, Error) -> Void)? = nil,
                              childChannelInitializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Channel> {
    return ServerBootstrap(group: group, childGroup: childGroup ?? group)
        .serverChannelOption(ChannelOptions.backlog, value: backlog)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            do {
                try attachServerTLS(to: channel, argument, ctxConfigure, sslConfigure, handshakeTimeout: handshakeTimeout, security: security,
                                    onPeerClose: onPeerClose, sslErrorCallback: sslErrorCallback)
            } catch {
                sslErrorCallback?(channel, error)
                return channel.eventLoop.makeFailedFuture(error)
            }
            return childChannelInitializer(channel)
        }
        .bind(host: host, port: port)
}

/// Listens and attaches TLS as a server to every accepted connection, for `async` code: each
/// connection comes out of the returned channel's `inbound` as a `NIOAsyncChannel` carrying plaintext,
/// as soon as it is accepted, with its handshake under way (reads wait for it; writes are kept until
/// it finished). A failed handshake goes to `sslErrorCallback` and ends that connection's `inbound`
/// with the error. See the future-returning `acceptTLSChannels` for the other arguments.
public func acceptTLSChannels(host: String, port: Int, group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                              ctx argument: SSLContextArgument,
                              ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                              sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                              handshakeTimeout: TimeInterval? = nil, security: TLSConfiguration = .secure,
                              onPeerClose: PeerCloseAction = .automatic, backlog: Int32 = 256,
                              sslErrorCallback: (@Sendable (Channel, Error) -> Void)? = nil,
                              configuration: NIOAsyncChannel<ByteBuffer, ByteBuffer>.Configuration = .init()) async throws
    -> NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never> {
    return try await ServerBootstrap(group: group, childGroup: childGroup ?? group)
        .serverChannelOption(ChannelOptions.backlog, value: backlog)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .bind(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                do {
                    try attachServerTLS(to: channel, argument, ctxConfigure, sslConfigure, handshakeTimeout: handshakeTimeout, security: security,
                                        onPeerClose: onPeerClose, sslErrorCallback: sslErrorCallback)
                } catch {
                    sslErrorCallback?(channel, error)
                    throw error
                }
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel, configuration: configuration)
            }
        }
}

/// Adds a server-side handler to an accepted channel and reports its handshake failure.
private func attachServerTLS(to channel: Channel, _ argument: SSLContextArgument,
                             _ ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)?,
                             _ sslConfigure: (@Sendable (SSLPointer) throws -> Void)?,
                             handshakeTimeout: TimeInterval?, security: TLSConfiguration, onPeerClose: PeerCloseAction,
                             sslErrorCallback: (@Sendable (Channel, Error) -> Void)?) throws {
    let handler = try OpenSSLHandler(ctx: argument, side: .server, ctxConfigure: ctxConfigure,
                                     sslConfigure: sslConfigure, handshakeTimeout: handshakeTimeout,
                                     security: security, onPeerClose: onPeerClose)
    try channel.pipeline.syncOperations.addHandler(handler)
    if let sslErrorCallback {
        handler.handshakeFuture(on: channel.eventLoop).whenFailure { error in sslErrorCallback(channel, error) }
    }
}
