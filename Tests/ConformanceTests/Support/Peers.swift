import Foundation
import OpenSSLFLI
import OpenSSLStreams
import TestSupport

/// An `openssl s_server` on a free loopback port, serving one certificate; killed when released.
final class OpenSSLServer: @unchecked Sendable {  // fixed after init; the process object locks its own state
    let process: BackgroundProcess
    let port: Int

    /// - Parameters:
    ///   - ipv6: listen on `::1` (else 127.0.0.1).
    ///   - dtls: `-dtls` (UDP).
    ///   - extra: more `s_server` options (`-tls1`, `-cipher` …).
    init(cert: String, key: String, ipv6: Bool = false, dtls: Bool = false, extra: [String] = []) throws {
        var arguments = ["s_server", "-accept", ipv6 ? "[::1]:0" : "127.0.0.1:0", "-cert", cert, "-key", key]
        if dtls && !extra.contains("-dtls1") { arguments.insert("-dtls", at: 1) }  // -dtls1 pins DTLS 1.0 by itself
        process = try BackgroundProcess("/usr/bin/openssl", arguments + extra)
        guard let port = process.acceptedPort(timeout: 10) else {
            process.terminate()
            throw ConformanceFailure("s_server did not report its port within 10 s: \(process.errorOutput)")
        }
        self.port = port
    }

    deinit { stop() }

    /// Kills the server. By its process id first: when many threads start processes at once,
    /// Foundation's `Process.isRunning` was seen false for a live child (7 of the first 8 servers of a
    /// run outlived the tests), and `terminate()` then sends nothing.
    func stop() { stopOnce.run { killAndReap(process) } }
    private let stopOnce = Once()
}

/// A plain loopback socket, made and used with the system calls directly (the peer side of a test must
/// not depend on the library under test).
final class RawSocket: @unchecked Sendable {  // `fd` is only touched under `lock`
    private let lock = NSLock()
    private var fd: Int32

    init(fd: Int32) { self.fd = fd }
    deinit { close() }

    var descriptor: Int32 { lock.lock(); defer { lock.unlock() }; return fd }

    func close() {
        lock.lock(); defer { lock.unlock() }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// A socket address for a numeric loopback address.
    static func address(_ host: String, _ port: Int) -> (storage: sockaddr_storage, length: socklen_t, family: Int32) {
        var storage = sockaddr_storage()
        if host.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = in_port_t(UInt16(port).bigEndian)
            _ = inet_pton(AF_INET6, host, &a.sin6_addr)
            withUnsafeBytes(of: a) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        _ = inet_pton(AF_INET, host, &a.sin_addr)
        withUnsafeBytes(of: a) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
        return (storage, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
    }

    /// Connects a TCP socket to `host:port` (numeric), blocking.
    static func connect(_ host: String, _ port: Int) throws -> RawSocket {
        var (storage, length, family) = address(host, port)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConformanceFailure("socket: \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw ConformanceFailure("connect \(host):\(port): \(String(cString: strerror(e)))")
        }
        return RawSocket(fd: fd)
    }

    /// A listening TCP socket on a free loopback port that never accepts: connections complete in the
    /// kernel and then hear nothing (a silent server). Closing it resets them.
    static func silentListener(_ host: String = "127.0.0.1") throws -> (socket: RawSocket, port: Int) {
        try bound(host, type: SOCK_STREAM, listen: true)
    }

    /// A UDP socket bound to a free loopback port that never answers (a silent DTLS server).
    static func silentUDP(_ host: String = "127.0.0.1") throws -> (socket: RawSocket, port: Int) {
        try bound(host, type: SOCK_DGRAM, listen: false)
    }

    /// A UDP socket connected to `host:port`.
    static func udpConnect(_ host: String, _ port: Int) throws -> RawSocket {
        var (storage, length, family) = address(host, port)
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConformanceFailure("socket: \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
        guard rc == 0 else { Glibc.close(fd); throw ConformanceFailure("connect (UDP): \(String(cString: strerror(errno)))") }
        return RawSocket(fd: fd)
    }

    private static func bound(_ host: String, type: __socket_type, listen: Bool) throws -> (socket: RawSocket, port: Int) {
        var (storage, length, family) = address(host, 0)
        let fd = socket(family, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConformanceFailure("socket: \(String(cString: strerror(errno)))") }
        let raw = RawSocket(fd: fd)
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw ConformanceFailure("bind: \(String(cString: strerror(errno)))") }
        if listen { guard Glibc.listen(fd, 64) == 0 else { throw ConformanceFailure("listen: \(String(cString: strerror(errno)))") } }
        var bound = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) } }
        let port = withUnsafeBytes(of: bound) { raw -> Int in
            Int(UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self)))  // sin_port / sin6_port
        }
        return (raw, port)
    }

    /// Sends all of `bytes` (errors ignored: the peer may have closed, which the caller detects).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        let fd = descriptor
        guard fd >= 0 else { return false }
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Waits up to `timeout` for input and reads it: nil when nothing came, `[]` at the end of the
    /// stream (FIN, reset or error), else the bytes.
    func receive(timeout: TimeInterval) -> [UInt8]? {
        let fd = descriptor
        guard fd >= 0 else { return [] }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32(max(0, timeout * 1000)))
        if ready == 0 { return nil }
        if ready < 0 { return errno == EINTR ? nil : [] }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return [] }
        return Array(buffer[0..<n])
    }
}

