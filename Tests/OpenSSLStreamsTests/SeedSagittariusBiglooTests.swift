import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport
import XCTest

/// Sagittarius' `(rfc tls)` sockets and Bigloo's SSL sockets.
final class SeedSagittariusBiglooTests: XCTestCase {
    var pki: TestPKI { get throws { try Fixtures.pki } }

    func file(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    // MARK: Sagittarius

    /// `handshake: false`, then an explicit client handshake, against `openssl s_server -rev`; the
    /// verifier sees depth 1 then 0 of the CA → leaf chain, and can reject.
    func testSagittariusClientDeferredHandshakeAndVerifier() throws {
        let pki = try pki
        // The server sends its chain (leaf, then the CA), so the client sees depth 1 without trusting it.
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey, "-cert_chain", pki.caCert, "-rev"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        let caDER = try Certificate(pem: file(pki.caCert)).der()
        let seen = Recorder<(Int, Int32?, Bool)>()
        let socket = try makeClientTLSSocket(host: "127.0.0.1", port: port, handshake: false, certificateVerifier: { depth, error, der in
            seen.append((depth, error, der == caDER))
            return depth == 0 || der == caDER  // accept the chain of our CA
        })
        XCTAssertNil(socket.info.version, "no handshake yet")
        try tlsClientHandshake(socket, timeout: 10)
        // OpenSSL calls once per certificate, root first, and once more for each error found.
        XCTAssertEqual(seen.values.first?.0, 1)
        XCTAssertEqual(seen.values.last?.0, 0)
        XCTAssertEqual(Set(seen.values.map(\.0)), [0, 1])
        XCTAssertTrue(seen.values[0].2, "depth 1 is the CA")
        XCTAssertEqual(seen.values[0].1, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, "the system store does not know the test CA")
        XCTAssertTrue(seen.values.last.map { $0.1 == nil } ?? false, "the leaf itself verifies once its issuer is accepted")
        XCTAssertEqual(socket.info.version, .tls1_3)
        XCTAssertEqual(socket.info.version?.rawValue, 0x0304)
        XCTAssertEqual(TLSVersion.tls1_0.rawValue, 0x0301)
        XCTAssertGreaterThan(socket.info.cipherBits, 0)
        XCTAssertEqual(socket.info.peerSubject, "CN=localhost")
        XCTAssertEqual(socket.peer, "127.0.0.1:\(port)")
        XCTAssertNotNil(socket.name)
        XCTAssertEqual(try socket.send(Array("sagittarius\n".utf8)), 12)
        XCTAssertEqual(try socket.receive(5, flags: .peek), Array("suira".utf8))
        XCTAssertEqual(try socket.receive(12, flags: .waitAll), Array("suirattigas\n".utf8))
        XCTAssertEqual(try socket.receive(10, flags: .dontWait), [], "nothing more is there")
        XCTAssertThrowsError(try socket.receive(1, flags: TLSMessageFlags(rawValue: Int32(MSG_OOB))))
        XCTAssertFalse(socket.isClosed)
        try socket.close()
        XCTAssertTrue(socket.isClosed)

        // A verifier that rejects, and one that throws.
        XCTAssertThrowsError(try makeClientTLSSocket(host: "127.0.0.1", port: port, certificateVerifier: { depth, _, _ in depth != 0 })) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .verificationFailure, "\(error)")
        }
        XCTAssertThrowsError(try makeClientTLSSocket(host: "127.0.0.1", port: port, certificateVerifier: { _, _, _ in
            throw CallbackRefusal(reason: "verifier failed")
        })) { error in
            XCTAssertEqual(error as? CallbackRefusal, CallbackRefusal(reason: "verifier failed"))
        }
    }

    /// A server socket with `authorities`: `openssl s_client` is asked for a certificate from that CA
    /// (it prints the name); a deferred server handshake; `raiseError: false` gives nil for a bad client.
    func testSagittariusServerAuthoritiesDeferredHandshakeAndRaiseError() throws {
        let pki = try pki
        let server = try makeServerTLSSocket(port: 0, certificates: [try Certificate(pem: file(pki.serverCert))],
                                             privateKey: try PrivateKey(pem: file(pki.serverKey)),
                                             authorities: [try Certificate(pem: file(pki.caCert))], host: "127.0.0.1")
        defer { server.close() }
        let got = Recorder<String>()
        let acceptor = Background("accept") {
            guard let socket = try tlsServerSocketAccept(server, handshake: false, timeout: 10) else { return }
            try socket.handshake(timeout: 10)
            got.append(socket.info.peerSubject ?? "(no client certificate)")
            got.append(String(decoding: try socket.receive(100), as: UTF8.self))
            let input = socket.inputPort(closesSocket: false)
            try input.closeReading()
            XCTAssertFalse(socket.isClosed, "a view that does not close the socket")
            let output = socket.outputPort(closesSocket: true)
            try output.writeAll(Array("bye\n".utf8))
            try output.closeWriting()
            got.append(socket.isClosed ? "closed" : "open")
        }
        let client = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", pki.caCert,
                                                       "-cert", pki.clientCert, "-key", pki.clientKey, "-ign_eof", "-nameopt", "RFC2253"],
                                    timeout: 20, stdin: Data("hello server\n".utf8))
        try acceptor.join()
        XCTAssertTrue(client.stdout.contains("Acceptable client certificate CA names") && client.stdout.contains("CN=swift-openssl-fli test CA"),
                      client.stdout)
        XCTAssertTrue(client.stdout.contains("bye"), client.stdout)
        XCTAssertEqual(got.values, ["CN=test client", "hello server\n", "closed"])

        // A client that speaks no TLS: with raiseError false, nil.
        let quiet = Background("accept garbage") {
            got.append(try tlsServerSocketAccept(server, raiseError: false, timeout: 10, handshakeTimeout: 5) == nil ? "nil" : "socket")
        }
        let garbage = try openTCPStream(host: "127.0.0.1", port: server.port, readTimeout: 5)
        try garbage.write("GET / HTTP/1.0\r\n\r\n")
        try garbage.flush()
        try quiet.join()
        try? garbage.close()
        XCTAssertEqual(got.values.last, "nil")
    }

    func testSagittariusBadInput() throws {
        let pki = try pki
        let before = SeedByteStreamTests.openDescriptorCount()
        let cert = try Certificate(pem: file(pki.serverCert))
        XCTAssertThrowsError(try makeClientTLSSocket(host: "", port: 443)) { XCTAssertTrue("\($0)".contains("host name is empty")) }
        XCTAssertThrowsError(try makeClientTLSSocket(host: "localhost", port: 0)) { XCTAssertTrue("\($0)".contains("out of range")) }
        XCTAssertThrowsError(try makeClientTLSSocket(host: "localhost", port: 1, certificates: [cert])) {
            XCTAssertTrue("\($0)".contains("go together"))
        }
        XCTAssertThrowsError(try makeServerTLSSocket(port: 70000, certificates: [cert], privateKey: try PrivateKey.generateEC()))
        XCTAssertThrowsError(try makeServerTLSSocket(port: 0, certificates: [cert], privateKey: try PrivateKey.generateEC())) { error in
            XCTAssertTrue("\(error)".contains("does not match") || "\(error)".contains("values mismatch"), "\(error)")
        }
        XCTAssertEqual(SeedByteStreamTests.openDescriptorCount(), before)
    }

    // MARK: Bigloo

    /// A server certificate signed by a trusted CA but not the pinned one is refused; the pinned one is
    /// accepted; `CAs` alone verifies against the in-memory list.
    func testBiglooPinningAndInMemoryCAs() throws {
        let pki = try pki
        let ca = try readCertificate(pki.caCert)
        let serverCert = try readCertificate(pki.serverCert)
        let serverKey = try readPrivateKey(pki.serverKey)
        let server = try makeSSLServerSocket(port: 0, name: "127.0.0.1", cert: serverCert, pkey: serverKey)
        defer { server.close() }
        let loop = Background("bigloo server") {
            for _ in 0..<4 {
                guard let socket = try? server.accept(timeout: 10, handshakeTimeout: 10) else { continue }
                if let line = try? socket.readLine() { try? socket.write(line.uppercased() + "\n"); try? socket.flush() }
                try? socket.close()
            }
        }
        // CAs: verification on, against the list only.
        let verified = try makeSSLClientSocket(host: "localhost", port: server.port, buffer: .unbuffered, timeout: 10, CAs: [ca])
        try verified.write("unbuffered\n")  // no flush needed
        XCTAssertEqual(try verified.readLine(), "UNBUFFERED")
        XCTAssertEqual(verified.peerCertificate?.subject, "CN=localhost")
        try verified.close()
        // Pinned to another certificate signed by the same trusted CA: refused.
        let other = try readCertificate(pki.wrongHostCert)
        XCTAssertThrowsError(try makeSSLClientSocket(host: "localhost", port: server.port, timeout: 10, CAs: [ca], acceptedCerts: [other])) { error in
            XCTAssertTrue("\(error)".contains("not one of the accepted certificates"), "\(error)")
        }
        // Pinned to the server's own certificate (no CA needed: the pin is the identity).
        let pinned = try makeSSLClientSocket(host: "127.0.0.1", port: server.port, buffer: .size(1024), timeout: 10, acceptedCerts: [serverCert])
        try pinned.write("pinned\n")
        try pinned.flush()
        XCTAssertEqual(try pinned.readLine(), "PINNED")
        try pinned.close()
        // An untrusted server for a client with CAs: refused by verification.
        XCTAssertThrowsError(try makeSSLClientSocket(host: "localhost", port: server.port, timeout: 10, CAs: [try readCertificate(pki.untrustedCACert)]))
        try loop.join(timeout: 60)
    }

    /// A plain client socket upgraded with client-socket-use-ssl! after a plaintext exchange; a server
    /// with CAs requires (and checks) the client certificate at accept.
    func testBiglooUpgradeAndClientCertificatesCheckedAtAccept() throws {
        let pki = try pki
        let ca = try readCertificate(pki.caCert)
        let server = try makeSSLServerSocket(port: 0, name: "127.0.0.1", cert: try readCertificate(pki.serverCert),
                                             pkey: try readPrivateKey(pki.serverKey), CAs: [ca])
        defer { server.close() }
        let subjects = Recorder<String>()
        let loop = Background("bigloo server") {
            for _ in 0..<2 {
                do {
                    let socket = try server.accept(timeout: 10)
                    subjects.append(socket.peerCertificate?.subject ?? "none")
                    try socket.close()
                } catch {
                    subjects.append("refused")
                }
            }
        }
        let noCert = try makeClientSocket(host: "127.0.0.1", port: server.port, timeout: 10)
        XCTAssertNil(noCert.ssl)
        _ = try? clientSocketUseSSL(noCert, CAs: [ca], timeout: 10)  // TLS 1.3: the refusal may come after the client's handshake
        _ = try? noCert.read(maxLength: 10)
        try? noCert.close()
        let withCert = try makeSSLClientSocket(host: "localhost", port: server.port, timeout: 10,
                                               cert: try readCertificate(pki.clientCert), pkey: try readPrivateKey(pki.clientKey), CAs: [ca])
        _ = try? withCert.read(maxLength: 10)
        try? withCert.close()
        try loop.join(timeout: 30)
        XCTAssertEqual(subjects.values, ["refused", "CN=test client"])
    }

    func testBiglooBadInputAndReaders() throws {
        let pki = try pki
        let before = SeedByteStreamTests.openDescriptorCount()
        let cert = try readCertificate(pki.serverCert)
        XCTAssertThrowsError(try makeSSLClientSocket(host: "localhost", port: 443, cert: cert)) { XCTAssertTrue("\($0)".contains("both or neither")) }
        XCTAssertThrowsError(try makeSSLClientSocket(host: "", port: 443)) { XCTAssertTrue("\($0)".contains("host name is empty")) }
        XCTAssertThrowsError(try makeSSLClientSocket(host: "localhost", port: 65536))
        XCTAssertThrowsError(try makeSSLServerSocket(port: 0, cert: cert, pkey: try readPrivateKey(pki.otherKey))) {
            XCTAssertTrue("\($0)".contains("not the private key"))
        }
        XCTAssertThrowsError(try readCertificate(pki.missing)) { XCTAssertEqual(($0 as? SSLError)?.errno, ENOENT) }
        XCTAssertThrowsError(try readPEMFile(pki.garbagePEM)) { XCTAssertEqual(($0 as? SSLError)?.file, pki.garbagePEM) }
        XCTAssertThrowsError(try readPrivateKey(pki.encryptedKey, passphrase: "wrong"))
        XCTAssertNoThrow(try readPrivateKey(pki.encryptedKey, passphrase: pki.encryptedKeyPassword))
        let bundle = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString).pem").path
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try (file(pki.serverCert) + file(pki.caCert)).write(toFile: bundle, atomically: true, encoding: .utf8)
        XCTAssertEqual(try readPEMFile(bundle).map(\.subject), ["CN=localhost", "CN=swift-openssl-fli test CA"])
        // Refused connection: no socket left behind.
        let closed = try listen(port: 0, host: "127.0.0.1")
        let port = closed.port
        closed.close()
        XCTAssertThrowsError(try makeSSLClientSocket(host: "127.0.0.1", port: port, timeout: 5))
        XCTAssertEqual(SeedByteStreamTests.openDescriptorCount(), before)
    }
}
