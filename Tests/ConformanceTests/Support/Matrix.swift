import Foundation
import OpenSSLFLI
import XCTest

/// A conformance check that did not hold.
struct ConformanceFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The result of one row of a matrix: nil when it held, else what went wrong.
typealias RowProblem = String?

/// A table's `knownFailures` mark for one cell: the reason the cell fails on the current library. A
/// marked cell must fail; once it passes, the check fails until the mark is removed. A string literal
/// is ``fails(_:)``.
enum KnownFailure: Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The cell fails (throws the wrong thing, connects, hangs …).
    case fails(String)
    /// The cell stops the process (a trap): it runs in a child process of its own, so that the others
    /// still run and report.
    case crashes(String)
    /// The cell blocks a thread for good (in a call that nothing ends): it runs in a child process of
    /// its own, so that the blocked call cannot touch a descriptor the other cells reuse.
    case hangs(String)

    init(stringLiteral value: String) { self = .fails(value) }

    var reason: String {
        switch self {
        case .fails(let reason), .crashes(let reason), .hangs(let reason): return reason
        }
    }

    /// The cell runs in a child process.
    var isolated: Bool { if case .fails = self { return false }; return true }

    var description: String {
        switch self {
        case .fails(let reason): return reason
        case .crashes(let reason): return "crashes: \(reason)"
        case .hangs(let reason): return "hangs: \(reason)"
        }
    }
}

/// One cell of a matrix (entry point × case) with the row's known-failure mark for that case.
struct MatrixCell: Sendable {
    /// "openTCPStream × wrongHost".
    let name: String
    /// The row's mark for this cell (see ``KnownFailure``).
    let knownFailure: KnownFailure?
    /// Runs the cell; returns what went wrong, or nil.
    let run: @Sendable () -> RowProblem
}

/// What became of one cell.
struct CellReport: Sendable {
    let name: String
    let knownFailure: KnownFailure?
    let problem: RowProblem
    let seconds: TimeInterval
}

/// Runs the cells of a matrix, `width` at a time, each under a hard watchdog (`watchdog` seconds: a
/// cell that runs longer is reported as hung and left behind, so that the suite never hangs), then
/// reports them on the test's thread: an unmarked cell that fails, and a marked cell that passes,
/// fail the test. Every marked cell that still fails is printed with its mark and what it did.
enum MatrixRunner {
    static func run(_ cells: [MatrixCell], width: Int = 6, watchdog: TimeInterval = 8,
                    file: StaticString = #filePath, line: UInt = #line) {
        let reports = runCells(cells, width: width, watchdog: watchdog)
        var passed = 0, known = 0
        for report in reports {
            switch (report.knownFailure, report.problem) {
            case (nil, nil):
                passed += 1
            case (nil, let problem?):
                XCTFail("\(report.name): \(problem)", file: file, line: line)
            case (let mark?, nil):
                XCTFail("\(report.name) passes now: remove its knownFailure mark (\"\(mark.reason)\")", file: file, line: line)
            case (let mark?, let problem?):
                known += 1
                print("known failure: \(report.name) [\(mark)]: \(problem)")
            }
        }
        // A call under test can still be finishing after its cell ended (a peer was just closed): let
        // it end before the test does, so that no thread is inside OpenSSL when the process exits and
        // OpenSSL's exit handler frees its state.
        if !CellThreads.waitForAll(timeout: 10 * DeadlineModel.timeScale) {
            print("matrix: \(CellThreads.running) cell thread(s) still running after the matrix")
        }
        print("matrix: \(cells.count) cells, \(passed) pass, \(known) known failures, "
              + "\(cells.count - passed - known) unexpected; slowest \(reports.max { $0.seconds < $1.seconds }.map { "\(format($0.seconds)) (\($0.name))" } ?? "-")")
    }

    static func runCells(_ cells: [MatrixCell], width: Int, watchdog: TimeInterval) -> [CellReport] {
        let gate = DispatchSemaphore(value: width)
        final class Reports: @unchecked Sendable {  // `all` is only touched under `lock`
            let lock = NSLock()
            var all: [CellReport?]
            init(_ count: Int) { all = Array(repeating: nil, count: count) }
        }
        let reports = Reports(cells.count)
        let group = DispatchGroup()
        for (index, cell) in cells.enumerated() {
            gate.wait()
            group.enter()
            CellThreads.start {
                let start = Date()
                let problem = cell.knownFailure?.isolated == true ? runInChildProcess(cell.name, watchdog: watchdog)
                    : withWatchdog(watchdog, cell.name, cell.run)
                let report = CellReport(name: cell.name, knownFailure: cell.knownFailure, problem: problem,
                                        seconds: Date().timeIntervalSince(start))
                reports.lock.lock(); reports.all[index] = report; reports.lock.unlock()
                gate.signal()
                group.leave()
            }
        }
        group.wait()
        return reports.all.map { $0! }
    }
}

/// Runs `body` on a thread of its own and waits at most `seconds` for it: its problem, or "hung" when
/// it ran over (the thread is left behind, blocked in the call under test).
func withWatchdog(_ seconds: TimeInterval, _ what: String, _ body: @escaping @Sendable () -> RowProblem) -> RowProblem {
    final class Slot: @unchecked Sendable { var problem: RowProblem = nil }  // written by the cell's thread before `done.signal()`, read after the wait
    let slot = Slot()
    let done = DispatchSemaphore(value: 0)
    CellThreads.start {
        slot.problem = body()
        done.signal()
    }
    if done.wait(timeout: .now() + seconds) == .timedOut {
        return "hung: did not end within the \(seconds) s watchdog"
    }
    return slot.problem
}

/// Seconds since `start`, for messages.
func elapsed(since start: Date) -> TimeInterval { Date().timeIntervalSince(start) }

func format(_ seconds: TimeInterval) -> String { String(format: "%.2f s", seconds) }

/// A short description of an error for a report line.
func describe(_ error: Error) -> String {
    oneLine(describeError(error))
}

private func oneLine(_ text: String) -> String {
    text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
}

private func describeError(_ error: Error) -> String {
    if let ssl = error as? SSLError {
        var text = "SSLError(kind: .\(ssl.kind), call: \(ssl.call)): \(ssl.message)"
        if let verify = ssl.verifyResultText, ssl.verifyResult != 0 { text += " [verify: \(verify)]" }
        if !ssl.reasons.isEmpty { text += " [reasons: \(ssl.reasons.joined(separator: ", "))]" }
        return text
    }
    return "\(type(of: error)): \(error)"
}

/// The threads the cells run on, counted so that a matrix can wait for its last ones.
enum CellThreads {
    private static let condition = NSCondition()
    nonisolated(unsafe) private static var count = 0  // only touched under `condition`

    /// Runs `body` on a new thread, counted while it runs.
    static func start(_ body: @escaping @Sendable () -> Void) {
        condition.lock(); count += 1; condition.unlock()
        Thread.detachNewThread {
            body()
            condition.lock(); count -= 1; condition.broadcast(); condition.unlock()
        }
    }

    static var running: Int { condition.lock(); defer { condition.unlock() }; return count }

    /// Waits up to `timeout` seconds until no cell thread runs; false when some still do.
    static func waitForAll(timeout: TimeInterval) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        condition.lock(); defer { condition.unlock() }
        while count > 0 { if !condition.wait(until: end) { return count == 0 } }
        return true
    }
}
