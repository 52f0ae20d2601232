import COpenSSL
import Foundation
import Synchronization
import OpenSSLFLI
import OpenSSLTLS

/// A buffered, blocking, bidirectional byte stream over a connected socket, to which TLS can be
/// attached (``attachSSL(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:)``)
/// and from which it can be detached again (``detachSSL(retryCount:retryTimeout:bufferLimit:)``) — LispWorks'
/// `socket-stream`.
///
/// Reads and writes go through buffers of ``bufferSize`` bytes: call ``flush()`` to send what was
/// written (a read that has to wait for the peer flushes first, so request/response code cannot
/// deadlock on its own unsent request). With TLS attached the same calls carry TLS.
///
/// A stream is not safe for concurrent use from several threads: use it from one thread at a time.
public final class SocketStream {
    /// The socket.
    public let fileDescriptor: Int32
    /// Whether ``close()`` closes ``fileDescriptor`` (false for a descriptor the caller keeps).
    public let closesDescriptor: Bool
    /// The host name the stream was connected to, if it was made by ``openTCPStream(host:port:sslCtx:ctxConfigure:sslConfigure:handshakeTimeout:hostName:connectTimeout:security:readTimeout:writeTimeout:cancel:)``.
    /// A client's TLS checks the certificate against it unless another `hostName` is given.
    public let remoteHost: String?
    /// Seconds a read may wait for the peer before it throws (`ETIMEDOUT`); nil waits forever.
    @exclusivity(unchecked) public var readTimeout: TimeInterval?  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// Seconds a write may wait for the socket to take the bytes before it throws; nil waits forever.
    @exclusivity(unchecked) public var writeTimeout: TimeInterval?  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// The size of the read and write buffers.
    public let bufferSize: Int
    /// Ends this stream's blocked reads, writes and handshakes from another thread when cancelled
    /// (`CancelHandle`): the call throws `StreamError` `.cancelled`, and TLS on the stream is unusable
    /// after it. Set it before the calls it should cover. Closing the stream from another thread
    /// (``close()``) also ends a blocked call, with `.closed`.
    @exclusivity(unchecked) public var cancelHandle: CancelHandle?  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// The longest line ``readLine(maxLength:)`` accepts by default.
    public static let defaultMaxLineLength = 64 * 1024

    /// True once ``close()`` (or ``releaseSocket()``) ran.
    @exclusivity(unchecked) public private(set) var isClosed = false  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// ``releaseSocket()`` gave the descriptor away.
    private var releasedDescriptor = false

    let readBuffer: ByteQueue
    let writeBuffer: ByteQueue
    /// The plaintext side saw the end of the stream.
    @exclusivity(unchecked) var plainEOF = false  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// The TLS state while attached.
    @exclusivity(unchecked) var tls: TLSAttachment?  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// A TLS failure sent (or may have sent) a fatal alert on this socket: close lingers so the peer
    /// can read it (see ``close()``).
    @exclusivity(unchecked) var sentFatalAlert = false  // exclusivity(unchecked): see ``SocketStream/exclusive``

    /// Makes a stream over a connected socket.
    /// - Parameters:
    ///   - fileDescriptor: a connected stream socket.
    ///   - closesDescriptor: whether ``close()`` (and deinit) close it; false leaves it to the caller.
    ///   - remoteHost: the host name it was connected to, for TLS host name checks.
    ///   - pendingInput: bytes already received from the socket by its previous owner (another stream,
    ///     a NIO channel): they are read first, so nothing is lost when a connection changes hands.
    ///   - bufferSize: the size of each read from the socket.
    ///   - readTimeout: seconds a read may wait for data (nil: no limit; see `TimeoutValue`).
    ///   - writeTimeout: seconds a flush may wait for the socket to take data (nil: no limit).
    public init(fileDescriptor: Int32, closesDescriptor: Bool = true, remoteHost: String? = nil,
                bufferSize: Int = 16 * 1024, readTimeout: TimeInterval? = nil, writeTimeout: TimeInterval? = nil,
                pendingInput: [UInt8] = []) {
        self.fileDescriptor = fileDescriptor
        self.closesDescriptor = closesDescriptor
        self.remoteHost = remoteHost
        self.bufferSize = min(max(bufferSize, 512), 64 << 20)  // 512 B … 64 MiB
        self.readTimeout = readTimeout
        self.writeTimeout = writeTimeout
        rawPeerAddress = RawSocketAddress(fileDescriptor, peer: true)
        readBuffer = ByteQueue(capacity: self.bufferSize)
        writeBuffer = ByteQueue(capacity: self.bufferSize)
        if !pendingInput.isEmpty { pendingInput.withUnsafeBytes { readBuffer.append($0) } }
    }

