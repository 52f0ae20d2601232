import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Attach and detach on live connections (STARTTLS and back, twice), and LispWorks' ownership and
/// callback rules, observed: who is called how often, what is freed (OpenSSL's own free path, counted
/// by `SSLStreamCensus` and by a probe released with the object), what is left alone.
final class StartTLSAndOwnershipTests: XCTestCase {
    override func setUp() { clearOpenSSLErrors() }

    /// Two connected plain streams over loopback TCP (server end accepted on another thread).
    func connectedPair(readTimeout: TimeInterval = 10) throws -> (client: SocketStream, server: SocketStream) {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let client = try openTCPStream(host: "127.0.0.1", port: listener.port, connectTimeout: 5, readTimeout: readTimeout)
        let server = try listener.accept(timeout: 5, readTimeout: readTimeout)
        return (client, server)
    }

    /// A connected client stream, with the server end handed to `serve` on a thread of its own (the
    /// stream is not `Sendable`: it belongs to that thread from the start).
    func connectedPair(readTimeout: TimeInterval = 10, server name: String,
                       _ serve: sending @escaping (SocketStream) throws -> Void) throws -> (client: SocketStream, serverSide: Background) {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let client = try openTCPStream(host: "127.0.0.1", port: listener.port, connectTimeout: 5, readTimeout: readTimeout)
        let server = try listener.accept(timeout: 5, readTimeout: readTimeout)
        return (client, Background(name) { try serve(server) })
    }

    // MARK: STARTTLS both ways

    /// Plaintext, attach on both ends, TLS, detach on both ends, plaintext, attach again, TLS, close.
    /// The server writes plaintext right after its detach, so those bytes arrive behind its
    /// close_notify and must come out of the client's detach as plaintext.
    func testStartTLSDetachAndAttachAgain() throws {
        let pki = try Fixtures.pki
        let serverCtx = try Fixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let (client, serverSide) = try connectedPair(server: "STARTTLS server") { server in
            defer { try? server.close() }
            XCTAssertEqual(try server.readLine(), "HELLO")
            try server.writeLine("HI (plain)")
            for round in 1...2 {
                XCTAssertEqual(try server.readLine(), "STARTTLS")
                try server.writeLine("GO")
                try server.attachSSL(ctx: .context(serverCtx), side: .server, handshakeTimeout: 10)
                XCTAssertNotNil(server.ssl)
                XCTAssertEqual(try server.readLine(), "secret \(round)")
                try server.writeLine("secret \(round) ack (\(server.ssl?.versionName ?? "?"))")
                if round == 2 { break }
                XCTAssertEqual(try server.readLine(), "STOPTLS")
                try server.writeLine("OK")
                try server.detachSSL()
                XCTAssertNil(server.ssl)
                try server.writeLine("plain again")  // right behind the close_notify
                XCTAssertEqual(try server.readLine(), "PLAIN")
                try server.writeLine("plain ack")
            }
        }
        try client.writeLine("HELLO")
        XCTAssertEqual(try client.readLine(), "HI (plain)")
        for round in 1...2 {
            try client.writeLine("STARTTLS")
            XCTAssertEqual(try client.readLine(), "GO")
            try client.attachSSL(ctx: .default, side: .client, handshakeTimeout: 10, hostName: "localhost",
                                 security: .trusting(caFile: pki.caCert))
            XCTAssertEqual(client.sslSide, .client)
            try client.writeLine("secret \(round)")
            XCTAssertEqual(try client.readLine(), "secret \(round) ack (TLSv1.3)")
            if round == 2 { break }
            try client.writeLine("STOPTLS")
            XCTAssertEqual(try client.readLine(), "OK")
            try client.detachSSL()
            XCTAssertNil(client.ssl); XCTAssertNil(client.ctx); XCTAssertNil(client.sslSide)
            XCTAssertEqual(try client.readLine(), "plain again")
            try client.writeLine("PLAIN")
            XCTAssertEqual(try client.readLine(), "plain ack")
        }
        try client.close()
        try serverSide.join()
    }

