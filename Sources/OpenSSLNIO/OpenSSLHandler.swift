import COpenSSL
import Foundation
import NIOCore
import NIOTLS
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

/// TLS on a SwiftNIO channel, run by the system OpenSSL over an in-memory BIO (LispWorks'
/// async-io-state with SSL attached).
///
/// Put it first in the pipeline (next to the socket): ciphertext comes in and goes out below it,
/// plaintext `ByteBuffer`s above it. It takes the arguments of the blocking layer's
/// `SocketStream.attachSSL`, with the same ownership rules (`SSLContextArgument`):
///
/// | `ctx` | the handler makes | the handler frees | callbacks called |
/// |---|---|---|---|
/// | `.protocol(p)` | an `SSL_CTX` and an `SSL` | both | `ctxConfigure`, then `sslConfigure` |
/// | `.context(ctx)` | an `SSL` | the `SSL` only | `sslConfigure` |
/// | `.connection(ssl)` | nothing | nothing | none |
///
/// The objects are made (and the configure callbacks run) when the handler is made; the handshake
/// starts as soon as the handler is in the pipeline of an active channel. Its outcome is
/// ``handshakeFuture(on:)`` / ``waitForHandshake()``; the handler also fires
/// ``OpenSSLEvent/handshakeCompleted(version:alpn:)`` down the pipeline, then NIOTLS's
/// `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)` (the event NIO's ALPN negotiation handlers,
/// e.g. NIOHTTP2's `configureHTTP2SecureUpgrade`, wait for). Writes made before the
/// handshake finished are kept and sent after it. Removing the handler from the pipeline
/// (`Channel.detachSSL`, or `ChannelPipeline.removeHandler`) is a detach: close_notify both ways, then
/// the channel carries plaintext.
///
/// Errors are `SSLError` values with LispWorks' kinds: `.handshakeTimeout` ("Handshake timed out"),
/// `.closed` ("SSL connection closed": the connection closed during the handshake), `.verificationFailure`,
/// `.failure` (protocol errors with OpenSSL's reasons), `.error` for an EOF without close_notify
/// (`SSLError.isUnexpectedEOF`) and for system errors under TLS; an error thrown by a Swift callback
/// (verify, SNI, ALPN …) during a TLS call is reported as it was thrown. A fatal error is fired through
/// `errorCaught`, fails the handshake future and pending writes, and closes the channel.
///
/// Back-pressure: flushed writes are encrypted in chunks while the channel is writable and resumed when
/// it becomes writable again; small writes flushed together are coalesced into full 16 KiB records
/// (``coalescesWrites``). Received ciphertext is decrypted in one pass per read, into one plaintext buffer.
/// A connection that stays idle for ``bufferReleaseDelay`` gives OpenSSL's record buffers back, so
/// many idle keep-alive connections need no `SSL_MODE_RELEASE_BUFFERS`.
///
/// Use the handler on its channel's event loop only (as every NIO handler).
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Ciphertext from the transport.
    public typealias InboundIn = ByteBuffer
    /// Plaintext for the handlers after this one.
    public typealias InboundOut = ByteBuffer
    /// Plaintext from the handlers after this one.
    public typealias OutboundIn = ByteBuffer
    /// Ciphertext for the transport.
    public typealias OutboundOut = ByteBuffer

    // MARK: What it runs

    /// The `SSL` the handler runs (LispWorks' `async-io-state-ssl`). Valid while the handler is in the
    /// pipeline; an `SSL` the handler made is freed when it leaves it.
    public let ssl: SSLPointer
    /// Its `SSL_CTX` (`async-io-state-ctx`). A context the handler made is freed when it leaves the pipeline.
    public let ctx: SSLContextPointer
    /// The side TLS was attached for (`async-io-state-ssl-side`).
    public let side: SSLSide
    /// The three, as a value that can leave the event loop.
    public var attachment: SSLAttachment { SSLAttachment(ssl: ssl, ctx: ctx, side: side) }

    /// The handshake timeout as given; `handshakeLimit` is what it means (`TimeoutValue`).
    public let handshakeTimeout: TimeInterval?
    /// The total time the handshake may take from the moment it starts (nil given: the
    /// configuration's, else `TLSTimeouts.handshake`; `.infinity`: no limit).
    public let handshakeLimit: TimeoutValue
    /// What to do when the peer's close_notify arrives unasked.
    public let onPeerClose: PeerCloseAction
    /// Seconds `close()` waits for the peer's close_notify after sending its own before closing the
    /// socket (the peer's answer keeps a reset from overtaking the last data). Default 3.
    public var closeTimeout: TimeInterval = 3
    /// How long a detach waits for the peer's close_notify (`Channel.detachSSL(timeout:)` sets it):
    /// `TLSTimeouts.detach` by default.
    public var detachLimit: TimeoutValue = .seconds(TLSTimeouts.detach)
    /// Coalesce small writes flushed together into full TLS records (fewer records, less per-record
    /// work on both ends). Default true; set false to keep one record per write.
    @exclusivity(unchecked) public var coalescesWrites = true  // exclusivity(unchecked): event-loop only (see `state`)
    /// How long the connection stays idle (nothing received left to decrypt, nothing written left to
    /// encrypt) before OpenSSL's record buffers, ~33 KiB, are given back (`SSL_free_buffers`); 100 ms
    /// by default. Shorter: less memory held by connections that pause; longer: fewer frees and
    /// re-allocations on a busy connection. Set it before the handler is added.
    public var bufferReleaseDelay: TimeAmount = .milliseconds(100)

    /// True once the handshake has finished.
    public var isHandshakeDone: Bool { state.isHandshakeDone }
    /// Plaintext written to the handler and not encrypted yet (waiting for a flush, the handshake, or
    /// the channel to become writable): what a writer pacing itself by `channel.isWritable` cannot see.
    @exclusivity(unchecked) public private(set) var pendingWriteBytes = 0  // exclusivity(unchecked): event-loop only (see `state`)
    /// True once the peer's close_notify has arrived.
    public var receivedCloseNotify: Bool { state.receivedCloseNotify }

    // MARK: Internals

    /// Owns what was made for the handler (the core's ownership rules); releasing it frees them and
    /// takes our BIO off a caller's `SSL`.
    private var owner: TLSObjects?
    /// The core engine that runs every OpenSSL call.
    private let machine: TLSMachine
    private let buffers: CipherBuffers
    let handshakeOutcome = Outcome()
    let detachOutcome = Outcome()
    private let security: TLSConfiguration
    private let hostNameGiven: Bool
    private let madeSSL: Bool

    /// Where the connection is in its life (see `ConnectionState`).
    ///
    /// This and the other state the hot path touches (the pending writes and their counts, the read
    /// flags, the cipher buffers) are marked `@exclusivity(unchecked)`: the handler runs on its channel's
    /// event loop only, and none of them is ever accessed while an access to it is under way, so the
    /// Swift runtime's dynamic exclusivity check (`swift_beginAccess`, ~21 a record and ~1.6 k
    /// instructions, measured with callgrind) guards nothing there.
    @exclusivity(unchecked) private var state = ConnectionState.idle  // exclusivity(unchecked): event-loop only (see above)
    /// True from the moment a detach was asked for (`Channel.detachSSL` asks only once).
    var detaching: Bool { state.isDetaching }
    private var handshakeTimer: Scheduled<Void>?
    private var shutdownTimer: Scheduled<Void>?
    /// Armed when the connection goes idle: gives OpenSSL's record buffers back if it still is when the
    /// timer fires (``armIdleRelease(context:)``).
    private var releaseTimer: Scheduled<Void>?

    private struct PendingWrite {
        var buffer: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }
    @exclusivity(unchecked) private var pending = CircularBuffer<PendingWrite>(initialCapacity: 8)  // exclusivity(unchecked): event-loop only (see `state`)
    /// How many of the first ``pending`` writes were flushed.
    @exclusivity(unchecked) private var flushedCount = 0  // exclusivity(unchecked): event-loop only (see `state`)
    /// Writes made after a detach sent close_notify: plaintext, passed on when the handler leaves.
    private var afterDetach: [PendingWrite] = []
    private var afterDetachFlushed = false
    @exclusivity(unchecked) private var inEncrypt = false  // exclusivity(unchecked): event-loop only (see `state`)
    /// A writability change seen while chunks were being passed on is reported on the next tick.
    @exclusivity(unchecked) private var writabilityEventScheduled = false  // exclusivity(unchecked): event-loop only (see `state`)
    /// An `SSL_write` wanted the peer's data first (a renegotiation): writing resumes after the next read.
    @exclusivity(unchecked) private var writeWaitsForRead = false  // exclusivity(unchecked): event-loop only (see `state`)
    @exclusivity(unchecked) private var userReadPending = false  // exclusivity(unchecked): event-loop only (see `state`)
    @exclusivity(unchecked) private var deliveredPlaintext = false  // exclusivity(unchecked): event-loop only (see `state`)

    /// The largest TLS record's plaintext.
    static let recordSize = 16 * 1024
    /// Room for one record's header, explicit IV, MAC or tag and padding (TLS 1.3 needs 22 bytes; CBC
    /// suites of TLS 1.2 up to about 90).
    static let recordOverhead = 128
    /// Plaintext encrypted into one outbound buffer before it is passed on (and writability checked).
    static let chunkSize = 256 * 1024

    /// Makes the objects `ctx` asks for (running `ctxConfigure` and `sslConfigure` now, on this thread)
    /// and sets connect or accept state for `side`.
    ///
    /// - Parameters:
    ///   - argument: (`ctx:`) a protocol symbol (the handler makes and frees an `SSL_CTX` and an `SSL`), the caller's
    ///     `SSLContextPointer` (the handler makes and frees only the `SSL`) or the caller's `SSLPointer`
    ///     (used as it is, never freed, no configure callback). See `SSLContextArgument`.
    ///   - side: `.client` sets connect state, `.server` accept state, `.both` neither (set it yourself in
    ///     `sslConfigure`, or on the `SSL` you pass, before the handler is added).
    ///   - ctxConfigure: called once right after a new `SSL_CTX` was made (and `TLSConfiguration`'s context
    ///     settings applied), and only then: load certificates, set ciphers here.
    ///   - sslConfigure: called once right after a new `SSL` was made, and only then.
    ///   - handshakeTimeout: seconds the handshake may take once started; nil or ≤ 0: no limit.
    ///   - hostName: the name a client checks the certificate against and sends as SNI. Without it, a
    ///     client checks the IP address of the peer it is connected to (when `TLSConfiguration.checkHostName`).
    ///   - security: the secure defaults and their switches (`TLSConfiguration.secure`).
    ///   - onPeerClose: what to do when the peer's close_notify arrives unasked (``PeerCloseAction``).
    /// - Throws: `SSLError` (a refused protocol, OpenSSL failing to make an object) or whatever a
    ///   configure callback threw; then whatever was made is freed.
    public convenience init(ctx argument: SSLContextArgument = .default, side: SSLSide = .client,
                            ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                            sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                            handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                            security: TLSConfiguration = .secure, onPeerClose: PeerCloseAction = .automatic) throws {
        let objects = try TLSObjects.make(argument, side: side, configuration: security, ctxConfigure: ctxConfigure,
                                          sslConfigure: sslConfigure, hostName: hostName, identityLater: hostName == nil,
                                          call: "OpenSSLHandler")
        var madeSSL = true
        if case .connection = argument { madeSSL = false }
        try self.init(objects: objects, side: side, handshakeTimeout: handshakeTimeout, hostNameGiven: hostName != nil,
                      security: security, onPeerClose: onPeerClose, madeSSL: madeSSL)
    }

    /// Runs `objects` (made by the core's ownership rules) for `side`: installs the handler's BIO and
    /// sets connect or accept state.
    init(objects: TLSObjects, side: SSLSide, handshakeTimeout: TimeInterval?, hostNameGiven: Bool,
         security: TLSConfiguration, onPeerClose: PeerCloseAction, madeSSL: Bool) throws {
        let buffers = CipherBuffers(allocator: ByteBufferAllocator())
        guard ByteBufferBIO.install(buffers, on: objects.ssl.rawValue) else {
            throw SSLError.fromQueue(call: "BIO_new", message: "cannot make the handler's BIO")
        }
        switch side {
        case .client: COpenSSL.SSL_set_connect_state(objects.ssl.rawValue)
        case .server: COpenSSL.SSL_set_accept_state(objects.ssl.rawValue)
        case .both: break
        }
        self.owner = objects
        self.machine = TLSMachine(ssl: objects.ssl, input: buffers)
        self.buffers = buffers
        self.ssl = objects.ssl
        self.ctx = objects.ctx
        self.side = side
        self.handshakeTimeout = handshakeTimeout
        self.handshakeLimit = try security.handshakeLimit(handshakeTimeout, call: "OpenSSLHandler")
        self.onPeerClose = onPeerClose
        self.security = security
        self.hostNameGiven = hostNameGiven
        self.madeSSL = madeSSL
    }

    // MARK: Outcomes

    /// The handshake's outcome as a future on `eventLoop` (LispWorks' attach callback): succeeds when the
    /// handshake finished, fails with its `SSLError` (or a callback's error). Can be asked for at any
    /// time, from any thread.
    public func handshakeFuture(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        handshakeOutcome.future(on: eventLoop)
    }

    /// Waits for the handshake's outcome (see ``handshakeFuture(on:)``).
    public func waitForHandshake() async throws {
        try await handshakeOutcome.wait()
    }

    // MARK: Lifecycle

    /// Starts the handshake when the channel is active already (attach to a live channel).
    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    /// Frees what the handler made (LispWorks' rules) and fails whatever still waits.
    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        let failure = state.failure
        let detachWaits = state.detachWaits
        let closePromise = state.takeClosePromise()
        state = .released(handshakeDone: state.isHandshakeDone, peerClosed: state.receivedCloseNotify)
        let closed = SSLError(kind: .closed, call: "SSL_do_handshake", message: "SSL connection closed: the handler was removed")
        if !handshakeOutcome.isComplete { handshakeOutcome.fail(failure ?? closed) }
        if detachWaits && !detachOutcome.isComplete { detachOutcome.fail(failure ?? closed) }
        failPending(failure ?? ChannelError.ioOnClosedChannel)
        for write in afterDetach { write.promise?.fail(ChannelError.ioOnClosedChannel) }
        afterDetach = []
        closePromise?.succeed()
        buffers.discardInbound()
        buffers.outbound = buffers.empty
        owner = nil  // frees what was made; takes our BIO off a caller's SSL
    }

    /// Starts the handshake.
    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        state = .handshaking(detach: nil)
        applyDefaultPeerCheck(context: context)
        guard case .handshaking = state else { return }
        if case .seconds(let timeout) = handshakeLimit {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handshakeTimer = context.eventLoop.scheduleTask(in: .seconds(clamped: timeout)) {
                let (handler, context) = bound.value
                handler.handshakeTimedOut(context: context, seconds: timeout)
            }
        }
        doHandshake(context: context)
        if case .handshaking = state { context.read() }
    }

    /// A client given no host name checks the IP address it is connected to (secure by default), through
    /// the core's one resolver; one that must check and has no address to check fails its handshake.
    /// - Corresponds: those of ``PeerIdentity/apply(to:check:sendServerName:)``.
    private func applyDefaultPeerCheck(context: ChannelHandlerContext) {
        guard side == .client, madeSSL, !hostNameGiven, security.verifies(.client) && security.checkHostName else { return }
        // A name an sslConfigure hook set on the SSL is the identity already.
        if let param = COpenSSL.SSL_get0_param(ssl.rawValue), COpenSSL.X509_VERIFY_PARAM_get0_host(param, 0) != nil { return }
        do {
            guard let ip = context.channel.remoteAddress?.ipAddress else {
                throw SSLError(kind: .verificationFailure, call: "OpenSSLHandler",
                               message: "no host name and no peer IP address to check the certificate against (give hostName:)")
            }
            try PeerIdentity(ip, call: "OpenSSLHandler").apply(to: ssl, check: true, sendServerName: false)
        } catch {
            fail(context: context, error)
        }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext, seconds: TimeInterval) {
        handshakeTimer = nil
        guard case .handshaking = state else { return }
        let peer = context.channel.remoteAddress.map { " with \($0)" } ?? ""
        fail(context: context, SSLError(kind: .handshakeTimeout, call: "SSL_do_handshake",
                                        message: "Handshake timed out: the TLS handshake\(peer) did not finish within \(seconds) s"))
    }

    // MARK: OpenSSL calls

    private enum Step {
        case ok(Int32)
        case wantRead
        case closeNotify
        case failed(Error)
    }

    /// Runs one `SSL_*` I/O call through the core engine (``TLSMachine/run(_:_:)``: the error queue,
    /// `errno`, a callback's error first, then OpenSSL's) and says what came of it.
    @inline(__always)
    private func step(_ call: String, _ operation: () -> Int32) -> Step {
        switch machine.run(call, operation) {
        case .complete(let n): return .ok(Int32(n))
        case .wantRead, .wantWrite: return .wantRead
        case .closed: return .closeNotify
        case .failed(let error): return .failed(error)
        }
    }

    private func doHandshake(context: ChannelHandlerContext) {
        switch step("SSL_do_handshake", { COpenSSL.SSL_do_handshake(ssl.rawValue) }) {
        case .ok:
            handshakeFinished(context: context)
        case .wantRead:
            writeOutbound(context: context, flush: true)
        case .closeNotify:
            fail(context: context, SSLError(kind: .closed, call: "SSL_do_handshake", status: .zeroReturn,
                                            message: "SSL connection closed: the peer sent close_notify during the handshake"))
        case .failed(let error):
            fail(context: context, error)
        }
    }

    private func handshakeFinished(context: ChannelHandlerContext) {
        // handshaking → active, or → detaching when a detach was asked for meanwhile.
        if case .handshaking(detach: let token?) = state {
            state = .detaching(Detach(token: token))
        } else {
            state = .active(Halves())
        }
        handshakeTimer?.cancel(); handshakeTimer = nil
        // The last flight (a client's Finished, a server's tickets) goes out with whatever the
        // application writes first: one flush, one segment.
        let lastFlight = buffers.takeOutbound()
        if let lastFlight { context.write(wrapOutboundOut(lastFlight), promise: nil) }
        handshakeOutcome.succeed()
        let alpn = ssl.alpnSelected
        context.fireUserInboundEventTriggered(OpenSSLEvent.handshakeCompleted(version: SSL_get_version(ssl), alpn: alpn))
        guard state.isRunning else { return }
        // NIO's own TLS event, which NIOTLS's ALPN negotiation handlers (and so NIOHTTP2's
        // `configureHTTP2SecureUpgrade`) wait for.
        context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: alpn))
        guard state.isRunning else { return }
        if case .detaching = state {
            beginDetachShutdown(context: context)
        } else {
            encryptFlushed(context: context)
        }
        if lastFlight != nil && !state.isReleased { context.flush() }
    }

    // MARK: Inbound

    /// Takes ciphertext: advances the handshake, decrypts, passes plaintext on.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if state.passesThrough { context.fireChannelRead(data); return }
        buffers.receive(unwrapInboundIn(data))
        processInbound(context: context)
    }

    private func processInbound(context: ChannelHandlerContext) {
        switch state {
        case .handshaking:
            doHandshake(context: context)
            guard state.hasHalves else {
                buffers.releaseConsumedInbound()
                return
            }
        case .active, .closing, .detaching:
            break
        case .idle, .failed, .passThrough, .released:
            buffers.discardInbound()
            return
        }
        readPlaintext(context: context)
        guard state.isRunning else { return }
        writeOutbound(context: context, flush: true)
        buffers.releaseConsumedInbound()
        if writeWaitsForRead {
            writeWaitsForRead = false
            encryptFlushed(context: context)
        }
    }

    /// Decrypts everything received so far into as few buffers as possible. Stops without another
    /// `SSL_read` once nothing is left to decrypt (``nothingToDecrypt``): the call could only want more.
    private func readPlaintext(context: ChannelHandlerContext) {
        guard !state.receivedCloseNotify, !nothingToDecrypt else { return }
        var out = plaintextBuffer(context: context)
        while true {
            if out.writableBytes == 0 {
                deliver(out, context: context)
                guard state.isRunning, !state.receivedCloseNotify, !nothingToDecrypt else { return }
                out = plaintextBuffer(context: context)
            } else if out.readableBytes > 0 && nothingToDecrypt {
                deliver(out, context: context)
                return
            }
            let outcome = out.withUnsafeMutableWritableBytes { space in
                step("SSL_read") { COpenSSL.SSL_read(ssl.rawValue, space.baseAddress, Int32(clamping: space.count)) }
            }
            switch outcome {
            case .ok(let n):
                out.moveWriterIndex(forwardBy: Int(n))
            case .wantRead:
                if out.readableBytes > 0 { deliver(out, context: context) }
                return
            case .closeNotify:
                if out.readableBytes > 0 { deliver(out, context: context) }
                guard state.isRunning else { return }
                peerSentCloseNotify(context: context)
                return
            case .failed(let error):
                if out.readableBytes > 0 { deliver(out, context: context) }
                fail(context: context, error)
                return
            }
        }
    }

    /// No received ciphertext is left, in our buffers or in OpenSSL's record buffer, and the input has
    /// not ended: an `SSL_read` now would only answer want-read, after a pass through the record layer,
    /// `SSL_get_error` and the error queue (~1.4 k instructions, against ~6 k to decrypt a small record:
    /// callgrind, `Benchmarks/icount.sh`'s requests workloads).
    /// `SSL_has_pending` counts what OpenSSL holds, decrypted or not: the rest of a record larger than the
    /// buffer, a record that arrived in part, records read ahead (`SSL_set_read_ahead`). An ended input
    /// still goes to OpenSSL, which reports it (close_notify or an unexpected EOF).
    /// - Corresponds: `SSL_has_pending`.
    private var nothingToDecrypt: Bool {
        buffers.inboundCount == 0 && !buffers.inboundEOF && COpenSSL.SSL_has_pending(ssl.rawValue) == 0
    }

    /// A buffer for the plaintext of what was received. Plaintext is never longer than the ciphertext it
    /// comes from, so the bytes received are room enough, unless OpenSSL holds part of a record from an
    /// earlier read (or plaintext not yet taken: `SSL_has_pending`), which adds up to one record. A small
    /// request gets a small buffer (glibc's per-thread cache serves blocks up to 1 KiB: the earlier 2 KiB
    /// minimum cost ~360 instructions more a buffer in malloc and free, callgrind); a plaintext larger
    /// than the buffer only means one more buffer passed on.
    /// - Corresponds: `SSL_has_pending`.
    private func plaintextBuffer(context: ChannelHandlerContext) -> ByteBuffer {
        let n = buffers.inboundCount
        let held = COpenSSL.SSL_has_pending(ssl.rawValue) != 0
        return context.channel.allocator.buffer(capacity: held ? n + OpenSSLHandler.recordSize + 512 : max(n, 64))
    }

    private func deliver(_ plaintext: ByteBuffer, context: ChannelHandlerContext) {
        deliveredPlaintext = true
        userReadPending = false
        if state.isClosing { return }  // the application closed: nothing more is read
        context.fireChannelRead(wrapInboundOut(plaintext))
    }

    private func peerSentCloseNotify(context: ChannelHandlerContext) {
        state.peerHalf(.closeNotify)
        context.fireUserInboundEventTriggered(OpenSSLEvent.closeNotifyReceived)
        guard state.isRunning else { return }
        if case .detaching = state { finishDetach(context: context); return }
        if state.isClosing { finishClose(context: context); return }
        var action = onPeerClose
        if action == .automatic {
            let halfClosure = (try? context.channel.syncOptions?.getOption(ChannelOptions.allowRemoteHalfClosure)) ?? false
            action = halfClosure ? .halfClose : .close
        }
        switch action {
        case .halfClose:
            state.peerHalf(.inputClosed)
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        case .detach:
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        default:
            startClose(context: context, promise: nil)
        }
    }

    /// Sends what OpenSSL wrote meanwhile; asks for more input while the handshake, a detach or a close
    /// waits for the peer, or when a read wanted by the next handlers brought no plaintext.
    public func channelReadComplete(context: ChannelHandlerContext) {
        if state.passesThrough { context.fireChannelReadComplete(); return }
        writeOutbound(context: context, flush: true)
        buffers.releaseConsumedInbound()
        armIdleRelease(context: context)
        let wantsMore: Bool
        switch state {
        case .handshaking:
            wantsMore = true
        case .closing, .detaching:
            // They wait for the peer's close_notify.
            wantsMore = !state.receivedCloseNotify || (userReadPending && !deliveredPlaintext)
        case .active:
            wantsMore = userReadPending && !deliveredPlaintext
        case .idle, .failed, .passThrough, .released:
            wantsMore = false
        }
        deliveredPlaintext = false
        context.fireChannelReadComplete()
        if wantsMore && !state.isReleased && context.channel.isActive { context.read() }
    }

    /// Nothing is in flight: the handshake is over, every received byte was decrypted and everything
    /// written was encrypted and passed on.
    private var isIdle: Bool {
        state.hasHalves && buffers.inboundCount == 0 && pending.isEmpty && buffers.outbound.readableBytes == 0
    }

    /// Where the connection goes idle (a read burst ended, or a flush passed everything on): arms the
    /// timer that gives OpenSSL's record buffers back (`SSL_free_buffers`, ~33 KiB; OpenSSL keeps a
    /// buffer that still holds data) after ``bufferReleaseDelay``, if the connection is idle then too.
    ///
    /// Not at once: a keep-alive connection goes idle between each request and its response, and
    /// freeing the two 16 KiB buffers there and making them again for the next record cost ~4.2 k
    /// instructions a request/response turn (both ends), 6 % of it (`Benchmarks/icount.sh`'s
    /// requests_1conn); on OpenSSL 3.0 `SSL_free_buffers` also walks 32 record slots each time. A busy
    /// connection now gives them back at most once per delay, an idle one within the delay. Nor per
    /// record, as `SSL_MODE_RELEASE_BUFFERS` does (which, on 3.0, still keeps a 16 KiB write buffer that
    /// the handshake code makes, until the next write). Never inside a handshake.
    /// - Corresponds: `SSL_free_buffers`.
    private func armIdleRelease(context: ChannelHandlerContext) {
        guard releaseTimer == nil, isIdle else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        releaseTimer = context.eventLoop.scheduleTask(in: bufferReleaseDelay) {
            let handler = bound.value
            handler.releaseTimer = nil
            if handler.isIdle { _ = COpenSSL.SSL_free_buffers(handler.ssl.rawValue) }
        }
    }

    /// Cancels the handshake, close and idle-release timers.
    private func cancelTimers() {
        handshakeTimer?.cancel(); handshakeTimer = nil
        shutdownTimer?.cancel(); shutdownTimer = nil
        releaseTimer?.cancel(); releaseTimer = nil
    }

    /// Fails a handshake under way (`.closed`), reports an end without close_notify (an unexpected EOF),
    /// fails pending writes.
    public func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        if state.passesThrough { context.fireChannelInactive(); return }
        if case .handshaking = state {
            // (A local close during the handshake failed it already: this is the peer's doing.)
            let error = SSLError(kind: .closed, call: "SSL_do_handshake",
                                 message: "SSL connection closed: the peer closed the connection during the handshake")
            enterFailed(error)
            handshakeOutcome.fail(error)
            context.fireErrorCaught(error)
        } else if state.hasHalves && !state.receivedCloseNotify && !state.isClosing && !state.sentCloseNotify {
            // The transport ended without the peer's close_notify: not a clean end (maybe a truncation).
            let error = unexpectedEOF()
            enterFailed(error)
            context.fireErrorCaught(error)
        }
        let failure = state.failure
        let closed = SSLError(kind: .closed, call: "SSL_shutdown", message: "SSL connection closed")
        if state.isDetaching && !detachOutcome.isComplete { detachOutcome.fail(failure ?? closed) }
        failPending(failure ?? ChannelError.ioOnClosedChannel)
        state.takeClosePromise()?.succeed()
        context.fireChannelInactive()
    }

    private func unexpectedEOF() -> SSLError {
        SSLError(kind: .error, call: "SSL_read", status: .syscall, message: SSLError.unexpectedEOFMessage)
    }

    /// A TCP half-close from the peer (`ChannelEvent.inputClosed`) is checked against TLS: after its
    /// close_notify it is passed on once, without it it is an unexpected EOF.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard !state.passesThrough, let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // The peer half-closed the TCP connection (the channel allows remote half-closure).
        buffers.inboundEOF = true
        switch state {
        case .idle, .failed, .passThrough, .released:
            context.fireUserInboundEventTriggered(event)
        case .handshaking:
            fail(context: context, SSLError(kind: .closed, call: "SSL_do_handshake",
                                            message: "SSL connection closed: the peer closed the connection during the handshake"))
        case .active, .closing, .detaching:
            if state.receivedCloseNotify {
                // Passed on once: the half-closure may have passed it on already.
                if !state.passedOnInputClosed {
                    state.peerHalf(.inputClosed)
                    context.fireUserInboundEventTriggered(event)
                }
            } else {
                // No close_notify: OpenSSL reads the EOF and says so (an unexpected EOF).
                processInbound(context: context)
                if state.failure == nil && !state.isReleased && !state.receivedCloseNotify {
                    fail(context: context, unexpectedEOF())
                }
            }
        }
    }

    /// A system error under TLS becomes an `SSLError` (kind `.error`, `errno`); it fails a handshake
    /// under way.
    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !state.passesThrough, state.isStarted, let io = error as? IOError else {
            context.fireErrorCaught(error)
            return
        }
        // A system error under TLS, as the blocking layer reports it.
        let converted = SSLError(kind: .error, call: isHandshakeDone ? "SSL_read" : "SSL_do_handshake", status: .syscall,
                                 errno: io.errnoCode, message: "\(io)")
        if case .handshaking = state {
            enterFailed(converted)
            handshakeOutcome.fail(converted)
        }
        context.fireErrorCaught(converted)
    }

    // MARK: Outbound

    /// Keeps plaintext to encrypt at the next flush (after the handshake, if it is still running).
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch state {
        case .idle, .handshaking:
            break
        case .active(let halves):
            if halves.sentCloseNotify { promise?.fail(ChannelError.outputClosed); return }
        case .closing:
            promise?.fail(ChannelError.outputClosed)
            return
        case .detaching(let detach):
            if detach.halves.sentCloseNotify {
                afterDetach.append(PendingWrite(buffer: unwrapOutboundIn(data), promise: promise))
                return
            }
            if detach.close != nil { promise?.fail(ChannelError.outputClosed); return }
        case .failed(let failure):
            promise?.fail(failure.error)
            return
        case .passThrough:
            context.write(data, promise: promise)
            return
        case .released:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let buffer = unwrapOutboundIn(data)
        pendingWriteBytes += buffer.readableBytes
        pending.append(PendingWrite(buffer: buffer, promise: promise))
    }

    /// Encrypts what was written and passes the ciphertext on, as far as back-pressure allows.
    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .passThrough:
            context.flush()
            return
        case .detaching(let detach) where detach.halves.sentCloseNotify:
            afterDetachFlushed = true
            return
        default:
            break
        }
        flushedCount = pending.count
        encryptFlushed(context: context)
        armIdleRelease(context: context)
    }

    /// Passes the read on and remembers it was wanted.
    public func read(context: ChannelHandlerContext) {
        if case .passThrough = state {} else { userReadPending = true }
        context.read()
    }

    /// Resumes encrypting flushed writes when the channel became writable.
    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if inEncrypt {
            // Our own write or flush changed it, inside a flush from the handlers after this one (or
            // inside our own loop). Telling them now would let a writer that reacts at once write
            // again inside its own flush, over and over; tell them on the next tick instead.
            guard !writabilityEventScheduled else { return }
            writabilityEventScheduled = true
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, context) = bound.value
                handler.writabilityEventScheduled = false
                guard !handler.state.isReleased else { return }
                handler.channelWritabilityChanged(context: context)
            }
            return
        }
        if !state.passesThrough && context.channel.isWritable { encryptFlushed(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Collects the promises of the writes one chunk of ciphertext completes.
    private struct Promises {
        var first: EventLoopPromise<Void>?
        var more: [EventLoopPromise<Void>] = []

        mutating func add(_ promise: EventLoopPromise<Void>?) {
            guard let promise else { return }
            if first == nil { first = promise } else { more.append(promise) }
        }

        /// One promise standing for all of them.
        func combined(on eventLoop: EventLoop) -> EventLoopPromise<Void>? {
            guard let first, !more.isEmpty else { return first }
            let all = eventLoop.makePromise(of: Void.self)
            all.futureResult.cascade(to: first)
            for promise in more { all.futureResult.cascade(to: promise) }
            return all
        }

        func fail(_ error: Error) {
            first?.fail(error)
            for promise in more { promise.fail(error) }
        }
    }

    /// Encrypts the flushed writes and passes the ciphertext on, a chunk at a time while the channel is
    /// writable (all of it when `ignoringBackPressure`).
    private func encryptFlushed(context: ChannelHandlerContext, ignoringBackPressure: Bool = false) {
        guard !inEncrypt, flushedCount > 0, state.hasHalves, !state.sentCloseNotify else { return }
        inEncrypt = true
        defer { inEncrypt = false }
        var wroteChunk = false
        while flushedCount > 0 && state.failure == nil && !state.isReleased {
            if wroteChunk && !ignoringBackPressure && !context.channel.isWritable { break }
            var promises = Promises()
            var produced = 0
            // Room for this chunk's records in one allocation (no regrowth while OpenSSL writes).
            var planned = 0
            var index = pending.startIndex
            for _ in 0..<flushedCount where planned < OpenSSLHandler.chunkSize {
                planned += pending[index].buffer.readableBytes
                index = pending.index(after: index)
            }
            planned = min(planned, OpenSSLHandler.chunkSize)
            buffers.reserveOutbound(planned + (planned / OpenSSLHandler.recordSize + 1) * OpenSSLHandler.recordOverhead)
            while flushedCount > 0 && produced < OpenSSLHandler.chunkSize {
                let head = pending.startIndex
                let readable = pending[head].buffer.readableBytes
                if readable == 0 {
                    promises.add(pending.removeFirst().promise)
                    flushedCount -= 1
                    continue
                }
                let outcome: Step
                if coalescesWrites && readable < OpenSSLHandler.recordSize && flushedCount > 1 {
                    outcome = writeCoalesced(&promises)
                } else {
                    let n = min(readable, OpenSSLHandler.chunkSize - produced)
                    outcome = pending[head].buffer.withUnsafeReadableBytes { bytes in
                        step("SSL_write") { COpenSSL.SSL_write(ssl.rawValue, bytes.baseAddress, Int32(n)) }
                    }
                    if case .ok(let written) = outcome {
                        pending[head].buffer.moveReaderIndex(forwardBy: Int(written))
                        pendingWriteBytes -= Int(written)
                        if pending[head].buffer.readableBytes == 0 {
                            promises.add(pending.removeFirst().promise)
                            flushedCount -= 1
                        }
                    }
                }
                switch outcome {
                case .ok(let written):
                    produced += Int(written)
                case .wantRead:
                    writeWaitsForRead = true
                    writeOutbound(context: context, flush: true, promise: promises.combined(on: context.eventLoop))
                    return
                case .closeNotify:
                    let error = SSLError(kind: .closed, call: "SSL_write", status: .zeroReturn, message: "SSL connection closed")
                    promises.fail(error)
                    fail(context: context, error)
                    return
                case .failed(let error):
                    promises.fail(error)
                    fail(context: context, error)
                    return
                }
            }
            writeOutbound(context: context, flush: true, promise: promises.combined(on: context.eventLoop))
            wroteChunk = true
        }
    }

    /// Copies the flushed small writes at the head into one record's worth of plaintext and encrypts it
    /// with one `SSL_write`; collects the promises of the writes it used up.
    private func writeCoalesced(_ promises: inout Promises) -> Step {
        withUnsafeTemporaryAllocation(byteCount: OpenSSLHandler.recordSize, alignment: 16) { record in
            var filled = 0
            var used = 0
            var index = pending.startIndex
            while used < flushedCount && filled < OpenSSLHandler.recordSize {
                let take = min(pending[index].buffer.readableBytes, OpenSSLHandler.recordSize - filled)
                if take > 0 {
                    pendingWriteBytes -= take
                    pending[index].buffer.readWithUnsafeReadableBytes { source in
                        (record.baseAddress! + filled).copyMemory(from: source.baseAddress!, byteCount: take)
                        return take
                    }
                    filled += take
                }
                guard pending[index].buffer.readableBytes == 0 else { break }
                used += 1
                index = pending.index(after: index)
            }
            for _ in 0..<used { promises.add(pending.removeFirst().promise) }
            flushedCount -= used
            return step("SSL_write") { COpenSSL.SSL_write(ssl.rawValue, record.baseAddress, Int32(filled)) }
        }
    }

    /// Passes what OpenSSL wrote down the pipeline.
    private func writeOutbound(context: ChannelHandlerContext, flush: Bool, promise: EventLoopPromise<Void>? = nil) {
        if let out = buffers.takeOutbound() {
            context.write(wrapOutboundOut(out), promise: promise)
            if flush { context.flush() }
        } else {
            promise?.succeed()
        }
    }

    private func failPending(_ error: Error) {
        flushedCount = 0
        while let write = pending.popFirst() { write.promise?.fail(error) }
        pendingWriteBytes = 0
    }

    // MARK: Close

    /// `.all`: close_notify, then the socket is closed once the peer answered (or after
    /// ``closeTimeout``); during a handshake the handshake fails with `.closed`. `.output`: close_notify,
    /// then the TCP half-close. `.input`: passed on.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state.passesThrough { context.close(mode: mode, promise: promise); return }
        switch mode {
        case .output:
            guard state.hasHalves, !state.sentCloseNotify else {
                context.close(mode: .output, promise: promise)
                return
            }
            // TLS half-closure: our close_notify, then the TCP FIN.
            flushedCount = pending.count
            encryptFlushed(context: context, ignoringBackPressure: true)
            let sent = context.eventLoop.makePromise(of: Void.self)
            sendCloseNotify(context: context, promise: sent)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            sent.futureResult.whenComplete { _ in bound.value.close(mode: .output, promise: promise) }
        case .all:
            if state.isClosing {
                if let promise { state.joinClose(promise) }
                return
            }
            if case .handshaking = state {
                let error = SSLError(kind: .closed, call: "SSL_do_handshake",
                                     message: "SSL connection closed: the channel was closed during the handshake")
                enterFailed(error)
                handshakeOutcome.fail(error)
            }
            guard state.hasHalves else {
                failPending(state.failure ?? ChannelError.ioOnClosedChannel)
                context.close(mode: .all, promise: promise)
                return
            }
            startClose(context: context, promise: promise)
        default:
            context.close(mode: mode, promise: promise)
        }
    }

    /// Sends what was flushed and close_notify, then closes once the peer's close_notify arrived (or
    /// after ``closeTimeout``). Unflushed writes fail.
    private func startClose(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        state.beginClose(promise)
        encryptFlushed(context: context, ignoringBackPressure: true)
        failPending(ChannelError.ioOnClosedChannel)
        if !state.sentCloseNotify { sendCloseNotify(context: context, promise: nil) }
        if state.receivedCloseNotify || buffers.inboundEOF || !context.channel.isActive {
            finishClose(context: context)
            return
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // During a detach, the close's limit replaces the detach's.
        shutdownTimer?.cancel()
        shutdownTimer = context.eventLoop.scheduleTask(in: .seconds(clamped: closeTimeout.isNaN ? 0 : closeTimeout)) {
            let (handler, context) = bound.value
            handler.shutdownTimer = nil
            handler.finishClose(context: context)
        }
        context.read()
    }

    private func finishClose(context: ChannelHandlerContext) {
        guard state.isClosing else { return }
        shutdownTimer?.cancel(); shutdownTimer = nil
        context.close(mode: .all, promise: state.takeClosePromise())
    }

    /// `SSL_shutdown`: close_notify into the outbound buffer, passed on and flushed.
    private func sendCloseNotify(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard !state.sentCloseNotify else { promise?.succeed(); return }
        state.ourCloseNotifySent()
        clearOpenSSLErrors()
        _ = machine.shutdown()  // close_notify into the outbound buffer (nothing after a failure)
        _ = CallbackRegistry.takePendingError()
        clearOpenSSLErrors()
        writeOutbound(context: context, flush: true, promise: promise)
    }

    // MARK: Detach

    /// Removal from the pipeline is a detach (LispWorks' `async-io-state-detach-ssl`): the flushed and
    /// unflushed writes go out encrypted, then close_notify; once the peer's close_notify arrives the
    /// handler leaves and the channel carries plaintext. Bytes the peer sent after its close_notify are
    /// passed on as plaintext; writes made after the detach began are sent as plaintext after ours.
    public func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if state.isDetaching { return }  // a detach is under way already; it leaves with the first token
        switch state {
        case .released:
            context.leavePipeline(removalToken: removalToken)
        case .idle, .failed:
            // Nothing was said over TLS yet (or it broke): just leave.
            leave(context: context, removalToken: removalToken, error: state.failure)
        case _ where !context.channel.isActive || state.isClosing:
            leave(context: context, removalToken: removalToken,
                  error: SSLError(kind: .closed, call: "SSL_shutdown", message: "SSL connection closed"))
        case .handshaking:
            // Finish the handshake first (its completion goes on with the detach).
            state = .handshaking(detach: removalToken)
            context.read()
        case .active(let halves):
            state = .detaching(Detach(token: removalToken, halves: halves))
            beginDetachShutdown(context: context)
        case .closing, .detaching, .passThrough:
            break  // closing left above; the others are detaching already
        }
    }

    private func beginDetachShutdown(context: ChannelHandlerContext) {
        guard case .detaching(var detach) = state, !detach.shutdownStarted else { return }
        detach.shutdownStarted = true
        state = .detaching(detach)
        flushedCount = pending.count
        encryptFlushed(context: context, ignoringBackPressure: true)
        guard state.isRunning else { return }
        sendCloseNotify(context: context, promise: nil)
        if state.receivedCloseNotify { finishDetach(context: context); return }
        guard case .seconds(let seconds) = detachLimit else { context.read(); return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        shutdownTimer?.cancel()  // a close's timer, when the close came before the detach's shutdown began
        shutdownTimer = context.eventLoop.scheduleTask(in: .seconds(clamped: seconds)) {
            let (handler, context) = bound.value
            handler.shutdownTimer = nil
            guard case .detaching = handler.state else { return }
            handler.finishDetach(context: context, error: SSLError(kind: .error, call: "SSL_shutdown",
                message: "the peer did not answer close_notify within \(seconds) s; TLS was detached without it"))
        }
        context.read()
    }

    /// Ends a detach under way (`ConnectionState.detaching`): see `leave`.
    private func finishDetach(context: ChannelHandlerContext, error: Error? = nil) {
        shutdownTimer?.cancel(); shutdownTimer = nil
        guard case .detaching(let detach) = state else { return }
        leave(context: context, removalToken: detach.token, error: error)
    }

    /// Leaves the pipeline: passes on the plaintext that followed the peer's close_notify and the writes
    /// made meanwhile, then completes the detach.
    private func leave(context: ChannelHandlerContext, removalToken token: ChannelHandlerContext.RemovalToken, error: Error?) {
        shutdownTimer?.cancel(); shutdownTimer = nil
        // A close asked for during the detach waits for it: once the handler is gone, the channel closes.
        let closeAsked = state.isDetaching && state.closeRequest != nil  // a failed connection closed already
        let closePromise = state.takeClosePromise()
        state = .passThrough(handshakeDone: state.isHandshakeDone, peerClosed: state.receivedCloseNotify)
        let leftover = buffers.takeInbound()
        let writes = afterDetach
        afterDetach = []
        for write in writes { context.write(wrapOutboundOut(write.buffer), promise: write.promise) }
        if afterDetachFlushed || !writes.isEmpty { context.flush() }
        // Writes that were never flushed before the detach went out encrypted with it; anything still
        // pending here could not be sent under TLS.
        failPending(error ?? ChannelError.ioOnClosedChannel)
        if leftover.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(leftover))
            context.fireChannelReadComplete()
        }
        // The outcome is completed once the handler is out of the pipeline (its callbacks run at once).
        let result: Result<Void, Error> = error.map { .failure($0) } ?? .success(())
        context.leavePipeline(removalToken: token)
        detachOutcome.complete(result)
        if closeAsked { context.channel.close(mode: .all, promise: closePromise) }
    }

    // MARK: Failure

    /// A fatal error: the alert OpenSSL queued goes out, everything waiting fails, the error goes down
    /// the pipeline, the channel closes.
    private func fail(context: ChannelHandlerContext, _ error: Error) {
        guard state.isRunning else { return }
        enterFailed(error)
        cancelTimers()
        writeOutbound(context: context, flush: true)
        handshakeOutcome.fail(error)
        if state.isDetaching { detachOutcome.fail(error) }
        failPending(error)
        for write in afterDetach { write.promise?.fail(error) }
        afterDetach = []
        context.fireErrorCaught(error)
        context.close(mode: .all, promise: state.takeClosePromise())
    }

    /// Any state → `ConnectionState.failed`, keeping what later calls still ask about.
    private func enterFailed(_ error: Error) {
        state = .failed(Failure(error: error, handshakeDone: state.isHandshakeDone, peerClosed: state.receivedCloseNotify,
                                detachAsked: state.isDetaching, close: state.closeRequest))
    }
}

