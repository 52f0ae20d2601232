import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Key log, info and message callbacks, the exporter, OCSP stapling and PSK, with real peers.
final class ToolboxObserverTests: XCTestCase {
    // MARK: Key log

    /// Our server's key log lines are exactly those `openssl s_client -keylogfile` writes for the same
    /// connection (both ends know the same secrets), in the NSS format.
    func testKeylogMatchesOpenSSLClientKeylogFile() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let lines = Recorder<String>()
        server.setKeylogCallback { _, line in lines.append(line) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let (loop, _) = Toolbox.serve(server, on: listener, connections: 1) { stream in _ = try? stream.readToEnd() }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("keylog-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-keylogfile", file],
                                    timeout: 20, stdin: Data())
        try loop.join(timeout: 20)
        XCTAssertEqual(result.status, 0, result.stderr)
        let theirs = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        XCTAssertEqual(theirs.count, 5, "TLS 1.3: two handshake secrets, two traffic secrets, the exporter secret")
        XCTAssertEqual(Set(lines.values), Set(theirs))
        let format = try NSRegularExpression(pattern: "^[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64,96}$")
        for line in lines.values {
            XCTAssertNotNil(format.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)), line)
        }
    }

    /// Off unless set: `SSLKEYLOGFILE` in the environment writes nothing; `writeKeylog(toFile:)` writes
    /// (mode 0600) only when called.
    func testKeylogIsOffUnlessSet() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keylog-env-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        setenv("SSLKEYLOGFILE", dir + "/env.txt", 1)
        defer { unsetenv("SSLKEYLOGFILE") }
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        XCTAssertTrue(try Toolbox.connect(server: server, client: client).succeeded)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/env.txt"))
        try client.writeKeylog(toFile: dir + "/explicit.txt")
        XCTAssertTrue(try Toolbox.connect(server: server, client: client).succeeded)
        let text = try String(contentsOfFile: dir + "/explicit.txt", encoding: .utf8)
        XCTAssertEqual(text.split(separator: "\n").count, 5)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/explicit.txt")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        client.setKeylogCallback(nil)
        XCTAssertThrowsError(try client.writeKeylog(toFile: dir + "/no/such/dir/file")) { XCTAssertEqual(($0 as? SSLError)?.errno, ENOENT) }
    }

    // MARK: Info, message, exporter

    func testInfoAndMessageCallbacks() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let serverEvents = Recorder<SSLInfoEvent>()
        let clientEvents = Recorder<SSLInfoEvent>()
        server.setInfoCallback { _, event in serverEvents.append(event) }
        let messages = Recorder<SSLProtocolMessage>()
        client.setMessageCallback { _, message in messages.append(message) }
        let ok = try Toolbox.connect(server: server, client: client, sslConfigure: { ssl in
            ssl.setInfoCallback { _, event in clientEvents.append(event) }
        })
        XCTAssertTrue(ok.succeeded, Toolbox.message(ok.clientError))
        for events in [serverEvents.values, clientEvents.values] {
            XCTAssertTrue(events.contains(where: \.isHandshakeStart), "\(events)")
            XCTAssertTrue(events.contains(where: \.isHandshakeDone), "\(events)")
        }
        let handshake = messages.values.compactMap { m in m.handshakeType.map { (m.sent, $0) } }
        XCTAssertEqual(handshake.first.map { "\($0.0) \($0.1)" }, "true 1", "the client first sends a ClientHello")
        XCTAssertTrue(handshake.contains { !$0.0 && $0.1 == 2 }, "and receives a ServerHello: \(handshake)")
        XCTAssertTrue(handshake.contains { !$0.0 && $0.1 == 11 }, "and the server's Certificate")

        // A client that does not trust the server sends an alert; the server's info callback reads it.
        let untrusting = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(untrusting) }
        setVerificationMode(untrusting, side: .client, mode: .always)
        _ = try Toolbox.connect(server: server, client: untrusting)
        let alerts = serverEvents.values.filter(\.isAlert)
        XCTAssertTrue(alerts.contains { $0.isRead && $0.alertType == "fatal" && $0.alertDescription == "unknown CA" }, "\(alerts)")
        server.setInfoCallback(nil)
        client.setMessageCallback(nil)
    }

    func testKeyingMaterialExporterMatchesOnBothEnds() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let serverSide = Recorder<[UInt8]>()
        var clientSide: [[UInt8]] = []
        let outcome = try Toolbox.connect(server: server, client: client, serverBody: { stream in
            let ssl = try XCTUnwrap(stream.ssl)
            serverSide.append(try ssl.exportKeyingMaterial(label: "EXPERIMENTAL-fli", context: [1, 2, 3], length: 32))
            serverSide.append(try ssl.exportKeyingMaterial(label: "EXPERIMENTAL-fli", length: 32))
        }) { stream in
            let ssl = try XCTUnwrap(stream.ssl)
            clientSide.append(try ssl.exportKeyingMaterial(label: "EXPERIMENTAL-fli", context: [1, 2, 3], length: 32))
            clientSide.append(try ssl.exportKeyingMaterial(label: "EXPERIMENTAL-fli", length: 32))
            clientSide.append(try ssl.exportKeyingMaterial(label: "EXPERIMENTAL-other", length: 32))
            XCTAssertThrowsError(try ssl.exportKeyingMaterial(label: "x", length: 0))
        }
        XCTAssertTrue(outcome.succeeded, Toolbox.message(outcome.clientError))
        XCTAssertEqual(serverSide.values, Array(clientSide.prefix(2)))
        XCTAssertEqual(clientSide[0].count, 32)
        XCTAssertNotEqual(clientSide[0], clientSide[2])
        let fresh = try sslNew(client)
        defer { destroySSL(fresh) }
        XCTAssertThrowsError(try fresh.exportKeyingMaterial(label: "EXPERIMENTAL-fli", length: 16), "no handshake yet")
    }

    // MARK: OCSP

    /// An OCSP response for the test server certificate, made by `openssl ocsp` acting as the CA's responder.
    func makeOCSPResponse() throws -> [UInt8] {
        let pki = try Fixtures.pki
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocsp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let leaf = try Certificate(pem: String(contentsOfFile: pki.serverCert, encoding: .utf8))
        let formatter = DateFormatter()
        formatter.dateFormat = "yyMMddHHmmss'Z'"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let expiry = formatter.string(from: try XCTUnwrap(leaf.notAfter))
        try "V\t\(expiry)\t\t\(leaf.serialNumber)\tunknown\t/CN=localhost\n".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        let request = try runProcess(Fixtures.openssl, ["ocsp", "-issuer", pki.caCert, "-cert", pki.serverCert, "-no_nonce",
                                                        "-reqout", dir + "/req.der"], timeout: 20)
        XCTAssertEqual(request.status, 0, request.stderr)
        let response = try runProcess(Fixtures.openssl, ["ocsp", "-index", dir + "/index.txt", "-rsigner", pki.caCert, "-rkey", pki.caKey,
                                                         "-CA", pki.caCert, "-reqin", dir + "/req.der", "-respout", dir + "/resp.der",
                                                         "-ndays", "1"], timeout: 20)
        XCTAssertEqual(response.status, 0, response.stderr)
        return Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/resp.der")))
    }

    func testStapledOCSPResponseReadByOpenSSLClient() throws {
        let der = try makeOCSPResponse()
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        server.setStapledOCSPResponse(der)
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let (loop, _) = Toolbox.serve(server, on: listener, connections: 1) { stream in _ = try? stream.readToEnd() }
        let result = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-status"],
                                    timeout: 20, stdin: Data())
        try loop.join(timeout: 20)
        XCTAssertTrue(result.stdout.contains("OCSP Response Status: successful"), result.stdout)
        XCTAssertTrue(result.stdout.contains("Cert Status: good"), result.stdout)
    }

    func testOurClientRequestsAndChecksTheStapledResponse() throws {
        let der = try makeOCSPResponse()
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let seen = Recorder<[UInt8]?>()
        try client.requestOCSPStatus { _, response in seen.append(response); return true }

        let unstapled = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue(unstapled.succeeded, Toolbox.message(unstapled.clientError))
        XCTAssertEqual(seen.values.count, 1)
        XCTAssertNil(seen.values.first ?? [0])

        let asked = Recorder<Bool>()
        server.setOCSPResponder { _ in asked.append(true); return der }
        let stapled = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.ocspResponse, der)
        })
        XCTAssertTrue(stapled.succeeded, Toolbox.message(stapled.clientError))
        XCTAssertEqual(seen.values.last ?? nil, der)
        XCTAssertEqual(asked.values.count, 1)

        try client.requestOCSPStatus { _, _ in false }
        let refused = try Toolbox.connect(server: server, client: client)
        XCTAssertNotNil(refused.clientError)
        try client.requestOCSPStatus { _, _ in throw CallbackRefusal(reason: "revoked by policy") }
        let thrown = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(thrown.clientError as? CallbackRefusal, CallbackRefusal(reason: "revoked by policy"), Toolbox.message(thrown.clientError))
        server.setOCSPResponder { _ in throw CallbackRefusal(reason: "responder down") }
        let serverThrows = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(serverThrows.serverError as? CallbackRefusal, CallbackRefusal(reason: "responder down"), Toolbox.message(serverThrows.serverError))
        server.setOCSPResponder(nil)
    }

    // MARK: PSK

    static let pskHex = "00112233445566778899aabbccddeeff"
    static let pskKey: [UInt8] = stride(from: 0, to: pskHex.count, by: 2).map { i in
        let start = pskHex.index(pskHex.startIndex, offsetBy: i)
        return UInt8(pskHex[start..<pskHex.index(start, offsetBy: 2)], radix: 16)!
    }

    /// Our client with a PSK (TLS 1.3 external PSK, and a TLS 1.2 PSK cipher suite) against
    /// `openssl s_server -psk -nocert -rev`.
    func testPSKClientWithOpenSSLServer() throws {
        for (version, extra, expectedCipher) in [("-tls1_3", [String](), "TLS_AES_128_GCM_SHA256"),
                                                 ("-tls1_2", ["-cipher", "PSK-AES128-GCM-SHA256", "-psk_hint", "fli-hint"], "PSK-AES128-GCM-SHA256")] {
            let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-nocert", "-psk", Self.pskHex,
                                                                "-psk_identity", "fli-client", "-rev", version] + extra)
            defer { peer.terminate() }
            let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
            let client = try makeSSLCtx(protocol: version == "-tls1_3" ? .tlsV1_3 : .tlsV1_2, side: .client)
            defer { destroySSLCtx(client) }
            if version == "-tls1_2" { try client.setCipherList("PSK-AES128-GCM-SHA256") }
            let hints = Recorder<String>()
            client.setPSKClientCallback { _, hint in
                hints.append(hint ?? "(none)")
                return SSLPreSharedKey(identity: "fli-client", key: Self.pskKey)
            }
            let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .context(client), handshakeTimeout: 10,
                                           readTimeout: 10, writeTimeout: 10)
            try stream.writeLine("hello psk", ending: "\n")
            try stream.flush()
            XCTAssertEqual(try stream.readLine(), "ksp olleh", version)
            // TLS 1.3: the server picks any suite with the PSK's hash (SHA-256).
            XCTAssertTrue(version == "-tls1_3" ? stream.ssl?.cipherName?.hasSuffix("_SHA256") == true : stream.ssl?.cipherName == expectedCipher,
                          "\(stream.ssl?.cipherName ?? "-")")
            XCTAssertNil(stream.ssl?.peerCertificate, "no certificate with PSK")
            try? stream.close()
            if version == "-tls1_2" { XCTAssertEqual(hints.values, ["fli-hint"]) }
        }
    }

    /// Our server with a PSK lookup, for `openssl s_client -psk` and for our client; unknown identities
    /// and wrong keys fail; a throwing lookup fails with its error.
    func testPSKServerWithOpenSSLClientAndOurs() throws {
        let server = try makeSSLCtx(protocol: .tlsV1_3, side: .server)
        defer { destroySSLCtx(server) }
        let identities = Recorder<String>()
        server.setPSKServerCallback { _, identity in
            identities.append(identity)
            if identity == "bad" { throw CallbackRefusal(reason: "identity banned") }
            return identity == "fli-client" ? Self.pskKey : nil
        }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let received = Recorder<String>()
        let (loop, _) = Toolbox.serve(server, on: listener, connections: 1) { stream in
            received.append(try stream.readLine() ?? "")
        }
        let result = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-psk", Self.pskHex,
                                                       "-psk_identity", "fli-client", "-tls1_3"],
                                    timeout: 20, stdin: Data("from s_client\n".utf8))
        try loop.join(timeout: 20)
        XCTAssertEqual(received.values, ["from s_client"], result.stdout + result.stderr)
        XCTAssertEqual(identities.values, ["fli-client"])

        let client = try makeSSLCtx(protocol: .tlsV1_3, side: .client)
        defer { destroySSLCtx(client) }
        let identity = Locked("fli-client"), key = Locked(Self.pskKey)
        client.setPSKClientCallback { _, _ in SSLPreSharedKey(identity: identity.value, key: key.value) }
        let good = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.cipherName?.hasSuffix("_SHA256"), true)
            XCTAssertEqual(stream.ssl?.isSessionReused, true, "an external PSK handshake counts as resumed")
        })
        XCTAssertTrue(good.succeeded, "\(Toolbox.message(good.clientError)) / \(Toolbox.message(good.serverError))")
        identity.value = "stranger"
        XCTAssertNotNil(try Toolbox.connect(server: server, client: client).clientError, "unknown identity, no certificate: refused")
        identity.value = "fli-client"; key.value = Array(repeating: 7, count: 16)
        XCTAssertNotNil(try Toolbox.connect(server: server, client: client).clientError, "wrong key: refused")
        identity.value = "bad"
        let banned = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(banned.serverError as? CallbackRefusal, CallbackRefusal(reason: "identity banned"), Toolbox.message(banned.serverError))
        client.setPSKClientCallback { _, _ in throw CallbackRefusal(reason: "no key today") }
        let noKey = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(noKey.clientError as? CallbackRefusal, CallbackRefusal(reason: "no key today"), Toolbox.message(noKey.clientError))
        client.setPSKClientCallback { _, _ in SSLPreSharedKey(identity: "x", key: [1], tls13Cipher: "TLS_NOPE") }
        XCTAssertTrue(Toolbox.message(try Toolbox.connect(server: server, client: client).clientError).contains("TLS_NOPE"))
    }
}
