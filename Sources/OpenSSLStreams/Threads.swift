import Foundation

/// Runs `body` on a new thread: the way to hand a value that is not `Sendable` (a ``SocketStream`` just
/// accepted, a `DTLSSocket`, a TLS port) to the thread that will use it from then on.
///
/// `body` is `sending`: the compiler checks that what it captures is used by no one else afterwards, so
/// the stream belongs to the new thread alone — the one-thread-at-a-time rule of a stream, proved when
/// the code compiles. Values that are `Sendable` (a ``TCPListener``, a context, a `CancelHandle`) can be
/// captured and still used by the caller.
///
/// ```swift
/// let listener = try listen(port: 4433, host: "127.0.0.1")
/// while let stream = try? listener.accept(sslCtx: .context(ctx)) {
///     startThread { serve(stream) }  // `stream` is not used here again
/// }
/// ```
///
/// - Parameters:
///   - stackSize: the new thread's stack size in bytes (nil: the system's default).
///   - body: the work; the thread ends when it returns.
public func startThread(stackSize: Int? = nil, _ body: sending @escaping () -> Void) {
    let sent = SentWork(body)
    let thread = Thread { sent.run() }
    if let stackSize { thread.stackSize = stackSize }
    thread.start()
}

/// A closure that was `sending` (see ``startThread(stackSize:_:)``).
final class SentWork: @unchecked Sendable {  // `sending` proved the closure and its captures disconnected: only the new thread runs it
    private let body: () -> Void
    init(_ body: sending @escaping () -> Void) { self.body = body }
    func run() { body() }
}