// MARK: - Connection state

extension OpenSSLHandler {
    /// Where the connection is in its life: the one place that says so. Each case holds only what
    /// exists in it. The transitions, all made by the handler's own methods:
    ///
    /// - `idle` → `handshaking`: `start` (the channel is active).
    /// - `handshaking` → `active`: `handshakeFinished`; → `detaching` when a removal came during the handshake.
    /// - `active` → `closing`: `startClose` (`close(mode: .all)`, or the peer's close_notify with `.close`).
    /// - `active` → `detaching`: `removeHandler`. A `close(mode: .all)` during a detach waits in it
    ///   (`Detach.close`): when the handler has left, the channel closes.
    /// - `detaching` → `passThrough`: `finishDetach` (the peer's close_notify, or the detach timeout); a
    ///   removal in `idle`, `failed`, `closing` or on an inactive channel goes there at once (`leave`).
    /// - `handshaking`, `active`, `closing`, `detaching` → `failed`: `enterFailed` (from `fail`, a close
    ///   during the handshake, the transport ending, a system error during the handshake).
    /// - any → `released`: `handlerRemoved`.
    ///
    /// `closing` and `failed` stay until the handler is removed with the channel.
    fileprivate enum ConnectionState {
        /// In the pipeline, nothing said over TLS: the channel is not active yet. The first state.
        case idle
        /// `start` (the channel is active): the handshake runs. `detach`: the removal token of a detach
        /// asked for meanwhile; `handshakeFinished` goes on to `detaching` with it.
        case handshaking(detach: ChannelHandlerContext.RemovalToken?)
        /// The handshake finished (`handshakeFinished`): application data flows, each half until its
        /// close_notify (the peer's with a half-closure, ours with `close(mode: .output)`).
        case active(Halves)
        /// `close(mode: .all)`, or the peer's close_notify with ``PeerCloseAction/close``, after the
        /// handshake (`startClose`): flushed writes and our close_notify went out; the socket closes when
        /// the peer's close_notify arrives or after ``OpenSSLHandler/closeTimeout`` (`finishClose`).
        case closing(CloseRequest, Halves)
        /// A removal after the handshake (`removeHandler`, or `handshakeFinished` for one asked for during
        /// it): our close_notify goes out (`beginDetachShutdown`), then the handler waits for the peer's
        /// (or ``OpenSSLHandler/detachLimit``) and leaves (`finishDetach`).
        case detaching(Detach)
        /// A fatal error (`fail`), a close during the handshake, the transport ending during the
        /// handshake or without close_notify (`channelInactive`), a system error during the handshake
        /// (`errorCaught`). Nothing more goes over TLS; writes fail with the error.
        case failed(Failure)
        /// The detach ended (`leave`): everything passes through as plaintext while the handler leaves.
        case passThrough(handshakeDone: Bool, peerClosed: Bool)
        /// Out of the pipeline (`handlerRemoved`): what was made is freed; everything passes through.
        case released(handshakeDone: Bool, peerClosed: Bool)
    }

