import Foundation
import XCTest

/// Real clients against the example server over 127.0.0.1: curl (HTTP/1.1 and HTTP/2 by ALPN, with and
/// without a client certificate), openssl s_client (stapled OCSP, resumption, keying-material export),
/// h2load and wrk under load. Every client verifies the server against the run-time CA where it can
/// (h2load and wrk cannot verify; they only load the server).
final class ClientTests: XCTestCase {
    static let exportLabel = "EXPORTER-hummingbird-openssl"

    var pki: PKI { get throws { try PKI.shared.get() } }

    /// The server's `/session` JSON, through curl with `options`.
    func session(_ server: ServerProcess, _ options: [String]) throws -> [String: Any] {
        let pki = try pki
        let result = try runClient("curl", ["--silent", "--show-error", "--max-time", "20", "--cacert", pki.caCert,
                                      "--write-out", "\n%{http_version}"] + options + ["https://localhost:\(server.port)/session"],
                             timeout: 30)
        XCTAssertEqual(result.status, 0, "curl: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        let json = try XCTUnwrap(lines.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] },
                                 "not JSON: \(result.stdout) \(result.stderr) \(server.errorOutput)")
        var facts = json
        facts["curl_http_version"] = lines.last.map(String.init)
        return facts
    }

    func testCurlHTTP11AndHTTP2ByALPN() throws {
        try require("curl")
        let server = try ServerProcess(pki: pki)
        let http1 = try session(server, ["--http1.1"])
        XCTAssertEqual(http1["alpn"] as? String, "http/1.1")
        XCTAssertEqual(http1["curl_http_version"] as? String, "1.1")
        let http2 = try session(server, ["--http2"])
        XCTAssertEqual(http2["alpn"] as? String, "h2")
        XCTAssertEqual(http2["curl_http_version"] as? String, "2")
        for facts in [http1, http2] {
            XCTAssertEqual(facts["protocol"] as? String, "TLSv1.3")
            XCTAssertEqual(facts["sni"] as? String, "localhost")
            XCTAssertNotNil(facts["cipher"] as? String)
            XCTAssertNotNil(facts["group"] as? String)
            XCTAssertEqual(facts["resumed"] as? Bool, false)
            XCTAssertNil(facts["clientSubject"] as? String)
            XCTAssertEqual((facts["exportedKeyingMaterial"] as? String)?.count, 64)
        }
        XCTAssertNotEqual(http1["exportedKeyingMaterial"] as? String, http2["exportedKeyingMaterial"] as? String)
        // TLS 1.2 too, with its own cipher suite.
        let tls12 = try session(server, ["--http1.1", "--tlsv1.2", "--tls-max", "1.2"])
        XCTAssertEqual(tls12["protocol"] as? String, "TLSv1.2")
    }

    func testClientCertificateChainIsReadByTheRoute() throws {
        try require("curl")
        let pki = try pki
        let server = try ServerProcess(pki: pki, ["--client-ca", pki.caCert])
        let with = try session(server, ["--http2", "--cert", pki.clientCert, "--key", pki.clientKey])
        XCTAssertEqual(with["clientSubject"] as? String, "O=hummingbird-openssl,CN=test client")
        XCTAssertEqual(with["clientChain"] as? [String], ["O=hummingbird-openssl,CN=test client", "CN=hummingbird-openssl test CA"])
        // Optional: a client without a certificate is served too.
        let without = try session(server, ["--http1.1"])
        XCTAssertNil(without["clientSubject"] as? String)
        XCTAssertEqual(without["clientChain"] as? [String], [])
    }

