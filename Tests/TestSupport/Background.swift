import Foundation

/// Work running on another thread beside a test (usually a peer), joined with a time limit.
public final class Background: @unchecked Sendable {
    private let group = DispatchGroup()
    private var error: Error?
    public let name: String

    public init(_ name: String = "background", _ body: @escaping @Sendable () throws -> Void) {
        self.name = name
        group.enter()
        Thread.detachNewThread { [self] in
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
