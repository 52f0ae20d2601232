import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport

// MARK: Cases (the columns)

/// A hostile client every server entry point meets; the server must end it within its total handshake
/// deadline + ``ServerMatrix/grace``.
enum HostilePeer: String, CaseIterable, Sendable {
    /// Not hostile: `openssl s_client` trusting the test CA must complete the handshake, so that a
    /// server cannot pass the other columns by ending every connection.
    case control
    /// A real ClientHello, one byte every 0.6 s (for DTLS: one byte per datagram).
    case slowClientHello
    /// Connects and sends nothing.
    case silent
    /// Sends bytes that are no TLS (for DTLS: a garbage datagram every 0.1 s).
    case garbage
}

// MARK: Entry points (the rows)

/// A server entry point started for one cell.
final class ServerUnderTest: @unchecked Sendable {  // fixed after init
    let port: Int
    /// The blocking accept-and-handshake call, run on a thread of its own; nil for servers that run by
    /// themselves (event loops, a process).
    let serve: (@Sendable () throws -> Void)?
    let stop: @Sendable () -> Void

    init(port: Int, serve: (@Sendable () throws -> Void)?, stop: @escaping @Sendable () -> Void) {
        self.port = port; self.serve = serve; self.stop = stop
    }
}

/// One server entry point, listening on 127.0.0.1 with the test server certificate and a total
/// handshake deadline of `deadline` seconds given its own way.
struct ServerEntryPoint: Sendable {
    let name: String
    var datagram = false
    let start: @Sendable (_ pki: TestPKI, _ deadline: TimeInterval) throws -> ServerUnderTest
    /// The cells that fail on the current library, with the reason (see ``MatrixCell/knownFailure``).
    var knownFailures: [HostilePeer: KnownFailure] = [:]
}

/// A server context with the test certificate (the caller frees it).
func testServerContext(_ pki: TestPKI, datagram: Bool = false) throws -> SSLContextPointer {
    let ctx = try makeSSLCtx(protocol: datagram ? .dtls : .default, side: .server)
    try useCertificateChainFile(ctx, file: pki.serverCert)
    try usePrivateKeyFile(ctx, file: pki.serverKey)
    return ctx
}

/// Keeps a context alive for a server's lifetime and frees it once.
final class ContextHolder: @unchecked Sendable {  // `ctx` is only touched under `lock`
    private let lock = NSLock()
    private var ctx: SSLContextPointer?
    init(_ ctx: SSLContextPointer) { self.ctx = ctx }
    var pointer: SSLContextPointer { lock.lock(); defer { lock.unlock() }; return ctx! }
    func free() { lock.lock(); defer { lock.unlock() }; if let ctx { destroySSLCtx(ctx) }; ctx = nil }
}

enum ServerMatrix {
    /// The total handshake deadline every server is given (seconds).
    static let deadline: TimeInterval = 1
    /// How much later than its deadline a server may end a peer.
    static let grace: TimeInterval = 0.5 * DeadlineModel.timeScale
    /// How long a cell waits for the server to end the peer before it gives up.
    static let patience: TimeInterval = 5

