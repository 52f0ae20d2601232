import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

/// The shared state of a pair of TLS ports: a ``TLSEngine`` over a byte transport.
///
/// Reading and writing may happen on two threads at once: OpenSSL calls run under `engineLock` and
/// only move bytes between memory queues; the blocking transport reads and writes run outside it
/// (under `readLock` / `writeLock`). Ciphertext is sent in the order OpenSSL made it: the sender takes
/// `writeLock` before it gives up `engineLock`.
// @unchecked Sendable: OpenSSL runs under `engineLock`, the transports under `readLock` / `writeLock`, the
// flags under `engineLock`; the rest is fixed at init (`keepAlive` is set before the ports are handed out).
final class TLSPortCore: @unchecked Sendable {
    let engine: TLSEngine
    let transportIn: ByteReadable
    let transportOut: ByteWritable
    let closeOriginal: Bool
    let errorHook: (@Sendable (Error) -> Error)?
    private let engineLock = NSLock()
    private let readLock = NSLock()
    private let writeLock = NSLock()
    private var inputClosed = false
    private var outputClosed = false
    private var released = false
    /// Objects the connection needs alive as long as its ports (the context object it was made from).
    var keepAlive: AnyObject?

    init(engine: TLSEngine, input: ByteReadable, output: ByteWritable, closeOriginal: Bool, errorHook: (@Sendable (Error) -> Error)?) {
        self.engine = engine; transportIn = input; transportOut = output
        self.closeOriginal = closeOriginal; self.errorHook = errorHook
    }

    private func mapped(_ error: Error) -> Error { errorHook?(error) ?? error }

    /// Sends what the engine produced; called with `engineLock` held, returns with it released.
    private func sendOutgoingAndUnlock() throws {
        guard engine.hasOutgoing else { engineLock.unlock(); return }
        let bytes = engine.takeOutgoing()
        writeLock.lock()
        engineLock.unlock()
        defer { writeLock.unlock() }
        try bytes.withUnsafeBytes { try transportOut.writeAll($0) }
    }

