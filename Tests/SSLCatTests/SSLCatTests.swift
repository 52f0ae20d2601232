import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// `sslcat` run as a process, against real peers (`openssl s_server`, `openssl s_client`) on loopback.
final class SSLCatTests: XCTestCase {
    /// The built `sslcat` (next to the test bundle).
    static var sslcat: String {
        let bundle = Bundle(for: SSLCatTests.self).bundleURL
        // Linux: the bundle is the build directory; elsewhere the .xctest sits in it.
        for dir in [bundle, bundle.deletingLastPathComponent()] {
            let path = dir.appendingPathComponent("sslcat").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return bundle.appendingPathComponent("sslcat").path
    }

    static let openssl = "/usr/bin/openssl"

    func run(_ arguments: [String], stdin: String? = nil, timeout: TimeInterval = 60) throws -> ProcessResult {
        try runProcess(Self.sslcat, arguments, timeout: timeout, stdin: stdin.map { Data($0.utf8) })
    }

    /// The port in sslcat's "listening on 127.0.0.1:PORT" line.
    func listeningPort(_ process: BackgroundProcess) throws -> Int { try Self.listeningPort(process) }

    /// The port in sslcat's "listening on 127.0.0.1:PORT" line.
    static func listeningPort(_ process: BackgroundProcess) throws -> Int {
        var port: Int?
        process.waitFor(timeout: 20) { _, err in
            guard let line = err.split(separator: "\n").first(where: { $0.contains("listening on") }),
                  let p = line.split(separator: ":").last.flatMap({ Int($0) }) else { return false }
            port = p
            return true
        }
        return try XCTUnwrap(port, "no listening line: \(process.errorOutput)")
    }

    // MARK: demo

    func testDemoRunsTheStartTLSRoundTrip() throws {
        let result = try run(["demo"])
        XCTAssertEqual(result.status, 0, result.stderr)
        for expected in ["TLSv1.3", "SSL_get_verify_result(ssl) → 0 (ok)", "SSL_CIPHER_get_bits", "C (TLS): STOPTLS",
                         "221 bye (plaintext again)", "client.ssl = nil", "subject CN=localhost", "demo: OK"] {
            XCTAssertTrue(result.stdout.contains(expected), "missing \"\(expected)\" in:\n\(result.stdout)")
        }
    }

    // MARK: serve

    func testServeOnceEchoAnswersOpenSSLClient() throws {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess(Self.sslcat, ["serve", "--port", "0", "--once", "--echo",
                                                         "--cert", pki.serverCert, "--key", pki.serverKey])
        defer { server.terminate() }
        let port = try listeningPort(server)
        let client = try BackgroundProcess(Self.openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caCert,
                                                          "-verify_return_error", "-servername", "localhost", "-quiet"])
        defer { client.terminate() }
        client.write("hello sslcat\n")
        XCTAssertTrue(client.waitFor("hello sslcat", timeout: 20), "s_client: \(client.output) \(client.errorOutput); sslcat: \(server.errorOutput)")
        client.terminate()
        XCTAssertEqual(server.waitForExit(timeout: 20), 0, "serve --once exits after its connection: \(server.errorOutput)")
        XCTAssertTrue(server.errorOutput.contains("protocol: TLSv1.3"), server.errorOutput)
    }

