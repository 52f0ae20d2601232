import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// `sslcat connect` and `serve` as everyday tools: typed input over a slow pipe, prompt exits, a
/// server that no client can stall, bounded threads and descriptors, DTLS associations side by side.
/// Every wait is bounded (seconds).
final class EverydayTests: XCTestCase {
    var sslcat: String { SSLCatTests.sslcat }

    override func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)  // writing to a client that already failed must fail the test, not kill it
    }

    /// A `serve` process and its port.
    func startServer(_ arguments: [String]) throws -> (BackgroundProcess, Int) {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess(sslcat, ["serve", "--port", "0", "--cert", pki.serverCert, "--key", pki.serverKey] + arguments)
        let port = try SSLCatTests.listeningPort(server)
        return (server, port)
    }

    /// A `connect` process whose stdin the test writes line by line (a slow pipe).
    func startClient(_ port: Int, _ arguments: [String] = []) throws -> BackgroundProcess {
        let pki = try TestPKI.shared
        return try BackgroundProcess(sslcat, ["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost",
                                              "--timeout", "5"] + arguments)
    }

    /// Lines typed 1 s apart come back one by one, each before the next is typed, over TLS 1.3 (where
    /// the server's session tickets arrive after the handshake) and TLS 1.2; after stdin closes the
    /// client exits within a second of the last echo.
    func testTypedLinesAreEchoedOneByOne() throws {
        let (server, port) = try startServer(["--echo"])
        defer { server.terminate() }
        for version in ["--tls1.3", "--tls1.2"] {
            let client = try startClient(port, [version])
            defer { client.terminate() }
            XCTAssertTrue(client.waitFor("protocol: TLSv1.\(version == "--tls1.3" ? "3" : "2")", timeout: 10), client.errorOutput)
            var expected = ""
            for word in ["one", "two", "three"] {
                Thread.sleep(forTimeInterval: 1)
                client.write(word + "\n")
                expected += word + "\n"
                XCTAssertTrue(client.waitFor(timeout: 1) { out, _ in out == expected },
                              "\(version): '\(word)' not echoed within 1 s: stdout \(client.output.debugDescription), stderr \(client.errorOutput)")
            }
            client.write("last\n")
            client.closeInput()
            XCTAssertTrue(client.waitFor(timeout: 2) { out, _ in out.hasSuffix("last\n") }, client.output)
            let echoed = Date()
            XCTAssertEqual(client.waitForExit(timeout: 1), 0, "\(version): no exit within 1 s of the echo: \(client.errorOutput)")
            XCTAssertLessThan(Date().timeIntervalSince(echoed), 1, version)
        }
    }

    /// A KeyUpdate with update_requested (TLS 1.3, s_server's `K`) and a renegotiation (TLS 1.2,
    /// s_server's `r`) arrive while stdin is idle: a line typed afterwards still reaches the server at
    /// once, and what the server sends next is printed.
    func testKeyUpdateAndRenegotiationDoNotStallInput() throws {
        let pki = try TestPKI.shared
        for (version, command) in [("-tls1_3", "K"), ("-tls1_2", "r")] {
            let server = try BackgroundProcess(SSLCatTests.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                                     "-key", pki.serverKey, version])
            defer { server.terminate() }
            let port = try XCTUnwrap(server.acceptedPort(), server.errorOutput)
            let client = try startClient(port)
            defer { client.terminate() }
            XCTAssertTrue(client.waitFor("protocol: TLSv1.", timeout: 10), client.errorOutput)
            Thread.sleep(forTimeInterval: 0.3)
            server.write(command + "\n")
            Thread.sleep(forTimeInterval: 0.5)
            client.write("typed after \(command)\n")
            XCTAssertTrue(server.waitFor("typed after \(command)", timeout: 1), "\(version): s_server: \(server.output) sslcat: \(client.errorOutput)")
            server.write("from server\n")
            XCTAssertTrue(client.waitFor(timeout: 2) { out, _ in out == "from server\n" }, "\(version): \(client.output) \(client.errorOutput)")
            if command == "r" { XCTAssertTrue(server.waitFor("SSL_do_handshake -> 1", timeout: 1), "the renegotiation finished: \(server.output)") }
        }
    }

    /// The peer closing without close_notify after its data: the data is written, and the exit status
    /// is 3 with a message (a truncation stays detectable); a clean close_notify exits 0.
    func testConnectExitStatusOnCloseWithoutCloseNotify() throws {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        try useCertificateChainFile(ctx, file: pki.serverCert)
        try usePrivateKeyFile(ctx, file: pki.serverKey)
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        for clean in [false, true] {
            let peer = Background("peer") {
                let s = try listener.accept(sslCtx: .context(ctx), handshakeTimeout: 10, timeout: 10)
                try s.handshake(timeout: 10)
                try s.write("all the data\n")
                try s.flush()
                if !clean { shutdown(s.fileDescriptor, Int32(SHUT_RDWR)) }  // TCP FIN, no close_notify
                try? s.close()
            }
            let client = try startClient(listener.port, ["--ign-eof"])
            defer { client.terminate() }
            let status = client.waitForExit(timeout: 10)
            try peer.join(timeout: 10)
            XCTAssertEqual(client.output, "all the data\n")
            if clean {
                XCTAssertEqual(status, 0, client.errorOutput)
            } else {
                XCTAssertEqual(status, 3, client.errorOutput)
                XCTAssertTrue(client.errorOutput.contains("without close_notify"), client.errorOutput)
            }
        }
    }

    /// A silent TCP client does not delay a real one: the real one is answered in under a second.
    func testSilentClientDoesNotDelayARealOne() throws {
        let pki = try TestPKI.shared
        let (server, port) = try startServer(["--echo", "--timeout", "10"])
        defer { server.terminate() }
        var silent: [SocketStream] = []
        defer { for s in silent { try? s.close() } }
        for _ in 0..<3 { silent.append(try openTCPStream(host: "127.0.0.1", port: port, connectTimeout: 5)) }
        Thread.sleep(forTimeInterval: 0.2)
        let start = Date()
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 5, hostName: "localhost",
                                       security: .trusting(caFile: pki.caCert), readTimeout: 5)
        defer { try? stream.close() }
        try stream.writeLine("real")
        XCTAssertEqual(try stream.readLine(), "real")
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, server.errorOutput)
    }

    /// The threads and descriptors of `pid` (`/proc/PID/status`, `/proc/PID/fd`).
    func threadsAndDescriptors(_ pid: Int32) throws -> (threads: Int, fds: Int) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("Threads:") })
        let threads = try XCTUnwrap(Int(line.split(separator: "\t").last ?? ""))
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        return (threads, fds)
    }

    /// Waits up to `timeout` seconds for `condition`.
    func eventually(_ timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return try condition()
    }

    /// 200 idle clients that finished their handshakes: at most --max-connections are held (a log line
    /// says the limit was reached), and after --idle-timeout their threads and descriptors are given
    /// back; then a new client is served.
    func testIdleClientsAreBoundedAndReclaimed() throws {
        let pki = try TestPKI.shared
        let limit = 120
        let (server, port) = try startServer(["--echo", "--idle-timeout", "5", "--max-connections", "\(limit)"])
        defer { server.terminate() }
        let pid = server.processIdentifier
        let before = try threadsAndDescriptors(pid)
        var clients: [SocketStream] = []
        defer { for c in clients { try? c.close() } }
        var refused = 0
        for _ in 0..<200 {
            do {
                clients.append(try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 5, hostName: "localhost",
                                                 security: .trusting(caFile: pki.caCert), readTimeout: 5))
            } catch {
                refused += 1  // closed by the server at the limit (TLS 1.3: maybe only at the first read)
            }
        }
        XCTAssertTrue(server.waitFor("connection limit reached (\(limit) at once", timeout: 10), server.errorOutput)
        let busy = try threadsAndDescriptors(pid)
        XCTAssertLessThanOrEqual(busy.threads, before.threads + limit + 2, "threads while busy")
        XCTAssertLessThanOrEqual(busy.fds, before.fds + limit + 2, "descriptors while busy")
        XCTAssertGreaterThan(busy.threads, before.threads + limit / 2, "the idle clients are being served")
        // The clients stay open and quiet: the server closes them after the idle timeout (5 s; long enough that none expires while the 200 connect, even under a sanitizer).
        let idleSince = Date()
        let reclaimed = try eventually(12) {
            let now = try threadsAndDescriptors(pid)
            return now.threads <= before.threads + 1 && now.fds <= before.fds
        }
        let after = try threadsAndDescriptors(pid)
        XCTAssertTrue(reclaimed, "not reclaimed: \(after) vs \(before)")
        XCTAssertGreaterThan(Date().timeIntervalSince(idleSince), 3, "reclaimed by the idle timeout, not before")
        for c in clients { try? c.close() }
        clients.removeAll()
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 5, hostName: "localhost",
                                       security: .trusting(caFile: pki.caCert), readTimeout: 5)
        defer { try? stream.close() }
        try stream.writeLine("after")
        XCTAssertEqual(try stream.readLine(), "after")
    }

    /// Idle clients that keep their connections open are closed by the server after --idle-timeout.
    func testIdleTimeoutClosesAQuietClient() throws {
        let pki = try TestPKI.shared
        let (server, port) = try startServer(["--echo", "--idle-timeout", "1"])
        defer { server.terminate() }
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 5, hostName: "localhost",
                                       security: .trusting(caFile: pki.caCert), readTimeout: 5)
        defer { try? stream.close() }
        let start = Date()
        XCTAssertEqual(try stream.read(maxLength: 10), [], "the server closed the connection")
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        XCTAssertTrue(server.waitFor("(--idle-timeout); closed", timeout: 5), server.errorOutput)
    }

    /// Two DTLS clients at once; a client killed with SIGKILL (no close_notify) is forgotten after the
    /// idle timeout, and a new client is served.
    func testDTLSAssociationsSideBySideAndAVanishedPeer() throws {
        let (server, port) = try startServer(["--dtls", "--echo", "--idle-timeout", "2"])
        defer { server.terminate() }
        let first = try startClient(port, ["--dtls"])
        defer { first.terminate() }
        first.write("first\n")
        XCTAssertTrue(first.waitFor(timeout: 10) { out, _ in out == "first\n" }, first.errorOutput + server.errorOutput)
        let second = try startClient(port, ["--dtls"])
        defer { second.terminate() }
        second.write("second\n")
        XCTAssertTrue(second.waitFor(timeout: 10) { out, _ in out == "second\n" }, second.errorOutput + server.errorOutput)
        first.write("first again\n")  // the first association is still served beside the second
        XCTAssertTrue(first.waitFor(timeout: 5) { out, _ in out == "first\nfirst again\n" }, first.errorOutput + server.errorOutput)
        kill(first.processIdentifier, SIGKILL)
        kill(second.processIdentifier, SIGKILL)
        XCTAssertTrue(server.waitFor(timeout: 8) { _, err in
            err.components(separatedBy: "(--idle-timeout); closed").count - 1 >= 2
        }, server.errorOutput)
        let third = try startClient(port, ["--dtls"])
        defer { third.terminate() }
        third.write("third\n")
        third.closeInput()
        XCTAssertEqual(third.waitForExit(timeout: 10), 0, third.errorOutput + server.errorOutput)
        XCTAssertEqual(third.output, "third\n")
    }

    /// `serve --verify-client` names the client's own certificate (SSL_get1_peer_certificate), not only
    /// the chain a server sees (which leaves it out).
    func testVerifyClientPrintsTheClientCertificate() throws {
        let pki = try TestPKI.shared
        let subject = try Certificate(pem: try String(contentsOfFile: pki.clientCert, encoding: .utf8)).subject
        let (server, port) = try startServer(["--echo", "--once", "--verify-client", "--cafile", pki.caCert])
        defer { server.terminate() }
        let client = try startClient(port, ["--cert", pki.clientCert, "--key", pki.clientKey])
        defer { client.terminate() }
        client.write("hi\n")
        client.closeInput()
        XCTAssertEqual(client.waitForExit(timeout: 10), 0, client.errorOutput)
        XCTAssertTrue(server.waitFor("peer certificate 0: subject \(subject),", timeout: 5), server.errorOutput)
    }

    /// ALPN without a protocol in common ends the handshake with no_application_protocol (RFC 7301);
    /// --alpn-optional goes on without ALPN.
    func testALPNWithoutOverlapSendsNoApplicationProtocol() throws {
        let pki = try TestPKI.shared
        for optional in [false, true] {
            let (server, port) = try startServer(["--echo", "--alpn", "h2"] + (optional ? ["--alpn-optional"] : []))
            defer { server.terminate() }
            let probe = try runProcess(SSLCatTests.openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caCert,
                                                             "-alpn", "http/1.1"], timeout: 20, stdin: Data())
            if optional {
                XCTAssertTrue(probe.stdout.contains("No ALPN negotiated"), probe.stdout + probe.stderr)
            } else {
                XCTAssertTrue(probe.stderr.contains("no application protocol"), probe.stdout + probe.stderr)
            }
        }
    }

    /// `serve --http` answers curl with the session page.
    func testServeHTTPPage() throws {
        let pki = try TestPKI.shared
        let (server, port) = try startServer(["--http", "--alpn", "http/1.1", "--alpn-optional"])
        defer { server.terminate() }
        let page = try runProcess("/usr/bin/curl", ["-sS", "--cacert", pki.caCert, "--http1.1", "https://localhost:\(port)/hello"], timeout: 20)
        XCTAssertEqual(page.status, 0, page.stderr)
        for expected in ["request:            GET /hello HTTP/1.1", "protocol:           TLSv1.3", "ALPN:               http/1.1",
                         "SNI:                localhost", "resumed:            no", "client certificate: none", "group:              "] {
            XCTAssertTrue(page.stdout.contains(expected), "missing \(expected) in \(page.stdout)")
        }
    }
}