    /// Hands the socket over to another owner (LispWorks' `replace-socket-stream-socket` with nil): sends
    /// what was written, and returns the descriptor with the bytes received and not read yet. The stream
    /// is closed afterwards but the descriptor is not: it is the caller's, to give to a new stream
    /// (`SocketStream(fileDescriptor:pendingInput:)`) or to SwiftNIO
    /// (`ClientBootstrap.withConnectedSocket`), pending bytes first. TLS must be detached first.
    /// - Corresponds: none (no C call: the descriptor changes owner).
    public func releaseSocket() throws -> (fileDescriptor: Int32, pendingInput: [UInt8]) {
        try exclusively("releaseSocket") {
            try checkOpen("releaseSocket")
            guard tls == nil else { throw SSLError.usage("detach TLS before handing the socket over", call: "releaseSocket") }
            try flushPending()
            let pending = Array(readBuffer.readable)
            readBuffer.removeAll()
            isClosed = true
            releasedDescriptor = true
            return (fileDescriptor, pending)
        }
    }

    deinit {
        // A stream dropped without close(): flush and shut down as close() does, but never wait more
        // than 2 s for a peer that stopped reading.
        if !isClosed {
            writeTimeout = min(writeTimeout ?? 2, 2)
            closeQuietly()
        }
    }

    /// The peer's address, "127.0.0.1:443" or "[::1]:443" (`getpeername`, taken when the stream was
    /// made, so errors can still name the peer after a reset). Nil for non-IP sockets.
    public var peerAddress: String? { peerFormatted?.text }
    /// The peer's numeric host ("127.0.0.1", "::1").
    var peerHost: String? { peerFormatted?.host }
    private let rawPeerAddress: RawSocketAddress?
    private lazy var peerFormatted: (host: String, port: Int, text: String)? = rawPeerAddress?.formatted
    /// This end's address (`getsockname`).
    public var localAddress: String? { socketAddress(fileDescriptor, peer: false)?.text }

    /// What error messages name: the peer's address, or the descriptor.
    var peerDescription: String { peerAddress.map { "peer \($0)" } ?? "fd \(fileDescriptor)" }

    /// Bytes received and not read yet (plaintext; with TLS, decrypted).
    public var bufferedInputCount: Int { readBuffer.count }

    /// True when a read can make progress without waiting for the socket: plaintext is buffered, or
    /// (with TLS) received records wait in the stream or in OpenSSL. Use it with `poll` on
    /// ``fileDescriptor``: the socket may be quiet while data waits here.
    /// - Corresponds: `SSL_pending`.
    public var hasBufferedInput: Bool {
        if !readBuffer.isEmpty { return true }
        guard let tls else { return false }
        return !tls.buffers.input.isEmpty || COpenSSL.SSL_pending(tls.ssl.rawValue) > 0
    }

    /// Bytes sent on the socket so far (with TLS: records, headers and handshakes included).
    @exclusivity(unchecked) public internal(set) var bytesSent = 0  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// Bytes received from the socket so far (with TLS: as sent on the wire).
    @exclusivity(unchecked) public internal(set) var bytesReceived = 0  // exclusivity(unchecked): see ``SocketStream/exclusive``

    func checkOpen(_ call: String) throws {
        if isClosed { throw StreamError(kind: .closed, call: call, message: "the stream is closed") }
    }

