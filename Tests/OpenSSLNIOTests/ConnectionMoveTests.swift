import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// One connection moved between the blocking and the event-driven layer and back (LispWorks §25.8.5:
/// `close-async-io-state :keep-alive t`, `replace-socket-stream-socket nil`), with TLS attached and
/// detached in each phase and no byte lost at the hand-overs.
final class ConnectionMoveTests: XCTestCase {
    /// An SMTP-like server on a blocking stream: STARTTLS attaches TLS, DETACH detaches it and sends a
    /// plaintext line right behind its close_notify (the byte that a careless hand-over loses).
    private static func serve(_ listener: TCPListener, _ server: SSLContextPointer) throws {
        let stream = try listener.accept(timeout: 10, readTimeout: 10, writeTimeout: 10)
        defer { try? stream.close() }
        try stream.writeLine("220 ready")
        while let line = try stream.readLine() {
            switch line {
            case "STARTTLS":
                try stream.writeLine("220 go")
                try stream.attachSSL(ctx: .context(server), side: .server, handshakeTimeout: 10)
                try stream.handshake()
            case "DETACH":
                try stream.writeLine("250 bye")
                try stream.detachSSL(retryCount: 10, retryTimeout: 1)
                try stream.writeLine("220 plain again")
            case "QUIT":
                try stream.writeLine("221 done")
                return
            default:
                try stream.writeLine("250 \(line) tls=\(stream.isSSLAttached)")
            }
        }
    }

    func testSessionMovesFromBlockingToNIOAndBack() throws {
        let server = try NIOFixtures.serverContext()
        defer { destroySSLCtx(server) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let peer = Background("smtp-like server") { try ConnectionMoveTests.serve(listener, server) }
        let trust = try NIOFixtures.trustTestCA

        // Phase 1: blocking, STARTTLS, then detach and hand the socket over.
        let first = try openTCPStream(host: "127.0.0.1", port: listener.port, readTimeout: 10, writeTimeout: 10)
        XCTAssertEqual(try first.readLine(), "220 ready")
        try first.writeLine("STARTTLS")
        XCTAssertEqual(try first.readLine(), "220 go")
        try first.attachSSL(handshakeTimeout: 10, hostName: "localhost", security: trust)
        try first.writeLine("PHASE1")
        XCTAssertEqual(try first.readLine(), "250 PHASE1 tls=true")
        try first.writeLine("DETACH")
        XCTAssertEqual(try first.readLine(), "250 bye")
        try first.detachSSL(retryCount: 10, retryTimeout: 1)
        // The plaintext line behind the close_notify is in the stream's buffer at the hand-over.
        XCTAssertEqual(String(decoding: try first.peek(maxLength: 6), as: UTF8.self), "220 pl")
        let (fd, pending) = try first.releaseSocket()
        XCTAssertFalse(pending.isEmpty, "the buffered bytes go with the socket")
        XCTAssertTrue(first.isClosed)
        let kept = dup(fd)  // the blocking side takes the socket back through this one
        XCTAssertGreaterThanOrEqual(kept, 0)

        // Phase 2: SwiftNIO on the same socket, pending bytes first.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let collector = Collector()
        let channel = try resolve(ClientBootstrap(group: group)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .withConnectedSocket(fd), "adopt the socket")
        func received() -> String { String(decoding: pending, as: UTF8.self) + collector.text }
        func waitFor(_ text: String, occurrences: Int = 1) -> Bool {
            let end = Date().addingTimeInterval(10)
            while Date() < end {
                if received().components(separatedBy: text).count - 1 >= occurrences { return true }
                usleep(10_000)
            }
            return false
        }
        func send(_ line: String) throws {
            try resolve(channel.writeAndFlush(channel.allocator.buffer(string: line + "\r\n")), "write \(line)")
        }
        XCTAssertTrue(waitFor("220 plain again"), received())
        try send("STARTTLS")
        XCTAssertTrue(waitFor("220 go"), received())
        // The server detaches first (its close_notify follows "250 bye"): answer it and go on in plaintext.
        _ = try resolve(channel.attachSSL(handshakeTimeout: 10, hostName: "localhost", security: trust, onPeerClose: .detach), "attach on NIO")
        try send("PHASE2")
        XCTAssertTrue(waitFor("250 PHASE2 tls=true"), received())
        try send("DETACH")
        XCTAssertTrue(waitFor("250 bye"), received())
        try resolve(channel.detachSSL(timeout: 10), "detach on NIO")
        XCTAssertTrue(waitFor("220 plain again", occurrences: 2), received())
        // Whatever NIO read after the last line expected is handed back too.
        let tail = received().components(separatedBy: "220 plain again\r\n").last ?? ""
        try resolve(channel.close(), "close NIO's descriptor (the socket stays open through the dup)")

        // Phase 3: blocking again, on the kept descriptor.
        let third = SocketStream(fileDescriptor: kept, readTimeout: 10, writeTimeout: 10, pendingInput: Array(tail.utf8))
        try third.writeLine("STARTTLS")
        XCTAssertEqual(try third.readLine(), "220 go")
        try third.attachSSL(handshakeTimeout: 10, hostName: "localhost", security: trust)
        try third.writeLine("PHASE3")
        XCTAssertEqual(try third.readLine(), "250 PHASE3 tls=true")
        try third.writeLine("QUIT")
        XCTAssertEqual(try third.readLine(), "221 done")
        try third.close()
        try peer.join()
    }
}