    /// Attaching twice is an error; detaching a plain stream does nothing.
    func testAttachTwiceFailsAndDetachOnPlainDoesNothing() throws {
        let pki = try Fixtures.pki
        let (client, serverSide) = try connectedPair(server: "server") { server in
            try server.attachSSL(ctx: .default, side: .server, ctxConfigure: Fixtures.loadServerIdentity(), handshakeTimeout: 10)
            try server.handshake(timeout: 10)
        }
        defer { try? client.close() }
        XCTAssertNoThrow(try client.detachSSL())
        try client.attachSSL(ctx: .default, handshakeTimeout: 10, hostName: "localhost", security: .trusting(caFile: pki.caCert))
        try serverSide.join()
        let ssl = client.ssl
        XCTAssertThrowsError(try client.attachSSL(ctx: .default)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .error)
            XCTAssertTrue("\(error)".contains("already attached"), "\(error)")
        }
        XCTAssertEqual(client.ssl, ssl, "a refused attach must leave the attached TLS alone")
    }

    // MARK: Ownership and callbacks

    /// Keeps a flag that flips when the object it is stored with (in the callback registry) is freed.
    final class FreeProbe: @unchecked Sendable {  // `freed` is only touched under `lock`
        private let lock = NSLock()
        private var freed = false
        var isFreed: Bool { lock.lock(); defer { lock.unlock() }; return freed }
        final class Token: Sendable { let probe: FreeProbe; init(_ p: FreeProbe) { probe = p }
            deinit { probe.lock.lock(); probe.freed = true; probe.lock.unlock() } }
        func attach(to ssl: SSLPointer) { CallbackRegistry.of(ssl).setClosure(CallbackKey<Token>("free-probe"), Token(self)) }
        func attach(to ctx: SSLContextPointer) { CallbackRegistry.of(ctx).setClosure(CallbackKey<Token>("free-probe"), Token(self)) }
    }

    /// Protocol symbol: the stream makes both objects, calls ctxConfigure then sslConfigure once each,
    /// with the objects it exposes, and frees both at close.
    func testProtocolSymbolMakesAndFreesBoth() throws {
        let baseConnections = SSLStreamCensus.liveConnections, baseContexts = SSLStreamCensus.liveContexts
        var ctxCalls = 0, sslCalls = 0
        var seenCtx: SSLContextPointer?, seenSSL: SSLPointer?
        let ctxProbe = FreeProbe(), sslProbe = FreeProbe()
        let (client, serverSide) = try connectedPair(server: "server") { server in
            try server.attachSSL(ctx: .context(try Fixtures.serverContextShared), side: .server, handshakeTimeout: 10)
            XCTAssertEqual(try server.readLine(), "ping")
            try server.close()
        }
        try client.attachSSL(ctx: .protocol(.default), side: .client,
                             ctxConfigure: { ctx in
                                 ctxCalls += 1; seenCtx = ctx
                                 XCTAssertEqual(sslCalls, 0, "ctxConfigure runs before sslConfigure")
                                 ctxProbe.attach(to: ctx)
                             },
                             sslConfigure: { ssl in sslCalls += 1; seenSSL = ssl; sslProbe.attach(to: ssl) },
                             handshakeTimeout: 10, hostName: "localhost", security: .trusting(caFile: try Fixtures.pki.caCert))
        XCTAssertEqual(ctxCalls, 1); XCTAssertEqual(sslCalls, 1)
        XCTAssertEqual(client.ctx, seenCtx); XCTAssertEqual(client.ssl, seenSSL)
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections + 2, "the client's SSL and the server's")
        XCTAssertGreaterThanOrEqual(SSLStreamCensus.liveContexts, baseContexts + 1)
        try client.writeLine("ping")
        try client.close()
        try serverSide.join()
        XCTAssertTrue(ctxProbe.isFreed, "the SSL_CTX the stream made is freed at close")
        XCTAssertTrue(sslProbe.isFreed, "the SSL the stream made is freed at close")
        XCTAssertEqual(ctxCalls, 1); XCTAssertEqual(sslCalls, 1)
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections)
        XCTAssertEqual(SSLStreamCensus.liveContexts, baseContexts)
    }

    /// The caller's SSLContextPointer: never freed, ctxConfigure never called, sslConfigure once per
    /// stream; one context serves several streams at once and still works after they all closed.
    func testCallersContextServesManyStreamsAndSurvives() throws {
        let pki = try Fixtures.pki
        let baseConnections = SSLStreamCensus.liveConnections
        let clientCtx = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(clientCtx) }
        try loadVerifyLocations(clientCtx, file: pki.caCert)
        COpenSSL.SSL_CTX_set_verify(clientCtx.rawValue, COpenSSL.SSL_VERIFY_PEER, nil)
        let ctxProbe = FreeProbe()
        ctxProbe.attach(to: clientCtx)
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let count = 5
        let serverSide = Background("server") {
            var streams: [SocketStream] = []
            for _ in 0..<count {
                let s = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                try s.handshake(timeout: 10)  // the client waits for it before it connects the next one
                streams.append(s)
            }
            for s in streams { if let line = try s.readLine() { try s.writeLine(line) } }
            for s in streams { try s.close() }
        }
        var ctxCalls = 0, sslCalls = 0
        var clients: [SocketStream] = []
        for _ in 0..<count {
            clients.append(try openTCPStream(host: "localhost", port: listener.port, sslCtx: .context(clientCtx),
                                             ctxConfigure: { _ in ctxCalls += 1 }, sslConfigure: { _ in sslCalls += 1 },
                                             handshakeTimeout: 10, readTimeout: 10))
        }
        XCTAssertEqual(ctxCalls, 0, "ctxConfigure runs only for a context the stream makes")
        XCTAssertEqual(sslCalls, count)
        XCTAssertEqual(Set(clients.compactMap(\.ctx)), [clientCtx])
        XCTAssertEqual(Set(clients.compactMap(\.ssl)).count, count)
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections + count + count)  // clients and server streams
        for (i, c) in clients.enumerated() { try c.writeLine("stream \(i)") }
        for (i, c) in clients.enumerated() { XCTAssertEqual(try c.readLine(), "stream \(i)") }
        for c in clients { try c.close() }
        try serverSide.join()
        XCTAssertFalse(ctxProbe.isFreed, "the caller's SSL_CTX must not be freed by the streams")
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections)
        // Still usable: another stream on the same context.
        let again = Background("server again") {
            let s = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
            try s.writeLine("still works"); try s.close()
        }
        let c = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .context(clientCtx), handshakeTimeout: 10, readTimeout: 10)
        XCTAssertEqual(try c.readLine(), "still works")
        try c.close()
        try again.join()
    }

    /// The caller's SSLPointer: used as it is, no callback, never freed by detach or close; it stays
    /// usable, and freeing it is the caller's job.
    func testCallersSSLIsNeitherConfiguredNorFreed() throws {
        let pki = try Fixtures.pki
        let clientCtx = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(clientCtx) }
        try loadVerifyLocations(clientCtx, file: pki.caCert)
        COpenSSL.SSL_CTX_set_verify(clientCtx.rawValue, COpenSSL.SSL_VERIFY_PEER, nil)
        let ssl = try sslNew(clientCtx)
        XCTAssertEqual(SSL_set1_host(ssl, "localhost"), 1)
        let probe = FreeProbe()
        probe.attach(to: ssl)
        let baseConnections = SSLStreamCensus.liveConnections
        let (client, serverSide) = try connectedPair(server: "server") { server in
            try server.attachSSL(ctx: .context(try Fixtures.serverContextShared), side: .server, handshakeTimeout: 10)
            XCTAssertEqual(try server.readLine(), "one")
            try server.detachSSL()
            XCTAssertEqual(try server.readLine(), "plain")
            try server.close()
        }
        var calls = 0
        try client.attachSSL(ctx: .connection(ssl), side: .client, ctxConfigure: { _ in calls += 1 },
                             sslConfigure: { _ in calls += 1 }, handshakeTimeout: 10)
        XCTAssertEqual(calls, 0, "no configure callback for a caller's SSL")
        XCTAssertEqual(client.ssl, ssl)
        XCTAssertEqual(client.ctx, clientCtx)
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections + 1, "only the server's SSL is the streams'")
        try client.writeLine("one")
        try client.detachSSL()
        XCTAssertFalse(probe.isFreed, "detach must not free the caller's SSL")
        XCTAssertEqual(SSL_get_version(ssl), "TLSv1.3", "the caller's SSL is still usable")
        try client.writeLine("plain")
        try client.close()
        try serverSide.join()
        XCTAssertFalse(probe.isFreed, "close must not free the caller's SSL")
        destroySSL(ssl)
        XCTAssertTrue(probe.isFreed)
    }

    /// A configure callback that throws: attach throws that error, frees what it made, and leaves the
    /// stream in plaintext, still usable.
    func testThrowingConfigureCallbacksLeaveNothingBehind() throws {
        struct Refused: Error {}
        let baseConnections = SSLStreamCensus.liveConnections, baseContexts = SSLStreamCensus.liveContexts
        let (client, server) = try connectedPair()
        defer { try? client.close(); try? server.close() }
        XCTAssertThrowsError(try client.attachSSL(ctx: .default, ctxConfigure: { _ in throw Refused() })) { error in
            XCTAssertTrue(error is Refused, "\(error)")
        }
        XCTAssertThrowsError(try client.attachSSL(ctx: .default, sslConfigure: { _ in throw Refused() })) { error in
            XCTAssertTrue(error is Refused, "\(error)")
        }
        XCTAssertNil(client.ssl)
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections)
        XCTAssertEqual(SSLStreamCensus.liveContexts, baseContexts)
        try client.writeLine("still plain")
        XCTAssertEqual(try server.readLine(), "still plain")
    }

    /// `.both` sets neither state: nothing happens at attach; after the caller sets the state,
    /// `handshake(timeout:)` runs it. A client with timeout ≤ 0 defers its handshake to the first I/O.
    func testSideBothAndDeferredClientHandshake() throws {
        let pki = try Fixtures.pki
        let (client, serverSide) = try connectedPair(server: "server") { server in
            try server.attachSSL(ctx: .context(try Fixtures.serverContextShared), side: .both)
            XCTAssertEqual(server.sslSide, .both)
            XCTAssertEqual(COpenSSL.SSL_is_init_finished(server.ssl!.rawValue), 0)
            SSL_set_accept_state(server.ssl)
            try server.handshake(timeout: 10)
            XCTAssertEqual(try server.readLine(), "deferred")
            try server.close()
        }
        try client.attachSSL(ctx: .default, side: .client, handshakeTimeout: 0, hostName: "localhost",
                             security: .trusting(caFile: pki.caCert))
        XCTAssertEqual(COpenSSL.SSL_is_init_finished(client.ssl!.rawValue), 0, "timeout 0: no handshake at attach")
        try client.writeLine("deferred")  // the handshake runs here
        XCTAssertEqual(COpenSSL.SSL_is_init_finished(client.ssl!.rawValue), 1)
        try client.close()
        try serverSide.join()
    }

    /// A stream over a descriptor the caller keeps: close leaves the descriptor open and usable.
    func testCallerOwnedDescriptorIsNotClosed() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { Glibc.close(fds[0]); Glibc.close(fds[1]) }
        let a = SocketStream(fileDescriptor: fds[0], closesDescriptor: false, readTimeout: 5)
        let b = SocketStream(fileDescriptor: fds[1], closesDescriptor: false, readTimeout: 5)
        try a.writeLine("over a socket pair")
        XCTAssertEqual(try b.readLine(), "over a socket pair")
        try a.close(); try b.close()
        XCTAssertNotEqual(fcntl(fds[0], F_GETFD), -1, "the caller's descriptor must stay open")
        XCTAssertEqual(Glibc.write(fds[0], "x", 1), 1)
        var byte: UInt8 = 0
        XCTAssertEqual(Glibc.read(fds[1], &byte, 1), 1)
        XCTAssertThrowsError(try a.write("after close")) { error in
            XCTAssertEqual((error as? StreamError)?.kind, .closed)
        }
    }

    /// No leak across 1,000 attach/detach cycles on one connection: every SSL and SSL_CTX the streams
    /// made is freed (counted in OpenSSL's free path), and the heap does not grow with the cycles.
    func testThousandAttachDetachCyclesLeakNothing() throws {
        let pki = try Fixtures.pki
        let cycles = 1000
        let baseConnections = SSLStreamCensus.liveConnections, baseContexts = SSLStreamCensus.liveContexts
        let serverCtx = try Fixtures.serverContextShared
        let (client, serverSide) = try connectedPair(server: "server") { server in
            for _ in 0..<cycles {
                try server.attachSSL(ctx: .context(serverCtx), side: .server, handshakeTimeout: 10)
                guard try server.readLine() == "x" else { throw StreamTestFailure("unexpected line") }
                try server.detachSSL()
            }
            try server.close()
        }
        let security = SSLSecurity.trusting(caFile: pki.caCert)
        func cycle() throws {
            try client.attachSSL(ctx: .default, handshakeTimeout: 10, hostName: "localhost", security: security)
            try client.writeLine("x")
            try client.detachSSL()
        }
        for _ in 0..<50 { try cycle() }  // warm-up: caches, error strings, allocator pools
        let heapBefore = residentBytes()
        for _ in 50..<cycles { try cycle() }
        let heapAfter = residentBytes()
        try client.close()
        try serverSide.join()
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections)
        XCTAssertEqual(SSLStreamCensus.liveContexts, baseContexts)
        let growth = heapAfter - heapBefore
        // One leaked SSL_CTX (with its trust store) + SSL is well over 10 KiB: 950 would be over 9 MiB.
        // (Not under AddressSanitizer: its quarantine grows resident memory; LeakSanitizer checks instead.)
        if !Sanitizers.address {
            XCTAssertLessThan(growth, 4 << 20, "resident memory grew by \(growth) bytes over \(cycles - 50) cycles")
        }
    }
}

/// The process's resident memory (`/proc/self/statm`), in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

extension Fixtures {
    private static let sharedServerContext = Result { try serverContext() }
    /// One server context for the whole test run (never freed: it outlives every test).
    static var serverContextShared: SSLContextPointer { get throws { try sharedServerContext.get() } }
}