    /// Refuses use from a second thread while one is inside the stream (a clear error instead of
    /// corrupted buffers); calls on the same thread nest.
    ///
    /// Because of it, the stream's hot counters and flags (and those of its byte queues, its TLS
    /// buffers and its TLS machine) are marked `@exclusivity(unchecked)`: each is a plain value that one
    /// thread at a time reads or assigns, never passed `inout` across a call, so the Swift runtime's
    /// dynamic exclusivity check (`swift_beginAccess`, ~26 a record and ~1.7 k instructions in all,
    /// measured with callgrind) guards nothing there.
    let exclusive = ExclusiveUse()

    /// Runs `body` as the stream's one user (see ``exclusive``).
    @inline(__always)
    func exclusively<T>(_ call: String, _ body: () throws -> T) throws -> T {
        try exclusive.enter(call)
        defer { if exclusive.leave() { closeQuietly() } }  // a close another thread asked for meanwhile
        do {
            let result = try body()
            if exclusive.closeRequested { throw closedByAnotherThread(call) }
            return result
        } catch {
            if exclusive.closeRequested { throw closedByAnotherThread(call) }
            throw error
        }
    }

    private func closedByAnotherThread(_ call: String) -> StreamError {
        StreamError(kind: .closed, call: call, message: "the stream was closed by another thread during the call")
    }

    // MARK: Reading

