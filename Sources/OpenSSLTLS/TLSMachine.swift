import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI

/// What one step of the TLS engine came to.
public enum TLSResult {
    /// The call succeeded: bytes read or written (0 for a handshake or shutdown step that finished).
    case complete(Int)
    /// OpenSSL needs ciphertext from the peer: send what is queued, receive, call again.
    case wantRead
    /// OpenSSL needs the transport to take queued ciphertext: send it, call again.
    case wantWrite
    /// The peer's close_notify arrived (reads), or both close_notifys have been exchanged (shutdown).
    case closed
    /// The connection failed; the error says why (a Swift callback's own error first).
    case failed(Error)
}

/// The transport's side of the ciphertext a ``TLSMachine`` reads: whether none is left and none will
/// come (the peer closed its end). Each transport's buffers answer it (the stream's, the NIO handler's).
public protocol CiphertextInput: AnyObject {
    /// No ciphertext waits and the peer closed the transport: a read that wants more can never have it.
    var isExhausted: Bool { get }
}

/// Where the close of a connection stands: the shutdown state machine, written once.
public enum TLSShutdownState: Sendable, Hashable {
    /// Open: no close_notify either way.
    case open
    /// Ours was sent; the peer's has not arrived.
    case sent
    /// The peer's arrived; ours has not been sent.
    case received
    /// Both were exchanged.
    case closed
    /// The connection failed (or never finished its handshake): no close_notify may be sent.
    case failed
}

/// The TLS engine shared by every transport: it runs one OpenSSL call at a time over whatever BIO the
/// transport installed, and turns the outcome into a ``TLSResult``. The bookkeeping that every caller
/// needs is written here once:
///
/// - before the call: the thread's error queue is cleared, `errno` reset, and a callback error left by an
///   earlier, unrelated call dropped;
/// - after it: an error a Swift callback threw inside the call (verify, SNI, ALPN, PSK, OCSP …) is the
///   result, not OpenSSL's generic failure; `SSL_get_error` classifies the rest into `SSLError`;
///   want-read on an exhausted transport is an unexpected EOF (a truncation attack is never a clean end);
/// - the state: handshake finished, peer closed, failed, and the shutdown state machine.
///
/// Renegotiation is refused by the configuration (`SSL_OP_NO_RENEGOTIATION`), so a peer's attempt ends
/// in a failed result here like any fatal alert. Not thread-safe: one caller at a time (the stream, the
/// engine and the port pair serialise their calls; the NIO handler runs on its event loop).
public final class TLSMachine {
    /// The connection.
    public let ssl: SSLPointer
    let input: CiphertextInput
    /// The handshake has finished.
    @exclusivity(unchecked) public private(set) var handshakeDone = false  // exclusivity(unchecked): one caller at a time (see above)
    /// Where the close stands.
    @exclusivity(unchecked) public private(set) var shutdownState = TLSShutdownState.open  // exclusivity(unchecked): one caller at a time
    /// The error of the read that met the peer's close_notify (for reads that cannot end there).
    public private(set) var closeNotify: SSLError?

    /// A fatal error happened: the connection is unusable and no close_notify may be sent.
    public var failed: Bool { shutdownState == .failed }
    /// The peer's close_notify arrived.
    public var peerClosed: Bool { shutdownState == .received || shutdownState == .closed }

    /// A machine for `ssl`, whose read BIO draws on `input`.
    public init(ssl: SSLPointer, input: CiphertextInput) {
        self.ssl = ssl; self.input = input
    }

    /// Marks the connection failed (the transport broke; a timeout ended it).
    public func markFailed() { shutdownState = .failed }

    /// Marks the connection failed when its handshake has not finished (a handshake cut off by a
    /// deadline cannot go on); a finished one stays usable (a read timeout is not fatal).
    public func markFailedIfHandshaking() { if !handshakeDone { shutdownState = .failed } }

    /// Runs one OpenSSL call with the bookkeeping above. A positive return is ``TLSResult/complete(_:)``.
    /// - Corresponds: `ERR_clear_error` (through `clearOpenSSLErrors()`), `SSL_get_error` (through
    ///   `SSLError.fromIO(ssl:returnCode:call:)`).
    @inline(__always)
    public func run(_ call: String, _ operation: () -> Int32) -> TLSResult {
        if failed { return .failed(SSLError.usage("the TLS connection failed earlier and cannot be used", call: call)) }
        _ = CallbackRegistry.takePendingError()
        clearOpenSSLErrors()
        errno = 0
        let r = operation()
        if let callbackError = CallbackRegistry.takePendingError() {
            clearOpenSSLErrors()
            shutdownState = .failed
            return .failed(callbackError)
        }
        if r > 0 { return .complete(Int(r)) }
        return classify(r, call: call)
    }

