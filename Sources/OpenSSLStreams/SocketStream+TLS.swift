import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

/// What attach made and what it must free (LispWorks' ownership rules, kept by ``TLSObjects``), the
/// ciphertext buffers between the socket and OpenSSL, and the core engine that runs the calls.
final class TLSAttachment {
    let objects: TLSObjects
    var ssl: SSLPointer { objects.ssl }
    var ctx: SSLContextPointer { objects.ctx }
    let side: SSLSide
    let buffers: TransportBuffers
    let machine: TLSMachine
    /// The limit of a handshake that runs implicitly (server side, deferred client).
    let handshakeLimit: TimeoutValue
    var handshakeDone: Bool { machine.handshakeDone }
    /// A fatal TLS error happened: no close_notify may be sent any more.
    var failed: Bool { machine.failed }
    /// The peer's close_notify arrived.
    var peerClosed: Bool { machine.peerClosed }
    /// The `.closed` error of the read that met the peer's close_notify.
    var closeNotify: SSLError? { machine.closeNotify }

    init(objects: TLSObjects, side: SSLSide, buffers: TransportBuffers, handshakeLimit: TimeoutValue) {
        self.objects = objects; self.side = side; self.buffers = buffers; self.handshakeLimit = handshakeLimit
        machine = TLSMachine(ssl: objects.ssl, input: buffers)
    }

    /// Frees what attach made; takes the stream's BIO off a caller's `SSL`.
    func release() { objects.release() }
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
    ///   - argument: (`ctx:`) a protocol symbol (the stream makes and frees an `SSL_CTX` and an `SSL`), the caller's
    ///     `SSLContextPointer` (the stream makes and frees only the `SSL`) or the caller's `SSLPointer`
    ///     (used as it is, never freed, no configure callback). See `SSLContextArgument`.
    ///   - side: `.client` sets connect state, `.server` accept state, `.both` neither (call
    ///     `SSL_set_connect_state` / `SSL_set_accept_state` yourself, then ``handshake(timeout:)``).
    ///   - ctxConfigure: called once right after the stream made a new `SSL_CTX` (and applied
    ///     `TLSConfiguration`'s context settings), and only then: load certificates, set ciphers here.
    ///   - sslConfigure: called once right after the stream made a new `SSL`, and only then.
    ///   - handshakeTimeout: the total time the handshake may take (`TimeoutValue`: nil for the
    ///     configuration's, else `TLSTimeouts.handshake`; `.infinity` for no limit). A client handshakes
    ///     now unless this is zero or negative (LispWorks); otherwise (and on the server side) the
    ///     handshake runs at the first read or write, or at ``handshake(timeout:)``, with this limit (with
    ///     ``readTimeout`` when it was zero or negative).
    ///   - hostName: the name a client checks the certificate against and sends as SNI; by default the
    ///     host the stream was connected to (``remoteHost``), else the peer's IP address.
    ///   - security: the secure defaults and their switches (`TLSConfiguration.secure`).
    ///
    /// Bytes already received and not read when TLS is attached are taken as the peer's first TLS bytes
    /// (never as plaintext: a STARTTLS command injection stays outside TLS). If attaching fails, whatever
    /// it made is freed and the stream is left without TLS; the error is thrown: `SSLError` for TLS
    /// (kind `.handshakeTimeout`, `.verificationFailure` naming the verify result, `.failure` …), or the
    /// error a configure callback threw. Attaching to a stream that already has TLS is an error.
    /// - Corresponds: `SSL_set_accept_state`, `SSL_set_bio`, `SSL_set_connect_state`.
    public func attachSSL(ctx argument: SSLContextArgument = .default, side: SSLSide = .client,
                          ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                          sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                          handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                          security: TLSConfiguration = .secure) throws {
        try exclusively("attachSSL") {
            try checkOpen("attachSSL")
            // Only a client may defer its handshake (LispWorks); a server's runs at the first read or write,
        // within this limit.
        let limit = try security.handshakeLimit(handshakeTimeout, allowsDeferred: side != .server, call: "attachSSL")
            guard tls == nil else {
                throw SSLError.usage("TLS is already attached to this stream (detach it first)", call: "attachSSL")
            }
            try flushPending()
            try ensureSSL()
    
            let objects = try TLSObjects.make(argument, side: side, configuration: security, ctxConfigure: ctxConfigure,
                                              sslConfigure: sslConfigure, hostName: side == .client ? (hostName ?? remoteHost ?? peerHost) : hostName,
                                              call: "attachSSL")
            let buffers = TransportBuffers()
            buffers.fileDescriptor = fileDescriptor
            guard let bio = TransportBIO.make(buffers) else {
                let error = SSLError.fromQueue(call: "BIO_new", message: "cannot make the stream's BIO")
                objects.release()
                throw error
            }
            COpenSSL.SSL_set_bio(objects.ssl.rawValue, bio, bio)  // the SSL takes the one reference
            // Bytes that arrived after the last plaintext read are the peer's first TLS bytes.
            buffers.input.appendAll(from: readBuffer)
            if plainEOF { buffers.inputEOF = true }
            switch side {
            case .client: COpenSSL.SSL_set_connect_state(objects.ssl.rawValue)
            case .server: COpenSSL.SSL_set_accept_state(objects.ssl.rawValue)
            case .both: break
            }
            let attachment = TLSAttachment(objects: objects, side: side, buffers: buffers, handshakeLimit: limit)
            tls = attachment
            if side == .client && limit != .deferred {
                do {
                    try handshake(attachment, limit: limit)
                } catch {
                    tls = nil
                    attachment.release()
                    throw error
                }
            }
        }
    }