    /// How far the peer's half of TLS closed.
    fileprivate enum PeerHalf: Comparable {
        /// The peer may still send application data.
        case open
        /// Its close_notify arrived (``OpenSSLEvent/closeNotifyReceived`` was fired).
        case closeNotify
        /// … and `ChannelEvent.inputClosed` was passed on (that happens once).
        case inputClosed
    }

    /// The two halves of TLS after the handshake.
    fileprivate struct Halves {
        var peer = PeerHalf.open
        /// Our close_notify went out (`SSL_shutdown`): nothing more is encrypted.
        var sentCloseNotify = false
    }

    /// A `close(mode: .all)` that waits for the peer's close_notify (or for the detach it came during).
    fileprivate struct CloseRequest {
        /// Completed when the channel closed or the handler left; later close calls are cascaded to it.
        var promise: EventLoopPromise<Void>?
    }

    /// A detach after the handshake.
    fileprivate struct Detach {
        /// Given back to the pipeline when the handler leaves.
        var token: ChannelHandlerContext.RemovalToken
        /// `beginDetachShutdown` ran (the flushed writes and our close_notify are on their way).
        var shutdownStarted = false
        var halves = Halves()
        /// A `close(mode: .all)` during the detach: the channel closes when the handler has left.
        var close: CloseRequest?
    }

