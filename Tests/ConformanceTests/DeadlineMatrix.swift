import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport

/// What a deadline row has set up for one cell: the peers to let go (close) when an unlimited wait is
/// to end, and at the end of the cell.
final class DeadlineProbe: @unchecked Sendable {  // its lists are only touched under `lock`
    let pki: TestPKI
    private let lock = NSLock()
    private var releases: [() -> Void] = []
    private var cleanups: [() -> Void] = []

    init(pki: TestPKI) { self.pki = pki }

    /// Registers how to end an unlimited wait (close the silent peer, connect a client …).
    func onRelease(_ action: @escaping () -> Void) { lock.lock(); releases.append(action); lock.unlock() }

    /// Runs the release actions (once).
    func release() {
        lock.lock(); let actions = releases; releases = []; lock.unlock()
        for action in actions { action() }
    }

    /// Registers what to do when the cell is over (after the releases): stop a process.
    func onCleanup(_ action: @escaping () -> Void) { lock.lock(); cleanups.append(action); lock.unlock() }

    /// Runs the releases, then the cleanups (once).
    func finish() {
        release()
        lock.lock(); let actions = cleanups; cleanups = []; lock.unlock()
        for action in actions { action() }
    }

    /// Runs `sslcat` with `arguments` until it exits (the cell's watchdog bounds the wait): returns
    /// when it exited 0, throws ``SSLCatExit`` otherwise. With `listening`, waits first for its
    /// "listening on" line and hands the port to `listening` (a server).
    func sslcat(_ arguments: [String], listening: ((Int) throws -> Void)? = nil) throws {
        let process = try FileOutputProcess(SSLCatTool.path, arguments)
        onCleanup { process.finish() }
        if let listening {
            var port: Int?
            _ = process.wait(timeout: 20) { output in
                port = output.split(separator: "\n").first(where: { $0.contains("listening on") })
                    .flatMap { $0.split(separator: ":").last.flatMap { Int($0) } }
                return port != nil
            }
            if let port { try listening(port) }
        }
        _ = process.wait(timeout: 3600)
        guard let status = process.status else { throw ConformanceFailure("sslcat still runs") }
        if status != 0 { throw SSLCatExit(status: status, stderr: process.output) }
    }

    /// A silent TCP server on 127.0.0.1 (connections complete and hear nothing); released by closing it.
    func silentServer() throws -> Int {
        let (socket, port) = try RawSocket.silentListener()
        onRelease { socket.close() }
        return port
    }

    /// A silent TCP client of `port`; released by closing it.
    func silentClient(_ port: Int) throws {
        let socket = try RawSocket.connect("127.0.0.1", port)
        onRelease { socket.close() }
    }
}

/// One deadline parameter of one entry point. `run` calls the entry point with the value against a
/// silent peer it sets up through the probe; for a deferred handshake (``DeadlineBehaviour/deferred``)
/// it returns the first read, which runs the handshake.
struct DeadlineParameter: Sendable {
    let name: String
    let role: DeadlineRole
    /// Returns the row's first read, for a deferred handshake: it uses the row's stream, which is not
    /// `Sendable`, so it is not either (``DeadlineMatrix/runDeadlineCell(_:_:_:_:)`` hands it on).
    let run: @Sendable (_ seconds: TimeInterval, _ probe: DeadlineProbe) throws -> (() throws -> Void)?
    /// The cells that fail on the current library, with the reason (see ``MatrixCell/knownFailure``).
    var knownFailures: [DeadlineValue: KnownFailure] = [:]
}

/// A server context holder for the deadline rows' servers.
private func serverIdentity(_ ctx: SSLContextPointer) throws {
    let pki = try TestPKI.shared
    try useCertificateChainFile(ctx, file: pki.serverCert)
    try usePrivateKeyFile(ctx, file: pki.serverKey)
}