    /// `serve --alpn` selects by ALPN (seen by s_client -alpn); `connect --alpn --keylog` offers it and
    /// writes the secrets that s_client's own key log file also has.
    func testServeALPNAndConnectKeylog() throws {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess(Self.sslcat, ["serve", "--port", "0", "--echo", "--alpn", "h2,http/1.1",
                                                         "--cert", pki.serverCert, "--key", pki.serverKey])
        defer { server.terminate() }
        let port = try listeningPort(server)
        let probe = try runProcess(Self.openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-alpn", "http/1.1,h2"], timeout: 20, stdin: Data())
        XCTAssertTrue(probe.stdout.contains("ALPN protocol: h2"), probe.stdout)
        let keylog = FileManager.default.temporaryDirectory.appendingPathComponent("sslcat-keylog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: keylog) }
        let client = try runProcess(Self.sslcat, ["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost",
                                                  "--alpn", "http/1.1", "--keylog", keylog, "--timeout", "5"], timeout: 30, stdin: Data("ping\n".utf8))
        XCTAssertEqual(client.status, 0, client.stderr)
        XCTAssertTrue(client.stderr.contains("ALPN: http/1.1"), client.stderr)
        XCTAssertEqual(client.stdout, "ping\n")
        let lines = try String(contentsOfFile: keylog, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 5, "\(lines)")
        XCTAssertTrue(lines.allSatisfy { $0.split(separator: " ").count == 3 })
        let bad = try runProcess(Self.sslcat, ["serve", "--port", "0", "--alpn", ",h2"], timeout: 20)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("bad ALPN protocol name"), bad.stderr)
    }

    /// `serve --dtls --echo` answers `connect --dtls` (one datagram per line) and `openssl s_client -dtls1_2`.
    func testDTLSServeAndConnect() throws {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess(Self.sslcat, ["serve", "--dtls", "--port", "0", "--echo", "--cert", pki.serverCert, "--key", pki.serverKey])
        defer { server.terminate() }
        let port = try listeningPort(server)
        let client = try runProcess(Self.sslcat, ["connect", "--dtls", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost",
                                                  "--timeout", "2"], timeout: 30, stdin: Data("first line\nsecond line\n".utf8))
        XCTAssertEqual(client.status, 0, client.stderr)
        XCTAssertEqual(client.stdout, "first line\nsecond line\n")
        XCTAssertTrue(client.stderr.contains("protocol: DTLSv1.2"), client.stderr)
        let openssl = try BackgroundProcess(Self.openssl, ["s_client", "-dtls1_2", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caCert,
                                                           "-verify_return_error", "-servername", "localhost", "-quiet", "-no_ign_eof"])
        defer { openssl.terminate() }
        openssl.write("datagram from s_client\n")
        XCTAssertTrue(openssl.waitFor("datagram from s_client", timeout: 20), openssl.output + openssl.errorOutput + server.errorOutput)
        let refused = try runProcess(Self.sslcat, ["connect", "--dtls", "--tls1.3", "127.0.0.1:\(port)"], timeout: 20)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--dtls excludes"), refused.stderr)
    }

    func testServeWithoutCertificateUsesASelfSignedOne() throws {
        let server = try BackgroundProcess(Self.sslcat, ["serve", "--port", "0", "--once", "--echo"])
        defer { server.terminate() }
        let port = try listeningPort(server)
        XCTAssertTrue(server.errorOutput.contains("self-signed certificate CN=localhost, SHA-256 "), server.errorOutput)
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 10, security: .insecure, readTimeout: 10)
        try stream.writeLine("ping")
        XCTAssertEqual(try stream.readLine(), "ping")
        let printed = server.errorOutput.components(separatedBy: "SHA-256 ").last?.prefix(95)
        let peer = try XCTUnwrap(SSL_get1_peer_certificate(stream.ssl))
        XCTAssertEqual(Certificate(taking: peer).fingerprintSHA256, printed.map(String.init), "the printed fingerprint is the served certificate's")
        try stream.close()
        XCTAssertEqual(server.waitForExit(timeout: 20), 0, server.errorOutput)
    }

    // MARK: connect

    func testConnectTalksToOpenSSLServer() throws {
        let pki = try TestPKI.shared
        let peer = try BackgroundProcess(Self.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert, "-key", pki.serverKey,
                                                        "-rev", "-naccept", "1", "-alpn", "h2,http/1.1"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        let result = try run(["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost",
                              "--alpn", "h2", "--timeout", "2"], stdin: "stressed\n")
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "desserts\n", result.stderr)
        XCTAssertTrue(result.stderr.contains("protocol: TLSv1.3"), result.stderr)
        XCTAssertTrue(result.stderr.contains("ALPN: h2"), result.stderr)
        XCTAssertTrue(result.stderr.contains("verify result: 0 (ok)"), result.stderr)
    }

    func testConnectTLS12AndRefusesAnUntrustedServer() throws {
        let pki = try TestPKI.shared
        let peer = try BackgroundProcess(Self.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert, "-key", pki.serverKey,
                                                        "-rev", "-naccept", "2"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        // Default trust (the system store) does not know the test CA: refused, one line, non-zero.
        let refused = try run(["connect", "localhost:\(port)", "--timeout", "5"], stdin: "x\n")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("certificate verification failed"), refused.stderr)
        let ok = try run(["connect", "localhost:\(port)", "--cafile", pki.caCert, "--tls1.2", "--timeout", "2"], stdin: "abc\n")
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(ok.stdout, "cba\n")
        XCTAssertTrue(ok.stderr.contains("protocol: TLSv1.2"), ok.stderr)
    }

