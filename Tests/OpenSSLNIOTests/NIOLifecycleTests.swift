import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// Lifecycle paths of the handler's state the other tests do not take: a detach asked for during the
/// handshake, a second close while the first waits for the peer's close_notify, a close during a
/// detach. Real loopback peers.
final class NIOLifecycleTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        clearOpenSSLErrors()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        group = nil
    }

    /// A detach asked for while the handshake runs waits for it, then goes on: the attach and the detach
    /// both succeed, and what the peer sends after its close_notify arrives as plaintext.
    func testDetachAskedForDuringTheHandshakeGoesOnAfterIt() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let peer = Background("detaching server") {
            let s = try listener.accept(timeout: 10, readTimeout: 10)
            defer { try? s.close() }
            try s.attachSSL(ctx: .context(serverCtx), side: .server, handshakeTimeout: 10)
            XCTAssertNil(try s.readLine())  // the client's close_notify right after the handshake
            try s.detachSSL()
            try s.writeLine("plain after detach"); try s.flush()
        }
        let collector = Collector()
        let channel = try NIOFixtures.plainClient(group: group, port: listener.port, collector: collector)
        defer { channel.close(promise: nil) }
        let security = try NIOFixtures.trustTestCA
        // The removal comes right after the handler started the handshake, in the same event-loop task.
        let (handshake, removed, detach) = try resolve(channel.eventLoop.submit {
            let handler = try OpenSSLHandler(ctx: .default, handshakeTimeout: 10, hostName: "localhost", security: security)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            XCTAssertFalse(handler.isHandshakeDone)
            let removed = channel.eventLoop.makePromise(of: Void.self)
            channel.pipeline.syncOperations.removeHandler(handler, promise: removed)
            let detach: EventLoopFuture<Void> = channel.detachSSL(timeout: 10)  // joins the detach under way
            return (handler.handshakeFuture(on: channel.eventLoop), removed.futureResult, detach)
        })
        try resolve(handshake, "the handshake")
        try resolve(removed, "the removal")
        try resolve(detach, "the detach")
        XCTAssertNil(try resolve(channel.sslAttachment()))
        XCTAssertTrue(collector.waitForText("plain after detach\r\n"), collector.text)
        try peer.join()
        XCTAssertTrue(collector.events.contains("handshake"), "\(collector.events)")
        XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
    }

    /// A second `close()` while the first waits for the peer's close_notify ends with the first: both
    /// succeed when the channel closes after `closeTimeout`.
    func testASecondCloseWhileClosingEndsWithTheFirst() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let peer = Background("silent server") {
            let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
            XCTAssertNil(try s.readLine())  // the client's close_notify, not answered for a while
            usleep(3_000_000)
            try? s.close()
        }
        let collector = Collector()
        let channel = try resolve(connectTLSChannel(host: "localhost", port: listener.port, group: group, handshakeTimeout: 10,
                                                    security: try NIOFixtures.trustTestCA) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
        })
        let start = Date()
        let (first, second) = try resolve(channel.eventLoop.submit {
            channel.pipeline.syncOperations.openSSLHandler?.closeTimeout = 0.3
            return (channel.close(), channel.close())
        })
        try resolve(first, timeout: 10, "the first close")
        try resolve(second, timeout: 10, "the second close")
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.2, "the close waited for the peer's close_notify")
        XCTAssertLessThan(elapsed, 2.5, "the close ended at closeTimeout, not when the peer answered")
        XCTAssertFalse(channel.isActive)
        try peer.join()
        XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
    }

    /// A `close()` asked for while a detach waits for the peer's close_notify: the detach ends cleanly,
    /// then the channel closes (it does not stay open carrying plaintext), and the peer reads its end.
    func testCloseDuringADetachClosesTheChannelAfterIt() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let peer = Background("detaching server") {
            let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
            defer { try? s.close() }
            XCTAssertNil(try s.readLine())  // the client's close_notify (its detach)
            try s.detachSSL()               // answered: the client's detach completes
            // Then the client closes: the end arrives (a read timeout would throw and fail the join).
            XCTAssertNil(try s.readLine(), "the end of the plaintext connection")
        }
        let channel = try resolve(connectTLSChannel(host: "localhost", port: listener.port, group: group, handshakeTimeout: 10,
                                                    security: try NIOFixtures.trustTestCA))
        let detach: EventLoopFuture<Void> = channel.detachSSL(timeout: 10)
        // Event-loop tasks run in order: the close comes right after the detach began, long before the
        // peer's close_notify can arrive.
        let close = try resolve(channel.eventLoop.submit { channel.close() })
        try resolve(detach, timeout: 10, "the detach")
        try resolve(close, timeout: 10, "the close")
        XCTAssertFalse(channel.isActive, "the channel closed after the detach")
        try peer.join()
    }
}