enum DeadlineMatrix {
    static let all: [DeadlineParameter] = [
        // MARK: clients
        DeadlineParameter(name: "openTCPStream(handshakeTimeout:)", role: .attachHandshake, run: { s, probe in
            let port = try probe.silentServer()
            let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: s,
                                           readTimeout: DeadlineModel.deferredReadTimeout)
            return { defer { try? stream.close() }; _ = try stream.read(maxLength: 1) }
        }),
        DeadlineParameter(name: "SocketStream.attachSSL(handshakeTimeout:)", role: .attachHandshake, run: { s, probe in
            let port = try probe.silentServer()
            let stream = try openTCPStream(host: "127.0.0.1", port: port, readTimeout: DeadlineModel.deferredReadTimeout)
            do { try stream.attachSSL(handshakeTimeout: s) } catch { try? stream.close(); throw error }
            return { defer { try? stream.close() }; _ = try stream.read(maxLength: 1) }
        }),
        DeadlineParameter(name: "SocketStream.handshake(timeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            let stream = try openTCPStream(host: "127.0.0.1", port: port)
            defer { try? stream.close() }
            try stream.attachSSL(handshakeTimeout: 0)
            try stream.handshake(timeout: s)
            return nil
        }),
        DeadlineParameter(name: "sslConnect(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            let ports = try sslConnect(host: "127.0.0.1", port: port, handshakeTimeout: s)
            try? ports.output.close(); try? ports.input.close()
            return nil
        }),
        DeadlineParameter(name: "makeClientTLSSocket(timeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            try makeClientTLSSocket(host: "127.0.0.1", port: port, timeout: s).close()
            return nil
        }),
        DeadlineParameter(name: "makeSSLClientSocket(timeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            try makeSSLClientSocket(host: "127.0.0.1", port: port, timeout: s).close()
            return nil
        }),
        DeadlineParameter(name: "clientSocketUseSSL(timeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            let socket = try makeClientSocket(host: "127.0.0.1", port: port)
            defer { try? socket.close() }
            try clientSocketUseSSL(socket, timeout: s)
            return nil
        }),
        DeadlineParameter(name: "openDTLS(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let (udp, port) = try RawSocket.silentUDP()
            probe.onRelease { udp.close() }
            try openDTLS(host: "127.0.0.1", port: port, handshakeTimeout: s).close()
            return nil
        }),
        DeadlineParameter(name: "connectTLSChannel(handshakeTimeout:) (future)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            let channel = try resolve(connectTLSChannel(host: "127.0.0.1", port: port, group: conformanceGroup, handshakeTimeout: s),
                                      timeout: 3600)
            try? resolve(channel.close())
            return nil
        }),
        DeadlineParameter(name: "connectTLSChannel(handshakeTimeout:) (async)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            try blocking {
                let channel = try await connectTLSChannel(host: "127.0.0.1", port: port, group: conformanceGroup, handshakeTimeout: s)
                try await channel.executeThenClose { _, _ in }
            }
            return nil
        }),
        DeadlineParameter(name: "Channel.attachSSL(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            let channel = try resolve(ClientBootstrap(group: conformanceGroup).connect(host: "127.0.0.1", port: port))
            defer { try? resolve(channel.close()) }
            _ = try resolve(channel.attachSSL(handshakeTimeout: s), timeout: 3600)
            return nil
        }),
        // MARK: servers: the wait for a client
        DeadlineParameter(name: "TCPListener.accept(timeout:)", role: .accept, run: { s, probe in
            let listener = try listen(port: 0, host: "127.0.0.1")
            let port = listener.port
            probe.onRelease { _ = try? RawSocket.connect("127.0.0.1", port) }
            defer { listener.close() }
            try listener.accept(timeout: s).close()
            return nil
        }),
        DeadlineParameter(name: "sslAccept(timeout:)", role: .accept, run: { s, probe in
            let listener = try sslListen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            try listener.loadCertificateChain(probe.pki.serverCert)
            try listener.loadPrivateKey(probe.pki.serverKey)
            let port = listener.port
            probe.onRelease { _ = try? RawSocket.connect("127.0.0.1", port) }
            _ = try sslAccept(listener, timeout: s, handshakeTimeout: 1)
            return nil
        }),
        DeadlineParameter(name: "tlsServerSocketAccept(timeout:)", role: .accept, run: { s, probe in
            let server = try makeServerTLSSocket(port: 0, certificates: [try readCertificate(probe.pki.serverCert)],
                                                 privateKey: try readPrivateKey(probe.pki.serverKey), host: "127.0.0.1")
            defer { server.close() }
            let port = server.port
            probe.onRelease { _ = try? RawSocket.connect("127.0.0.1", port) }
            _ = try tlsServerSocketAccept(server, timeout: s, handshakeTimeout: 1)
            return nil
        }),
        DeadlineParameter(name: "BiglooSSLServerSocket.accept(timeout:)", role: .accept, run: { s, probe in
            let server = try makeSSLServerSocket(port: 0, name: "127.0.0.1", cert: try readCertificate(probe.pki.serverCert),
                                                 pkey: try readPrivateKey(probe.pki.serverKey))
            defer { server.close() }
            let port = server.port
            probe.onRelease { _ = try? RawSocket.connect("127.0.0.1", port) }
            _ = try server.accept(timeout: s, handshakeTimeout: 1)
            return nil
        }),
        DeadlineParameter(name: "DTLSListener.accept(timeout:)", role: .accept, run: { s, probe in
            let listener = try listenDTLS(port: 0, host: "127.0.0.1", ctxConfigure: serverIdentity)
            probe.onRelease { listener.close() }
            try listener.accept(timeout: s, handshakeTimeout: 1).close()
            return nil
        }),
        // MARK: servers: the handshake
        DeadlineParameter(name: "TCPListener.accept(sslCtx:handshakeTimeout:)", role: .handshake, run: { s, probe in
            let listener = try listen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            try probe.silentClient(listener.port)
            let stream = try listener.accept(sslCtx: .default, ctxConfigure: serverIdentity, handshakeTimeout: s, timeout: 5)
            defer { try? stream.close() }
            _ = try stream.read(maxLength: 1)
            return nil
        }),
        DeadlineParameter(name: "sslAccept(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let listener = try sslListen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            try listener.loadCertificateChain(probe.pki.serverCert)
            try listener.loadPrivateKey(probe.pki.serverKey)
            try probe.silentClient(listener.port)
            _ = try sslAccept(listener, timeout: 5, handshakeTimeout: s)
            return nil
        }),
        DeadlineParameter(name: "tlsServerSocketAccept(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let server = try makeServerTLSSocket(port: 0, certificates: [try readCertificate(probe.pki.serverCert)],
                                                 privateKey: try readPrivateKey(probe.pki.serverKey), host: "127.0.0.1")
            defer { server.close() }
            try probe.silentClient(server.port)
            _ = try tlsServerSocketAccept(server, timeout: 5, handshakeTimeout: s)
            return nil
        }),
        DeadlineParameter(name: "BiglooSSLServerSocket.accept(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let server = try makeSSLServerSocket(port: 0, name: "127.0.0.1", cert: try readCertificate(probe.pki.serverCert),
                                                 pkey: try readPrivateKey(probe.pki.serverKey))
            defer { server.close() }
            try probe.silentClient(server.port)
            _ = try server.accept(timeout: 5, handshakeTimeout: s)
            return nil
        }),
        DeadlineParameter(name: "acceptTLSChannels(handshakeTimeout:)", role: .handshake, run: { s, probe in
            let ctx = ContextHolder(try testServerContext(probe.pki))
            defer { ctx.free() }
            let failed = ResultSlot<Void>()
            let done = DispatchSemaphore(value: 0)
            let server = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: conformanceGroup, ctx: .context(ctx.pointer),
                                                       handshakeTimeout: s,
                                                       sslErrorCallback: { _, error in failed.result = .failure(error); done.signal() },
                                                       childChannelInitializer: { $0.eventLoop.makeSucceededVoidFuture() }))
            defer { try? resolve(server.close()) }
            try probe.silentClient(server.localAddress?.port ?? 0)
            done.wait()
            try failed.result?.get()
            return nil
        }),
        // MARK: sslcat (processes; `--timeout=VALUE` is the handshake's deadline)
        DeadlineParameter(name: "sslcat connect --timeout", role: .handshake, run: { s, probe in
            let port = try probe.silentServer()
            try probe.sslcat(["connect", "127.0.0.1:\(port)", "--timeout=\(s)"])
            return nil
        }),
        DeadlineParameter(name: "sslcat serve --timeout", role: .handshake, run: { s, probe in
            try probe.sslcat(["serve", "--port", "0", "--host", "127.0.0.1", "--once", "--cert", probe.pki.serverCert,
                              "--key", probe.pki.serverKey, "--timeout=\(s)"], listening: { try probe.silentClient($0) })
            return nil
        }),
    ]

    static func cells(_ pki: TestPKI) -> [MatrixCell] {
        all.flatMap { parameter in
            DeadlineValue.allCases.map { value in
                let expected = DeadlineModel.expected(value, role: parameter.role)
                return MatrixCell(name: "\(parameter.name) = \(value.rawValue) (\(expected.rawValue))",
                                  knownFailure: parameter.knownFailures[value]) {
                    runDeadlineCell(parameter, value, expected, pki)
                }
            }
        }
    }

    static func runDeadlineCell(_ parameter: DeadlineParameter, _ value: DeadlineValue, _ expected: DeadlineBehaviour,
                                _ pki: TestPKI) -> RowProblem {
        let probe = DeadlineProbe(pki: pki)
        defer { probe.finish() }
        // The row's first read moves from the call's thread to the watchdog's, one after the other: it is
        // written before the call ends and read only after `call.wait` saw it end.
        final class Continuation: @unchecked Sendable { var read: (() throws -> Void)? }  // handed on, never shared
        let continuation = Continuation()
        let call = ServeThread { continuation.read = try parameter.run(value.seconds, probe) }
        let prompt = DeadlineModel.prompt

        func judgePrompt(_ accepts: (Error) -> Bool, _ what: String) -> RowProblem {
            guard let ended = call.wait(3 * DeadlineModel.timeScale) else { return "still waiting after \(format(3 * DeadlineModel.timeScale)) (expected \(what) at once)" }
            switch ended.result {
            case .success:
                return "returned normally after \(format(ended.seconds)) (expected \(what))"
            case .failure(let error):
                if !accepts(error) { return "threw after \(format(ended.seconds)), not \(what): \(describe(error))" }
                return ended.seconds <= prompt ? nil : "\(what), but only after \(format(ended.seconds)) (limit \(format(prompt)))"
            }
        }

        switch expected {
        case .usageError:
            return judgePrompt(DeadlineModel.isUsageError, "a usage error")
        case .timesOutPromptly:
            return judgePrompt({ DeadlineModel.isTimeout($0, role: parameter.role) }, "a timeout")
        case .deferred:
            guard let ended = call.wait(3 * DeadlineModel.timeScale) else { return "still waiting after \(format(3 * DeadlineModel.timeScale)) (expected no handshake at attach)" }
            switch ended.result {
            case .failure(let error):
                return "threw after \(format(ended.seconds)) (expected no handshake at attach): \(describe(error))"
            case .success:
                if ended.seconds > prompt { return "returned only after \(format(ended.seconds)) (expected at once, no handshake)" }
                guard continuation.read != nil else { return "the row gave no first read to run the deferred handshake" }
                let start = Date()
                let limit = DeadlineModel.deferredReadTimeout + prompt
                let readResult = withWatchdog(3 * DeadlineModel.timeScale, "the deferred handshake") {
                    do { try continuation.read?(); return "the first read succeeded against a silent peer" } catch {
                        return DeadlineModel.isTimeout(error, role: .handshake) ? nil : "the first read threw, not a timeout: \(describe(error))"
                    }
                }
                if let readResult { return readResult }
                let took = elapsed(since: start)
                return took <= limit ? nil : "the deferred handshake timed out only after \(format(took)) (limit \(format(limit)))"
            }
        case .noLimit:
            if let ended = call.wait(DeadlineModel.noLimitProbe) {
                return "ended after \(format(ended.seconds)) (expected no limit): "
                    + (ended.result.failureValue.map(describe) ?? "returned normally")
            }
            probe.release()
            return call.wait(3 * DeadlineModel.timeScale) == nil ? "did not end within \(format(3 * DeadlineModel.timeScale)) after the peer went away" : nil
        }
    }
}