    // MARK: Handshake

    /// Runs the TLS handshake now (`SSL_do_handshake`), within a total of `timeout` seconds: nil for the
    /// limit given at attach (`TimeoutValue` says what each value means; zero and negative are refused
    /// here). Throws `SSLError` with kind `.handshakeTimeout` when the peer is too slow.
    /// - Corresponds: `SSL_do_handshake`.
    public func handshake(timeout: TimeInterval? = nil) throws {
        try exclusively("handshake") {
            try checkOpen("handshake")
            guard let tls else { throw SSLError.usage("no TLS is attached to this stream", call: "handshake") }
            let limit = try timeout.map { try TimeoutValue.resolve($0, default: nil, name: "the handshake timeout", call: "handshake") }
                ?? implicitHandshakeLimit(tls)
            try handshake(tls, limit: limit)
        }
    }

    func handshake(_ tls: TLSAttachment, limit: TimeoutValue) throws {
        if tls.handshakeDone { return }
        do {
            _ = try driveTLS(tls, call: "SSL_do_handshake", deadline: limit.deadline,
                             timeoutError: SSLError(kind: .handshakeTimeout, call: "SSL_do_handshake",
                                                    message: "the TLS handshake did not finish within \(describeSeconds(limit.seconds)) (\(self.peerDescription))")) {
                tls.machine.handshake()
            }
            noteWaitForPeer()  // an exchange with the peer: what follows may be the last for a while
        } catch let error as SSLError where error.kind == .handshakeTimeout {
            tls.machine.markFailed()  // a handshake cut off in the middle cannot go on
            throw error
        }
    }

    /// The limit of a handshake that runs at the first read or write: the one given at attach; after a
    /// deferred attach (zero or less), what a read may wait (else the default).
    func implicitHandshakeLimit(_ tls: TLSAttachment) -> TimeoutValue {
        guard tls.handshakeLimit == .deferred else { return tls.handshakeLimit }
        if let readTimeout, let value = try? TimeoutValue.resolve(readTimeout, default: nil, name: "", call: "") { return value }
        return .seconds(TLSTimeouts.handshake)
    }

