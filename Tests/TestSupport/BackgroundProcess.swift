import Foundation

/// A child process that runs beside a test (a real peer: `openssl s_server`, `s_client`, `python3`,
/// `curl`): its output is collected as it comes, it can be written to, and it is always killed at the
/// end (``terminate()``, or deinit), so a hung peer cannot hang the test run.
public final class BackgroundProcess: @unchecked Sendable {  // the process state is only touched under `lock`
    public let command: String
    private let process = Process()
    private let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
    private let lock = NSCondition()
    private var out = Data(), err = Data()
    private var outClosed = false, errClosed = false

    /// Writing to the stdin of a child that has already exited (a peer that closed after a fatal
    /// alert, as tests provoke) raises SIGPIPE, which would kill the whole test process: it is ignored
    /// once, before the first child starts, so such a write fails with EPIPE instead (``write(_:)``
    /// ignores it; the test's assertions see what the peer did).
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    public init(_ executable: String, _ arguments: [String], directory: String? = nil) throws {
        _ = Self.ignoreSIGPIPE
        command = ([executable] + arguments).joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = inPipe
        process.standardOutput = outPipe
        process.standardError = errPipe
        try process.run()
        // Each pipe is drained by a blocking read(2) loop on a thread of its own, not by
        // FileHandle.readabilityHandler: tearing a readability source down races libdispatch's epoll
        // bookkeeping on Linux and has crashed test runs in `_dispatch_event_loop_drain`
        // (swift-corelibs-libdispatch#949). A blocking read registers nothing with libdispatch; the
        // child's exit (or terminate()) ends the loop with EOF, and the thread keeps the FileHandle,
        // which owns the descriptor, alive until then, so the descriptor is closed once, after the last read.
        startReader(outPipe.fileHandleForReading, toError: false)
        startReader(errPipe.fileHandleForReading, toError: true)
    }

    private func startReader(_ handle: FileHandle, toError: Bool) {
        let thread = Thread { [weak self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard let self else { return }
                self.append(n > 0 ? Data(chunk[0..<n]) : Data(), toError: toError)
                if n <= 0 { return }
            }
        }
        thread.name = "BackgroundProcess reader"
        thread.start()
    }

    deinit { terminate() }

    private func append(_ chunk: Data, toError: Bool) {
        lock.lock()
        if chunk.isEmpty {
            if toError { errClosed = true } else { outClosed = true }
        } else if toError { err.append(chunk) } else { out.append(chunk) }
        lock.broadcast()
        lock.unlock()
    }

    /// Everything written to stdout so far.
    public var output: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    /// Everything written to stderr so far.
    public var errorOutput: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }
    public var processIdentifier: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Waits until stdout or stderr matches `predicate` (given both texts), up to `timeout` seconds.
    @discardableResult
    public func waitFor(timeout: TimeInterval, _ predicate: (_ stdout: String, _ stderr: String) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        lock.lock(); defer { lock.unlock() }
        while true {
            if predicate(String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self)) { return true }
            if (outClosed && errClosed) || Date() >= end { return false }
            _ = lock.wait(until: min(end, Date().addingTimeInterval(0.05)))
        }
    }

    /// Waits until stdout or stderr contains `text`.
    @discardableResult
    public func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
        waitFor(timeout: timeout) { $0.contains(text) || $1.contains(text) }
    }

    /// The port in the first "ACCEPT host:port" line (`openssl s_server -accept 127.0.0.1:0`).
    public func acceptedPort(timeout: TimeInterval = 10) -> Int? {
        var port: Int?
        waitFor(timeout: timeout) { stdout, _ in
            guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
                  let last = line.split(separator: ":").last, let p = Int(last.trimmingCharacters(in: .whitespaces)) else { return false }
            port = p
            return true
        }
        return port
    }

    /// Writes to the child's stdin.
    public func write(_ text: String) {
        try? inPipe.fileHandleForWriting.write(contentsOf: Data(text.utf8))
    }

    /// Closes the child's stdin.
    public func closeInput() { try? inPipe.fileHandleForWriting.close() }

    /// Waits up to `timeout` seconds for the child to exit; its status, or nil if it still runs.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        let end = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < end { usleep(10_000) }
        if process.isRunning { return nil }
        // Let the output handlers see the pipes' ends.
        waitFor(timeout: 2) { _, _ in self.outClosed && self.errClosed }
        return process.terminationStatus
    }

    /// Kills the child (SIGTERM, then SIGKILL) and reaps it.
    public func terminate() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let end = Date().addingTimeInterval(2)
            while process.isRunning && Date() < end { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        closeInput()
    }
}