    /// What a failed connection still answers for.
    fileprivate struct Failure {
        var error: Error
        /// For ``OpenSSLHandler/isHandshakeDone`` and the call an `IOError` is reported under.
        var handshakeDone: Bool
        /// For ``OpenSSLHandler/receivedCloseNotify``.
        var peerClosed: Bool
        /// A detach was asked for: its outcome fails with the connection, a second removal waits.
        var detachAsked: Bool
        /// The failed connection was closing: later close calls join its promise.
        var close: CloseRequest?
    }
}

extension OpenSSLHandler.ConnectionState {
    /// `handshaking`, `active`, `closing` or `detaching`: TLS runs.
    var isRunning: Bool {
        switch self {
        case .handshaking, .active, .closing, .detaching: return true
        case .idle, .failed, .passThrough, .released: return false
        }
    }

    /// After the handshake, TLS running (`active`, `closing`, `detaching`).
    var hasHalves: Bool {
        switch self {
        case .active, .closing, .detaching: return true
        case .idle, .handshaking, .failed, .passThrough, .released: return false
        }
    }

    /// The handshake began: every state but `idle`.
    var isStarted: Bool {
        if case .idle = self { return false }
        return true
    }

    /// Nothing is done with what passes (`passThrough`, `released`).
    var passesThrough: Bool {
        switch self {
        case .passThrough, .released: return true
        default: return false
        }
    }

