import Foundation
import TestSupport
import XCTest

/// The environment variable that names the one cell a child test process runs.
let cellEnvironmentKey = "FLI_CONFORMANCE_CELL"
private let passedMarker = "CONFORMANCE-CELL-PASSED"
private let problemMarker = "CONFORMANCE-CELL-PROBLEM: "

/// Every cell of the three matrices.
func allConformanceCells(_ pki: TestPKI) -> [MatrixCell] {
    ClientEntryPoints.cells(pki) + ServerMatrix.cells(pki) + DeadlineMatrix.cells(pki)
}

/// Runs one cell in a child process (this test binary, running only
/// ``ConformanceCellProcess/testRunsTheCellNamedInTheEnvironment``), for cells that stop the process:
/// the cell's problem, or what the child died of.
func runInChildProcess(_ name: String, watchdog: TimeInterval) -> RowProblem {
    var environment = ProcessInfo.processInfo.environment
    environment[cellEnvironmentKey] = name
    environment["SWIFT_BACKTRACE"] = "enable=no"  // a trap is expected: no backtrace to wait for
    // The cell is known to trap or to leave a thread blocked: its child's exit is no leak check.
    environment["ASAN_OPTIONS"] = (environment["ASAN_OPTIONS"].map { $0 + ":" } ?? "") + "detect_leaks=0"
    if let pki = try? TestPKI.shared { environment["FLI_TEST_PKI_DIR"] = pki.dir }  // reuse, do not regenerate
    let child: FileOutputProcess
    do {
        // /proc/self/exe, not the path it names: it still runs this binary if a rebuild replaced the file.
        child = try FileOutputProcess("/proc/self/exe",
                                      ["ConformanceTests.ConformanceCellProcess/testRunsTheCellNamedInTheEnvironment"],
                                      environment: environment)
    } catch {
        return "the child process did not start: \(error)"
    }
    defer { child.finish() }
    _ = child.wait(timeout: watchdog)
    guard let status = child.status else { return "hung: the child process did not end within the \(watchdog) s watchdog" }
    let text = child.output
    if text.contains(passedMarker) { return nil }
    if let line = text.split(separator: "\n").first(where: { $0.hasPrefix(problemMarker) }) {
        return String(line.dropFirst(problemMarker.count))
    }
    let fatal = text.split(separator: "\n").first { $0.contains("Fatal error") || $0.contains("Precondition failed") }
    return "the child process died (\(child.endedBySignal ? "signal" : "status") \(status))" + (fatal.map { ": \($0)" } ?? "")
}

/// The child side of ``runInChildProcess(_:watchdog:)``.
final class ConformanceCellProcess: XCTestCase {
    /// In a child process (the environment names a cell): runs that cell and reports it on stdout. In
    /// the test run itself: checks that every cell's name is unique, which finding a cell by name needs.
    func testRunsTheCellNamedInTheEnvironment() throws {
        let cells = allConformanceCells(try TestPKI.shared)
        guard let name = ProcessInfo.processInfo.environment[cellEnvironmentKey] else {
            let names = cells.map(\.name)
            XCTAssertEqual(Set(names).count, names.count, "cell names are not unique")
            return
        }
        guard let cell = cells.first(where: { $0.name == name }) else {
            print(problemMarker + "no cell is named \"\(name)\"")
            fflush(nil)  // every output stream (Swift 6 does not read the C global `stdout`)
            exit(0)
        }
        let problem = withWatchdog(60, name, cell.run)
        print(problem.map { problemMarker + $0 } ?? passedMarker)
        fflush(nil)
        exit(0)
    }
}