    private func classify(_ r: Int32, call: String) -> TLSResult {
        let code = COpenSSL.SSL_get_error(ssl.rawValue, r)
        if code == COpenSSL.SSL_ERROR_WANT_READ {
            if input.isExhausted {
                shutdownState = .failed
                return .failed(SSLError(kind: .error, call: call, status: .syscall, returnCode: Int(r), message: SSLError.unexpectedEOFMessage))
            }
            return .wantRead
        }
        if code == COpenSSL.SSL_ERROR_WANT_WRITE { return .wantWrite }
        let error = SSLError.fromIO(ssl: ssl, returnCode: r, call: call)
        if error.kind == .closed {
            closeNotify = error
            shutdownState = shutdownState == .sent ? .closed : .received
            return .closed
        }
        shutdownState = .failed
        return .failed(error)
    }

    // MARK: Operations

    /// Advances the handshake (`SSL_do_handshake`).
    /// - Corresponds: `SSL_do_handshake`, `SSL_is_init_finished`.
    public func handshake() -> TLSResult {
        if handshakeDone { return .complete(0) }
        if COpenSSL.SSL_is_init_finished(ssl.rawValue) == 1 { handshakeDone = true; return .complete(0) }
        let result = run("SSL_do_handshake") { COpenSSL.SSL_do_handshake(ssl.rawValue) }
        if case .complete = result { handshakeDone = true }
        return result
    }

    /// Reads plaintext (`SSL_read`); ``TLSResult/closed`` at the peer's close_notify (and after it).
    /// - Corresponds: `SSL_read`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> TLSResult {
        if peerClosed { return .closed }
        guard buffer.count > 0 else { return .complete(0) }
        return run("SSL_read") { COpenSSL.SSL_read(ssl.rawValue, buffer.baseAddress, Int32(clamping: buffer.count)) }
    }

    /// Peeks at plaintext without consuming it (`SSL_peek`), as ``read(into:)``.
    /// - Corresponds: `SSL_peek`.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) -> TLSResult {
        if peerClosed { return .closed }
        guard buffer.count > 0 else { return .complete(0) }
        return run("SSL_peek") { COpenSSL.SSL_peek(ssl.rawValue, buffer.baseAddress, Int32(clamping: buffer.count)) }
    }

    /// Encrypts at most 1 GiB of `bytes` (`SSL_write`): the bytes taken.
    /// - Corresponds: `SSL_write`.
    public func write(_ bytes: UnsafeRawBufferPointer) -> TLSResult {
        guard bytes.count > 0 else { return .complete(0) }
        let chunk = Int32(min(bytes.count, 1 << 30))
        return run("SSL_write") { COpenSSL.SSL_write(ssl.rawValue, bytes.baseAddress, chunk) }
    }

    /// One step of the close (`SSL_shutdown`), by the state machine:
    /// - open: sends close_notify (queued in the BIO: the transport sends it); ``TLSResult/closed``
    ///   when the peer's had arrived already, else ``TLSResult/wantRead`` (read until
    ///   ``TLSResult/closed`` to wait for the peer's, or stop here for a one-way close);
    /// - sent: ``TLSResult/wantRead`` until the peer's arrives;
    /// - closed, or a connection that failed or never finished its handshake: ``TLSResult/closed``, and
    ///   nothing is sent (no close_notify after a fatal alert).
    /// - Corresponds: `SSL_get_error`, `SSL_is_init_finished`, `SSL_shutdown`.
    public func shutdown() -> TLSResult {
        switch shutdownState {
        case .closed, .failed: return .closed
        case .sent: return .wantRead
        case .open, .received:
            guard handshakeDone || COpenSSL.SSL_is_init_finished(ssl.rawValue) == 1 else { shutdownState = .failed; return .closed }
            clearOpenSSLErrors()
            let r = COpenSSL.SSL_shutdown(ssl.rawValue)
            if r < 0 {
                let code = COpenSSL.SSL_get_error(ssl.rawValue, r)
                if code == COpenSSL.SSL_ERROR_WANT_WRITE { return .wantWrite }
                clearOpenSSLErrors()
                shutdownState = .failed  // e.g. the transport broke: nothing more can be said
                return .closed
            }
            shutdownState = shutdownState == .received || r == 1 ? .closed : .sent
            return shutdownState == .closed ? .closed : .wantRead
        }
    }
}

extension TLSResult {
    /// The bytes of a ``complete(_:)``, nil for want-read / want-write, 0 for ``closed``; a failure throws.
    public func get() throws -> Int? {
        switch self {
        case .complete(let n): return n
        case .wantRead, .wantWrite: return nil
        case .closed: return 0
        case .failed(let error): throw error
        }
    }
}
