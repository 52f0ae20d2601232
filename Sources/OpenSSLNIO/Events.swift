import NIOCore
import OpenSSL
import OpenSSLFLI

/// What an ``OpenSSLHandler`` runs, as a value that can leave the event loop (LispWorks'
/// `async-io-state-ssl`, `-ctx`, `-ssl-side`).
///
/// The pointers are valid while the handler is in the pipeline: objects the handler made are freed when
/// it is removed (detach) or when the channel closes; a caller's `SSL_CTX` or `SSL` is never freed.
public struct SSLAttachment: Sendable, Hashable {
    /// The `SSL` the handler runs.
    public let ssl: SSLPointer
    /// Its `SSL_CTX`.
    public let ctx: SSLContextPointer
    /// The side TLS was attached for.
    public let side: SSLSide

    /// Groups the three.
    public init(ssl: SSLPointer, ctx: SSLContextPointer, side: SSLSide) {
        self.ssl = ssl; self.ctx = ctx; self.side = side
    }
}

/// User inbound events an ``OpenSSLHandler`` fires down the pipeline (`userInboundEventTriggered`).
public enum OpenSSLEvent: Sendable, Hashable {
    /// The handshake finished; the negotiated protocol version ("TLSv1.3") and ALPN protocol, if any.
    case handshakeCompleted(version: String?, alpn: String?)
    /// The peer's close_notify arrived: a clean end of its TLS data (an EOF without it is reported as an
    /// `SSLError` whose `SSLError.isUnexpectedEOF` is true, through `errorCaught`).
    case closeNotifyReceived
}

/// What an ``OpenSSLHandler`` does when the peer's close_notify arrives and nobody asked for it (no
/// detach or close is under way).
public enum PeerCloseAction: Sendable, Hashable {
    /// `.halfClose` when the channel allows remote half-closure (`ChannelOptions.allowRemoteHalfClosure`),
    /// else `.close` — as NIO treats a TCP EOF.
    case automatic
    /// Answer with close_notify and close the channel.
    case close
    /// Fire `ChannelEvent.inputClosed` and keep the output open: the application may still write, then
    /// close (TLS 1.3 half-closure).
    case halfClose
    /// Answer with close_notify and remove the handler: the channel goes on in plaintext (a STARTTLS peer
    /// that detached). Bytes the peer sent after its close_notify are passed on as plaintext.
    case detach
}
