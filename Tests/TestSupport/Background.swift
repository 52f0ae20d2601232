import Foundation
import OpenSSLStreams

/// Work running on another thread beside a test (usually a peer), joined with a time limit.
public final class Background: @unchecked Sendable {  // `error` is written by the thread before `group.leave()` and read after the wait
    private let group = DispatchGroup()
    private var error: Error?
    public let name: String

    /// Starts `body` on a new thread. It is `sending`: what it captures that is not `Sendable` (a stream
    /// the test made) belongs to that thread from then on — the compiler checks that the test does not
    /// use it afterwards.
    public init(_ name: String = "background", _ body: sending @escaping () throws -> Void) {
        self.name = name
        group.enter()
        startThread { [self] in
            do { try body() } catch { self.error = error }
            group.leave()
        }
    }

    /// Waits for the work to end (at most `timeout` seconds) and rethrows its error.
    public func join(timeout: TimeInterval = 30) throws {
        if group.wait(timeout: .now() + timeout) == .timedOut {
            throw BackgroundTimeout(description: "\(name) did not finish within \(timeout) s")
        }
        if let error { throw error }
    }
}

/// A ``Background`` job that did not end in time.
public struct BackgroundTimeout: Error, CustomStringConvertible {
    public var description: String
}
