import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Session resumption: our server seen by `openssl s_client -reconnect`, our client cache against
/// `openssl s_server`, tickets on and off, the new-session callback, sessions saved as DER.
final class ToolboxSessionTests: XCTestCase {
    /// `openssl s_client -reconnect` connects six times; our server resumes the last five. (TLS 1.2:
    /// OpenSSL 3.0's `s_client -reconnect` does not wait for TLS 1.3 tickets, even against `s_server`;
    /// TLS 1.3 resumption is checked with our client below.)
    func testOpenSSLClientReconnectIsResumed() throws {
        for version in ["-tls1_2"] {
            let server = try Toolbox.serverContext()
            defer { destroySSLCtx(server) }
            server.setSessionCacheMode(.server)
            server.sessionCacheSize = 100
            XCTAssertEqual(server.sessionCacheSize, 100)
            try server.setSessionIDContext("toolbox-tests")
            let listener = try Fixtures.loopbackListener()
            defer { listener.close() }
            let reused = Recorder<Bool>()
            let (loop, _) = Toolbox.serve(server, on: listener, connections: 6, idle: 5) { stream in
                reused.append(stream.ssl?.isSessionReused ?? false)
                _ = try? stream.readToEnd()
            }
            let result = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-reconnect", version],
                                        timeout: 30, stdin: Data())
            try loop.join(timeout: 40)
            let reusedLines = result.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("Reused, ") }
            XCTAssertEqual(reusedLines.count, 5, "\(version): \(result.stdout)")
            XCTAssertEqual(reused.values, [false, true, true, true, true, true], version)
            XCTAssertEqual(server.sessionHits, 5, version)
        }
    }

    /// Our client cache (keyed by host:port) resumes TLS 1.3 and TLS 1.2 sessions with `openssl s_server -www`.
    func testClientSessionCacheWithOpenSSLServer() throws {
        let pki = try Fixtures.pki
        for version in ["-tls1_3", "-tls1_2"] {
            let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                                "-key", pki.serverKey, "-www", version])
            defer { peer.terminate() }
            let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
            let client = try Toolbox.clientContext()
            defer { destroySSLCtx(client) }
            let cache = ClientSessionCache(capacity: 4)
            cache.install(on: client)
            XCTAssertTrue(client.sessionCacheMode.contains(.client))
            let key = ClientSessionCache.key(host: "127.0.0.1", port: port)
            var reusedFlags: [Bool] = []
            var pages: [String] = []
            for _ in 0..<3 {
                var offered = false
                let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .context(client),
                                               sslConfigure: { offered = try cache.prepare($0, key: key) },
                                               handshakeTimeout: 10, hostName: "localhost", readTimeout: 10, writeTimeout: 10)
                try stream.write("GET / HTTP/1.0\r\n\r\n")
                try stream.flush()
                pages.append(String(decoding: try stream.readToEnd(), as: UTF8.self))  // tickets arrive with the data
                reusedFlags.append(stream.ssl?.isSessionReused ?? false)
                XCTAssertEqual(offered, reusedFlags.count > 1, "a session is offered from the second connection on")
                try? stream.close()
            }
            XCTAssertEqual(reusedFlags, [false, true, true], version)
            XCTAssertTrue(pages[0].contains("New, "), pages[0])
            XCTAssertTrue(pages[2].contains("Reused, "), pages[2])
            XCTAssertEqual(cache.count, 1)
            XCTAssertEqual(ClientSessionCache.key(host: "::1", port: 443), "[::1]:443")
        }
    }

    /// Between our ends: tickets off (stateful sessions from the server cache), the new-session callback
    /// on both sides, and a session saved as DER and read back.
    func testTicketsOffNewSessionCallbackAndDER() throws {
        let server = try Toolbox.serverContext(proto: .tlsV1_2)
        defer { destroySSLCtx(server) }
        server.setSessionTickets(enabled: false)
        try server.setSessionIDContext("toolbox")
        let serverSessions = Recorder<Int>()
        server.setNewSessionCallback { _, session in serverSessions.append(session.id.count) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        client.setSessionCacheMode(.client)
        let clientSessions = Recorder<SSLSession>()
        client.setNewSessionCallback { _, session in clientSessions.append(session) }

        var saved: [UInt8] = []
        let first = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            let session = try XCTUnwrap(stream.ssl?.session)
            XCTAssertTrue(session.isResumable)
            XCTAssertFalse(session.hasTicket, "tickets are off")
            XCTAssertEqual(session.id.count, 32)
            XCTAssertEqual(session.protocolVersion, TLS1_2_VERSION)
            saved = try session.der()
        })
        XCTAssertTrue(first.succeeded, Toolbox.message(first.clientError))
        XCTAssertEqual(serverSessions.values, [32])
        XCTAssertEqual(clientSessions.values.count, 1)

        let restored = try SSLSession(der: saved)
        XCTAssertEqual(try restored.der(), saved)
        let second = try Toolbox.connect(server: server, client: client, sslConfigure: { try $0.setSession(restored) }, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.isSessionReused, true)
        })
        XCTAssertTrue(second.succeeded, Toolbox.message(second.clientError))
        XCTAssertEqual(server.sessionHits, 1)
        XCTAssertThrowsError(try SSLSession(der: [1, 2, 3])) { XCTAssertEqual(($0 as? SSLError)?.call, "d2i_SSL_SESSION") }

        // With tickets on, the TLS 1.2 session carries a ticket.
        server.setSessionTickets(enabled: true)
        let third = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.session?.hasTicket, true)
        })
        XCTAssertTrue(third.succeeded, Toolbox.message(third.clientError))
        client.setNewSessionCallback(nil)
        server.setNewSessionCallback(nil)
    }
}
