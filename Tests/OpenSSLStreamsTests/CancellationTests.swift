import Foundation
import OpenSSLFLI
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport
import XCTest

/// Blocking calls end promptly when cancelled (Racket's `…/enable-break`) or when their stream or
/// listener is closed from another thread.
final class CancellationTests: XCTestCase {
    /// Runs `body` (which must block) and cancels after 0.3 s; it must end within 1.5 s with `expected`.
    private func assertEndsPromptly(_ expected: StreamError.Kind, file: StaticString = #filePath, line: UInt = #line,
                                    trigger: @escaping @Sendable () -> Void, _ body: () throws -> Void) {
        let fire = Background("trigger") { usleep(300_000); trigger() }
        let started = Date()
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual((error as? StreamError)?.kind, expected, "\(error)", file: file, line: line)
        }
        let took = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(took, 0.25, "it blocked first", file: file, line: line)
        XCTAssertLessThan(took, 1.5, file: file, line: line)
        _ = try? fire.join(timeout: 5)
    }

    func testAcceptEndsOnCancelAndOnClose() throws {
        let listener = try Fixtures.loopbackListener()
        let cancel = try CancelHandle()
        assertEndsPromptly(.cancelled, trigger: { cancel.cancel() }) { _ = try listener.accept(timeout: 10, cancel: cancel) }
        let shared = listener
        assertEndsPromptly(.closed, trigger: { shared.close() }) { _ = try listener.accept(timeout: 10) }
        XCTAssertTrue(listener.isClosed)
    }

    func testHandshakeAndReadEndOnCancelAndOnClose() throws {
        let silent = try Fixtures.loopbackListener()
        defer { silent.close() }
        // A handshake with a silent server, cancelled.
        let cancel = try CancelHandle()
        assertEndsPromptly(.cancelled, trigger: { cancel.cancel() }) {
            _ = try openTCPStream(host: "127.0.0.1", port: silent.port, sslCtx: .default, handshakeTimeout: 10, cancel: cancel)
        }
        // A plaintext read, ended by closing the stream from another thread.
        let stream = try openTCPStream(host: "127.0.0.1", port: silent.port)
        // Closing from another thread is the one call a stream takes from a second thread (it ends the read).
        nonisolated(unsafe) let shared = stream
        assertEndsPromptly(.closed, trigger: { try? shared.close() }) { _ = try stream.read(maxLength: 10) }
        XCTAssertTrue(stream.isClosed, "closed once the read returned")
        // The seeds' connect (ports over the socket).
        let cancel2 = try CancelHandle()
        assertEndsPromptly(.cancelled, trigger: { cancel2.cancel() }) {
            _ = try sslConnectEnableBreak(host: "127.0.0.1", port: silent.port, cancel: cancel2)
        }
    }

    func testSeedAcceptEndsOnCancel() throws {
        let listener = try sslListen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let cancel = try CancelHandle()
        assertEndsPromptly(.cancelled, trigger: { cancel.cancel() }) { _ = try sslAcceptEnableBreak(listener, cancel: cancel) }
    }
}
