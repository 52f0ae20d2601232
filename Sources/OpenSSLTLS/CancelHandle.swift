import Foundation
import OpenSSLFLI

/// Ends blocking calls from another thread: Racket's `ssl-connect/enable-break` and
/// `ssl-accept/enable-break`, for every blocking entry point that takes one (`openTCPStream(cancel:)`,
/// `TCPListener.accept(cancel:)`, a stream's `SocketStream.cancelHandle` …).
///
/// ``cancel()`` wakes every wait that watches the handle (connect, accept and a stream's polls watch its
/// event descriptor) and runs the actions registered with it (a stream shuts its socket down, so a
/// blocked `recv` returns at once). The interrupted call throws a `StreamError` of kind `.cancelled`.
/// Cancelling is final for the handle; a connection that was cancelled in the middle of a handshake or
/// a read is closed (its state is unknown). Safe to use from any thread.
public final class CancelHandle: @unchecked Sendable {  // state under `lock`; the descriptor is fixed
    private let lock = NSLock()
    private var cancelled = false
    private var actions: [Int: @Sendable () -> Void] = [:]
    private var nextKey = 0
    /// A descriptor that becomes readable on ``cancel()`` (the read end of a pipe): waits poll it beside
    /// their socket.
    public let fileDescriptor: Int32
    private let writeEnd: Int32

    /// A new handle (one pipe).
    /// - Corresponds: `pipe(2)`, `fcntl(2)`.
    public init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw SSLError(kind: .error, call: "pipe", errno: errno, message: "cannot make a cancel handle")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        fileDescriptor = ends[0]; writeEnd = ends[1]
    }

    deinit { close(fileDescriptor); close(writeEnd) }

    /// Whether ``cancel()`` was called.
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }

    /// Ends the calls that watch this handle, now and later.
    /// - Corresponds: `write(2)`.
    public func cancel() {
        lock.lock()
        if cancelled { lock.unlock(); return }
        cancelled = true
        let run = Array(actions.values)
        actions = [:]
        lock.unlock()
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
        for action in run { action() }
    }

    /// Runs `action` on ``cancel()`` (at once if cancelled already); the key removes it again.
    package func onCancel(_ action: @escaping @Sendable () -> Void) -> Int {
        lock.lock()
        if cancelled { lock.unlock(); action(); return -1 }
        nextKey += 1
        let key = nextKey
        actions[key] = action
        lock.unlock()
        return key
    }

    /// Removes an action registered with ``onCancel(_:)``.
    package func remove(_ key: Int) {
        lock.lock(); actions[key] = nil; lock.unlock()
    }
}