    static let all: [ServerEntryPoint] = [
        ServerEntryPoint(name: "TCPListener.accept(sslCtx:)", start: { pki, deadline in
            let listener = try listen(port: 0, host: "127.0.0.1")
            let box = ListenerBox(listener)
            return ServerUnderTest(port: listener.port, serve: {
                let stream = try box.listener.accept(sslCtx: .default, ctxConfigure: { ctx in
                    try useCertificateChainFile(ctx, file: pki.serverCert)
                    try usePrivateKeyFile(ctx, file: pki.serverKey)
                }, handshakeTimeout: deadline, timeout: patience)
                defer { try? stream.close() }
                _ = try stream.read(maxLength: 1)  // the server handshake runs here, within handshakeTimeout
            }, stop: { box.listener.close() })
        }),
        ServerEntryPoint(name: "sslAccept", start: { pki, deadline in
            let listener = try sslListen(port: 0, host: "127.0.0.1")
            try listener.loadCertificateChain(pki.serverCert)
            try listener.loadPrivateKey(pki.serverKey)
            return ServerUnderTest(port: listener.port, serve: {
                let ports = try sslAccept(listener, timeout: patience, handshakeTimeout: deadline)
                try? ports.output.close()
                try? ports.input.close()
            }, stop: { listener.close() })
        }),
        ServerEntryPoint(name: "tlsServerSocketAccept", start: { pki, deadline in
            let server = try makeServerTLSSocket(port: 0, certificates: [try readCertificate(pki.serverCert)],
                                                 privateKey: try readPrivateKey(pki.serverKey), host: "127.0.0.1")
            return ServerUnderTest(port: server.port, serve: {
                let socket = try tlsServerSocketAccept(server, timeout: patience, handshakeTimeout: deadline)
                try? socket?.close()
            }, stop: { server.close() })
        }),
        ServerEntryPoint(name: "Bigloo BiglooSSLServerSocket.accept", start: { pki, deadline in
            let server = try makeSSLServerSocket(port: 0, name: "127.0.0.1", cert: try readCertificate(pki.serverCert),
                                                 pkey: try readPrivateKey(pki.serverKey))
            return ServerUnderTest(port: server.port, serve: {
                let socket = try server.accept(timeout: patience, handshakeTimeout: deadline)
                try? socket.close()
            }, stop: { server.close() })
        }),
        ServerEntryPoint(name: "listenDTLS + DTLSListener.accept", datagram: true, start: { pki, deadline in
            let listener = try listenDTLS(port: 0, host: "127.0.0.1", ctxConfigure: { ctx in
                try useCertificateChainFile(ctx, file: pki.serverCert)
                try usePrivateKeyFile(ctx, file: pki.serverKey)
            })
            // DTLS has no connection before its first datagram: the wait for a client and its handshake
            // are both given the deadline.
            return ServerUnderTest(port: listener.port, serve: {
                let socket = try listener.accept(timeout: deadline, handshakeTimeout: deadline)
                try? socket.close()
            }, stop: { listener.close() })
        }),
        ServerEntryPoint(name: "acceptTLSChannels (future)", start: { pki, deadline in
            let ctx = ContextHolder(try testServerContext(pki))
            let server = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: conformanceGroup, ctx: .context(ctx.pointer),
                                                       handshakeTimeout: deadline,
                                                       childChannelInitializer: { $0.eventLoop.makeSucceededVoidFuture() }))
            return ServerUnderTest(port: server.localAddress?.port ?? 0, serve: nil, stop: {
                try? resolve(server.close())
                ctx.free()
            })
        }),
        ServerEntryPoint(name: "acceptTLSChannels (async)", start: { pki, deadline in
            let ctx = ContextHolder(try testServerContext(pki))
            let server = try blocking {
                try await acceptTLSChannels(host: "127.0.0.1", port: 0, group: conformanceGroup, ctx: .context(ctx.pointer),
                                            handshakeTimeout: deadline)
            }
            // Each connection is taken and read to its end (the handshake's failure ends it).
            let serving = Task {
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        Task { try? await connection.executeThenClose { inbound, _ in for try await _ in inbound {} } }
                    }
                }
            }
            return ServerUnderTest(port: server.channel.localAddress?.port ?? 0, serve: nil, stop: {
                server.channel.close(promise: nil)
                serving.cancel()
                ctx.free()
            })
        }),
        ServerEntryPoint(name: "sslcat serve", start: { pki, deadline in
            let process = try BackgroundProcess(SSLCatTool.path, ["serve", "--port", "0", "--host", "127.0.0.1", "--once",
                                                                  "--cert", pki.serverCert, "--key", pki.serverKey,
                                                                  "--timeout", "\(deadline)"])
            guard let port = sslcatListeningPort(process) else {
                process.terminate()
                throw ConformanceFailure("sslcat serve did not listen: \(process.errorOutput)")
            }
            let once = Once()
            return ServerUnderTest(port: port, serve: nil, stop: { once.run { killAndReap(process) } })
        }),
    ]

    static func cells(_ pki: TestPKI) -> [MatrixCell] {
        all.flatMap { entry in
            HostilePeer.allCases.map { peer in
                MatrixCell(name: "\(entry.name) × \(peer.rawValue)", knownFailure: entry.knownFailures[peer]) {
                    runServerCell(entry, peer, pki)
                }
            }
        }
    }

    static func runServerCell(_ entry: ServerEntryPoint, _ peer: HostilePeer, _ pki: TestPKI) -> RowProblem {
        let server: ServerUnderTest
        do { server = try entry.start(pki, deadline) } catch { return "the server did not start: \(describe(error))" }
        defer { server.stop() }
        let served = ServeThread(server.serve)
        let limit = deadline + grace
        if peer == .control {
            let client: FileOutputProcess
            do {
                client = try FileOutputProcess("/usr/bin/openssl", ["s_client"] + (entry.datagram ? ["-dtls"] : [])
                    + ["-connect", "127.0.0.1:\(server.port)", "-CAfile", pki.caCert, "-verify_return_error"])
            } catch { return "s_client did not start: \(error)" }
            defer { client.finish() }
            // A finished handshake names its cipher ("New, TLSv1.3, Cipher is …"); s_client -dtls prints
            // "Verify return code: 0 (ok)" even after a failed verification, so that line alone proves nothing.
            func verifiedHandshake(_ output: String) -> Bool {
                output.contains("Verify return code: 0 (ok)") && !output.lowercased().contains("verify error")
                    && output.split(separator: "\n").contains { $0.hasPrefix("New, ") && !$0.contains("(NONE)") }
            }
            return client.wait(timeout: 10 * DeadlineModel.timeScale, until: verifiedHandshake) ? nil
                : "s_client did not complete a verified handshake: \(client.output.suffix(300))"
        }
        if entry.datagram {
            // The server's accept is the measure: it must end (with an error) within the limit.
            guard let peerSocket = try? RawSocket.udpConnect("127.0.0.1", server.port) else { return "no UDP peer" }
            defer { peerSocket.close() }
            driveDatagramPeer(peerSocket, peer, until: { served.ended != nil }, limit: patience)
            guard let ended = served.ended else { return "the accept did not end within \(format(patience))" }
            if case .success = ended.result { return "the accept succeeded against a hostile peer" }
            return ended.seconds <= limit ? nil
                : "ended after \(format(ended.seconds)) (limit \(format(limit))): \(describe(ended.result.failureValue!))"
        }
        let socket: RawSocket
        do { socket = try RawSocket.connect("127.0.0.1", server.port) } catch { return "\(error)" }
        defer { socket.close() }
        guard let closedAfter = driveStreamPeer(socket, peer, limit: patience) else {
            return "the server did not end the connection within \(format(patience))"
                + (served.ended.map { " (its accept ended after \(format($0.seconds)): \(String(describing: $0.result))" } ?? "")
        }
        if closedAfter > limit { return "the server ended the connection after \(format(closedAfter)) (limit \(format(limit)))" }
        if server.serve != nil {
            guard let ended = served.wait(grace) else { return "the connection closed, but the accept call still runs" }
            if case .success = ended.result { return "the accept call succeeded against a hostile peer" }
        }
        return nil
    }
}

