import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI

/// TLS without a transport: bring your own (Python's `SSLObject` over `MemoryBIO`s, `wrap_bio`).
///
/// Ciphertext from the peer goes in with ``feed(_:)-([UInt8])``; ciphertext for the peer comes out of
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
    public var ssl: SSLPointer { objects.ssl }
    /// Its context.
    public var ctx: SSLContextPointer { objects.ctx }
    /// The side it was made for.
    public let side: SSLSide
    let objects: TLSObjects
    let buffers = TransportBuffers()
    /// The core engine that runs the OpenSSL calls.
    public let machine: TLSMachine
    /// The most ciphertext ``feed(_:)-([UInt8])`` keeps before OpenSSL has read it (16 MiB by default):
    /// more is refused with a usage error rather than held without bound.
    public var maxBufferedInput = 16 << 20
    /// The peer's close_notify arrived.
    public var peerClosed: Bool { machine.peerClosed }
    /// A fatal error happened; the engine is unusable.
    public var failed: Bool { machine.failed }

    /// Makes the objects `ctx` asks for (see ``SSLContextArgument`` and ``TLSConfiguration`` for what is
    /// made, applied and freed) and sets connect or accept state for `side`.
    ///
    /// A client that verifies the peer (the default) needs `hostName`, the name the certificate must be
    /// for: the engine has no connection to take it from. Pass `security: .insecure`, or a
    /// configuration with `checkHostName: false`, to opt out.
    /// - Corresponds: `SSL_new`, `BIO_new`, `SSL_set_bio`, `SSL_set_connect_state`, `SSL_set_accept_state`.
    public convenience init(ctx argument: SSLContextArgument = .default, side: SSLSide,
                ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil, sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                hostName: String? = nil, security: TLSConfiguration = .secure) throws {
        try self.init(objects: TLSObjects.make(argument, side: side, configuration: security, ctxConfigure: ctxConfigure,
                                               sslConfigure: sslConfigure, hostName: hostName, call: "TLSEngine"), side: side)
    }

    /// An engine for a new `SSL` on a context the library made and configured with `configuration`
    /// (the seeds' context objects); the holder keeps the context.
    package convenience init(on context: TLSContextHolder, side: SSLSide, configuration: TLSConfiguration,
                             sslConfigure: ((SSLPointer) throws -> Void)? = nil, hostName: String?, call: String) throws {
        try self.init(objects: TLSObjects.make(on: context, side: side, configuration: configuration, sslConfigure: sslConfigure,
                                               hostName: hostName, call: call, takeContext: false), side: side)
    }

    private init(objects: TLSObjects, side: SSLSide) throws {
        self.objects = objects
        guard let bio = TransportBIO.make(buffers) else {
            throw SSLError.fromQueue(call: "BIO_new", message: "cannot make the engine's BIO")
        }
        self.side = side
        machine = TLSMachine(ssl: objects.ssl, input: buffers)
        COpenSSL.SSL_set_bio(objects.ssl.rawValue, bio, bio)
        switch side {
        case .client: COpenSSL.SSL_set_connect_state(objects.ssl.rawValue)
        case .server: COpenSSL.SSL_set_accept_state(objects.ssl.rawValue)
        case .both: break
        }
    }

    // MARK: Ciphertext

    /// Hands the engine ciphertext received from the peer. Throws a usage error when more than
    /// ``maxBufferedInput`` bytes would wait unread.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws {
        guard buffers.input.count + bytes.count <= maxBufferedInput else {
            throw SSLError.usage("more than \(maxBufferedInput) bytes of ciphertext fed and not read (raise maxBufferedInput, or read first)", call: "TLSEngine.feed")
        }
        buffers.input.append(bytes)
    }
    /// Hands the engine ciphertext received from the peer (see ``feed(_:)-(UnsafeRawBufferPointer)``).
    public func feed(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try feed($0) } }
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
    /// - Corresponds: `SSL_is_init_finished`.
    public var isHandshakeDone: Bool { COpenSSL.SSL_is_init_finished(ssl.rawValue) == 1 }

    /// Advances the handshake: true when it is finished, false when it needs more input (send the
    /// outgoing bytes, feed the peer's answer, call again).
    /// - Corresponds: `SSL_do_handshake`.
    @discardableResult
    public func handshake() throws -> Bool {
        switch machine.handshake() {
        case .complete: return true
        case .wantRead, .wantWrite: return false
        case .closed: throw machine.closeNotify ?? SSLError(kind: .closed, call: "SSL_do_handshake", message: "SSL connection closed")
        case .failed(let error): throw error
        }
    }

    /// Reads plaintext: the number of bytes, 0 at the peer's close_notify, or nil when more input is needed.
    /// - Corresponds: `SSL_read`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try machine.read(into: buffer).get()
    }

    /// Peeks at plaintext without consuming it (`SSL_peek`): as ``read(into:)``.
    /// - Corresponds: `SSL_peek`.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try machine.peek(into: buffer).get()
    }

    /// Plaintext already decrypted and waiting (`SSL_pending`).
    /// - Corresponds: `SSL_pending`.
    public var pendingPlaintext: Int { Int(COpenSSL.SSL_pending(ssl.rawValue)) }

    /// Encrypts plaintext; returns how many bytes were taken (all of them once the handshake is done),
    /// or nil when the handshake needs more input first.
    /// - Corresponds: `SSL_write`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws -> Int? {
        guard bytes.count > 0 else { return 0 }
        var offset = 0
        while offset < bytes.count {
            guard let n = try machine.write(UnsafeRawBufferPointer(rebasing: bytes[offset...])).get() else {
                return offset == 0 ? nil : offset
            }
            offset += n
        }
        return offset
    }

    /// Encrypts plaintext bytes (see ``write(_:)-(UnsafeRawBufferPointer)``).
    public func write(_ bytes: [UInt8]) throws -> Int? { try bytes.withUnsafeBytes { try write($0) } }

    /// Sends close_notify (`SSL_shutdown`); true once the peer's close_notify has arrived too (or when
    /// there is nothing to close: a failed or unfinished connection). Application data that arrives
    /// before the peer's close_notify is dropped.
    /// - Corresponds: `SSL_shutdown`, `SSL_read`.
    @discardableResult
    public func shutdown() throws -> Bool {
        var scratch = [UInt8](repeating: 0, count: 512)
        while true {
            switch machine.shutdown() {
            case .closed: return true
            case .wantWrite: return false
            case .failed(let error): throw error
            case .complete, .wantRead:
                // Wait for theirs: read (and drop) until it comes or more input is needed.
                let r = scratch.withUnsafeMutableBytes { machine.read(into: $0) }
                switch r {
                case .closed: return true
                case .complete: continue
                case .wantRead, .wantWrite: return false
                case .failed(let error): throw error
                }
            }
        }
    }
}