    func testStapledOCSPResponseSeenByOpenSSLClient() throws {
        let pki = try pki
        let server = try ServerProcess(pki: pki, ["--ocsp-response", pki.ocspResponse])
        let result = try runClient("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                                         "-CAfile", pki.caCert, "-verify_return_error", "-status"], timeout: 30, stdin: Data())
        XCTAssertTrue(result.stdout.contains("OCSP Response Status: successful"), "s_client -status: \(result.stdout)")
        XCTAssertTrue(result.stdout.contains("Cert Status: good"), result.stdout)
        XCTAssertTrue(result.stdout.contains("Verify return code: 0 (ok)"), result.stdout)
    }

    func testResumptionWithReconnectAndSavedSession() throws {
        let pki = try pki
        let server = try ServerProcess(pki: pki)
        // -reconnect: one full handshake, then five with the session ticket. TLS 1.2: OpenSSL 3.0's
        // s_client reconnects before a TLS 1.3 ticket arrives (it resumes nothing against s_server either).
        let reconnect = try runClient("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                                            "-CAfile", pki.caCert, "-verify_return_error", "-tls1_2", "-reconnect"], timeout: 60, stdin: Data())
        XCTAssertEqual(reconnect.stdout.components(separatedBy: "Reused, TLSv1.2").count - 1, 5,
                                    "s_client -reconnect: \(reconnect.stdout)")
        // -sess_out, then -sess_in: the route says the second connection was resumed.
        let sessionFile = pki.dir + "/session-\(UUID().uuidString).pem"
        let first = try sClientRequest(server, pki: pki, ["-sess_out", sessionFile])
        XCTAssertTrue(first.contains("\"resumed\":false"), first)
        XCTAssertTrue(first.contains("New, TLSv1.3"), first)
        let second = try sClientRequest(server, pki: pki, ["-sess_in", sessionFile])
        XCTAssertTrue(second.contains("Reused, TLSv1.3"), second)
        XCTAssertTrue(second.contains("\"resumed\":true"), second)
    }

    /// Tickets are sealed with the key given by flag: a second server with the same key resumes the
    /// first one's sessions, a server with another key cannot.
    func testSessionTicketKeyIsTheOneSet() throws {
        let pki = try pki
        let key = String(repeating: "0123456789abcdef", count: 10)
        let other = String(repeating: "fedcba9876543210", count: 10)
        let first = try ServerProcess(pki: pki, ["--ticket-key", key])
        let same = try ServerProcess(pki: pki, ["--ticket-key", key])
        let different = try ServerProcess(pki: pki, ["--ticket-key", other])
        let sessionFile = pki.dir + "/ticket-\(UUID().uuidString).pem"
        _ = try sClientRequest(first, pki: pki, ["-sess_out", sessionFile])
        let resumed = try sClientRequest(same, pki: pki, ["-sess_in", sessionFile])
        XCTAssertTrue(resumed.contains("\"resumed\":true"), resumed)
        let notResumed = try sClientRequest(different, pki: pki, ["-sess_in", sessionFile])
        XCTAssertTrue(notResumed.contains("\"resumed\":false"), notResumed)
    }

    /// The keying material the route exports is the one the client derives (RFC 8446 §7.5).
    func testExportedKeyingMaterialMatchesTheClients() throws {
        let pki = try pki
        let server = try ServerProcess(pki: pki)
        let output = try sClientRequest(server, pki: pki, ["-keymatexport", ClientTests.exportLabel, "-keymatexportlen", "32"])
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("Keying material:") }, output)
        let clientSide = line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces).lowercased()
        XCTAssertEqual(clientSide.count, 64)
        XCTAssertTrue(output.contains("\"exportedKeyingMaterial\":\"\(clientSide)\""), output)
    }

    func testKeyLogFileGivenByFlag() throws {
        try require("curl")
        let pki = try pki
        let keylog = pki.dir + "/keylog-\(UUID().uuidString).txt"
        let server = try ServerProcess(pki: pki, ["--keylog", keylog])
        _ = try session(server, ["--http2"])
        let lines = try String(contentsOfFile: keylog, encoding: .utf8)
        XCTAssertTrue(lines.contains("CLIENT_HANDSHAKE_TRAFFIC_SECRET "), lines)
        XCTAssertTrue(lines.contains("SERVER_TRAFFIC_SECRET_0 "), lines)
    }

    func testH2load10000RequestsOver100Connections() throws {
        try require("h2load")
        let server = try ServerProcess(pki: pki)
        let result = try runClient("h2load", ["-n", "10000", "-c", "100", "-m", "10", "https://127.0.0.1:\(server.port)/"], timeout: 120)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("10000 succeeded, 0 failed, 0 errored"), "h2load: \(result.stdout) \(server.errorOutput)")
        XCTAssertTrue(result.stdout.contains("status codes: 10000 2xx"), result.stdout)
        XCTAssertTrue(result.stdout.contains("Application protocol: h2"), result.stdout)
    }

    func testWrkHTTP11Load() throws {
        try require("wrk")
        let server = try ServerProcess(pki: pki)
        let result = try runClient("wrk", ["-t", "2", "-c", "50", "-d", "3s", "--timeout", "5s", "https://127.0.0.1:\(server.port)/"], timeout: 60)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertFalse(result.stdout.contains("Socket errors"), "wrk: \(result.stdout)")
        XCTAssertFalse(result.stdout.contains("Non-2xx"), result.stdout)
        let requests = result.stdout.split(separator: "\n").first { $0.contains("requests in") }
            .flatMap { Int($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") } ?? 0
        XCTAssertGreaterThan(requests, 1000, result.stdout)
    }

    /// `GET /session` through `openssl s_client` (verifying the server), returning s_client's output
    /// with the response.
    func sClientRequest(_ server: ServerProcess, pki: PKI, _ options: [String]) throws -> String {
        let request = Data("GET /session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        let result = try runClient("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                                         "-CAfile", pki.caCert, "-verify_return_error", "-ign_eof", "-alpn", "http/1.1"] + options,
                             timeout: 30, stdin: request)
        return result.stdout
    }
}
