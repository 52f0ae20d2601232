import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// SNI and ALPN callbacks, seen from `openssl s_client`, `curl --http2` and our own client.
final class ToolboxSNIALPNTests: XCTestCase {
    /// A context for "other.example" (certificate signed by the in-memory root).
    func otherContext() throws -> SSLContextPointer {
        let ctx = try makeSSLCtx(protocol: .default, side: .server)
        try useIdentity(ctx, certificate: Toolbox.chain.other, key: Toolbox.chain.otherKey)
        return ctx
    }

    /// The server switches context by name; `openssl s_client -servername` sees the matching certificate.
    func testSNICallbackSwitchesCertificateForOpenSSLClient() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let other = try otherContext()
        defer { destroySSLCtx(other) }
        let names = Recorder<String>()
        let keylogged = Recorder<String>()
        server.setKeylogCallback { _, line in keylogged.append(line) }  // on the first context only
        server.setServerNameCallback { ssl, name in
            names.append(name ?? "(none)")
            XCTAssertEqual(ssl.serverName, name)
            return name == "other.example" ? other : nil
        }
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let (loop, errors) = Toolbox.serve(server, on: listener, connections: 2) { stream in
            _ = try? stream.readToEnd()
        }
        // -nameopt RFC2253: one format on OpenSSL 3.0 and 3.5 (whose default dropped the spaces).
        for (name, subject) in [("other.example", "CN=other.example"), ("localhost", "CN=localhost")] {
            let result = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-servername", name,
                                                           "-nameopt", "RFC2253"],
                                        timeout: 20, stdin: Data())
            XCTAssertTrue(result.stdout.contains("subject=\(subject)"), "\(name): \(result.stdout)\n\(result.stderr)")
        }
        try loop.join(timeout: 30)
        XCTAssertEqual(names.values, ["other.example", "localhost"])
        XCTAssertTrue(errors.values.allSatisfy { ($0 as? SSLError)?.isUnexpectedEOF ?? false } , "\(errors.values)")
        // OpenSSL reads the key log callback from the connection's current context: the switched
        // connection logs nothing (the other context has no callback), the other one its 5 TLS 1.3 lines.
        XCTAssertEqual(keylogged.values.count, 5, "\(keylogged.values)")
    }

    /// Our client sends SNI; a throwing SNI callback refuses the handshake with its own error.
    func testSNIFromOurClientAndRefusal() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let other = try otherContext()
        defer { destroySSLCtx(other) }
        let client = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(client) }
        try client.trust([Toolbox.chain.root])
        setVerificationMode(client, side: .client, mode: .always)
        server.setServerNameCallback { _, name in
            guard let name else { throw CallbackRefusal(reason: "no name") }
            if name == "other.example" { return other }
            throw CallbackRefusal(reason: "unknown name \(name)")
        }
        let switched = try Toolbox.connect(server: server, client: client, sslConfigure: { ssl in
            try ssl.setServerName("other.example")
            try ssl.setExpectedHost("other.example")
        }, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.peerCertificate?.subject, "CN=other.example")
        })
        XCTAssertTrue(switched.succeeded, "\(Toolbox.message(switched.clientError)) / \(Toolbox.message(switched.serverError))")

        let refused = try Toolbox.connect(server: server, client: client, sslConfigure: { try $0.setServerName("nobody.example") })
        XCTAssertEqual(refused.serverError as? CallbackRefusal, CallbackRefusal(reason: "unknown name nobody.example"))
        let clientError = try XCTUnwrap(refused.clientError as? SSLError)
        XCTAssertTrue(clientError.reasons.contains { $0.contains("unrecognized name") }, "\(clientError)")

        let client2 = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(client2) }
        let ssl = try sslNew(client2)
        defer { destroySSL(ssl) }
        XCTAssertThrowsError(try ssl.setServerName(""))
    }

    /// `openssl s_client -alpn` gets the server's preferred protocol among those it offered.
    func testALPNWithOpenSSLClient() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        server.setALPNServerProtocols(["h2", "http/1.1"])
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let selected = Recorder<String>()
        let (loop, _) = Toolbox.serve(server, on: listener, connections: 2) { stream in
            selected.append(stream.ssl?.alpnSelected ?? "(none)")
            _ = try? stream.readToEnd()
        }
        let offered = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-alpn", "http/1.1,h2"],
                                     timeout: 20, stdin: Data())
        XCTAssertTrue(offered.stdout.contains("ALPN protocol: h2"), offered.stdout)
        let none = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-alpn", "spdy/3"],
                                  timeout: 20, stdin: Data())
        XCTAssertTrue(none.stdout.contains("No ALPN negotiated"), none.stdout)
        try loop.join(timeout: 30)
        XCTAssertEqual(selected.values, ["h2", "(none)"])
    }

    /// `curl --http2` negotiates h2 with our server by ALPN (the server speaks no HTTP/2 beyond that).
    func testALPNWithCurlHTTP2() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        server.setALPNServerProtocols(["h2", "http/1.1"])
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let selected = Recorder<String>()
        let (loop, _) = Toolbox.serve(server, on: listener, connections: 1) { stream in
            selected.append(stream.ssl?.alpnSelected ?? "(none)")
        }
        let result = try runProcess(Fixtures.curl, ["--http2", "-v", "-sS", "--max-time", "10", "--cacert", try Fixtures.pki.caCert,
                                                    "https://localhost:\(listener.port)/"], timeout: 30)
        try loop.join(timeout: 30)
        XCTAssertEqual(selected.values, ["h2"])
        XCTAssertTrue(result.stderr.contains("ALPN: server accepted h2") || result.stderr.contains("ALPN, server accepted to use h2"), result.stderr)
    }

    /// Our client and server: offered list, server choice, no match (optional or required), a choice
    /// the client did not offer.
    func testALPNBetweenOurEnds() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        try client.setALPNProtocols(["imap", "h2"])
        let offers = Recorder<[String]>()
        server.setALPNSelectCallback { _, offered in offers.append(offered); return "h2" }
        let agreed = try Toolbox.connect(server: server, client: client, serverBody: { stream in
            XCTAssertEqual(stream.ssl?.alpnSelected, "h2")
        }) { stream in
            XCTAssertEqual(stream.ssl?.alpnSelected, "h2")
        }
        XCTAssertTrue(agreed.succeeded, Toolbox.message(agreed.clientError))
        XCTAssertEqual(offers.values, [["imap", "h2"]])

        server.setALPNSelectCallback { _, _ in "smtp" }
        let bogus = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue("\(Toolbox.message(bogus.serverError))".contains("did not offer"), Toolbox.message(bogus.serverError))
        XCTAssertNotNil(bogus.clientError)

        server.setALPNServerProtocols(["http/1.1"])
        let optional = try Toolbox.connect(server: server, client: client, clientBody: { stream in XCTAssertNil(stream.ssl?.alpnSelected) })
        XCTAssertTrue(optional.succeeded, Toolbox.message(optional.clientError))

        server.setALPNServerProtocols(["http/1.1"], required: true)
        let required = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue(Toolbox.message(required.serverError).contains("no application protocol in common"), Toolbox.message(required.serverError))
        let clientError = try XCTUnwrap(required.clientError as? SSLError)
        XCTAssertTrue(clientError.reasons.contains { $0.contains("no application protocol") }, "\(clientError)")

        XCTAssertThrowsError(try client.setALPNProtocols([""]))
        XCTAssertThrowsError(try client.setALPNProtocols([String(repeating: "x", count: 256)]))
        server.setALPNSelectCallback(nil)
    }
}
