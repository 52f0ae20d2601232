import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// More hostile peers: slow-loris handshakes, TLS 1.0-only servers, renegotiation, resets during
/// detach, oversized records, truncation in the middle of a record.
final class HostilePeerTests: XCTestCase {
    /// A ClientHello captured from our own client (bytes a real client sends first).
    func clientHello() throws -> [UInt8] {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Box: @unchecked Sendable { var bytes: [UInt8] = [] }  // written by the background thread, read after it was joined
        let box = Box()
        let keep = Background("capture") {
            let stream = try listener.accept(timeout: 10, readTimeout: 5)
            box.bytes = try stream.read(maxLength: 64 * 1024)
            try stream.close()
        }
        _ = try? openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .default, handshakeTimeout: 0.5, security: .insecure)
        try keep.join()
        XCTAssertEqual(box.bytes.first, 22, "a handshake record")
        return box.bytes
    }

    /// A client that sends a real ClientHello one byte every 100 ms: the server's handshake timeout is
    /// a total, not per byte, so it still ends on time.
    func testSlowLorisHandshakeHitsTheTotalTimeout() throws {
        let hello = try clientHello()
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let trickle = Background("slow loris") {
            let stream = try openTCPStream(host: "127.0.0.1", port: listener.port, writeTimeout: 5)
            for byte in hello.prefix(40) {
                guard (try? stream.write([byte])) != nil, (try? stream.flush()) != nil else { break }
                usleep(100_000)
            }
            try? stream.close()
        }
        let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 1, timeout: 10)
        let started = Date()
        XCTAssertThrowsError(try stream.handshake(timeout: 1)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .handshakeTimeout, "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
        try? stream.close()
        try trickle.join()
    }

    /// A server that speaks only TLS 1.0 is refused by a default client; our server refuses a TLS 1.0 client.
    func testTLS10OnlyPeersAreRefused() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert, "-key", pki.serverKey,
                                                            "-tls1", "-cipher", "ALL:@SECLEVEL=0"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 5, hostName: "localhost",
                                               security: try Fixtures.trustTestCA)) { error in
            let reasons = (error as? SSLError)?.reasons ?? []
            XCTAssertTrue(reasons.contains { $0.contains("unsupported protocol") || $0.contains("protocol version") }, "\(error)")
        }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        try server.setProtocolVersions(minimum: .tls1_2)
        let refused = Recorder<String>()
        let acceptor = Background("accept") {
            let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 5, timeout: 10)
            do { try stream.handshake(timeout: 5) } catch { refused.append("\(error)") }
            try? stream.close()
        }
        _ = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-tls1", "-cipher", "ALL:@SECLEVEL=0"],
                           timeout: 20, stdin: Data())
        try acceptor.join()
        XCTAssertEqual(refused.values.count, 1)
        XCTAssertTrue(refused.values.first?.contains("unsupported protocol") ?? false, "\(refused.values)")
    }

    /// `openssl s_client` asks to renegotiate ("R"): our server, with renegotiation off, refuses it and
    /// the connection goes on (or ends cleanly) without losing data that came before.
    func testClientRenegotiationIsRefusedWithNoRenegotiation() throws {
        let pki = try Fixtures.pki
        let server = try Toolbox.serverContext(proto: .tlsV1_2)
        defer { destroySSLCtx(server) }
        setSSLCtxOptions(server, options: [.noRenegotiation])
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let lines = Recorder<String>()
        let acceptor = Background("accept") {
            let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 5, timeout: 10, readTimeout: 10)
            do {
                while let line = try stream.readLine() { lines.append(line) }
            } catch {
                lines.append("error: \(error)")
            }
            try? stream.close()
        }
        let client = try BackgroundProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-CAfile", pki.caCert,
                                                              "-tls1_2", "-no_ign_eof"])
        defer { client.terminate() }
        XCTAssertTrue(client.waitFor("Verify return code", timeout: 10), client.output)
        client.write("before\n")
        client.write("R\n")  // s_client: renegotiate
        _ = client.waitFor(timeout: 5) { out, err in out.contains("RENEGOTIATING") || err.contains("RENEGOTIATING") }
        client.write("after\n")
        client.closeInput()
        _ = client.waitForExit(timeout: 10)
        try acceptor.join()
        XCTAssertEqual(lines.values.first, "before", "\(lines.values)")
        XCTAssertFalse(lines.values.contains { $0.contains("renegotiat") && !$0.hasPrefix("error") }, "\(lines.values)")
    }

    /// The peer resets the connection while we wait for its close_notify in detach: detach throws a
    /// socket-level error, TLS is off, and closing the stream works.
    func testResetDuringDetach() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let peer = Background("resetting peer") {
            let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 5, timeout: 10)
            try stream.handshake(timeout: 5)
            _ = try stream.readLine()
            // Abort: SO_LINGER 0 turns close into a reset.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(stream.fileDescriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            Glibc.close(dup(stream.fileDescriptor))  // keep the stream's own descriptor valid
            shutdown(stream.fileDescriptor, Int32(SHUT_RDWR))
            try? stream.close()
        }
        let stream = try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .context(client), handshakeTimeout: 5,
                                       hostName: "localhost", readTimeout: 5, writeTimeout: 5)
        try stream.writeLine("going")
        try stream.flush()
        try peer.join()
        XCTAssertThrowsError(try stream.detachSSL(retryCount: 2, retryTimeout: 0.5)) { error in
            XCTAssertTrue(error is SSLError || error is SocketError, "\(error)")
        }
        XCTAssertFalse(stream.isSSLAttached, "TLS is off after a failed detach")
        XCTAssertNoThrow(try stream.close())
    }

    /// A record header announcing more than TLS allows: a failure with OpenSSL's reason, no allocation
    /// of the announced size. And EOF in the middle of a record is not a clean end.
    func testOversizedRecordAndTruncationMidRecord() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        for (label, bytes) in [("oversized", [22, 3, 3, 0xFF, 0xFF] + [UInt8](repeating: 1, count: 1024)),
                               ("truncated", Array((try clientHello()).prefix(60)))] as [(String, [UInt8])] {
            let listener = try Fixtures.loopbackListener()
            defer { listener.close() }
            let sender = Background(label) {
                let stream = try openTCPStream(host: "127.0.0.1", port: listener.port, writeTimeout: 5)
                try stream.write(bytes)
                try stream.flush()
                if label == "truncated" { try stream.close() } else { usleep(500_000); try? stream.close() }
            }
            let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 5, timeout: 10)
            XCTAssertThrowsError(try stream.handshake(timeout: 5), label) { error in
                let error = error as? SSLError
                if label == "oversized" {
                    XCTAssertEqual(error?.kind, .failure, "\(String(describing: error))")
                    XCTAssertTrue(error?.reasons.contains { $0.contains("too long") || $0.contains("length") } ?? false, "\(String(describing: error))")
                } else {
                    XCTAssertEqual(error?.isUnexpectedEOF, true, "\(String(describing: error))")
                }
            }
            try? stream.close()
            try sender.join()
        }
    }
}
