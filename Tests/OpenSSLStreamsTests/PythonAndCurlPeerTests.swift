import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Python's `ssl` module as server, client and STARTTLS peer (`wrap_socket` … `unwrap()`), `curl`
/// fetching HTTPS from a server on our streams, and `openssl s_client -starttls smtp` against an SMTP
/// server on our streams.
final class PythonAndCurlPeerTests: XCTestCase {
    override func setUp() { clearOpenSSLErrors() }

    /// Runs a Python script beside the test; its first stdout line is a port.
    func python(_ script: String, _ arguments: [String]) throws -> (BackgroundProcess, Int) {
        let process = try BackgroundProcess(Fixtures.python, ["-c", script] + arguments)
        XCTAssertTrue(process.waitFor(timeout: 20) { out, _ in out.contains("\n") }, process.errorOutput)
        let first = process.output.split(separator: "\n").first.map(String.init) ?? ""
        guard let port = Int(first.trimmingCharacters(in: .whitespaces)) else {
            throw StreamTestFailure("python printed no port: \(process.output) \(process.errorOutput)")
        }
        return (process, port)
    }

    // MARK: Python as the server

    func testClientAgainstPythonServer() throws {
        let pki = try Fixtures.pki
        let script = """
        import socket, ssl, sys
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1); ls.settimeout(20)
        print(ls.getsockname()[1], flush=True)
        raw, _ = ls.accept(); raw.settimeout(20)
        with ctx.wrap_socket(raw, server_side=True) as s:
            f = s.makefile("rwb")
            line = f.readline()
            f.write(line.upper() + s.version().encode() + b"\\n"); f.flush()
            s.unwrap()
        print("done", flush=True)
        """
        let (peer, port) = try python(script, [pki.serverCert, pki.serverKey])
        defer { peer.terminate() }
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 10,
                                       hostName: "localhost", security: .trusting(caFile: pki.caCert), readTimeout: 10)
        try stream.writeLine("hello python")
        XCTAssertEqual(try stream.readLine(), "HELLO PYTHON")
        XCTAssertEqual(try stream.readLine(), "TLSv1.3")
        XCTAssertNil(try stream.readLine(), "Python's unwrap() sends close_notify: a clean end")
        try stream.close()
        XCTAssertTrue(peer.waitFor("done", timeout: 10), peer.errorOutput)
    }

    // MARK: Python as the client

    func testPythonClientAgainstOurServer() throws {
        let pki = try Fixtures.pki
        let serverCtx = try Fixtures.serverContext(requireClientCertificate: true)
        defer { destroySSLCtx(serverCtx) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Seen: @unchecked Sendable { var line: String?; var subject: String? }  // written by the background thread, read after it was joined
        let seen = Seen()
        let server = Background("server") {
            let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 20, readTimeout: 10)
            defer { try? s.close() }
            seen.line = try s.readLine()
            if let cert = SSL_get1_peer_certificate(s.ssl) { seen.subject = Certificate(taking: cert).subject }
            try s.writeLine("hi python, from \(s.ssl?.versionName ?? "?")")
        }
        let script = """
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"hello swift\\n")
                data = b""
                while not data.endswith(b"\\n"):
                    chunk = s.recv(100)
                    if not chunk: break
                    data += chunk
                print(s.version(), data.decode().strip(), flush=True)
        """
        let result = try runProcess(Fixtures.python, ["-c", script, String(listener.port), pki.caCert, pki.clientCert, pki.clientKey], timeout: 30)
        try server.join()
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "TLSv1.3 hi python, from TLSv1.3\n", result.stderr)
        XCTAssertEqual(seen.line, "hello swift")
        XCTAssertEqual(seen.subject, "CN=test client")
    }

    // MARK: curl

    /// A small HTTP/1.1 server on our streams; curl fetches from it over HTTPS, verifying with --cacert.
    func testCurlFetchesFromOurHTTPSServer() throws {
        let pki = try Fixtures.pki
        let serverCtx = try Fixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Requests: @unchecked Sendable { var lines: [String] = [] }  // written by the background thread, read after it was joined
        let requests = Requests()
        let body = "hello from swift-openssl-fli\n"
        let server = Background("HTTPS server") {
            for _ in 0..<2 {
                let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 20, readTimeout: 10)
                defer { try? s.close() }
                guard let requestLine = try s.readLine() else { continue }
                requests.lines.append(requestLine)
                while let header = try s.readLine(), !header.isEmpty {}
                try s.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n")
                try s.write(body)
                try s.flush()
            }
        }
        for extra in [["--http1.1"], ["--tlsv1.3"]] {
            let result = try runProcess(Fixtures.curl, ["--silent", "--show-error", "--max-time", "20", "--cacert", pki.caCert]
                                        + extra + ["https://localhost:\(listener.port)/some/path?x=1"], timeout: 30)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(result.stdout, body, result.stderr)
        }
        try server.join()
        XCTAssertEqual(requests.lines, ["GET /some/path?x=1 HTTP/1.1", "GET /some/path?x=1 HTTP/1.1"])
    }

    // MARK: STARTTLS with Python: wrap_socket … unwrap()

    func testStartTLSWithPythonUnwrap() throws {
        let pki = try Fixtures.pki
        let script = """
        import socket, ssl, sys
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1); ls.settimeout(20)
        print(ls.getsockname()[1], flush=True)
        raw, _ = ls.accept(); raw.settimeout(20)
        def readline(sock):
            data = b""
            while not data.endswith(b"\\n"):
                c = sock.recv(1)
                if not c: raise SystemExit("eof")
                data += c
            return data.decode().strip()
        for round in (1, 2):
            assert readline(raw) == "STARTTLS"
            raw.sendall(b"READY\\n")
            s = ctx.wrap_socket(raw, server_side=True)
            line = readline(s)
            s.sendall(("tls " + line + " " + s.version() + "\\n").encode())
            raw = s.unwrap()          # close_notify both ways; the socket carries plaintext again
            line = readline(raw)
            raw.sendall(("plain " + line + "\\n").encode())
        print("done", flush=True)
        """
        let (peer, port) = try python(script, [pki.serverCert, pki.serverKey])
        defer { peer.terminate() }
        let stream = try openTCPStream(host: "127.0.0.1", port: port, readTimeout: 10)
        for round in 1...2 {
            try stream.writeLine("STARTTLS")
            XCTAssertEqual(try stream.readLine(), "READY")
            try stream.attachSSL(ctx: .default, side: .client, handshakeTimeout: 10, hostName: "localhost",
                                 security: .trusting(caFile: pki.caCert))
            XCTAssertNotNil(stream.ssl)
            try stream.writeLine("secret\(round)")
            XCTAssertEqual(try stream.readLine(), "tls secret\(round) TLSv1.3")
            try stream.detachSSL()
            XCTAssertNil(stream.ssl)
            try stream.writeLine("clear\(round)")
            XCTAssertEqual(try stream.readLine(), "plain clear\(round)")
        }
        XCTAssertTrue(peer.waitFor("done", timeout: 10), peer.errorOutput)
        try stream.close()
    }

    // MARK: openssl s_client -starttls smtp

    func testOpenSSLClientStartTLSSMTPAgainstOurServer() throws {
        let pki = try Fixtures.pki
        let serverCtx = try Fixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Log: @unchecked Sendable { var commands: [String] = []; var version: String? }  // written by the background thread, read after it was joined
        let log = Log()
        let server = Background("SMTP server") {
            let s = try listener.accept(timeout: 20, readTimeout: 10)
            defer { try? s.close() }
            try s.writeLine("220 localhost ESMTP swift-openssl-fli test")
            while let line = try s.readLine() {
                log.commands.append((s.ssl != nil ? "tls:" : "plain:") + line)
                let verb = line.split(separator: " ").first.map { $0.uppercased() } ?? ""
                switch verb {
                case "EHLO":
                    try s.writeLine("250-localhost"); try s.writeLine(s.ssl == nil ? "250 STARTTLS" : "250 OK")
                case "STARTTLS":
                    try s.writeLine("220 Go ahead")
                    try s.attachSSL(ctx: .context(serverCtx), side: .server, handshakeTimeout: 10)
                    try s.handshake(timeout: 10)
                    log.version = s.ssl?.versionName
                case "QUIT":
                    try s.writeLine("221 Bye")
                    return
                default:
                    try s.writeLine("250 OK")
                }
            }
        }
        let client = try BackgroundProcess(Fixtures.openssl, ["s_client", "-starttls", "smtp", "-connect", "127.0.0.1:\(listener.port)",
                                                              "-CAfile", pki.caCert, "-verify_return_error", "-servername", "localhost", "-quiet"])
        defer { client.terminate() }
        client.write("NOOP\r\n")
        XCTAssertTrue(client.waitFor("250 OK", timeout: 20), "s_client: \(client.output) \(client.errorOutput)")
        client.write("QUIT\r\n")
        XCTAssertTrue(client.waitFor("221 Bye", timeout: 20), "s_client: \(client.output) \(client.errorOutput)")
        try server.join()
        XCTAssertEqual(log.version, "TLSv1.3")
        XCTAssertEqual(log.commands.first?.hasPrefix("plain:EHLO"), true, "\(log.commands)")
        XCTAssertTrue(log.commands.contains("plain:STARTTLS"), "\(log.commands)")
        XCTAssertTrue(log.commands.contains("tls:NOOP"), "\(log.commands)")
        XCTAssertTrue(log.commands.contains("tls:QUIT"), "\(log.commands)")
    }
}
