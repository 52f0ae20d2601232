import COpenSSL
import Foundation
import OpenSSLFLI

/// What attach made and what it must free: LispWorks' ownership rules.
final class TLSAttachment {
    let ssl: SSLPointer
    let ctx: SSLContextPointer
    let side: SSLSide
    /// The stream made the `SSL` (and frees it).
    let ownsSSL: Bool
    /// The stream made the `SSL_CTX` (and frees it).
    let ownsContext: Bool
    let buffers: TransportBuffers
    /// Seconds allowed for a handshake that runs implicitly (server side, deferred client).
    let handshakeTimeout: TimeInterval?
    var handshakeDone = false
    /// A fatal TLS error happened: no close_notify may be sent any more.
    var failed = false
    /// The peer's close_notify arrived.
    var peerClosed = false
    /// The `.closed` error of the read that met the peer's close_notify (thrown by reads that cannot
    /// end there, such as `readExactly`).
    var closeNotify: SSLError?

    init(ssl: SSLPointer, ctx: SSLContextPointer, side: SSLSide, ownsSSL: Bool, ownsContext: Bool,
         buffers: TransportBuffers, handshakeTimeout: TimeInterval?) {
        self.ssl = ssl; self.ctx = ctx; self.side = side; self.ownsSSL = ownsSSL; self.ownsContext = ownsContext
        self.buffers = buffers; self.handshakeTimeout = handshakeTimeout
    }

    /// Frees what attach made; takes the stream's BIO off a caller's `SSL`.
    func release() {
        if ownsSSL {
            COpenSSL.SSL_free(ssl.rawValue)  // frees the BIO too
        } else {
            COpenSSL.SSL_set_bio(ssl.rawValue, nil, nil)  // frees the stream's BIO, leaves the SSL
        }
        if ownsContext { COpenSSL.SSL_CTX_free(ctx.rawValue) }
    }
}

extension SocketStream {
    // MARK: Accessors

    /// The `SSL` while TLS is attached, else nil (LispWorks' `socket-stream-ssl`).
    public var ssl: SSLPointer? { tls?.ssl }
    /// The `SSL_CTX` while TLS is attached, else nil (`socket-stream-ctx`).
    public var ctx: SSLContextPointer? { tls?.ctx }
    /// The side TLS was attached for, else nil (`socket-stream-ssl-side`).
    public var sslSide: SSLSide? { tls?.side }
    /// True while TLS is attached.
    public var isSSLAttached: Bool { tls != nil }

    // MARK: Attach

