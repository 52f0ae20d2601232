import Foundation
import OpenSSLTLS
import OpenSSLFLI
import TestSupport

// The ONE deadline model the conformance matrix asserts (issue 16: "one deadline model: the same meaning
// of nil / zero / negative / NaN / tiny for every entry point, written once"). Every deadline row of the
// matrix takes its expectation from `DeadlineModel.expected(_:role:)` and judges errors with the
// predicates below: adjust the model here, in one edit.

/// The deadline values every deadline parameter is given.
enum DeadlineValue: String, CaseIterable, Sendable {
    case nan, tiny, zero, negative, infinity

    var seconds: TimeInterval {
        switch self {
        case .nan: return .nan
        case .tiny: return 1e-9
        case .zero: return 0
        case .negative: return -1
        case .infinity: return .infinity
        }
    }
}

/// What a deadline parameter bounds, which decides what its values mean.
enum DeadlineRole: Sendable {
    /// The total deadline of a handshake run by the call.
    case handshake
    /// LispWorks' `attach-ssl` / `open-tcp-stream` `handshake-timeout`: zero or negative means "do not
    /// handshake at attach"; the implicit handshake later runs within the stream's read timeout.
    case attachHandshake
    /// The wait for a connection (an accept's `timeout`).
    case accept
}

/// What a call given a deadline value must do.
enum DeadlineBehaviour: String, Sendable {
    /// Throw a usage error at once (within ``DeadlineModel/prompt``), before waiting for anything.
    case usageError
    /// The deadline has passed already: the call times out at once (within ``DeadlineModel/prompt``)
    /// with a timeout error (``DeadlineModel/isTimeout(_:role:)``).
    case timesOutPromptly
    /// No handshake at attach: the call returns at once; the implicit handshake at the first read then
    /// times out within the read timeout (+ ``DeadlineModel/prompt``).
    case deferred
    /// No limit (the explicit opt-out): the call is still waiting after ``DeadlineModel/noLimitProbe``
    /// seconds, and ends once the peer goes away.
    case noLimit
}

enum DeadlineModel {
    /// The model: NaN is a usage error; a negative value is one too, except where "zero or negative"
    /// has the documented LispWorks meaning (defer the handshake); 0 defers there and elsewhere is an
    /// already-passed deadline; a tiny positive value (1e-9) is a real deadline that has passed;
    /// +infinity is no limit. (nil is each entry point's documented default, not asserted here.)
    static func expected(_ value: DeadlineValue, role: DeadlineRole) -> DeadlineBehaviour {
        switch (value, role) {
        case (.nan, _): return .usageError
        case (.negative, .attachHandshake), (.zero, .attachHandshake): return .deferred
        case (.negative, _): return .usageError
        case (.zero, _), (.tiny, _): return .timesOutPromptly
        case (.infinity, _): return .noLimit
        }
    }

    /// How soon "at once" is (seconds). It includes what the call does before it can fail: making a
    /// context loads the system trust store (0.1–0.3 s here), and the cells run in parallel on a
    /// loaded machine (0.54 s was seen with a limit of 0.5).
    static let prompt: TimeInterval = 1 * timeScale
    /// The factor the matrix's time limits are stretched by under a sanitizer (CI runs the suite under
    /// ASan and TSan, which slow making a context and a handshake several times); 1 otherwise.
    static let timeScale: TimeInterval = Sanitizers.thread ? 6 : (Sanitizers.address ? 3 : 1)
    /// How long an unlimited call must keep waiting before the test ends it (seconds).
    static let noLimitProbe: TimeInterval = 1.2
    /// The read timeout a deferred handshake runs within (seconds).
    static let deferredReadTimeout: TimeInterval = 0.3

    /// A usage error: ``SSLError/usage(_:call:)`` (kind `.error`, no OpenSSL status or queue); for
    /// `sslcat`, exit status 64 (a refused option).
    static func isUsageError(_ error: Error) -> Bool {
        if let exit = error as? SSLCatExit { return exit.status == 64 }  // EX_USAGE: ArgumentParser's validation
        guard let error = error as? SSLError else { return false }
        return error.kind == .error && error.status == nil && error.queue.isEmpty
    }

    /// A timeout: an ``SSLError`` of kind `.handshakeTimeout` for a handshake; for an accept, a
    /// `SocketError` with `ETIMEDOUT` (or a handshake timeout, where the accept includes the handshake);
    /// for `sslcat`, a failure whose message says the handshake did not finish within its time.
    static func isTimeout(_ error: Error, role: DeadlineRole) -> Bool {
        if let exit = error as? SSLCatExit { return exit.status != 0 && exit.stderr.contains("did not finish within") }
        if let error = error as? SSLError { return error.kind == .handshakeTimeout }
        if role == .accept, let error = error as? SocketError { return error.errno == ETIMEDOUT }
        return false
    }
}