    /// Reads ciphertext from the transport into the engine (blocking, outside `engineLock`), after
    /// waiting for it until `deadline` (false when the deadline passed first).
    private func receive(deadline: Deadline) throws -> Bool {
        readLock.lock(); defer { readLock.unlock() }
        if deadline.nanoseconds != nil {
            guard !deadline.hasPassed, try transportIn.waitReadable(until: deadline) else { return false }
        }
        var chunk = [UInt8](repeating: 0, count: 17 * 1024)
        let n = try chunk.withUnsafeMutableBytes { try transportIn.readSome(into: $0) }
        engineLock.lock(); defer { engineLock.unlock() }
        if n == 0 { engine.feedEOF() } else { try chunk.withUnsafeBytes { try engine.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
        return true
    }

    /// Runs `operation` on the engine until it stops asking for input, within `deadline` (a passed
    /// deadline throws `timeoutError`).
    private func drive<T>(deadline: Deadline = .never, timeoutError: @autoclosure () -> Error = SSLError.usage("", call: ""),
                          _ operation: () throws -> T?) throws -> T {
        do {
            while true {
                engineLock.lock()
                let result: T?
                do { result = try operation() } catch { engineLock.unlock(); throw error }
                try sendOutgoingAndUnlock()
                if let result { return result }
                guard try receive(deadline: deadline) else {
                    engine.machine.markFailedIfHandshaking()
                    throw timeoutError()
                }
            }
        } catch {
            throw mapped(error)
        }
    }

    /// Runs the handshake within `limit` (a total deadline; see ``TimeoutValue``).
    func handshake(limit: TimeoutValue) throws {
        _ = try drive(deadline: limit.deadline,
                      timeoutError: SSLError(kind: .handshakeTimeout, call: "SSL_do_handshake",
                                             message: "the TLS handshake did not finish within \(describeSeconds(limit.seconds))")) {
            try engine.handshake() ? true : nil
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if inputClosed { throw StreamError(kind: .closed, call: "SSL_read", message: "the TLS input port is closed") }
        return try drive { try engine.read(into: buffer) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if outputClosed { throw StreamError(kind: .closed, call: "SSL_write", message: "the TLS output port is closed") }
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            offset += try drive { try engine.write(rest) }
        }
    }

    /// Sends close_notify without waiting for the peer's.
    func sendCloseNotify() throws {
        engineLock.lock()
        _ = engine.machine.shutdown()  // one step: ours is sent, the peer's not awaited
        do { try sendOutgoingAndUnlock() } catch { throw mapped(error) }
    }

    func closeInput() throws {
        engineLock.lock()
        let wasClosed = inputClosed
        inputClosed = true
        engineLock.unlock()
        if !wasClosed { try finishIfBothClosed() }
    }

    func closeOutput(shutdown: Bool) throws {
        engineLock.lock()
        let wasClosed = outputClosed
        outputClosed = true
        engineLock.unlock()
        if wasClosed { return }
        if shutdown { try sendCloseNotify() }
        try finishIfBothClosed()
    }

    private func finishIfBothClosed() throws {
        engineLock.lock()
        let finish = inputClosed && outputClosed && !released
        if finish { released = true }
        engineLock.unlock()
        guard finish, closeOriginal else { return }
        try transportOut.closeWriting()
        if transportIn !== transportOut { try transportIn.closeReading() }
    }
}

/// The reading half of a TLS connection over a byte transport (or a socket): plaintext in.
public final class TLSInputPort: ByteReadable, @unchecked Sendable {  // its state is the core's, under the core's locks
    let core: TLSPortCore

    /// Keeps `object` alive as long as the ports live (a seed's context object under them).
    /// - Corresponds: none (no C call).
    package func keepAlive(_ object: AnyObject) { core.keepAlive = object }
    init(core: TLSPortCore) { self.core = core }

    /// The `SSL` behind the port (for direct calls).
    public var ssl: SSLPointer { core.engine.ssl }

    /// Reads plaintext: at least one byte, or 0 at the peer's close_notify (or throws: an EOF
    /// without close_notify is an `SSLError` with `SSLError.isUnexpectedEOF`).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try core.read(into: buffer) }

    /// Reads up to `maxLength` bytes ([] at the end).
    public func read(maxLength: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max(maxLength, 1))
        let n = try buffer.withUnsafeMutableBytes { try read(into: $0) }
        return Array(buffer.prefix(n))
    }

    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try read(into: buffer) }
    /// Closes the input half (the transport closes when both halves are, with `closeOriginal`).
    public func close() throws { try core.closeInput() }
    public func closeReading() throws { try close() }
}

/// The writing half of a TLS connection over a byte transport (or a socket): plaintext out.
public final class TLSOutputPort: ByteWritable, @unchecked Sendable {  // its state is the core's, under the core's locks
    let core: TLSPortCore
    /// Whether ``close(shutdown:)`` sends close_notify (Racket's `#:shutdown-on-close?`).
    public let shutdownOnClose: Bool
    init(core: TLSPortCore, shutdownOnClose: Bool) { self.core = core; self.shutdownOnClose = shutdownOnClose }

    /// The `SSL` behind the port.
    public var ssl: SSLPointer { core.engine.ssl }

    /// Encrypts and sends all of `bytes` (not buffered: each call sends its records).
    public func write(_ bytes: UnsafeRawBufferPointer) throws { try core.write(bytes) }
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
    public func write(_ text: String) throws { try write(Array(text.utf8)) }
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try write(bytes) }

    /// Sends close_notify now (the input half can still read what the peer sends).
    public func shutdown() throws { try core.sendCloseNotify() }

    /// Closes the output half: sends close_notify only with ``shutdownOnClose`` (or `shutdown: true`).
    public func close(shutdown: Bool? = nil) throws { try core.closeOutput(shutdown: shutdown ?? shutdownOnClose) }
    public func closeWriting() throws { try close() }
}

