import Foundation
import NIOCore
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

extension Channel {
    // MARK: Attach (LispWorks' async-io-state-attach-ssl)

    /// Attaches TLS to this live channel (LispWorks' `async-io-state-attach-ssl`): adds an
    /// ``OpenSSLHandler`` first in the pipeline and runs the handshake. The future succeeds with what
    /// the handler runs once the handshake finished, or fails with its error (`SSLError`: kind
    /// `.handshakeTimeout` — "Handshake timed out" —, `.closed` — "SSL connection closed" —,
    /// `.verificationFailure`, `.failure` …, or the error a configure or verify callback threw); after a
    /// failed handshake the channel is closed.
    ///
    /// The arguments are those of `SocketStream.attachSSL`, with its ownership rules (see
    /// ``OpenSSLHandler/init(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:onPeerClose:)``);
    /// the objects are made on the channel's event loop (so `ctxConfigure` and `sslConfigure` run there).
    /// A client without `hostName` checks the IP address it is connected to. Attaching to a channel that
    /// has TLS already fails with `SSLError` (kind `.error`) and makes nothing.
    public func attachSSL(ctx argument: SSLContextArgument = .default, side: SSLSide = .client,
                          ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                          sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                          handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                          security: TLSConfiguration = .secure,
                          onPeerClose: PeerCloseAction = .automatic) -> EventLoopFuture<SSLAttachment> {
        return eventLoop.flatSubmit {
            do {
                if self.pipeline.syncOperations.openSSLHandler != nil {
                    throw SSLError.usage("TLS is already attached to this channel (detach it first)", call: "attachSSL")
                }
                let handler = try OpenSSLHandler(ctx: argument, side: side, ctxConfigure: ctxConfigure,
                                                 sslConfigure: sslConfigure, handshakeTimeout: handshakeTimeout,
                                                 hostName: hostName, security: security, onPeerClose: onPeerClose)
                try self.pipeline.syncOperations.addHandler(handler, position: .first)
                let attachment = handler.attachment
                return handler.handshakeFuture(on: self.eventLoop).map { attachment }
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// Attaches TLS and waits for the handshake (see the future-returning `attachSSL`).
    public func attachSSL(ctx argument: SSLContextArgument = .default, side: SSLSide = .client,
                          ctxConfigure: (@Sendable (SSLContextPointer) throws -> Void)? = nil,
                          sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                          handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                          security: TLSConfiguration = .secure,
                          onPeerClose: PeerCloseAction = .automatic) async throws -> SSLAttachment {
        let future: EventLoopFuture<SSLAttachment> = attachSSL(
            ctx: argument, side: side, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
            handshakeTimeout: handshakeTimeout, hostName: hostName, security: security, onPeerClose: onPeerClose)
        // Task cancellation ends the handshake: the channel is closed, and the handshake fails with it.
        return try await withTaskCancellationHandler { try await future.get() } onCancel: { self.close(promise: nil) }
    }

    // MARK: Detach (LispWorks' async-io-state-detach-ssl)

    /// Takes TLS off this channel (LispWorks' `async-io-state-detach-ssl`): what was written goes out
    /// encrypted, then close_notify; when the peer's close_notify arrives (within `timeout` seconds in total: `TimeoutValue`, nil for `TLSTimeouts.detach`) the
    /// handler leaves the pipeline, frees what it made, and the channel carries plaintext again — ready
    /// to attach again. Plaintext the peer sent right after its close_notify is passed on to the next
    /// handler. When the peer does not answer in time, TLS is taken off all the same and the future
    /// fails with `SSLError`. Without TLS attached this does nothing.
    public func detachSSL(timeout: TimeInterval? = nil) -> EventLoopFuture<Void> {
        let limit: TimeoutValue
        do {
            limit = try TimeoutValue.resolve(timeout, default: TLSTimeouts.detach, name: "the detach timeout", call: "detachSSL")
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return eventLoop.flatSubmit {
            guard let handler = self.pipeline.syncOperations.openSSLHandler else {
                return self.eventLoop.makeSucceededVoidFuture()
            }
            let outcome = handler.detachOutcome
            if !handler.detaching {
                handler.detachLimit = limit
                // The handler's removal is the detach; its outcome says how it went (and also ends when
                // the channel closes meanwhile).
                self.pipeline.syncOperations.removeHandler(handler, promise: nil)
            }
            return outcome.future(on: self.eventLoop)
        }
    }

    /// Takes TLS off this channel and waits for it (see the future-returning `detachSSL`).
    public func detachSSL(timeout: TimeInterval? = nil) async throws {
        let future: EventLoopFuture<Void> = detachSSL(timeout: timeout)
        // Task cancellation ends the wait for the peer's close_notify by closing the channel.
        try await withTaskCancellationHandler { try await future.get() } onCancel: { self.close(promise: nil) }
    }

    // MARK: Accessors (async-io-state-ssl, -ctx, -ssl-side)

    /// What TLS runs on this channel (`ssl`, `ctx`, `side`), or nil when none is attached.
    public func sslAttachment() -> EventLoopFuture<SSLAttachment?> {
        eventLoop.submit { self.pipeline.syncOperations.openSSLHandler?.attachment }
    }

    /// What TLS runs on this channel, or nil when none is attached.
    public func sslAttachment() async throws -> SSLAttachment? {
        let future: EventLoopFuture<SSLAttachment?> = sslAttachment()
        return try await future.get()
    }
}