    /// Runs a deferred handshake before the first TLS read or write.
    func ensureHandshake(_ tls: TLSAttachment) throws {
        if tls.handshakeDone { return }
        try handshake(tls, limit: implicitHandshakeLimit(tls))
    }

    // MARK: Detach

    /// The most plaintext a detach keeps (for the next reads) while it waits for the peer's close_notify:
    /// 16 MiB by default. A peer that sends more fails the detach with a usage error instead of growing
    /// memory without bound.
    public static let defaultDetachBufferLimit = 16 << 20

    /// Takes TLS off the stream (LispWorks' `detach-ssl`): flushes, sends close_notify, reads until the
    /// peer's close_notify arrives (application data that comes first is kept for the next reads, up to
    /// `bufferLimit` bytes), frees what attach made, and leaves the stream carrying plaintext — ready to
    /// attach again. Bytes the peer sent after its close_notify are the first plaintext bytes read next.
    ///
    /// The peer's close_notify is waited for `retryCount` × `retryTimeout` seconds **in total** (however
    /// much data arrives meanwhile); when it does not come, TLS is taken off all the same and
    /// `SSLError` is thrown. On a stream without TLS this does nothing.
    /// - Corresponds: `SSL_shutdown`, `SSL_read`, `SSL_free`.
    public func detachSSL(retryCount: Int = 10, retryTimeout: TimeInterval = 0.5,
                          bufferLimit: Int = SocketStream.defaultDetachBufferLimit) throws {
        try exclusively("detachSSL") {
            try checkOpen("detachSSL")
            try checkCount(retryCount, "the retry count", call: "detachSSL", max: 1_000_000)
            try checkCount(bufferLimit, "the buffer limit", call: "detachSSL", max: Int.max)
            let each = try TimeoutValue.resolve(retryTimeout, default: nil, name: "the retry timeout", call: "detachSSL")
            guard let tls else { return }
            defer {
                // Whatever happens, TLS is off and its bytes are accounted for.
                tls.release()
                self.tls = nil
            }
            try flushPending()
            guard tls.handshakeDone && !tls.failed else { return }
            let total: TimeoutValue = each.seconds.map { .seconds($0 * Double(max(retryCount, 1))) } ?? .unlimited
            let deadline = total.deadline
            let timeoutError = SSLError(kind: .error, call: "SSL_shutdown",
                                        message: "the peer did not answer close_notify within \(retryCount) × \(describeSeconds(retryTimeout)) (\(peerDescription))")
            while true {
                let result = tls.machine.shutdown()
                try sendTransportOutput(tls, call: "SSL_shutdown", deadline: deadline, timeoutError: timeoutError)
                if case .closed = result { break }
                // Read until the peer's close_notify: data before it is kept for the next reads.
                guard readBuffer.count < bufferLimit else {
                    throw SSLError.usage("more than \(bufferLimit) bytes of data arrived before the peer's close_notify (raise bufferLimit, or read them first)", call: "detachSSL")
                }
                let space = readBuffer.reserveTail(min(bufferSize, bufferLimit - readBuffer.count))
                do {
                    let n = try driveTLS(tls, call: "SSL_read", deadline: deadline, timeoutError: timeoutError) {
                        tls.machine.read(into: space)
                    }
                    readBuffer.commit(n)
                } catch let error as SSLError where error.kind == .closed {
                    break
                }
            }
            // What follows the close_notify is plaintext.
            readBuffer.appendAll(from: tls.buffers.input)
            if tls.buffers.inputEOF { plainEOF = true }
        }
    }

    // MARK: TLS I/O

    func tlsRead(_ tls: TLSAttachment, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try ensureHandshake(tls)
        if tls.peerClosed { return 0 }
        do {
            return try driveTLS(tls, call: "SSL_read", deadline: .after(readTimeout), timeoutError: readTimeoutError("SSL_read")) {
                tls.machine.read(into: buffer)
            }
        } catch let error as SSLError where error.kind == .closed {
            return 0  // close_notify: the end of the stream
        }
    }

