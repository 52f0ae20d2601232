import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport
import XCTest

/// TLS over any byte stream (Racket's `ports->ssl-ports`) and the memory-BIO engine.
final class SeedByteStreamTests: XCTestCase {
    /// Open descriptors of this process (to check that nothing leaks).
    static func openDescriptorCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// A server context with the test certificate, and a client context trusting the test CA.
    func contexts() throws -> (server: SSLContextPointer, client: SSLContextPointer) {
        (try Toolbox.serverContext(), try Toolbox.clientContext())
    }

    /// 16 MiB through TLS over two OS pipes, client and server on two threads; both directions checked.
    func testTLSOverTwoPipesBetweenThreadsCarries16MiB() throws {
        let (serverCtx, clientCtx) = try contexts()
        defer { destroySSLCtx(serverCtx); destroySSLCtx(clientCtx) }
        let toServer = Pipe(), toClient = Pipe()
        let total = 16 << 20
        var payload = [UInt8](repeating: 0, count: total)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        let expected = try sha1Bytes(payload)
        final class Box: @unchecked Sendable { var digest: [UInt8] = []; var count = 0 }  // written by the background thread, read after it was joined
        let box = Box()
        let server = Background("pipe server") {
            let ports = try portsToSSLPorts(input: toServer.fileHandleForReading, output: toClient.fileHandleForWriting, mode: .server,
                                            context: .context(serverCtx), closeOriginal: true, shutdownOnClose: true)
            let received = try ports.input.readAll()
            box.count = received.count
            box.digest = try sha1Bytes(received)
            try ports.output.write(box.digest)  // answer with the digest, then close_notify
            try ports.output.close()
            try ports.input.close()
        }
        let ports = try portsToSSLPorts(input: toClient.fileHandleForReading, output: toServer.fileHandleForWriting, mode: .client,
                                        context: .context(clientCtx), closeOriginal: true, shutdownOnClose: true, hostName: "localhost")
        var offset = 0
        var size = 1
        while offset < total {
            let n = min(size, total - offset)
            try payload.withUnsafeBytes { try ports.output.write(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)])) }
            offset += n
            size = size >= 1 << 20 ? 1 : size * 7 + 3  // 1 B … 1 MiB, odd sizes
        }
        try ports.output.shutdown()  // close_notify: the server's readAll ends cleanly
        let answer = try ports.input.readAll()
        try server.join(timeout: 120)
        XCTAssertEqual(box.count, total)
        XCTAssertEqual(box.digest, expected)
        XCTAssertEqual(answer, expected, "the server's answer came back over the same TLS connection")
        try ports.output.close()
        try ports.input.close()
    }

    /// Reading and writing one port pair from two threads at once, over in-memory channels.
    func testConcurrentReadAndWriteOverMemoryChannels() throws {
        let (serverCtx, clientCtx) = try contexts()
        defer { destroySSLCtx(serverCtx); destroySSLCtx(clientCtx) }
        let (up, down) = MemoryByteChannel.duplex(capacity: 64 * 1024)
        let echo = Background("echo") {
            let ports = try portsToSSLPorts(input: up, output: down, mode: .server, context: .context(serverCtx), closeOriginal: true)
            var buffer = [UInt8](repeating: 0, count: 32 * 1024)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try ports.input.read(into: $0) }
                if n == 0 { break }
                try buffer.withUnsafeBytes { try ports.output.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            try ports.output.close(shutdown: true)
            try ports.input.close()
        }
        let ports = try portsToSSLPorts(input: down, output: up, mode: .client, context: .context(clientCtx), closeOriginal: true,
                                        hostName: "localhost")
        let message = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let writer = Background("writer") {
            try ports.output.write(message)  // while the main thread reads the echo
            try ports.output.shutdown()
        }
        let echoed = try ports.input.readAll()
        try writer.join(timeout: 60)
        try echo.join(timeout: 60)
        XCTAssertEqual(echoed.count, message.count)
        XCTAssertEqual(try sha1Bytes(echoed), try sha1Bytes(message))
    }

    /// An EOF without close_notify is reported as such; the error hook sees and maps errors; a failed
    /// handshake with closeOriginal closes the transport.
    func testUncleanEOFErrorHookAndFailedHandshake() throws {
        let (serverCtx, clientCtx) = try contexts()
        defer { destroySSLCtx(serverCtx); destroySSLCtx(clientCtx) }
        let (up, down) = MemoryByteChannel.duplex()
        let server = Background("server") {
            let ports = try portsToSSLPorts(input: up, output: down, mode: .server, context: .context(serverCtx))
            try ports.output.write("partial")
            try down.closeWriting()  // the transport ends without close_notify
        }
        let ports = try portsToSSLPorts(input: down, output: up, mode: .client, context: .context(clientCtx), hostName: "localhost")
        try server.join()
        XCTAssertEqual(String(decoding: try ports.input.read(maxLength: 100), as: UTF8.self), "partial")
        XCTAssertThrowsError(try ports.input.read(maxLength: 100)) { error in
            XCTAssertEqual((error as? SSLError)?.isUnexpectedEOF, true, "\(error)")
        }

        struct Mapped: Error { var original: String }
        let (a, b) = MemoryByteChannel.duplex()
        try b.writeAll("this is not TLS at all\r\n\r\n")
        try b.closeWriting()
        XCTAssertThrowsError(try portsToSSLPorts(input: b, output: a, mode: .client, context: .context(clientCtx), closeOriginal: true,
                                                 hostName: "localhost", errorHook: { Mapped(original: "\($0)") })) { error in
            XCTAssertTrue((error as? Mapped)?.original.contains("wrong version number") ?? false, "\(error)")
        }
        XCTAssertThrowsError(try a.writeAll("x"), "closeOriginal closed the transport after the failed handshake")
        // Racket's #:mode is 'connect or 'accept: .both has no handshake role.
        let (c, d) = MemoryByteChannel.duplex()
        XCTAssertThrowsError(try portsToSSLPorts(input: c, output: d, mode: .both, context: .context(clientCtx))) {
            XCTAssertTrue("\($0)".contains("not .both"), "\($0)")
        }
    }

    /// The memory-BIO engine with a hand-driven transport: our client engine against `openssl s_server -rev`
    /// over a socket the test reads and writes itself (Python's wrap_bio style).
    func testTLSEngineWithOwnTransportAgainstOpenSSLServer() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey, "-rev"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        let socket = try openTCPStream(host: "127.0.0.1", port: port, readTimeout: 10, writeTimeout: 10)  // plaintext
        defer { try? socket.close() }
        let engine = try TLSEngine(ctx: .default, side: .client, hostName: "localhost", security: .trusting(caFile: pki.caCert))
        func pump() throws {
            if engine.hasOutgoing { try socket.write(engine.takeOutgoing()); try socket.flush() }
            let incoming = try socket.read(maxLength: 64 * 1024)
            if incoming.isEmpty { engine.feedEOF() } else { try engine.feed(incoming) }
        }
        var rounds = 0
        while try !engine.handshake() { try pump(); rounds += 1; XCTAssertLessThan(rounds, 20) }
        XCTAssertTrue(engine.isHandshakeDone)
        XCTAssertEqual(engine.ssl.protocolVersion, .tls1_3)
        XCTAssertEqual(try engine.write(Array("hello engine\n".utf8)), 13)
        var reply = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 256)
        while !reply.contains(10) {
            if let n = try buffer.withUnsafeMutableBytes({ try engine.read(into: $0) }) {
                XCTAssertGreaterThan(n, 0)
                reply += buffer.prefix(n)
            } else {
                try pump()
            }
        }
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "enigne olleh\n")
        XCTAssertFalse(try engine.shutdown(), "close_notify sent; the peer's has not been read yet")
        XCTAssertTrue(engine.hasOutgoing)
    }

    /// Two engines in one thread, pumped by hand; a caller's SSL is not freed by the engine.
    func testTwoEnginesPumpedByHandAndOwnership() throws {
        let (serverCtx, clientCtx) = try contexts()
        defer { destroySSLCtx(serverCtx); destroySSLCtx(clientCtx) }
        let callersSSL = try sslNew(serverCtx)
        defer { destroySSL(callersSSL) }
        let liveBefore = SSLStreamCensus.liveConnections
        do {
            let client = try TLSEngine(ctx: .context(clientCtx), side: .client, hostName: "localhost")
            let server = try TLSEngine(ctx: .connection(callersSSL), side: .server)
            XCTAssertEqual(server.ssl, callersSSL)
            var done = false
            for _ in 0..<10 where !done {
                let c = try client.handshake()
                try server.feed(client.takeOutgoing())
                let s = try server.handshake()
                try client.feed(server.takeOutgoing())
                done = c && s
            }
            XCTAssertTrue(done)
            XCTAssertEqual(SSLStreamCensus.liveConnections, liveBefore + 1, "one SSL made (the client's); the caller's is not counted")
            _ = try client.write(Array("ping".utf8))
            try server.feed(client.takeOutgoing())
            var buffer = [UInt8](repeating: 0, count: 16)
            XCTAssertEqual(try buffer.withUnsafeMutableBytes { try server.read(into: $0) }, 4)
            XCTAssertNil(try buffer.withUnsafeMutableBytes { try server.read(into: $0) }, "nothing more yet: wants input")
            // Shutdown asked again before the peer's close_notify is here: still false, no error.
            XCTAssertFalse(try client.shutdown())
            XCTAssertFalse(try client.shutdown(), "a second call while the peer's close_notify is on its way")
            try server.feed(client.takeOutgoing())
            XCTAssertEqual(try buffer.withUnsafeMutableBytes { try server.read(into: $0) }, 0, "close_notify read: a clean end")
            XCTAssertTrue(try server.shutdown())
            try client.feed(server.takeOutgoing())
            XCTAssertTrue(try client.shutdown(), "the peer's close_notify arrived")
        }
        // The engines are gone; the caller's SSL is still alive and usable.
        XCTAssertEqual(SSL_get_SSL_CTX(callersSSL), serverCtx)
        XCTAssertEqual(SSLStreamCensus.liveConnections, liveBefore, "the client engine's own SSL was freed with it")
    }
}