final class ListenerBox: Sendable {
    let listener: TCPListener
    init(_ listener: TCPListener) { self.listener = listener }
}

/// A server's blocking call running on a thread of its own: its result and how long it took.
final class ServeThread: @unchecked Sendable {  // `outcome` is only touched under `condition`
    private let condition = NSCondition()
    private var outcome: (result: Result<Void, Error>, seconds: TimeInterval)?

    init(_ serve: (@Sendable () throws -> Void)?) {
        guard let serve else { return }
        let start = Date()
        CellThreads.start { [self] in
            let result = Result { try serve() }
            condition.lock(); outcome = (result, elapsed(since: start)); condition.broadcast(); condition.unlock()
        }
    }

    var ended: (result: Result<Void, Error>, seconds: TimeInterval)? { condition.lock(); defer { condition.unlock() }; return outcome }

    func wait(_ seconds: TimeInterval) -> (result: Result<Void, Error>, seconds: TimeInterval)? {
        let end = Date().addingTimeInterval(seconds)
        condition.lock(); defer { condition.unlock() }
        while outcome == nil { if !condition.wait(until: end) { break } }
        return outcome
    }
}

extension Result {
    var failureValue: Failure? { if case .failure(let e) = self { return e }; return nil }
}

/// Plays `peer` on a connected TCP socket until the server ends the connection: the seconds that took,
/// or nil when it did not within `limit`. What the server sends (an alert) is read and dropped.
func driveStreamPeer(_ socket: RawSocket, _ peer: HostilePeer, limit: TimeInterval) -> TimeInterval? {
    let start = Date()
    var next = start
    var sent = 0
    let hello = HostileBytes.clientHello
    if peer == .garbage { socket.send(HostileBytes.garbage) }
    while elapsed(since: start) < limit {
        if peer == .slowClientHello && Date() >= next && sent < hello.count {
            socket.send([hello[sent]])
            sent += 1
            next = next.addingTimeInterval(0.6)
        }
        if let bytes = socket.receive(timeout: 0.02), bytes.isEmpty { return elapsed(since: start) }
    }
    return nil
}

/// Plays `peer` over UDP until `done()` or `limit` seconds.
func driveDatagramPeer(_ socket: RawSocket, _ peer: HostilePeer, until done: () -> Bool, limit: TimeInterval) {
    let start = Date()
    var next = start
    var sent = 0
    let hello = HostileBytes.dtlsClientHello
    while elapsed(since: start) < limit && !done() {
        if Date() >= next {
            switch peer {
            case .slowClientHello:
                if sent < hello.count { socket.send([hello[sent]]); sent += 1 }
                next = next.addingTimeInterval(0.6)
            case .garbage:
                socket.send(HostileBytes.garbage)
                next = next.addingTimeInterval(0.1)
            case .silent, .control:
                next = next.addingTimeInterval(3600)
            }
        }
        _ = socket.receive(timeout: 0.02)
    }
}