    /// Reads at most `buffer.count` bytes; returns 0 at the end of the stream (the peer closed, or sent
    /// TLS close_notify). Waits for at least one byte, up to ``readTimeout``.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try exclusively("read") {
            try checkOpen("read")
            guard buffer.count > 0 else { return 0 }
            var n = 0
            defer { releaseIdleBuffers(moved: n, reading: true) }
            if !readBuffer.isEmpty { n = readBuffer.take(into: buffer); return n }
            try flushPending()
            if buffer.count >= bufferSize {
                n = try readFromTransport(into: buffer)  // large reads skip the buffer
                return n
            }
            guard try fillReadBuffer() else { return 0 }
            n = readBuffer.take(into: buffer)
            return n
        }
    }

    /// Operations ended since a read last had to wait for the peer (found no data on the socket), or
    /// since a handshake (an exchange with the peer) finished.
    @exclusivity(unchecked) var operationsSinceWait = Int.max  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// When a read gives the buffers back at a release point (see ``releaseIdleBuffers(moved:reading:)``).
    @exclusivity(unchecked) var releasePolicy = IdleReleasePolicy()  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// How many times the stream gave its buffers back (for tests).
    @exclusivity(unchecked) var idleReleases = 0  // exclusivity(unchecked): see ``SocketStream/exclusive``
    /// A read found the socket empty and waits for the peer: the stream is going idle.
    func noteWaitForPeer() { operationsSinceWait = 0 }

    /// Gives back the buffers that hold nothing when an operation that moved little ends and the stream
    /// is going idle — this operation or the one before it waited for the peer (a request/response
    /// turn, a handshake) — so an idle stream holds no buffer memory, OpenSSL's record buffers included
    /// (`SSL_free_buffers`, which keeps them while they hold data). Operations that follow each other
    /// without waiting (bulk transfer, in small writes or large) keep them: freeing and remaking 16 KiB+
    /// blocks per record costs ~4 k instructions a record. Unlike `SSL_MODE_RELEASE_BUFFERS` this never
    /// runs inside a handshake.
    ///
    /// A flush that ends a turn (request, response) always gives them back. A reader that keeps
    /// reaching such points is busy, not idle (it outpaces its writer and waits for the peer every few
    /// records): ``IdleReleasePolicy`` then skips most of its points — so a reader that goes idle
    /// straight out of a busy spell may keep its buffers until its next operation.
    func releaseIdleBuffers(moved: Int, reading: Bool) {
        let sinceWait = operationsSinceWait
        if sinceWait < Int.max { operationsSinceWait = sinceWait + 1 }
        if moved >= bufferSize || sinceWait > 1 { return }
        if reading { guard releasePolicy.shouldRelease(now: monotonicNanoseconds) else { return } }
        idleReleases += 1
        readBuffer.releaseIfEmpty()
        writeBuffer.releaseIfEmpty()
        if let tls {
            tls.buffers.input.releaseIfEmpty()
            tls.buffers.output.releaseIfEmpty()
            if tls.handshakeDone && !tls.failed { _ = COpenSSL.SSL_free_buffers(tls.ssl.rawValue) }
        }
    }

    /// Up to `maxLength` bytes that the next read will return, without consuming them ([] at the end);
    /// waits for at least one byte like ``read(into:)``.
    public func peek(maxLength: Int) throws -> [UInt8] {
        try checkCount(maxLength, "the maximum length", call: "peek", max: Int.max)
        return try exclusively("peek") {
            try checkOpen("peek")
            if readBuffer.isEmpty { guard try fillReadBuffer() else { return [] } }
            return Array(readBuffer.readable.prefix(maxLength))
        }
    }

    /// Reads at most `maxLength` bytes; an empty result is the end of the stream.
    /// A negative `maxLength` is a usage error; a large one reads what is there (one buffer's worth at
    /// most), never allocating `maxLength` bytes up front.
    public func read(maxLength: Int) throws -> [UInt8] {
        try checkCount(maxLength, "the maximum length", call: "read", max: Int.max)
        guard maxLength > 0 else { return [] }
        let size = min(maxLength, max(bufferSize, readBuffer.count))
        var result = [UInt8](repeating: 0, count: size)
        let n = try result.withUnsafeMutableBytes { try read(into: $0) }
        result.removeLast(size - n)
        return result
    }

    /// Reads exactly `count` bytes. When the stream ends first it throws: with TLS attached and a
    /// close_notify from the peer, `SSLError` of kind `.closed` (LispWorks' ssl-closed); otherwise
    /// ``StreamError`` `.endOfStream`.
    /// A negative `count` is a usage error, and so is one above `limit` (64 MiB by default): the bytes are
    /// collected in memory.
    public func readExactly(_ count: Int, limit: Int = 64 << 20) throws -> [UInt8] {
        try checkCount(count, "the byte count", call: "readExactly", max: limit)
        var result = [UInt8](repeating: 0, count: count)
        var got = 0
        try result.withUnsafeMutableBytes { raw in
            while got < count {
                let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[got...]))
                if n == 0 {
                    if var closed = tls?.closeNotify {
                        closed.message += " after \(got) of \(count) bytes"
                        throw closed
                    }
                    throw StreamError(kind: .endOfStream, call: "read",
                                      message: "the stream ended after \(got) of \(count) bytes (\(peerDescription))")
                }
                got += n
            }
        }
        return result
    }

    /// Reads one line, ended by LF or CR LF (the ending is not returned). Returns nil at the end of the
    /// stream; a last line without an ending is returned as it is. Throws ``StreamError``
    /// (`.lineTooLong`) for a line longer than `maxLength` bytes. Invalid UTF-8 is repaired.
    public func readLine(maxLength: Int = SocketStream.defaultMaxLineLength) throws -> String? {
        try exclusively("readLine") {
            try checkOpen("readLine")
            try checkCount(maxLength, "the maximum line length", call: "readLine", max: Int.max)
            defer { releaseIdleBuffers(moved: 0, reading: true) }
            var searched = 0
            while true {
                if let newline = readBuffer.firstIndex(of: UInt8(ascii: "\n"), from: searched) {
                    guard newline <= maxLength else { throw lineTooLong(maxLength) }
                    var end = newline
                    let bytes = readBuffer.readable
                    if end > 0 && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                    let line = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<end]), as: UTF8.self)
                    readBuffer.consume(newline + 1)
                    return line
                }
                searched = readBuffer.count
                if searched > maxLength { throw lineTooLong(maxLength) }
                if try !fillReadBuffer() {
                    if readBuffer.isEmpty { return nil }
                    let line = String(decoding: readBuffer.readable, as: UTF8.self)
                    readBuffer.removeAll()
                    return line
                }
            }
        }
    }

    private func lineTooLong(_ maxLength: Int) -> StreamError {
        StreamError(kind: .lineTooLong, call: "readLine", message: "a line longer than \(maxLength) bytes arrived (\(peerDescription))")
    }

    /// Reads until the end of the stream (at most `limit` bytes; more throws `.lineTooLong`).
    public func readToEnd(limit: Int = 64 * 1024 * 1024) throws -> [UInt8] {
        try checkCount(limit, "the limit", call: "readToEnd", max: Int.max)
        var result: [UInt8] = []
        while true {
            let chunk = try read(maxLength: 64 * 1024)
            if chunk.isEmpty { return result }
            result += chunk
            if result.count > limit {
                throw StreamError(kind: .lineTooLong, call: "readToEnd", message: "more than \(limit) bytes arrived (\(peerDescription))")
            }
        }
    }

    /// Appends more input to the read buffer; false at the end of the stream.
    func fillReadBuffer() throws -> Bool {
        try flushPending()
        let space = readBuffer.reserveTail(bufferSize)
        let n = try readFromTransport(into: space)
        readBuffer.commit(n)
        return n > 0
    }

    /// One read from the socket, or one `SSL_read` while TLS is attached.
    func readFromTransport(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if let tls { return try tlsRead(tls, into: buffer) }
        return try plainReceive(into: buffer)
    }

    /// `recv` into `buffer`, waiting up to ``readTimeout``; 0 at EOF.
    func plainReceive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if plainEOF { return 0 }
        let deadline = Deadline.after(readTimeout)
        // Try first; when nothing is there (the stream waits for its peer), block in recv without a
        // deadline or cancel handle, else poll.
        let blocking = deadline.nanoseconds == nil && cancelHandle == nil
        var flags = Int32(MSG_DONTWAIT)
        while true {
            let n = recv(fileDescriptor, buffer.baseAddress, buffer.count, flags)
            if n > 0 { bytesReceived += n; return n }
            if n == 0 { plainEOF = true; return 0 }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                noteWaitForPeer()
                if blocking { flags = 0; continue }
                guard try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline, cancel: cancelHandle, call: "recv") else {
                    throw SocketError(call: "recv", errno: ETIMEDOUT, context: "read timeout of \(describeSeconds(readTimeout)), \(peerDescription)")
                }
            default:
                throw SocketError(call: "recv", errno: e, context: peerDescription)
            }
        }
    }

    // MARK: Writing

    /// Writes bytes (buffered: see ``flush()``).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try exclusively("write") {
            try checkOpen("write")
            guard bytes.count > 0 else { return }
            if writeBuffer.isEmpty && bytes.count >= bufferSize {
                try writeToTransport(bytes)  // large writes skip the buffer
                releaseIdleBuffers(moved: bytes.count, reading: false)
                return
            }
            if writeBuffer.count + bytes.count <= bufferSize {
                writeBuffer.append(bytes)
                if writeBuffer.count == bufferSize { try flushPending() }
                return
            }
            try flushPending()
            if bytes.count >= bufferSize {
                try writeToTransport(bytes)  // large writes skip the buffer
            } else {
                writeBuffer.append(bytes)
            }
        }
    }

    /// Writes bytes (buffered: see ``flush()``).
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes bytes (buffered: see ``flush()``).
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Writes a string as UTF-8 (buffered: see ``flush()``).
    public func write(_ string: String) throws {
        var s = string
        try s.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes a line and its ending (CR LF by default), and flushes.
    public func writeLine(_ line: String, ending: String = "\r\n") throws {
        try write(line + ending)
        try flush()
    }

    /// Sends everything written so far (with TLS: encrypts it and sends the records), waiting up to
    /// ``writeTimeout`` for the socket to take it.
    public func flush() throws {
        try exclusively("flush") {
            try checkOpen("flush")
            let moved = writeBuffer.count
            defer { releaseIdleBuffers(moved: moved, reading: false) }
            try flushPending()
        }
    }

    /// Sends what is buffered (no buffer is given back: used inside other operations).
    func flushPending() throws {
        if let tls {
            if !writeBuffer.isEmpty {
                try tlsWrite(tls, writeBuffer.readable)
                writeBuffer.removeAll()
            } else if !tls.buffers.output.isEmpty {
                try sendTransportOutput(tls, call: "SSL_write", deadline: .after(writeTimeout), timeoutError: writeTimeoutError("SSL_write"))
            }
            return
        }
        while !writeBuffer.isEmpty {
            let n = try plainSendSome(writeBuffer.readable, deadline: .after(writeTimeout))
            writeBuffer.consume(n)
        }
    }

    /// Sends (or with TLS, encrypts and sends) bytes that bypass the buffer.
    func writeToTransport(_ bytes: UnsafeRawBufferPointer) throws {
        if let tls { return try tlsWrite(tls, bytes) }
        var offset = 0
        let deadline = Deadline.after(writeTimeout)
        while offset < bytes.count {
            offset += try plainSendSome(UnsafeRawBufferPointer(rebasing: bytes[offset...]), deadline: deadline)
        }
    }

    /// One successful `send` of part of `bytes` (waiting for the socket up to the deadline).
    func plainSendSome(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws -> Int {
        while true {
            let n = send(fileDescriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n >= 0 { bytesSent += n; return n }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                guard try waitUntilReady(fileDescriptor, events: Int16(POLLOUT), deadline: deadline, cancel: cancelHandle, call: "send") else {
                    throw SocketError(call: "send", errno: ETIMEDOUT, context: "write timeout of \(describeSeconds(writeTimeout)), \(peerDescription)")
                }
            default:
                throw SocketError(call: "send", errno: e, context: peerDescription)
            }
        }
    }

    func writeTimeoutError(_ call: String) -> Error {
        SocketError(call: call, errno: ETIMEDOUT, context: "write timeout of \(describeSeconds(writeTimeout)), \(peerDescription)")
    }

    func readTimeoutError(_ call: String) -> Error {
        SocketError(call: call, errno: ETIMEDOUT, context: "read timeout of \(describeSeconds(readTimeout)), \(peerDescription)")
    }

    // MARK: Closing

    /// Flushes, shuts TLS down if it is attached (one `SSL_shutdown`: close_notify is sent if the peer
    /// still listens, the peer's is not waited for), frees what attach made, and closes the socket if the
    /// stream owns it. Everything is released even when flushing fails; that failure (unsent data) is
    /// then thrown. Closing twice does nothing.
    ///
    /// Called from another thread while a call is blocked in the stream, it ends that call (with
    /// `StreamError` `.closed`): the socket is shut down at once, and the stream closes as that call
    /// returns.
    /// - Corresponds: `SSL_shutdown`, `shutdown(2)`, `close(2)`.
    public func close() throws {
        guard !isClosed else { return }
        if exclusive.requestCloseIfBusy() {
            _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR))  // wakes the blocked call
            return
        }
        var firstError: Error?
        do { try flushPending() } catch { firstError = error }
        if let tls {
            // One step of the close: close_notify is sent if the connection is sound; the peer's is not
            // waited for. Best effort: the peer may have gone already (EPIPE), and one that stopped
            // reading must not hold close up for long. Its absence loses no data of ours.
            if tls.failed { sentFatalAlert = true }
            _ = tls.machine.shutdown()
            let limit = min(writeTimeout ?? 2, 2)
            try? sendTransportOutput(tls, call: "SSL_shutdown", deadline: .after(limit), timeoutError: writeTimeoutError("SSL_shutdown"))
            tls.release()
            self.tls = nil
        }
        isClosed = true
        readBuffer.removeAll()
        writeBuffer.removeAll()
        if closesDescriptor {
            if sentFatalAlert { AlertLinger.shared.linger(fileDescriptor) }
            Glibc.close(fileDescriptor)
        }
        if let firstError { throw firstError }
    }

    func closeQuietly() { try? close() }
}

