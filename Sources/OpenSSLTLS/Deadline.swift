import Foundation
import OpenSSLFLI

/// The one deadline model of the package: what a timeout parameter (`handshakeTimeout`, `timeout`,
/// `connectTimeout`, a detach's limit …) means, for every entry point alike.
///
/// | value | meaning |
/// |---|---|
/// | `nil` | the entry point's documented default (``TLSTimeouts``) |
/// | a positive number | a **total** limit for the whole operation, however many system calls it takes; a tiny one (`1e-9`) has passed already, so the operation fails at its first wait |
/// | `.infinity` | no limit: the caller's explicit opt-out |
/// | `0` | a deadline that has passed: the operation times out at its first wait (`poll` with 0) — except where the entry point documents "not now" (below) |
/// | negative | where the entry point documents it, "not now" (LispWorks: a client `attachSSL` with a handshake timeout of zero or less does not handshake at attach); anywhere else a usage error |
/// | NaN | a usage error |
///
/// A limit is turned into a ``Deadline`` once, when the operation starts, and every wait inside the
/// operation (poll, recv, send, a retry) uses what is left of it.
public enum TimeoutValue: Sendable, Hashable {
    /// Wait at most this many seconds in total.
    case seconds(TimeInterval)
    /// No limit (the caller asked for `.infinity`).
    case unlimited
    /// "Not now" (zero or negative where the entry point gives that a meaning).
    case deferred

    /// Reads a timeout parameter by the model above.
    /// - Parameters:
    ///   - value: the caller's value.
    ///   - defaultValue: what `nil` means here (`nil`: no limit).
    ///   - allowsDeferred: zero and negative values mean ``deferred`` (else they are a usage error).
    ///   - name: what the value is, for the usage error ("the handshake timeout").
    ///   - call: the entry point, for the usage error ("attachSSL").
    public static func resolve(_ value: TimeInterval?, default defaultValue: TimeInterval?, allowsDeferred: Bool = false,
                               name: String, call: String) throws -> TimeoutValue {
        guard let value = value ?? defaultValue else { return .unlimited }
        if value.isNaN { throw SSLError.usage("\(name) is not a number (NaN)", call: call) }
        if value == .infinity { return .unlimited }
        if value > 0 { return .seconds(value) }
        if allowsDeferred { return .deferred }
        if value == 0 { return .seconds(0) }  // passed already
        throw SSLError.usage("\(name) must be zero or a positive number of seconds, or .infinity for no limit (got \(value))", call: call)
    }

    /// The deadline of an operation that starts now (``deferred`` has none: it is the caller's to act on).
    public var deadline: Deadline {
        switch self {
        case .seconds(let s): return .after(s)
        case .unlimited, .deferred: return .never
        }
    }

    /// The value an attach-style `handshakeTimeout:` parameter reads back as this same limit: a passed
    /// deadline is 1 ns there (0 would mean "defer"), no limit is `.infinity`, deferred is 0.
    package var asAttachTimeout: TimeInterval {
        switch self {
        case .seconds(let s): return max(s, 1e-9)
        case .unlimited: return .infinity
        case .deferred: return 0
        }
    }

    /// The limit in seconds, nil for none.
    public var seconds: TimeInterval? {
        if case .seconds(let s) = self { return s }
        return nil
    }
}

/// The defaults that `nil` stands for (see ``TimeoutValue``), in one place.
public enum TLSTimeouts {
    /// A handshake: 30 s in total. A silent or trickling peer costs at most this.
    public static let handshake: TimeInterval = 30
    /// A detach (close_notify sent, the peer's awaited): 10 s in total.
    public static let detach: TimeInterval = 10
    /// How long a connection that failed with a fatal alert keeps reading (and dropping) the peer's
    /// bytes after it shut its write side, so the peer reads the alert before any TCP reset.
    public static let alertLinger: TimeInterval = 0.5
}

/// A point in time on the monotonic clock, or never: the end of a total timeout.
public struct Deadline: Sendable {
    /// Nanoseconds on `CLOCK_MONOTONIC`; nil means no deadline.
    public let nanoseconds: UInt64?
    /// The timeout it was made from, for messages.
    public let seconds: TimeInterval?

    /// No deadline.
    public static let never = Deadline(nanoseconds: nil, seconds: nil)

    /// A deadline `seconds` from now; nil waits forever; zero, negative and NaN have passed already
    /// (callers check values with ``TimeoutValue/resolve(_:default:allowsDeferred:name:call:)`` first).
    public static func after(_ seconds: TimeInterval?) -> Deadline {
        guard let seconds else { return .never }
        if seconds == .infinity { return .never }
        // Anything above 10^9 s is as good as forever; a positive value below 1 ns is 1 ns.
        let delta = !(seconds > 0) ? 0 : max(1, UInt64(min(seconds, 1e9) * 1e9))
        return Deadline(nanoseconds: monotonicNanoseconds() &+ delta, seconds: seconds)
    }

    /// Milliseconds left, rounded up, as `poll` takes them: -1 for no deadline, 0 when passed.
    public var pollMilliseconds: Int32 {
        guard let nanoseconds else { return -1 }
        let now = monotonicNanoseconds()
        if now >= nanoseconds { return 0 }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    /// The deadline has passed.
    public var hasPassed: Bool {
        guard let nanoseconds else { return false }
        return monotonicNanoseconds() >= nanoseconds
    }

    /// The earlier of two deadlines.
    public func earlier(_ other: Deadline) -> Deadline {
        guard let a = nanoseconds else { return other }
        guard let b = other.nanoseconds else { return self }
        return a <= b ? self : other
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
package func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Seconds as people read them in messages ("2 s", "0.5 s").
package func describeSeconds(_ seconds: TimeInterval?) -> String {
    guard let seconds else { return "no limit" }
    if seconds == .infinity { return "no limit" }
    // (Infinite and NaN limits print as Swift writes them: no conversion to Int that could trap.)
    return seconds.isFinite && abs(seconds) < 1e15 && seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
}

/// Refuses a count or size that is negative or absurd with a usage error, never a trap.
/// - Corresponds: none (argument checking before any C call).
package func checkCount(_ value: Int, _ name: String, call: String, max: Int = Int(Int32.max)) throws {
    guard value >= 0 else { throw SSLError.usage("\(name) is negative (\(value))", call: call) }
    guard value <= max else { throw SSLError.usage("\(name) is too large (\(value); the limit is \(max))", call: call) }
}
