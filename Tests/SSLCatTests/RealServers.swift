import Foundation
import OpenSSLStreams
import TestSupport
import XCTest

/// A real server from Debian's packages (Exim, Dovecot, vsftpd, Prosody, slapd, PostgreSQL), run by a
/// test as its child: its own configuration in a temporary directory, on 127.0.0.1 and a free port,
/// waited for with a bound, and killed at the end (``stop()``, or deinit).
final class RealServer {
    let name: String
    let port: Int
    let process: BackgroundProcess
    /// Runs before the process is killed (a clean shutdown of a process the child started).
    private let beforeStop: () -> Void
    /// Extra clean-up after the process is gone (its temporary directory).
    private let afterStop: () -> Void

    /// Starts `executable` and waits up to `readyTimeout` seconds until something listens on
    /// 127.0.0.1:`port` (read from /proc/net/tcp, so no probe connection reaches the server). Throws,
    /// with the server's output, when it exits or does not listen in time.
    init(_ name: String, executable: String, arguments: [String], port: Int, readyTimeout: TimeInterval = 20,
         beforeStop: @escaping () -> Void = {}, afterStop: @escaping () -> Void = {}) throws {
        self.name = name
        self.port = port
        self.beforeStop = beforeStop
        self.afterStop = afterStop
        process = try BackgroundProcess(executable, arguments)
        let end = Date().addingTimeInterval(readyTimeout)
        while !RealServer.isListening(port: port) {
            if !process.isRunning || Date() >= end {
                let output = process.output + process.errorOutput
                stop()
                throw RealServerFailure(description: "\(name) did not listen on 127.0.0.1:\(port) within \(readyTimeout) s (running: \(process.isRunning)): \(output)")
            }
            usleep(20_000)
        }
    }

    deinit { stop() }

    /// Everything the server wrote to stdout and stderr so far.
    var output: String { process.output + process.errorOutput }

    /// Kills the server (SIGTERM, then SIGKILL) and runs the extra clean-up.
    func stop() {
        if process.isRunning { beforeStop() }
        process.terminate()
        afterStop()
    }

    /// True when a socket listens on 127.0.0.1:`port` or on any IPv4 address (`/proc/net/tcp`, state 0A).
    static func isListening(port: Int) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return false }
        let hexPort = String(format: "%04X", port)
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3 else { continue }
            let local = fields[1], state = fields[3]
            if state == "0A" && (local == "0100007F:\(hexPort)" || local == "00000000:\(hexPort)") { return true }
        }
        return false
    }

    /// A port nobody listens on now (bound to 127.0.0.1:0 and closed again).
    static func freePort() throws -> Int {
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        return listener.port
    }

    /// A fresh temporary directory (mode 0755, so a server's own unprivileged users can enter it).
    static func makeDirectory(_ prefix: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        return dir
    }

    /// Gives `path` and everything under it to `user` (the server reads its certificate as that user).
    static func chown(_ path: String, to user: String) throws {
        let result = try runProcess("/bin/chown", ["-R", "\(user):", path], timeout: 20)
        guard result.status == 0 else { throw RealServerFailure(description: "chown -R \(user) \(path): \(result.stderr)") }
    }

    /// The first of `paths` that is an executable file. Where none is: a skip with the reason, except in
    /// CI (`CI=true`), where the missing server is a failure.
    static func require(_ paths: [String], package: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        if let found = paths.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        let reason = "\(paths.joined(separator: " or ")) not found: install the Debian package \(package) (.ci/starttls-servers.sh does)"
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            XCTFail("CI must have the server: " + reason, file: file, line: line)
            throw RealServerFailure(description: reason)
        }
        print("skipped: " + reason)
        throw XCTSkip(reason)
    }
}

/// A real server that could not be started.
struct RealServerFailure: Error, CustomStringConvertible {
    var description: String
}