    /// `--starttls smtp` against a minimal SMTP server on our streams.
    func testConnectStartTLSSMTP() throws {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        try useCertificateChainFile(ctx, file: pki.serverCert)
        try usePrivateKeyFile(ctx, file: pki.serverKey)
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let done = DispatchGroup()
        let failure = ErrorHolder()
        done.enter()
        Thread.detachNewThread {
            defer { done.leave() }
            do {
                let s = try listener.accept(timeout: 20, readTimeout: 20)
                defer { try? s.close() }
                try s.writeLine("220 test ESMTP")
                guard try s.readLine() == "EHLO sslcat" else { throw StreamError(kind: .endOfStream, call: "EHLO", message: "no EHLO") }
                try s.writeLine("250-localhost"); try s.writeLine("250 STARTTLS")
                guard try s.readLine() == "STARTTLS" else { throw StreamError(kind: .endOfStream, call: "STARTTLS", message: "no STARTTLS") }
                try s.writeLine("220 go ahead")
                try s.attachSSL(ctx: .context(ctx), side: .server, handshakeTimeout: 20)
                let line = try s.readLine() ?? ""
                try s.writeLine("250 over \(SSL_get_version(s.ssl) ?? "?"): \(line)")
            } catch { failure.error = error }
        }
        let result = try run(["connect", "127.0.0.1:\(listener.port)", "--starttls", "smtp", "--cafile", pki.caCert,
                              "--servername", "localhost", "--timeout", "2"], stdin: "NOOP\r\n")
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertNil(failure.error)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "250 over TLSv1.3: NOOP\r\n", result.stderr)
        XCTAssertTrue(result.stderr.contains("< 250 STARTTLS"), result.stderr)
    }

    // MARK: gen-cert

    func testGenCertWritesAVerifiableSet() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sslcat-gen-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try run(["gen-cert", "--out", dir, "--host", "example.test", "--host", "10.1.2.3"])
        XCTAssertEqual(result.status, 0, result.stderr)
        for name in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + name), name)
        }
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/server.key")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, "keys are private")
        let verify = try runProcess(Self.openssl, ["verify", "-CAfile", dir + "/ca.pem", dir + "/server.pem", dir + "/client.pem"], timeout: 30)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let ext = try runProcess(Self.openssl, ["x509", "-in", dir + "/server.pem", "-noout", "-ext", "subjectAltName"], timeout: 30)
        XCTAssertTrue(ext.stdout.contains("DNS:example.test") && ext.stdout.contains("IP Address:10.1.2.3"), ext.stdout)
        let match = try runProcess(Self.openssl, ["x509", "-in", dir + "/client.pem", "-noout", "-pubkey"], timeout: 30)
        let keyPub = try runProcess(Self.openssl, ["pkey", "-in", dir + "/client.key", "-pubout"], timeout: 30)
        XCTAssertEqual(match.stdout, keyPub.stdout, "client.key is the client certificate's key")
    }

    // MARK: bad arguments

    func testBadArgumentsGiveOneClearLine() throws {
        let pki = try TestPKI.shared
        let cases: [([String], String)] = [
            (["connect", "localhost"], "port"),
            (["connect", "localhost:99999"], "port"),
            (["connect", "no-such-host.invalid:443", "--timeout", "5"], "no-such-host.invalid"),
            (["serve", "--port", "0", "--cert", pki.missing, "--key", pki.serverKey], pki.missing),
            (["serve", "--port", "0", "--cert", pki.serverCert, "--key", pki.garbagePEM], pki.garbagePEM),
            (["serve", "--port", "0", "--cert", pki.serverCert], "--key"),
            (["serve"], "port"),
            (["connect", "127.0.0.1:1", "--cert", pki.clientCert], "--key"),
            (["bench", "--only", "nothing"], "nothing"),
        ]
        for (arguments, expected) in cases {
            let result = try run(arguments, timeout: 30)
            let lines = result.stderr.split(separator: "\n")
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertEqual(lines.count, 1, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("sslcat: error: "), "\(arguments): \(result.stderr)")
        }
    }

    // MARK: bench

    /// The JSON shape of `sslcat bench` (a debug build, small workloads: the figures are not checked,
    /// only that each layer was measured against C).
    func testBenchJSON() throws {
        let result = try run(["bench", "--quick", "--json", "--only", "direct_call,handshake_full,bulk_1k", "--rounds", "1"], timeout: 300)
        XCTAssertEqual(result.status, 0, result.stderr)
        struct Output: Decodable { struct R: Decodable { var name, layer, unit: String; var value, ratio_to_c: Double }; var results: [R] }
        let output = try JSONDecoder().decode(Output.self, from: Data(result.stdout.utf8))
        let pairs = Set(output.results.map { "\($0.name)/\($0.layer)" })
        XCTAssertEqual(pairs, ["direct_call/c", "direct_call/fli", "handshake_full/c", "handshake_full/streams", "bulk_1k/c", "bulk_1k/streams"])
        for r in output.results {
            XCTAssertGreaterThan(r.value, 0, "\(r)")
            XCTAssertGreaterThan(r.ratio_to_c, 0, "\(r)")
            if r.layer == "c" { XCTAssertEqual(r.ratio_to_c, 1) }
        }
        XCTAssertTrue(result.stderr.contains("bench: handshake_full c round 1/1"), "progress goes to stderr")
    }
}

final class ErrorHolder: @unchecked Sendable { var error: Error? }  // written by one thread, read after it was joined