/// Whether a stream that reached a release point (an operation that moved little, next to a wait for
/// the peer) gives its buffers back now. The first point always does. A point that comes within
/// ``quietTime`` of the last release means the stream is busy, not idle (a reader that outpaces its
/// writer waits for the peer every few records): it skips the next points, twice as many after each
/// busy point (up to ``maxSkips``), so that a busy stream does not free and remake its 16 KiB+ blocks
/// every other record (~1.3 k instructions a record in callgrind). Once the skips of a busy spell have
/// run out, a stream gone quiet releases at each point again.
struct IdleReleasePolicy {
    /// A point sooner than this after the last release is a busy one (2 ms).
    static let quietTime: UInt64 = 2_000_000
    /// The most points a busy stream skips in a row.
    static let maxSkips = 128
    /// When the buffers were last given back (monotonic nanoseconds; nil: never).
    private var lastRelease: UInt64?
    /// Points to skip before the next check, and how many the last busy point set.
    private var skips = 0
    private var backoff = 0

    /// Called at each release point; `now` is read only when the point is not skipped.
    mutating func shouldRelease(now: () -> UInt64) -> Bool {
        if skips > 0 { skips -= 1; return false }
        let time = now()
        if let lastRelease, time &- lastRelease < Self.quietTime {
            backoff = min(max(backoff * 2, 1), Self.maxSkips)
            skips = backoff
            return false
        }
        backoff /= 2
        lastRelease = time
        return true
    }
}

