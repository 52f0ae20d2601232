import Foundation
import XCTest

/// A finished child process's output.
struct ProcessOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

struct TimedOut: Error, CustomStringConvertible {
    var command: String
    var description: String { "timed out: \(command)" }
}

/// Runs `executable` (a path, or a name looked up on PATH) with a time limit: the child is killed when
/// it runs over, and the call throws.
func runClient(_ executable: String, _ arguments: [String], timeout: TimeInterval, stdin: Data? = nil) throws -> ProcessOutput {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try locate(executable))
    process.arguments = arguments
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out; process.standardError = err; process.standardInput = input
    final class Box: @unchecked Sendable { var out = Data(); var err = Data() }
    let box = Box()
    let group = DispatchGroup()
    try process.run()
    group.enter(); DispatchQueue.global().async { box.out = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter(); DispatchQueue.global().async { box.err = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try? input.fileHandleForWriting.close()
    if group.wait(timeout: .now() + timeout) == .timedOut {
        kill(process.processIdentifier, SIGKILL)
        _ = group.wait(timeout: .now() + 5)
        throw TimedOut(command: ([executable] + arguments).joined(separator: " "))
    }
    process.waitUntilExit()
    return ProcessOutput(status: process.terminationStatus, stdout: String(decoding: box.out, as: UTF8.self),
                         stderr: String(decoding: box.err, as: UTF8.self))
}

/// The path of a program: as given when it has a slash, else the first match on PATH.
func locate(_ name: String) throws -> String {
    if name.contains("/") { return name }
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw MissingTool(name: name)
}

struct MissingTool: Error, CustomStringConvertible {
    var name: String
    var description: String { "\(name) is not installed" }
}

/// An `openssl` command the test needs (making the PKI, the OCSP response) failed: the test fails.
struct OpenSSLCommandFailure: Error, CustomStringConvertible {
    var command: String
    var stderr: String
    var description: String { "openssl \(command) failed: \(stderr)" }
}

/// Skips the test when a client program is missing — except in CI (CI=true), where it fails.
func require(_ tools: String...) throws {
    for tool in tools where (try? locate(tool)) == nil {
        if ProcessInfo.processInfo.environment["CI"] == "true" { throw MissingTool(name: tool) }
        throw XCTSkip("\(tool) is not installed (apt-get install nghttp2-client wrk curl openssl)")
    }
}

/// Certificates made at run time with the openssl CLI, in a fresh directory: a CA, a server leaf for
/// localhost / 127.0.0.1 and a client certificate signed by it, and a DER OCSP response ("good") for
/// the server leaf, signed by the CA, made with `openssl ocsp` against an index of issued certificates.
final class PKI: @unchecked Sendable {
    let dir: String
    var caCert: String { dir + "/ca.pem" }
    var caKey: String { dir + "/ca.key" }
    var serverCert: String { dir + "/server.pem" }
    var serverKey: String { dir + "/server.key" }
    var clientCert: String { dir + "/client.pem" }
    var clientKey: String { dir + "/client.key" }
    var ocspResponse: String { dir + "/ocsp.der" }

    static let shared: Result<PKI, Error> = Result { try PKI() }

    private init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("hb-openssl-pki-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { if case .success(let pki) = PKI.shared { try? FileManager.default.removeItem(atPath: pki.dir) } }
        try openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey,
                    "-out", caCert, "-days", "2", "-subj", "/CN=hummingbird-openssl test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        try issue(name: "server", subject: "/CN=localhost",
                  extensions: "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
        try issue(name: "client", subject: "/CN=test client/O=hummingbird-openssl",
                  extensions: "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        // The OCSP responder's index: the server leaf, valid ("V").
        let serial = try openssl("x509", "-in", serverCert, "-noout", "-serial").stdout
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        try "V\t491231235959Z\t\t\(serial)\tunknown\t/CN=localhost\n".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        try openssl("ocsp", "-issuer", caCert, "-cert", serverCert, "-reqout", dir + "/ocsp-request.der", "-no_nonce")
        try openssl("ocsp", "-index", dir + "/index.txt", "-rsigner", caCert, "-rkey", caKey, "-CA", caCert,
                    "-reqin", dir + "/ocsp-request.der", "-respout", ocspResponse, "-ndays", "1")
    }

    private func issue(name: String, subject: String, extensions: String) throws {
        let ext = dir + "/\(name).ext"
        try extensions.write(toFile: ext, atomically: true, encoding: .utf8)
        try openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir + "/\(name).key")
        try openssl("req", "-new", "-key", dir + "/\(name).key", "-out", dir + "/\(name).csr", "-subj", subject)
        try openssl("x509", "-req", "-in", dir + "/\(name).csr", "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
                    "-out", dir + "/\(name).pem", "-days", "2", "-extfile", ext)
    }

    @discardableResult
    private func openssl(_ arguments: String...) throws -> ProcessOutput {
        let result = try runClient("openssl", arguments, timeout: 30)
        guard result.status == 0 else {
            throw OpenSSLCommandFailure(command: arguments.joined(separator: " "), stderr: result.stderr)
        }
        return result
    }
}

/// The example server running as a process on a free port of 127.0.0.1; killed by `stop()` or deinit.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    private(set) var port = 0
    private let out = Pipe(), err = Pipe()
    private let lock = NSCondition()
    private var output = Data(), errors = Data()

    /// The built `hummingbird-openssl`, beside the test bundle.
    static var executable: String {
        let bundle = Bundle(for: ServerProcess.self).bundleURL
        // Linux: the bundle is the build directory; elsewhere the .xctest sits in it.
        for dir in [bundle, bundle.deletingLastPathComponent()] {
            let path = dir.appendingPathComponent("hummingbird-openssl").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return bundle.appendingPathComponent("hummingbird-openssl").path
    }

    /// Starts the server with `arguments` (after --cert/--key/--port) and waits (up to 30 s) until it listens.
    init(pki: PKI, _ arguments: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: ServerProcess.executable)
        process.arguments = ["--cert", pki.serverCert, "--key", pki.serverKey, "--port", "0"] + arguments
        process.standardOutput = out; process.standardError = err
        try process.run()
        // Blocking read loops, not FileHandle.readabilityHandler, whose teardown races libdispatch's epoll
        // bookkeeping on Linux (swift-corelibs-libdispatch#949); EOF at the server's exit ends each loop.
        startReader(out.fileHandleForReading, error: false)
        startReader(err.fileHandleForReading, error: true)
        let end = Date().addingTimeInterval(30)
        var found: Int?
        lock.lock()
        while found == nil {
            let text = String(decoding: output, as: UTF8.self)
            if let range = text.range(of: #"listening on [^:]+:(\d+)"#, options: .regularExpression) {
                found = Int(text[range].split(separator: ":").last!)
                break
            }
            if !process.isRunning || !lock.wait(until: min(end, Date().addingTimeInterval(0.2))) && Date() >= end { break }
        }
        lock.unlock()
        guard let found, found > 0 else {
            let message = "the server did not start: \(String(decoding: errors, as: UTF8.self))"
            stop()
            throw TimedOut(command: message)
        }
        port = found
    }

    private func startReader(_ handle: FileHandle, error: Bool) {
        Thread { [weak self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0, let self else { return }
                self.append(Data(chunk[0..<n]), error: error)
            }
        }.start()
    }

    private func append(_ data: Data, error: Bool) {
        lock.lock()
        if error { errors.append(data) } else { output.append(data) }
        lock.broadcast()
        lock.unlock()
    }

    /// What the server wrote to stderr.
    var errorOutput: String { lock.lock(); defer { lock.unlock() }; return String(decoding: errors, as: UTF8.self) }

    /// The server's resident memory (VmRSS, KiB).
    var residentKiB: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    func stop() {
        guard process.isRunning else { return }
        process.interrupt()
        let end = Date().addingTimeInterval(5)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}
