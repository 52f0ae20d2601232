import Foundation
import NIOCore

/// A result that arrives once (a handshake's, a detach's), readable from any thread as a future on any
/// event loop or with `await`, before or after it arrived.
final class Outcome: @unchecked Sendable {  // its state is only touched under `lock`
    private let lock = NSLock()
    private var result: Result<Void, Error>?
    private var waiting: [EventLoopPromise<Void>] = []
    private var continuations: [CheckedContinuation<Void, Error>] = []

    /// The result, when it has arrived.
    var current: Result<Void, Error>? { lock.lock(); defer { lock.unlock() }; return result }

    /// A future on `eventLoop` for the result.
    func future(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        lock.lock()
        if let result {
            lock.unlock()
            return eventLoop.makeCompletedFuture(result)
        }
        let promise = eventLoop.makePromise(of: Void.self)
        waiting.append(promise)
        lock.unlock()
        return promise.futureResult
    }

    /// Waits for the result.
    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            lock.lock()
            if let result {
                lock.unlock()
                continuation.resume(with: result)
                return
            }
            continuations.append(continuation)
            lock.unlock()
        }
    }

    /// Sets the result (the first one wins); true when this call set it.
    @discardableResult
    func complete(_ outcome: Result<Void, Error>) -> Bool {
        lock.lock()
        if result != nil { lock.unlock(); return false }
        result = outcome
        let promises = waiting, resumptions = continuations
        waiting = []; continuations = []
        lock.unlock()
        for promise in promises { promise.completeWith(outcome) }
        for continuation in resumptions { continuation.resume(with: outcome) }
        return true
    }

    func succeed() { complete(.success(())) }
    func fail(_ error: Error) { complete(.failure(error)) }

    var isComplete: Bool { current != nil }
}
