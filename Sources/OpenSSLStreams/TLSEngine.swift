import COpenSSL
import Foundation
import OpenSSLFLI

/// TLS without a transport: bring your own (Python's `SSLObject` over `MemoryBIO`s, `wrap_bio`).
///
/// Ciphertext from the peer goes in with ``feed(_:)``; ciphertext for the peer comes out of
/// ``takeOutgoing()``; the engine never blocks and never touches a socket. Each call says whether it
/// needs more input (`nil` / `false`), and the caller moves bytes and calls again:
///
/// ```swift
/// let engine = try TLSEngine(ctx: .default, side: .client, hostName: "example.org")
/// while try !engine.handshake() {
///     try send(engine.takeOutgoing())
///     engine.feed(try receive())
/// }
/// ```
///
/// Ownership is LispWorks' (``SSLContextArgument``): what the engine made it frees when it is
/// deinitialised; a caller's `SSL_CTX` or `SSL` is never freed. Not thread-safe: use one engine from one
/// thread at a time.
public final class TLSEngine {
    /// The connection the engine runs (for direct calls).
    public let ssl: SSLPointer
    /// Its context.
    public let ctx: SSLContextPointer
    /// The side it was made for.
    public let side: SSLSide
    let objects: TLSObjects
    let buffers = TransportBuffers()
    /// The peer's close_notify arrived.
    public private(set) var peerClosed = false
    /// A fatal error happened; the engine is unusable.
    public private(set) var failed = false

    /// Makes the objects `ctx` asks for (see ``SocketStream/attachSSL(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:)``
    /// for the arguments) and sets connect or accept state for `side`.
    public init(ctx argument: SSLContextArgument = .default, side: SSLSide,
                ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil, sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                hostName: String? = nil, security: SSLSecurity = .secure) throws {
        objects = try TLSObjects.make(argument, side: side, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
                                      hostName: hostName, security: security)
        guard let bio = TransportBIO.make(buffers) else {
            let error = SSLError.fromQueue(call: "BIO_new", message: "cannot make the engine's BIO")
            objects.discardMade()
            throw error
        }
        ssl = objects.ssl; ctx = objects.ctx; self.side = side
        COpenSSL.SSL_set_bio(ssl.rawValue, bio, bio)
        switch side {
        case .client: COpenSSL.SSL_set_connect_state(ssl.rawValue)
        case .server: COpenSSL.SSL_set_accept_state(ssl.rawValue)
        case .both: break
        }
    }

    deinit {
        if objects.ownsSSL {
            COpenSSL.SSL_free(ssl.rawValue)
        } else {
            COpenSSL.SSL_set_bio(ssl.rawValue, nil, nil)
        }
        if objects.ownsContext { COpenSSL.SSL_CTX_free(ctx.rawValue) }
    }

    // MARK: Ciphertext

    /// Hands the engine ciphertext received from the peer.
    public func feed(_ bytes: UnsafeRawBufferPointer) { buffers.input.append(bytes) }
    /// Hands the engine ciphertext received from the peer.
    public func feed(_ bytes: [UInt8]) { bytes.withUnsafeBytes { buffers.input.append($0) } }
    /// The transport ended: no more ciphertext will come.
    public func feedEOF() { buffers.inputEOF = true }

    /// Whether ciphertext waits to be sent.
    public var hasOutgoing: Bool { !buffers.output.isEmpty }
    /// Ciphertext bytes waiting to be sent.
    public var outgoingCount: Int { buffers.output.count }

    /// Takes the ciphertext waiting to be sent.
    public func takeOutgoing() -> [UInt8] {
        let bytes = Array(buffers.output.readable)
        buffers.output.consume(bytes.count)
        return bytes
    }

    /// Lets `send` take the waiting ciphertext without a copy; it returns how many bytes it took.
    public func withOutgoing(_ send: (UnsafeRawBufferPointer) throws -> Int) rethrows {
        guard !buffers.output.isEmpty else { return }
        let n = try send(buffers.output.readable)
        buffers.output.consume(max(0, min(n, buffers.output.count)))
    }

    // MARK: TLS

    /// Whether the handshake is finished.
    public var isHandshakeDone: Bool { COpenSSL.SSL_is_init_finished(ssl.rawValue) == 1 }

    /// Advances the handshake: true when it is finished, false when it needs more input (send the
    /// outgoing bytes, feed the peer's answer, call again).
    @discardableResult
    public func handshake() throws -> Bool {
        if isHandshakeDone { return true }
        return try step(call: "SSL_do_handshake") { COpenSSL.SSL_do_handshake(ssl.rawValue) } != nil
    }