    func tlsWrite(_ tls: TLSAttachment, _ bytes: UnsafeRawBufferPointer) throws {
        try ensureHandshake(tls)
        let deadline = Deadline.after(writeTimeout)
        if !tls.buffers.output.isEmpty {
            try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: writeTimeoutError("SSL_write"))
        }
        var offset = 0
        while offset < bytes.count {
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(bytes.count, offset + 64 * 1024)])
            offset += try driveTLS(tls, call: "SSL_write", deadline: deadline, timeoutError: writeTimeoutError("SSL_write"),
                                   sendOnSuccess: false) { tls.machine.write(chunk) }
            if tls.buffers.output.count >= 64 * 1024 {
                try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: writeTimeoutError("SSL_write"))
            }
        }
        try sendTransportOutput(tls, call: "SSL_write", deadline: deadline, timeoutError: writeTimeoutError("SSL_write"))
    }

    /// Runs one step of the core engine until it completes, moving ciphertext between the socket and
    /// OpenSSL within `deadline`: sends what the step queued, receives when it wants to read. A clean
    /// close_notify throws kind `.closed`; a failure throws its error (a Swift callback's own first),
    /// after sending the alert OpenSSL queued, if the peer still listens.
    func driveTLS(_ tls: TLSAttachment, call: String, deadline: Deadline, timeoutError: @autoclosure () -> Error,
                  sendOnSuccess: Bool = true, _ step: () -> TLSResult) throws -> Int {
        while true {
            let result = step()
            if tls.buffers.directlySent > 0 { bytesSent += tls.buffers.directlySent; tls.buffers.directlySent = 0 }
            switch result {
            case .complete(let n):
                if sendOnSuccess && !tls.buffers.output.isEmpty {
                    try sendTransportOutput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
                return n
            case .wantRead, .wantWrite:
                if !tls.buffers.output.isEmpty {
                    try sendTransportOutput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
                if case .wantRead = result {
                    try receiveTransportInput(tls, call: call, deadline: deadline, timeoutError: timeoutError())
                }
            case .closed:
                throw tls.closeNotify ?? SSLError(kind: .closed, call: call, message: "SSL connection closed")
            case .failed(let error):
                // Send the alert OpenSSL queued, if the peer still listens; never wait long for it.
                if !tls.buffers.output.isEmpty {
                    try? sendTransportOutput(tls, call: call, deadline: .after(TLSTimeouts.alertLinger), timeoutError: timeoutError())
                }
                sentFatalAlert = true
                throw error
            }
        }
    }

    /// Waits for the socket; a cancellation leaves TLS unusable (a record may be half sent or read).
    private func waitForTLS(_ tls: TLSAttachment, events: Int16, deadline: Deadline, call: String) throws -> Bool {
        do {
            return try waitUntilReady(fileDescriptor, events: events, deadline: deadline, cancel: cancelHandle, call: call)
        } catch {
            tls.machine.markFailed()
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
                guard try waitForTLS(tls, events: Int16(POLLOUT), deadline: deadline, call: call) else { throw timeoutError() }
            default:
                tls.machine.markFailed()
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
        // Try first; when nothing is there (the stream waits for its peer), block in recv without a
        // deadline or cancel handle, else poll.
        let blocking = deadline.nanoseconds == nil && cancelHandle == nil
        var flags = Int32(MSG_DONTWAIT)
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
                noteWaitForPeer()
                if blocking { flags = 0; continue }
                guard try waitForTLS(tls, events: Int16(POLLIN), deadline: deadline, call: call) else { throw timeoutError() }
            default:
                tls.machine.markFailed()
                throw SSLError(kind: .error, call: call, status: .syscall, errno: e,
                               message: "recv from \(peerDescription) failed: \(String(cString: strerror(e)))")
            }
        }
    }
}

