import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Hostile peers (silent, garbage, reset, EOF without close_notify), plain socket failures, and bad
/// certificates against a default client: each refused with the right reason, accepted once configured.
final class HostileAndCertificateTests: XCTestCase {
    override func setUp() { clearOpenSSLErrors() }

    // MARK: Hostile peers

    /// A peer that accepts TCP and never answers: the client's handshake times out within the
    /// timeout + 0.5 s, as `.handshakeTimeout`; the connection is closed, nothing is left behind.
    func testSilentServerTimesOutTheHandshake() throws {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let baseConnections = SSLStreamCensus.liveConnections, baseContexts = SSLStreamCensus.liveContexts
        let silent = Background("silent server") {
            let s = try listener.accept(timeout: 10)
            _ = try? s.readExactly(1 << 20)  // reads the ClientHello, answers nothing, until the client leaves
            try s.close()
        }
        let start = Date()
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .default, handshakeTimeout: 1.0)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .handshakeTimeout, "\(error)")
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(listener.port)"), "the error names the peer: \(error)")
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(elapsed, 0.95)
        XCTAssertLessThan(elapsed, 1.5, "timed out after \(elapsed) s")
        try silent.join()
        XCTAssertEqual(SSLStreamCensus.liveConnections, baseConnections)
        XCTAssertEqual(SSLStreamCensus.liveContexts, baseContexts)
    }

    /// A client that connects and sends nothing: the server's handshake times out the same way.
    func testSilentClientTimesOutTheServerHandshake() throws {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let client = try openTCPStream(host: "127.0.0.1", port: listener.port)
        defer { try? client.close() }
        let server = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 0.5, timeout: 5)
        defer { try? server.close() }
        let start = Date()
        XCTAssertThrowsError(try server.readLine()) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .handshakeTimeout, "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.0)
    }

    /// A peer that answers the ClientHello with garbage: `.failure`, with OpenSSL's reason.
    func testGarbageFromThePeerIsAFailureWithOpenSSLsReason() throws {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let garbage = Background("garbage server") {
            let s = try listener.accept(timeout: 10, readTimeout: 10)
            _ = try s.read(maxLength: 4096)
            try s.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            try s.flush()
            _ = try? s.read(maxLength: 4096)
            try s.close()
        }
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .default, handshakeTimeout: 5)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .failure, "\(error)")
            XCTAssertEqual(e?.status, .ssl)
            XCTAssertTrue(e?.reasons.contains("wrong version number") ?? false, "\(e?.reasons ?? [])")
        }
        try garbage.join()
    }

    /// A Python TLS server that sends a line and then resets the connection (SO_LINGER 0): the client's
    /// next read fails with kind `.error`, `ECONNRESET` and the peer's address.
    func testPeerResetMidStream() throws {
        let pki = try Fixtures.pki
        let script = """
        import socket, ssl, struct, sys
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
        print(ls.getsockname()[1], flush=True)
        ls.settimeout(20)
        raw, _ = ls.accept(); raw.settimeout(20)
        s = ctx.wrap_socket(raw, server_side=True)
        s.sendall(b"first line\\n")
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # no close_notify (Python sends it only in unwrap), and linger 0: RST
        print("reset", flush=True)
        """
        let peer = try BackgroundProcess(Fixtures.python, ["-c", script, pki.serverCert, pki.serverKey])
        defer { peer.terminate() }
        XCTAssertTrue(peer.waitFor(timeout: 10) { out, _ in out.contains("\n") }, peer.errorOutput)
        let port = try XCTUnwrap(Int(peer.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 10,
                                       security: .trusting(caFile: pki.caCert), readTimeout: 10)
        defer { try? stream.close() }
        XCTAssertEqual(try stream.readLine(), "first line")
        try stream.writeLine("go on")
        XCTAssertTrue(peer.waitFor("reset", timeout: 10), peer.errorOutput)
        XCTAssertThrowsError(try stream.readLine()) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .error, "\(error)")
            XCTAssertEqual(e?.errno, ECONNRESET, "\(error)")
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(port)"), "\(error)")
        }
    }

    /// The peer closes TCP without close_notify: reported as an error (possible truncation), not as a
    /// clean end of stream; a real close_notify is a clean end of stream (read returns nothing).
    func testEOFWithoutCloseNotifyIsReportedAsSuch() throws {
        let pki = try Fixtures.pki
        for clean in [false, true] {
            let listener = try Fixtures.loopbackListener()
            defer { listener.close() }
            let server = Background("server") {
                let s = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                try s.writeLine("last words")
                if clean {
                    try s.close()  // close_notify, then FIN
                } else {
                    Glibc.shutdown(s.fileDescriptor, Int32(SHUT_WR))  // FIN without close_notify
                    _ = try? s.read(maxLength: 100)
                    try? s.close()
                }
            }
            let stream = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                           security: .trusting(caFile: pki.caCert), readTimeout: 10)
            XCTAssertEqual(try stream.readLine(), "last words")
            if clean {
                XCTAssertNil(try stream.readLine(), "close_notify is the end of the stream")
                XCTAssertThrowsError(try stream.readExactly(1)) { error in
                    let e = error as? SSLError
                    XCTAssertEqual(e?.kind, .closed, "\(error)")
                    XCTAssertEqual(e?.status, .zeroReturn, "\(error)")
                }
            } else {
                XCTAssertThrowsError(try stream.readLine()) { error in
                    let e = error as? SSLError
                    XCTAssertEqual(e?.kind, .error, "\(error)")
                    XCTAssertEqual(e?.isUnexpectedEOF, true, "\(error)")
                }
            }
            try stream.close()
            try server.join()
        }
    }

    // MARK: Plain socket failures

    func testSocketFailuresCarryErrnoAndAddress() throws {
        // A port nobody listens on: connection refused, with the address.
        let listener = try Fixtures.loopbackListener()
        let port = listener.port
        listener.close()
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: port, connectTimeout: 5)) { error in
            let e = error as? SocketError
            XCTAssertEqual(e?.errno, ECONNREFUSED, "\(error)")
            XCTAssertEqual(e?.call, "connect")
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(port)"), "\(error)")
        }
        // A name that does not resolve.
        XCTAssertThrowsError(try openTCPStream(host: "no-such-host.invalid", port: 443, connectTimeout: 5)) { error in
            XCTAssertTrue(error is HostResolutionError, "\(error)")
            XCTAssertTrue("\(error)".contains("no-such-host.invalid"), "\(error)")
        }
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: 70000)) { error in
            XCTAssertTrue(error is HostResolutionError, "\(error)")
        }
        // Read timeout on a silent peer: ETIMEDOUT, and the stream stays usable.
        let l2 = try Fixtures.loopbackListener()
        defer { l2.close() }
        let client = try openTCPStream(host: "127.0.0.1", port: l2.port, readTimeout: 0.2)
        let server = try l2.accept(timeout: 5)
        defer { try? client.close(); try? server.close() }
        XCTAssertThrowsError(try client.readLine()) { error in
            XCTAssertEqual((error as? SocketError)?.errno, ETIMEDOUT, "\(error)")
        }
        try server.writeLine("late")
        XCTAssertEqual(try client.readLine(), "late")
        // Accept timeout.
        XCTAssertThrowsError(try l2.accept(timeout: 0.1)) { error in
            XCTAssertEqual((error as? SocketError)?.errno, ETIMEDOUT, "\(error)")
        }
        // A port in use.
        XCTAssertThrowsError(try listen(port: l2.port, host: "127.0.0.1", reuseAddress: false)) { error in
            XCTAssertEqual((error as? SocketError)?.errno, EADDRINUSE, "\(error)")
        }
    }

    // MARK: Certificates

    struct CertificateCase {
        var name: String
        var cert: String
        var verifyResult: Int32
        var text: String
        /// How a client is told to accept it.
        var configured: (TestPKI) -> (security: SSLSecurity, ctxConfigure: ((SSLContextPointer) throws -> Void)?, hostName: String?)
    }

    /// Expired, self-signed, wrong-host and untrusted-CA certificates: a default client (trusting the
    /// test CA) refuses each with `.verificationFailure` and the verify result's text; the switch made
    /// for each lets it through.
    func testBadCertificatesRefusedByDefaultAndAcceptedOnceConfigured() throws {
        let pki = try Fixtures.pki
        let cases: [CertificateCase] = [
            CertificateCase(name: "expired", cert: pki.expiredCert, verifyResult: COpenSSL.X509_V_ERR_CERT_HAS_EXPIRED,
                            text: "certificate has expired", configured: { pki in
                                (.trusting(caFile: pki.caCert), { ctx in
                                    _ = X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), UInt(COpenSSL.X509_V_FLAG_NO_CHECK_TIME))
                                }, nil)
                            }),
            CertificateCase(name: "self-signed", cert: pki.selfSignedCert, verifyResult: COpenSSL.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
                            text: "self-signed certificate", configured: { pki in (.trusting(caFile: pki.selfSignedCert), nil, nil) }),
            CertificateCase(name: "wrong host", cert: pki.wrongHostCert, verifyResult: COpenSSL.X509_V_ERR_HOSTNAME_MISMATCH,
                            text: "hostname mismatch", configured: { pki in (.trusting(caFile: pki.caCert), nil, "other.example") }),
            CertificateCase(name: "untrusted CA", cert: pki.untrustedLeafCert, verifyResult: COpenSSL.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                            text: "unable to get local issuer certificate", configured: { pki in (.trusting(caFile: pki.untrustedCACert), nil, nil) }),
        ]
        for c in cases {
            let serverCtx = try Fixtures.serverContext(cert: c.cert)
            defer { destroySSLCtx(serverCtx) }
            let listener = try Fixtures.loopbackListener()
            defer { listener.close() }
            let server = Background("\(c.name) server") {
                for _ in 0..<3 {
                    let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                    if let line = try? s.readLine() { try? s.writeLine(line) }
                    try? s.close()
                }
            }
            // Refused by a default client.
            XCTAssertThrowsError(try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                                   security: .trusting(caFile: pki.caCert)), c.name) { error in
                let e = error as? SSLError
                XCTAssertEqual(e?.kind, .verificationFailure, "\(c.name): \(error)")
                XCTAssertEqual(e?.verifyResult, Int(c.verifyResult), "\(c.name): \(error)")
                XCTAssertTrue(e?.message.contains(c.text) ?? false, "\(c.name): \(error)")
            }
            // Accepted once configured.
            let (security, ctxConfigure, hostName) = c.configured(pki)
            let stream = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, ctxConfigure: ctxConfigure,
                                           handshakeTimeout: 10, hostName: hostName, security: security, readTimeout: 10)
            try stream.writeLine(c.name)
            XCTAssertEqual(try stream.readLine(), c.name)
            try stream.close()
            // Accepted with verification switched off.
            let insecure = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                             security: .insecure, readTimeout: 10)
            try insecure.writeLine("insecure")
            XCTAssertEqual(try insecure.readLine(), "insecure")
            try insecure.close()
            try server.join()
        }
    }

    /// The secure defaults: a default client trusts only the system store (our test CA is not in it),
    /// checks the IP address it connected to, sends SNI for names and not for IP addresses, and refuses
    /// TLS 1.1 unless told otherwise.
    func testSecureDefaults() throws {
        let pki = try Fixtures.pki
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Seen: @unchecked Sendable { var names: [String?] = [] }  // written by the background thread, read after it was joined
        let seen = Seen()
        let server = Background("server") {
            for _ in 0..<4 {
                guard let s = try? listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10, timeout: 10, readTimeout: 10) else { continue }
                if (try? s.handshake(timeout: 10)) != nil {
                    seen.names.append(SSL_get_servername(s.ssl, Int32(COpenSSL.TLSEXT_NAMETYPE_host_name)))
                    if let line = try? s.readLine() { try? s.writeLine(line) }
                }
                try? s.close()
            }
        }
        // 1. System store only: the test CA is unknown.
        XCTAssertThrowsError(try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .verificationFailure, "\(error)")
        }
        // 2. By name: SNI "localhost".
        let byName = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                       security: .trusting(caFile: pki.caCert), readTimeout: 10)
        try byName.writeLine("a"); XCTAssertEqual(try byName.readLine(), "a"); try byName.close()
        // 3. By IP: the certificate's IP SAN is checked; no SNI.
        let byIP = try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                     security: .trusting(caFile: pki.caCert), readTimeout: 10)
        try byIP.writeLine("b"); XCTAssertEqual(try byIP.readLine(), "b"); try byIP.close()
        // 4. A host name check that fails for an IP the certificate does not name.
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                               hostName: "127.0.0.2", security: .trusting(caFile: pki.caCert))) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .verificationFailure, "\(error)")
            XCTAssertEqual(e?.verifyResult, Int(COpenSSL.X509_V_ERR_IP_ADDRESS_MISMATCH), "\(error)")
        }
        try server.join()
        XCTAssertEqual(seen.names.count, 2, "two handshakes completed")
        XCTAssertEqual(seen.names.first ?? nil, "localhost", "SNI sent for a DNS name")
        XCTAssertEqual(seen.names.last ?? "x", nil, "no SNI for an IP address")
    }

    /// TLS 1.1 is refused by default (minimum TLS 1.2) and allowed when asked for explicitly.
    func testMinimumVersionDefaultAndOverride() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                                                            "-rev", "-naccept", "2"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort())
        XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default, handshakeTimeout: 10,
                                               security: .trusting(caFile: pki.caCert))) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .failure, "\(error)")
            XCTAssertFalse(e?.reasons.isEmpty ?? true, "\(error)")
        }
        var security = SSLSecurity.trusting(caFile: pki.caCert)
        security.minimumVersion = .tls1_1
        let stream = try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .default,
                                       ctxConfigure: { ctx in
                                           SSL_CTX_set_security_level(ctx, 0)
                                           _ = SSL_CTX_set_cipher_list(ctx, "DEFAULT@SECLEVEL=0")
                                       },
                                       handshakeTimeout: 10, security: security, readTimeout: 10)
        XCTAssertEqual(stream.ssl?.versionName, "TLSv1.1")
        try stream.writeLine("old")
        XCTAssertEqual(try stream.readLine(), "dlo")
        try stream.close()
    }
}