    /// Attaches TLS to the stream (LispWorks' `attach-ssl`): from now on reads and writes carry TLS.
    ///
    /// - Parameters:
    ///   - ctx: a protocol symbol (the stream makes and frees an `SSL_CTX` and an `SSL`), the caller's
    ///     `SSLContextPointer` (the stream makes and frees only the `SSL`) or the caller's `SSLPointer`
    ///     (used as it is, never freed, no configure callback). See ``SSLContextArgument``.
    ///   - side: `.client` sets connect state, `.server` accept state, `.both` neither (call
    ///     `SSL_set_connect_state` / `SSL_set_accept_state` yourself, then ``handshake(timeout:)``).
    ///   - ctxConfigure: called once right after the stream made a new `SSL_CTX` (and applied
    ///     ``SSLSecurity``'s context settings), and only then: load certificates, set ciphers here.
    ///   - sslConfigure: called once right after the stream made a new `SSL`, and only then.
    ///   - handshakeTimeout: seconds the handshake may take; nil waits forever. A client handshakes now
    ///     unless this is zero or negative; otherwise (and on the server side) the handshake runs at the
    ///     first read or write, or at ``handshake(timeout:)``, with this limit (with ``readTimeout`` when
    ///     it was zero or negative).
    ///   - hostName: the name a client checks the certificate against and sends as SNI; by default the
    ///     host the stream was connected to (``remoteHost``), else the peer's IP address.
    ///   - security: the secure defaults and their switches (``SSLSecurity/secure``).
    ///
    /// Bytes already received and not read when TLS is attached are taken as the peer's first TLS bytes
    /// (never as plaintext: a STARTTLS command injection stays outside TLS). If attaching fails, whatever
    /// it made is freed and the stream is left without TLS; the error is thrown: ``SSLError`` for TLS
    /// (kind `.handshakeTimeout`, `.verificationFailure` naming the verify result, `.failure` …), or the
    /// error a configure callback threw. Attaching to a stream that already has TLS is an error.
    public func attachSSL(ctx argument: SSLContextArgument = .default, side: SSLSide = .client,
                          ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                          sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                          handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                          security: SSLSecurity = .secure) throws {
        try checkOpen("attachSSL")
        try checkTimeout(handshakeTimeout, "the handshake timeout", call: "attachSSL")
        guard tls == nil else {
            throw SSLError.usage("TLS is already attached to this stream (detach it first)", call: "attachSSL")
        }
        try flushPending()
        try ensureSSL()

        let objects = try TLSObjects.make(argument, side: side, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
                                          hostName: hostName ?? remoteHost ?? peerHost, security: security)
        let ssl = objects.ssl, context = objects.ctx
        func discard() { objects.discardMade() }

        let buffers = TransportBuffers()
        buffers.fileDescriptor = fileDescriptor
        guard let bio = TransportBIO.make(buffers) else {
            let error = SSLError.fromQueue(call: "BIO_new", message: "cannot make the stream's BIO")
            discard()
            throw error
        }
        COpenSSL.SSL_set_bio(ssl.rawValue, bio, bio)  // the SSL takes the one reference
        // Bytes that arrived after the last plaintext read are the peer's first TLS bytes.
        buffers.input.appendAll(from: readBuffer)
        if plainEOF { buffers.inputEOF = true }
        switch side {
        case .client: COpenSSL.SSL_set_connect_state(ssl.rawValue)
        case .server: COpenSSL.SSL_set_accept_state(ssl.rawValue)
        case .both: break
        }
        let attachment = TLSAttachment(ssl: ssl, ctx: context, side: side, ownsSSL: objects.ownsSSL,
                                       ownsContext: objects.ownsContext, buffers: buffers, handshakeTimeout: handshakeTimeout)
        tls = attachment
        if side == .client && (handshakeTimeout ?? 1) > 0 {
            do {
                try handshake(timeout: handshakeTimeout)
            } catch {
                tls = nil
                attachment.release()
                throw error
            }
        }
    }

    // MARK: Handshake

    /// Runs the TLS handshake now (`SSL_do_handshake`), within `timeout` seconds (nil: forever).
    /// Throws ``SSLError`` with kind `.handshakeTimeout` when the peer is too slow.
    public func handshake(timeout: TimeInterval? = nil) throws {
        try checkOpen("handshake")
        guard let tls else { throw SSLError.usage("no TLS is attached to this stream", call: "handshake") }
        if tls.handshakeDone { return }
        _ = try driveTLS(tls, call: "SSL_do_handshake", deadline: .after(timeout),
                         timeoutError: SSLError(kind: .handshakeTimeout, call: "SSL_do_handshake",
                                                message: "the TLS handshake did not finish within \(describeSeconds(timeout)) (\(self.peerDescription))")) {
            COpenSSL.SSL_do_handshake(tls.ssl.rawValue)
        }
        tls.handshakeDone = true
    }

    /// Runs a deferred handshake before the first TLS read or write.
    func ensureHandshake(_ tls: TLSAttachment) throws {
        if tls.handshakeDone { return }
        if COpenSSL.SSL_is_init_finished(tls.ssl.rawValue) == 1 { tls.handshakeDone = true; return }
        // A timeout of zero or less only meant "not at attach": the implicit handshake then waits as
        // long as a read may.
        let limit = tls.handshakeTimeout.flatMap { $0 > 0 ? $0 : nil } ?? (tls.handshakeTimeout == nil ? nil : readTimeout)
        try handshake(timeout: limit)
    }

    // MARK: Detach