    var isReleased: Bool {
        if case .released = self { return true }
        return false
    }

    var isHandshakeDone: Bool {
        switch self {
        case .idle, .handshaking: return false
        case .active, .closing, .detaching: return true
        case .failed(let failure): return failure.handshakeDone
        case .passThrough(let done, _), .released(let done, _): return done
        }
    }

    var failure: Error? {
        if case .failed(let failure) = self { return failure.error }
        return nil
    }

    var halves: OpenSSLHandler.Halves? {
        switch self {
        case .active(let halves), .closing(_, let halves): return halves
        case .detaching(let detach): return detach.halves
        default: return nil
        }
    }

    var receivedCloseNotify: Bool {
        switch self {
        case .active(let halves), .closing(_, let halves): return halves.peer != .open
        case .detaching(let detach): return detach.halves.peer != .open
        case .failed(let failure): return failure.peerClosed
        case .passThrough(_, let closed), .released(_, let closed): return closed
        case .idle, .handshaking: return false
        }
    }

    /// `ChannelEvent.inputClosed` was passed on.
    var passedOnInputClosed: Bool { halves?.peer == .inputClosed }

    var sentCloseNotify: Bool { halves?.sentCloseNotify ?? false }

    /// A detach was asked for (it goes on, or the handler is leaving).
    var isDetaching: Bool {
        switch self {
        case .handshaking(let token): return token != nil
        case .detaching, .passThrough: return true
        case .failed(let failure): return failure.detachAsked
        case .idle, .active, .closing, .released: return false
        }
    }