/// The guard behind ``SocketStream``'s "one thread at a time" rule: the first thread in owns the
/// stream until it leaves; calls it makes from inside nest; another thread gets a usage error.
///
/// Lock-free: entering is one compare-and-exchange of the owner, leaving one store, since every read,
/// write and flush passes here (a lock pair each way cost ~500 instructions an operation).
final class ExclusiveUse: @unchecked Sendable {  // `owner` and `closeWanted` are atomics; `depth` is only touched by the owning thread
    /// The owning thread (`pthread_t`), 0 when none.
    private let owner = Atomic<UInt>(0)
    /// Nesting depth of the owner's calls: only the owner reads or writes it, and ownership passes
    /// through `owner` (acquiring on enter, releasing on leave).
    private var depth = 0
    private let closeWanted = Atomic<Bool>(false)

    /// Another thread asked to close the stream while this one was inside.
    var closeRequested: Bool { closeWanted.load(ordering: .sequentiallyConsistent) }

    /// From ``SocketStream/close()``: when another thread is inside, notes the request (true); the
    /// owner closes as it leaves. False when the caller may close now.
    func requestCloseIfBusy() -> Bool {
        let me = UInt(pthread_self())
        let current = owner.load(ordering: .sequentiallyConsistent)
        guard current != 0, current != me else { return false }
        closeWanted.store(true, ordering: .sequentiallyConsistent)
        // The owner may have left between the load and the store, without seeing the request: then
        // whoever takes the flag back closes (the owner in `leave`, or the caller here).
        if owner.load(ordering: .sequentiallyConsistent) == 0 {
            return !closeWanted.exchange(false, ordering: .sequentiallyConsistent)
        }
        return true
    }

    @inline(__always)
    func enter(_ call: String) throws {
        let me = UInt(pthread_self())
        if owner.load(ordering: .relaxed) == me { depth += 1; return }  // a nested call of the owner
        guard owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged else {
            throw SSLError.usage("the stream is in use by another thread: a stream serves one thread at a time", call: call)
        }
        depth = 1
    }

    /// Leaves; true when the outermost call leaves and a close was requested meanwhile.
    @inline(__always)
    func leave() -> Bool {
        depth -= 1
        guard depth == 0 else { return false }
        owner.store(0, ordering: .sequentiallyConsistent)
        guard closeWanted.load(ordering: .sequentiallyConsistent) else { return false }
        return closeWanted.exchange(false, ordering: .sequentiallyConsistent)
    }
}

/// A stream serves one thread at a time, so it is not `Sendable`: hand it to another thread with
/// ``startThread(stackSize:_:)``, whose closure is `sending`.
@available(*, unavailable, message: "a SocketStream serves one thread at a time: hand it on with startThread")
extension SocketStream: Sendable {}