    /// Takes TLS off the stream (LispWorks' `detach-ssl`): flushes, sends close_notify, reads until the
    /// peer's close_notify arrives (application data that comes first is kept for the next reads), frees
    /// what attach made, and leaves the stream carrying plaintext — ready to attach again. Bytes the peer
    /// sent after its close_notify are the first plaintext bytes read next.
    ///
    /// The peer's close_notify is waited for `retryCount` times `retryTimeout` seconds at most; when it
    /// does not come, TLS is taken off all the same and ``SSLError`` is thrown. On a stream without TLS
    /// this does nothing.
    public func detachSSL(retryCount: Int = 10, retryTimeout: TimeInterval = 0.5) throws {
        try checkOpen("detachSSL")
        guard let tls else { return }
        defer {
            // Whatever happens, TLS is off and its bytes are accounted for.
            tls.release()
            self.tls = nil
        }
        try flushPending()
        guard tls.handshakeDone && !tls.failed else { return }
        let ssl = tls.ssl.rawValue
        COpenSSL.ERR_clear_error()
        let first = COpenSSL.SSL_shutdown(ssl)
        try sendTransportOutput(tls, call: "SSL_shutdown", deadline: .after(writeTimeout), timeoutError: writeTimeoutError("SSL_shutdown"))
        if first < 0 {
            let error = SSLError.fromIO(ssl: tls.ssl, returnCode: first, call: "SSL_shutdown")
            throw error
        }
        if first == 0 && !tls.peerClosed {
            // Read until the peer's close_notify: SSL_read returns 0 with SSL_ERROR_ZERO_RETURN then.
            var tries = 0
            while true {
                let space = readBuffer.reserveTail(bufferSize)
                let timeoutError = SSLError(kind: .error, call: "SSL_shutdown",
                                            message: "the peer did not answer close_notify within \(retryCount) × \(describeSeconds(retryTimeout)) (\(peerDescription))")
                do {
                    let n = try driveTLS(tls, call: "SSL_read", deadline: .after(retryTimeout), timeoutError: timeoutError) {
                        COpenSSL.SSL_read(ssl, space.baseAddress, Int32(clamping: space.count))
                    }
                    readBuffer.commit(Int(n))
                } catch let error as SSLError where error.kind == .closed {
                    break
                } catch let error as SSLError where error.call == "SSL_shutdown" && error.kind == .error && !tls.failed {
                    tries += 1
                    if tries >= retryCount { throw error }
                }
            }
        }
        // What follows the close_notify is plaintext.
        readBuffer.appendAll(from: tls.buffers.input)
        if tls.buffers.inputEOF { plainEOF = true }
    }

    // MARK: TLS I/O

    func tlsRead(_ tls: TLSAttachment, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try ensureHandshake(tls)
        if tls.peerClosed { return 0 }
        do {
            let n = try driveTLS(tls, call: "SSL_read", deadline: .after(readTimeout), timeoutError: readTimeoutError("SSL_read")) {
                COpenSSL.SSL_read(tls.ssl.rawValue, buffer.baseAddress, Int32(clamping: buffer.count))
            }
            return Int(n)
        } catch let error as SSLError where error.kind == .closed {
            tls.closeNotify = error
            return 0  // close_notify: the end of the stream
        }
    }