    /// A detach was asked for and the handler has not begun to leave: its outcome is still to come.
    var detachWaits: Bool {
        if case .passThrough = self { return false }
        return isDetaching
    }

    /// The waiting `close(mode: .all)`, if any.
    var closeRequest: OpenSSLHandler.CloseRequest? {
        switch self {
        case .closing(let request, _): return request
        case .detaching(let detach): return detach.close
        case .failed(let failure): return failure.close
        default: return nil
        }
    }

    /// A close was asked for and waits (or waited, when the connection failed meanwhile).
    var isClosing: Bool { closeRequest != nil }

    /// The peer's half closed this far (never back).
    mutating func peerHalf(_ peer: OpenSSLHandler.PeerHalf) {
        switch self {
        case .active(var halves):
            halves.peer = max(halves.peer, peer)
            self = .active(halves)
        case .closing(let request, var halves):
            halves.peer = max(halves.peer, peer)
            self = .closing(request, halves)
        case .detaching(var detach):
            detach.halves.peer = max(detach.halves.peer, peer)
            self = .detaching(detach)
        default:
            break
        }
    }

    /// Our close_notify went out.
    mutating func ourCloseNotifySent() {
        switch self {
        case .active(var halves):
            halves.sentCloseNotify = true
            self = .active(halves)
        case .closing(let request, var halves):
            halves.sentCloseNotify = true
            self = .closing(request, halves)
        case .detaching(var detach):
            detach.halves.sentCloseNotify = true
            self = .detaching(detach)
        default:
            break  // a failed connection sends nothing more
        }
    }