/// Bytes that hostile peers send.
enum HostileBytes {
    /// A real ClientHello (TLS 1.2 / 1.3), as the library's engine writes it.
    static let clientHello: [UInt8] = hello(datagram: false)
    /// A real DTLS 1.2 ClientHello.
    static let dtlsClientHello: [UInt8] = hello(datagram: true)
    /// Bytes that are no TLS record (the first byte is no content type).
    static let garbage: [UInt8] = Array("\u{01}this is not TLS at all, just garbage bytes \u{7f}\u{7f}\u{7f}\r\n".utf8)

    private static func hello(datagram: Bool) -> [UInt8] {
        guard let engine = try? TLSEngine(ctx: .protocol(datagram ? .dtls : .default), side: .client, hostName: "localhost",
                                          security: .insecure),
              (try? engine.handshake()) != nil else { return Array(repeating: 0x16, count: 64) }
        let bytes = engine.takeOutgoing()
        return bytes.isEmpty ? Array(repeating: 0x16, count: 64) : bytes
    }
}

/// The built `sslcat` executable (beside the test bundle).
enum SSLCatTool {
    static var path: String {
        let bundle = Bundle(for: MatrixBundleMarker.self).bundleURL
        for dir in [bundle, bundle.deletingLastPathComponent()] {
            let path = dir.appendingPathComponent("sslcat").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return bundle.appendingPathComponent("sslcat").path
    }
}

final class MatrixBundleMarker {}

/// The listening port in `sslcat serve`'s "listening on 127.0.0.1:PORT" line.
func sslcatListeningPort(_ process: BackgroundProcess, timeout: TimeInterval = 20) -> Int? {
    var port: Int?
    process.waitFor(timeout: timeout) { _, err in
        guard let line = err.split(separator: "\n").first(where: { $0.contains("listening on") }),
              let p = line.split(separator: ":").last.flatMap({ Int($0) }) else { return false }
        port = p
        return true
    }
    return port
}

/// A child process whose stdout and stderr go to a temporary file (not a pipe: a pipe's end is
/// inherited by every child that other threads start meanwhile, so its EOF can come much later than
/// the process's exit). Killed and its file removed on ``finish()``.
final class FileOutputProcess: @unchecked Sendable {  // fixed after init; finishing runs once (`Once`)
    private let process = Process()
    private let path: String
    private let finishOnce = Once()

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("fli-conformance-\(UUID().uuidString).out").path
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit { finish() }

    /// What it wrote so far. Read with read(2): Foundation's `String(contentsOfFile:)` leaks its buffer
    /// (LeakSanitizer, in FoundationEssentials.readBytesFromFile) on a file that grows while it is read.
    var output: String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
    var isRunning: Bool { process.isRunning }
    /// The exit status (or signal number), once it ended.
    var status: Int32? { process.isRunning ? nil : process.terminationStatus }
    var endedBySignal: Bool { !process.isRunning && process.terminationReason == .uncaughtSignal }

    /// Waits up to `timeout` seconds until it exits or `predicate` holds for its output; true when
    /// the predicate held.
    func wait(timeout: TimeInterval, until predicate: (String) -> Bool = { _ in false }) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if predicate(output) { return true }
            if !process.isRunning { return predicate(output) }
            usleep(20_000)
        }
        return predicate(output)
    }

    /// Kills it if it still runs, reaps it and removes its file.
    func finish() {
        guard finishOnce.first() else { return }
        // By its id whatever `isRunning` says (see ``OpenSSLServer/stop()``).
        if process.processIdentifier > 0 {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Kills a child this test started (its process id, SIGKILL, once: see ``OpenSSLServer/stop()``), then
/// lets `BackgroundProcess` reap it and close its pipes.
func killAndReap(_ process: BackgroundProcess) {
    let pid = process.processIdentifier
    if pid > 0 { kill(pid, SIGKILL) }
    process.terminate()
}

/// True the first time only (so that a process id is never signalled after its process was reaped).
final class Once: @unchecked Sendable {  // `done` is only touched under `lock`
    private let lock = NSLock()
    private var done = false

    func first() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }

    func run(_ body: () -> Void) { if first() { body() } }
}
