import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Plain streams, our TLS client and server against each other, and against `openssl s_server` /
/// `openssl s_client`, over loopback: TLS 1.2 and 1.3, with and without client certificates.
final class OpenSSLPeerTests: XCTestCase {
    override func setUp() { clearOpenSSLErrors() }

    // MARK: Plain streams

    func testPlainRoundTripIPv4IPv6AndHostName() throws {
        for (listenHost, connectHost) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("127.0.0.1", "localhost")] {
            let listener = try listen(port: 0, host: listenHost)
            defer { listener.close() }
            XCTAssertGreaterThan(listener.port, 0)
            let server = Background("plain server") {
                let s = try listener.accept(timeout: 10, readTimeout: 10)
                defer { try? s.close() }
                while let line = try s.readLine() { try s.writeLine("echo: " + line) }
            }
            let client = try openTCPStream(host: connectHost, port: listener.port, connectTimeout: 5, readTimeout: 10)
            try client.writeLine("hello")
            XCTAssertEqual(try client.readLine(), "echo: hello")
            try client.write("first\nsecond\r\n")
            XCTAssertEqual(try client.readLine(), "echo: first")
            XCTAssertEqual(try client.readLine(), "echo: second")
            XCTAssertNil(client.ssl); XCTAssertNil(client.ctx); XCTAssertNil(client.sslSide)
            XCTAssertEqual(client.peerAddress?.hasSuffix(":\(listener.port)"), true, "\(client.peerAddress ?? "nil")")
            try client.close()
            try server.join()
        }
    }

    // MARK: Our client and our server

    func testOurClientAndServerTLS12And13() throws {
        let pki = try Fixtures.pki
        for proto in [SSLProtocol.tlsV1_2, .tlsV1_3] {
            let serverCtx = try Fixtures.serverContext(proto: proto)
            defer { destroySSLCtx(serverCtx) }
            let listener = try Fixtures.loopbackListener()
            defer { listener.close() }
            let server = Background("TLS server") {
                let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                defer { try? s.close() }
                XCTAssertEqual(s.sslSide, .server)
                while let line = try s.readLine() { try s.writeLine("echo: " + line) }
            }
            let client = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                           security: .trusting(caFile: pki.caCert), readTimeout: 10)
            let ssl = try XCTUnwrap(client.ssl)
            XCTAssertEqual(ssl.versionName, proto == .tlsV1_3 ? "TLSv1.3" : "TLSv1.2")
            XCTAssertEqual(client.sslSide, .client)
            XCTAssertEqual(COpenSSL.SSL_get_verify_result(ssl.rawValue), Int(COpenSSL.X509_V_OK))
            try client.writeLine("over TLS")
            XCTAssertEqual(try client.readLine(), "echo: over TLS")
            try client.close()
            try server.join()
        }
    }

    // MARK: openssl s_server

    /// Our client against `openssl s_server -rev` (it sends each line back reversed).
    func testClientAgainstOpenSSLServer() throws {
        let pki = try Fixtures.pki
        for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            for clientCertificate in [false, true] {
                var args = ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert, "-key", pki.serverKey,
                            version, "-rev", "-naccept", "1"]
                if clientCertificate { args += ["-Verify", "1", "-verifyCAfile", pki.caCert, "-verify_return_error"] }
                let peer = try BackgroundProcess(Fixtures.openssl, args)
                defer { peer.terminate() }
                let port = try XCTUnwrap(peer.acceptedPort(), "s_server: \(peer.errorOutput)")
                let stream = try openTCPStream(
                    host: "127.0.0.1", port: port, sslCtx: .default,
                    ctxConfigure: clientCertificate ? Fixtures.loadClientIdentity() : nil,
                    handshakeTimeout: 10, security: .trusting(caFile: pki.caCert), readTimeout: 10)
                XCTAssertEqual(stream.ssl?.versionName, name)
                try stream.writeLine("stressed")
                XCTAssertEqual(try stream.readLine(), "desserts", "s_server: \(peer.output) \(peer.errorOutput)")
                try stream.close()
                if clientCertificate {
                    XCTAssertTrue(peer.waitFor("test client", timeout: 5), "s_server saw no client certificate: \(peer.output)")
                }
            }
        }
    }

    /// A server that demands a client certificate refuses a client without one.
    func testOpenSSLServerRefusesClientWithoutCertificate() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey, "-tls1_3", "-rev", "-naccept", "1",
                                                            "-Verify", "1", "-verifyCAfile", pki.caCert, "-verify_return_error"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort())
        // TLS 1.3: the client learns of the refusal at its first read, not in its handshake.
        XCTAssertThrowsError(try {
            let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 10,
                                           security: .trusting(caFile: pki.caCert), readTimeout: 10)
            defer { try? stream.close() }
            try stream.writeLine("hello")
            _ = try stream.readLine()
        }()) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .failure, "\(error)")
            XCTAssertTrue(e?.reasons.contains { $0.contains("certificate required") } ?? false, "\(error)")
        }
    }

    // MARK: openssl s_client

    /// `openssl s_client` against our server, which reads one line and answers it.
    func testOpenSSLClientAgainstOurServer() throws {
        let pki = try Fixtures.pki
        for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            for clientCertificate in [false, true] {
                let serverCtx = try Fixtures.serverContext(requireClientCertificate: clientCertificate)
                defer { destroySSLCtx(serverCtx) }
                let listener = try Fixtures.loopbackListener()
                defer { listener.close() }
                let server = Background("TLS server") {
                    let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                    defer { try? s.close() }
                    let line = try s.readLine() ?? "(none)"
                    let ssl = try XCTUnwrap(s.ssl)
                    var subject = "-"
                    if let peerCert = SSL_get1_peer_certificate(ssl) {
                        var buffer = [CChar](repeating: 0, count: 256)
                        _ = X509_NAME_oneline(X509_get_subject_name(peerCert), &buffer, 256)
                        subject = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                        X509_free(peerCert)
                    }
                    try s.writeLine("\(ssl.versionName) got \(line) from \(subject)")
                }
                var args = ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-CAfile", pki.caCert,
                            "-verify_return_error", "-servername", "localhost", version, "-quiet"]
                if clientCertificate { args += ["-cert", pki.clientCert, "-key", pki.clientKey] }
                let result = try runProcess(Fixtures.openssl, args, timeout: 20, stdin: Data("ping\n".utf8))
                try server.join()
                let expectedSubject = clientCertificate ? "/CN=test client" : "-"
                XCTAssertTrue(result.stdout.contains("\(name) got ping from \(expectedSubject)"),
                              "stdout: \(result.stdout) stderr: \(result.stderr)")
            }
        }
    }
}