    /// `active` → `closing`; a detach under way keeps going, with the close waiting for it.
    mutating func beginClose(_ promise: EventLoopPromise<Void>?) {
        switch self {
        case .active(let halves):
            self = .closing(OpenSSLHandler.CloseRequest(promise: promise), halves)
        case .detaching(var detach):
            detach.close = OpenSSLHandler.CloseRequest(promise: promise)
            self = .detaching(detach)
        default:
            break
        }
    }

    /// A further `close(mode: .all)` ends with the one that waits.
    mutating func joinClose(_ promise: EventLoopPromise<Void>) {
        updateCloseRequest { request in
            if let waiting = request.promise { waiting.futureResult.cascade(to: promise) } else { request.promise = promise }
        }
    }

    /// Takes the waiting close's promise (the close stays asked for).
    mutating func takeClosePromise() -> EventLoopPromise<Void>? {
        var taken: EventLoopPromise<Void>?
        updateCloseRequest { request in
            taken = request.promise
            request.promise = nil
        }
        return taken
    }

    private mutating func updateCloseRequest(_ update: (inout OpenSSLHandler.CloseRequest) -> Void) {
        switch self {
        case .closing(var request, let halves):
            update(&request)
            self = .closing(request, halves)
        case .detaching(var detach) where detach.close != nil:
            update(&detach.close!)
            self = .detaching(detach)
        case .failed(var failure) where failure.close != nil:
            update(&failure.close!)
            self = .failed(failure)
        default:
            break
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// The ``OpenSSLHandler`` of this pipeline, if TLS is attached.
    public var openSSLHandler: OpenSSLHandler? { try? handler(type: OpenSSLHandler.self) }
}

extension TimeAmount {
    /// A positive number of seconds as a `TimeAmount`, up to 10^9 s (no conversion that could trap).
    static func seconds(clamped seconds: TimeInterval) -> TimeAmount {
        .nanoseconds(Int64(max(0, min(seconds, 1e9)) * 1e9))
    }
}