    func tlsWrite(_ tls: TLSAttachment, _ bytes: UnsafeRawBufferPointer) throws {
        try ensureHandshake(tls)
        let deadline = Deadline.after(writeTimeout)
        let timeoutError = writeTimeoutError("SSL_write")
        if !tls.buffers.output.isEmpty {
            try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: timeoutError)
        }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, 64 * 1024)
            let base = bytes.baseAddress! + offset
            let n = try driveTLS(tls, call: "SSL_write", deadline: deadline, timeoutError: timeoutError, sendOnSuccess: false) {
                COpenSSL.SSL_write(tls.ssl.rawValue, base, Int32(chunk))
            }
            offset += Int(n)
            if tls.buffers.output.count >= 64 * 1024 {
                try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: timeoutError)
            }
        }
        try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: timeoutError)
    }

    /// Runs one OpenSSL I/O call until it succeeds: sends what it wrote, receives when it wants to read,
    /// and turns failures into ``SSLError`` (`SSL_get_error`, the error queue, the verify result).
    /// A clean close_notify throws kind `.closed`. An error a Swift callback threw during the call is
    /// thrown instead of OpenSSL's (even when OpenSSL went on, e.g. a verify callback with
    /// verification off).
    func driveTLS(_ tls: TLSAttachment, call: String, deadline: Deadline, timeoutError: @autoclosure () -> Error,
                  sendOnSuccess: Bool = true, _ operation: () -> Int32) throws -> Int32 {
        let ssl = tls.ssl.rawValue
        // An error a callback kept during some earlier C call on this thread that nobody took is not
        // this call's: drop it.
        _ = CallbackRegistry.takePendingError()
        while true {
            COpenSSL.ERR_clear_error()
            errno = 0
            let r = operation()
            if tls.buffers.directlySent > 0 { bytesSent += tls.buffers.directlySent; tls.buffers.directlySent = 0 }
            if let callbackError = CallbackRegistry.takePendingError() {
                // A Swift callback (verify, SNI, ALPN, PSK, OCSP …) threw inside this call: its error is
                // the reason, not OpenSSL's generic one. The connection is not usable any more.
                COpenSSL.ERR_clear_error()
                tls.failed = true
                if !tls.buffers.output.isEmpty {
                    try? sendTransportOutput(tls, call: call, deadline: .after(0.5), timeoutError: timeoutError())
                }
                throw callbackError
            }
            if r > 0 {
                if sendOnSuccess && !tls.buffers.output.isEmpty {
                    try sendTransportOutput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
                return r
            }
            let code = COpenSSL.SSL_get_error(ssl, r)
            if code == COpenSSL.SSL_ERROR_WANT_READ || code == COpenSSL.SSL_ERROR_WANT_WRITE {
                if !tls.buffers.output.isEmpty {
                    try sendTransportOutput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
                if code == COpenSSL.SSL_ERROR_WANT_READ {
                    if tls.buffers.inputEOF && tls.buffers.input.isEmpty {
                        tls.failed = true
                        throw SSLError(kind: .error, call: call, status: .syscall, returnCode: Int(r),
                                       message: SSLError.unexpectedEOFMessage)
                    }
                    try receiveTransportInput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
                continue
            }
            let error = SSLError.fromIO(ssl: tls.ssl, returnCode: r, call: call)
            if error.kind == .closed {
                tls.peerClosed = true
            } else {
                tls.failed = true
                // Send the alert OpenSSL queued, if the peer still listens; never wait long for it.
                if !tls.buffers.output.isEmpty {
                    try? sendTransportOutput(tls, call: call, deadline: .after(0.5), timeoutError: timeoutError())
                }
            }
            throw error
        }
    }

    /// Sends all queued ciphertext.
    func sendTransportOutput(_ tls: TLSAttachment, call: String, deadline: Deadline, timeoutError: @autoclosure () -> Error) throws {
        let output = tls.buffers.output
        while !output.isEmpty {
            let n = send(fileDescriptor, output.readable.baseAddress, output.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n >= 0 { output.consume(n); bytesSent += n; continue }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                guard try waitUntilReady(fileDescriptor, events: Int16(POLLOUT), deadline: deadline) else { throw timeoutError() }
            default:
                tls.failed = true
                throw SSLError(kind: .error, call: call, status: .syscall, errno: e,
                               message: "send to \(peerDescription) failed: \(String(cString: strerror(e)))")
            }
        }
    }

    /// Receives ciphertext into the transport input (one large `recv`, many records).
    func receiveTransportInput(_ tls: TLSAttachment, call: String, deadline: Deadline, timeoutError: @autoclosure () -> Error) throws {
        let buffers = tls.buffers
        let input = buffers.input
        let space = input.reserveTail(buffers.receiveSize)
        // Without a deadline a blocking recv is one system call; with one, try first, then poll.
        let flags = deadline.nanoseconds == nil ? 0 : Int32(MSG_DONTWAIT)
        while true {
            let n = recv(fileDescriptor, space.baseAddress, space.count, flags)
            if n > 0 {
                input.commit(n); bytesReceived += n
                if n == space.count {
                    buffers.receiveSize = min(buffers.receiveSize * 2, TransportBuffers.largestReceive)
                } else if n < buffers.receiveSize / 4 {
                    buffers.receiveSize = max(buffers.receiveSize / 2, TransportBuffers.smallestReceive)
                }
                return
            }
            if n == 0 { tls.buffers.inputEOF = true; return }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                guard try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline) else { throw timeoutError() }
            default:
                tls.failed = true
                throw SSLError(kind: .error, call: call, status: .syscall, errno: e,
                               message: "recv from \(peerDescription) failed: \(String(cString: strerror(e)))")
            }
        }
    }
}