    /// Reads plaintext: the number of bytes, 0 at the peer's close_notify, or nil when more input is needed.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        if peerClosed { return 0 }
        guard buffer.count > 0 else { return 0 }
        do {
            return try step(call: "SSL_read") {
                COpenSSL.SSL_read(ssl.rawValue, buffer.baseAddress, Int32(clamping: buffer.count))
            }.map(Int.init)
        } catch let error as SSLError where error.kind == .closed {
            return 0
        }
    }

    /// Peeks at plaintext without consuming it (`SSL_peek`): as ``read(into:)``.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        if peerClosed { return 0 }
        guard buffer.count > 0 else { return 0 }
        do {
            return try step(call: "SSL_peek") {
                COpenSSL.SSL_peek(ssl.rawValue, buffer.baseAddress, Int32(clamping: buffer.count))
            }.map(Int.init)
        } catch let error as SSLError where error.kind == .closed {
            return 0
        }
    }

    /// Plaintext already decrypted and waiting (`SSL_pending`).
    public var pendingPlaintext: Int { Int(COpenSSL.SSL_pending(ssl.rawValue)) }

    /// Encrypts plaintext; returns how many bytes were taken (all of them once the handshake is done),
    /// or nil when the handshake needs more input first.
    public func write(_ bytes: UnsafeRawBufferPointer) throws -> Int? {
        guard bytes.count > 0 else { return 0 }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, 1 << 30)
            guard let n = try step(call: "SSL_write", { COpenSSL.SSL_write(ssl.rawValue, bytes.baseAddress! + offset, Int32(chunk)) }) else {
                return offset == 0 ? nil : offset
            }
            offset += Int(n)
        }
        return offset
    }

    /// Encrypts plaintext bytes (see ``write(_:)-(UnsafeRawBufferPointer)``).
    public func write(_ bytes: [UInt8]) throws -> Int? { try bytes.withUnsafeBytes { try write($0) } }

    /// Sends close_notify (`SSL_shutdown`); true once the peer's close_notify has arrived too.
    @discardableResult
    public func shutdown() throws -> Bool {
        guard !failed, isHandshakeDone else { return true }
        COpenSSL.ERR_clear_error()
        let r = COpenSSL.SSL_shutdown(ssl.rawValue)
        if r == 1 { return true }
        if r == 0 {
            // Sent ours; read theirs if it is here already.
            if peerClosed { return true }
            var scratch = [UInt8](repeating: 0, count: 512)
            while true {
                let n = try scratch.withUnsafeMutableBytes { try read(into: $0) }
                guard let n else { return false }
                if n == 0 { return true }  // application data before close_notify is dropped
            }
        }
        // Called again while the peer's close_notify is still on its way: OpenSSL wants to read it.
        let code = COpenSSL.SSL_get_error(ssl.rawValue, r)
        if code == COpenSSL.SSL_ERROR_WANT_READ || code == COpenSSL.SSL_ERROR_WANT_WRITE {
            COpenSSL.ERR_clear_error()
            return false
        }
        throw SSLError.fromIO(ssl: ssl, returnCode: r, call: "SSL_shutdown")
    }

    /// Runs one OpenSSL call: its result, nil when it wants more input, or the error (a callback's
    /// error first).
    private func step(call: String, _ operation: () -> Int32) throws -> Int32? {
        if failed { throw SSLError.usage("the TLS engine failed earlier and cannot be used", call: call) }
        _ = CallbackRegistry.takePendingError()
        COpenSSL.ERR_clear_error()
        errno = 0
        let r = operation()
        if let callbackError = CallbackRegistry.takePendingError() {
            COpenSSL.ERR_clear_error()
            failed = true
            throw callbackError
        }
        if r > 0 { return r }
        let code = COpenSSL.SSL_get_error(ssl.rawValue, r)
        if code == COpenSSL.SSL_ERROR_WANT_READ || code == COpenSSL.SSL_ERROR_WANT_WRITE {
            if code == COpenSSL.SSL_ERROR_WANT_READ && buffers.inputEOF && buffers.input.isEmpty {
                failed = true
                throw SSLError(kind: .error, call: call, status: .syscall, returnCode: Int(r), message: SSLError.unexpectedEOFMessage)
            }
            return nil
        }
        let error = SSLError.fromIO(ssl: ssl, returnCode: r, call: call)
        if error.kind == .closed { peerClosed = true } else { failed = true }
        throw error
    }
}
