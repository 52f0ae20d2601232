import Foundation
@testable import OpenSSLStreams
import TestSupport
import XCTest

/// When a stream gives its buffers back (`SocketStream.releaseIdleBuffers(moved:reading:)`): after a
/// turn of a conversation, always; while a reader keeps waiting for a busy writer, seldom.
final class IdleReleaseTests: XCTestCase {
    /// The policy on a clock it is given: a reader whose release points come every 20 µs (a busy
    /// transfer) releases about once per 130 points; points 10 ms apart (a quiet stream) release each time.
    func testPolicySkipsBusyPointsAndNotQuietOnes() {
        var busy = IdleReleasePolicy()
        var clock: UInt64 = 1_000_000_000
        var released = 0
        for _ in 0..<10_000 {
            clock += 20_000
            if busy.shouldRelease(now: { clock }) { released += 1 }
        }
        XCTAssertGreaterThanOrEqual(released, 1, "the first point releases")
        XCTAssertLessThan(released, 100, "a busy reader releases seldom (without the backoff: 10,000)")

        var quiet = IdleReleasePolicy()
        released = 0
        for _ in 0..<100 {
            clock += 10_000_000
            if quiet.shouldRelease(now: { clock }) { released += 1 }
        }
        XCTAssertEqual(released, 100, "points further apart than the quiet time all release")

        // Straight after a busy spell the skips run out first; a quiet stream then releases each time.
        released = 0
        for _ in 0..<(2 * IdleReleasePolicy.maxSkips + 10) {
            clock += 10_000_000
            if busy.shouldRelease(now: { clock }) { released += 1 }
        }
        XCTAssertGreaterThan(released, IdleReleasePolicy.maxSkips, "a busy stream that goes quiet releases again")
    }

    /// A live request/response turn with a real TLS peer on loopback: when both ends are done, the
    /// client holds no buffer memory (its queues are given back, and OpenSSL's record buffers with
    /// `SSL_free_buffers`).
    func testStreamHoldsNoBuffersAfterATurn() throws {
        let pki = try Fixtures.pki
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let server = Background("echo server") {
            let s = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10,
                                        timeout: 10, readTimeout: 10, writeTimeout: 10)
            let line = try s.readLine()
            try s.writeLine("echo \(line ?? "")")
            XCTAssertNil(try s.readLine())
            try s.close()
        }
        let client = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                       security: .trusting(caFile: pki.caCert), readTimeout: 10, writeTimeout: 10)
        try client.writeLine("ping")
        XCTAssertEqual(try client.readLine(), "echo ping")
        XCTAssertGreaterThanOrEqual(client.idleReleases, 1)
        XCTAssertEqual(client.readBuffer.capacity, 0, "the plaintext read buffer was given back")
        XCTAssertEqual(client.writeBuffer.capacity, 0, "the plaintext write buffer was given back")
        let tls = try XCTUnwrap(client.tls)
        XCTAssertEqual(tls.buffers.input.capacity, 0, "the ciphertext input queue was given back")
        XCTAssertEqual(tls.buffers.output.capacity, 0, "the ciphertext output queue was given back")
        try client.close()
        try server.join(timeout: 30)
    }
}