/// TLS over any pair of byte endpoints (Racket's `ports->ssl-ports`): returns the plaintext input and
/// output halves of a TLS connection whose ciphertext goes through `input` and `output`.
///
/// - Parameters:
///   - input: where ciphertext comes from (may be the same object as `output`: a socket, a
///     ``MemoryByteChannel``, a `Pipe` …).
///   - output: where ciphertext goes.
///   - mode: Racket's `#:mode`: `.client` for `'connect`, `.server` for `'accept` (`.both` is refused).
///   - context: a protocol symbol (a context is made, with `security`'s defaults, and freed with the
///     ports) or the caller's context or connection (`SSLContextArgument`).
///   - closeOriginal: closing both halves closes the transport too.
///   - shutdownOnClose: closing the output half sends close_notify.
///   - hostName: a client's expected host name and SNI.
///   - security: the secure defaults and their switches (`TLSConfiguration.secure`).
///   - ctxConfigure: called with a new `SSL_CTX` (with a protocol symbol only).
///   - sslConfigure: called with the new `SSL` before the handshake.
///   - handshakeTimeout: seconds the whole handshake may take (nil: `TLSTimeouts.handshake`).
///   - errorHook: turns each error before it is thrown (Racket's `#:error/ssl`).
///   - handshake: run the handshake now (else at the first read or write).
///
/// The two ports are `Sendable`: one thread may read while another writes (OpenSSL runs under a lock;
/// the transport sees at most one read and one write at a time). Give transports that allow that —
/// sockets, pipes, ``MemoryByteChannel``; a `SocketStream` refuses a second thread with a usage error.
public func portsToSSLPorts(input: ByteReadable, output: ByteWritable, mode: SSLSide = .client,
                            context: SSLContextArgument = .default, closeOriginal: Bool = false,
                            shutdownOnClose: Bool = false, hostName: String? = nil, security: TLSConfiguration = .secure,
                            ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                            sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                            errorHook: (@Sendable (Error) -> Error)? = nil, handshake: Bool = true,
                            handshakeTimeout: TimeInterval? = nil) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    try makeSSLPorts(input: input, output: output, closeOriginal: closeOriginal, shutdownOnClose: shutdownOnClose,
                     errorHook: errorHook, handshake: handshake,
                     handshakeLimit: security.handshakeLimit(handshakeTimeout, call: "portsToSSLPorts")) {
        guard mode != .both else {
            throw SSLError.usage("the mode is .client ('connect) or .server ('accept), not .both", call: "portsToSSLPorts")
        }
        return try TLSEngine(ctx: context, side: mode, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
                      hostName: hostName, security: security)
    }
}

/// Makes the ports over an engine `makeEngine` makes (the one path of ``portsToSSLPorts(input:output:mode:context:closeOriginal:shutdownOnClose:hostName:security:ctxConfigure:sslConfigure:errorHook:handshake:handshakeTimeout:)``
/// and the seeds).
package func makeSSLPorts(input: ByteReadable, output: ByteWritable, closeOriginal: Bool, shutdownOnClose: Bool,
                  errorHook: (@Sendable (Error) -> Error)?, handshake: Bool, handshakeLimit: TimeoutValue,
                  _ makeEngine: () throws -> TLSEngine) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    let engine: TLSEngine
    do {
        engine = try makeEngine()
    } catch {
        throw errorHook?(error) ?? error
    }
    let core = TLSPortCore(engine: engine, input: input, output: output, closeOriginal: closeOriginal, errorHook: errorHook)
    if handshake {
        do {
            try core.handshake(limit: handshakeLimit)
        } catch {
            if closeOriginal {
                try? output.closeWriting()
                if input !== output { try? input.closeReading() }
            }
            throw error
        }
    }
    return (TLSInputPort(core: core), TLSOutputPort(core: core, shutdownOnClose: shutdownOnClose))
}