extension SSLProtocol {
    /// DTLS (datagrams) rather than TLS.
    var isDatagram: Bool { self == .dtls || self == .dtlsV1_2 }

    /// The protocol pins one version (min = max), so no other minimum applies.
    var isPinned: Bool {
        switch self {
        case .tlsV1, .tlsV1_1, .tlsV1_2, .tlsV1_3, .dtlsV1_2: return true
        default: return false
        }
    }
}

/// The `SSL_CTX` and `SSL` for one TLS connection, made (and configured) or the caller's, with
/// LispWorks' ownership rules: shared by streams, the TLS engine and TLS over byte streams.
struct TLSObjects {
    let ssl: SSLPointer
    let ctx: SSLContextPointer
    /// The `SSL` was made here (and is freed by its user).
    let ownsSSL: Bool
    /// The `SSL_CTX` was made here (and is freed by its user).
    let ownsContext: Bool

    /// Makes what `argument` asks for: a protocol symbol makes an `SSL_CTX` (secure defaults applied,
    /// then `ctxConfigure`) and an `SSL`; a context makes an `SSL` (client-side security settings,
    /// then `sslConfigure`); a connection is used as it is. On failure whatever was made is freed.
    static func make(_ argument: SSLContextArgument, side: SSLSide, ctxConfigure: ((SSLContextPointer) throws -> Void)?,
                     sslConfigure: ((SSLPointer) throws -> Void)?, hostName: String?, security: SSLSecurity) throws -> TLSObjects {
        try ensureSSL()
        var madeContext: SSLContextPointer?
        var madeSSL: SSLPointer?
        do {
            let context: SSLContextPointer
            switch argument {
            case .protocol(let proto):
                let made = try makeSSLCtx(protocol: proto, side: side)
                madeContext = made
                SSLStreamCensus.track(context: made.rawValue)
                try security.configure(context: made, side: side, pinned: proto.isPinned, datagram: proto.isDatagram)
                try ctxConfigure?(made)
                context = made
            case .context(let given):
                context = given
            case .connection(let given):
                guard let owner = SSL_get_SSL_CTX(given) else {
                    throw SSLError.usage("the SSL has no SSL_CTX", call: "attachSSL")
                }
                return TLSObjects(ssl: given, ctx: owner, ownsSSL: false, ownsContext: false)
            }
            let made = try sslNew(context)
            madeSSL = made
            SSLStreamCensus.track(made.rawValue)
            if side == .client {
                try security.configure(connection: made, hostName: hostName)
            }
            try sslConfigure?(made)
            return TLSObjects(ssl: made, ctx: context, ownsSSL: true, ownsContext: madeContext != nil)
        } catch {
            if let madeSSL { COpenSSL.SSL_free(madeSSL.rawValue) }
            if let madeContext { COpenSSL.SSL_CTX_free(madeContext.rawValue) }
            throw error
        }
    }

    /// Frees what was made here (the caller's objects stay).
    func discardMade() {
        if ownsSSL { COpenSSL.SSL_free(ssl.rawValue) }
        if ownsContext { COpenSSL.SSL_CTX_free(ctx.rawValue) }
    }
}
