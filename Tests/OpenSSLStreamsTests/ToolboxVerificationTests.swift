import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Verification helpers on real handshakes over loopback: modes per side, the verify callback, host and
/// IP checks, in-memory trust, verify depth, CRLs.
final class ToolboxVerificationTests: XCTestCase {
    func testVerificationModesPerSide() throws {
        let ctx = try makeSSLCtx(protocol: .default, side: .both)
        defer { destroySSLCtx(ctx) }
        setVerificationMode(ctx, side: .client, mode: .always)
        XCTAssertEqual(getVerificationMode(ctx), .peer)
        setVerificationMode(ctx, side: .server, mode: .always)
        XCTAssertEqual(getVerificationMode(ctx), [.peer, .failIfNoPeerCertificate])
        setVerificationMode(ctx, side: .server, mode: .once)
        XCTAssertEqual(getVerificationMode(ctx), [.peer, .failIfNoPeerCertificate, .clientOnce])
        XCTAssertEqual(getVerificationMode(ctx).rawValue, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE)
        setVerificationMode(ctx, side: .server, mode: .flags(SSLVerifyFlags(rawValue: SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE)))
        XCTAssertEqual(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE)
        setVerificationMode(ctx, side: .client, mode: .never)
        XCTAssertEqual(getVerificationMode(ctx), .none)
        // Per connection.
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        setVerificationMode(ssl, side: .server, mode: .always)
        XCTAssertEqual(getVerificationMode(ssl), [.peer, .failIfNoPeerCertificate])
        XCTAssertEqual(getVerificationMode(ctx), .none, "the connection's mode is its own")
    }

    /// The callback sees depth 1 (the CA) then depth 0 (the server), with their certificates.
    func testVerifyCallbackSeesTheChainAndCanReject() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let seen = Recorder<(Int32, Bool, String)>()
        setVerificationMode(client, side: .client, mode: .always) { ok, store in
            seen.append((store.depth, ok, store.currentCertificate?.subject ?? "?"))
            XCTAssertNotNil(store.ssl)
            XCTAssertFalse(store.chain.isEmpty)
            return ok
        }
        let accepted = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.verifyResult, Int(X509_V_OK))
            XCTAssertEqual(stream.ssl?.verifiedChain.count, 2)
        })
        XCTAssertTrue(accepted.succeeded, Toolbox.message(accepted.clientError))
        XCTAssertEqual(seen.values.map(\.0), [1, 0])
        XCTAssertEqual(seen.values.map(\.1), [true, true])
        XCTAssertEqual(seen.values.first?.2, "CN=swift-openssl-fli test CA")
        XCTAssertEqual(seen.values.last?.2, "CN=localhost")

        // Rejecting the server's own certificate fails the handshake as a verification failure.
        setVerificationMode(client, side: .client, mode: .always) { ok, store in store.depth == 0 ? false : ok }
        let rejected = try Toolbox.connect(server: server, client: client)
        let error = try XCTUnwrap(rejected.clientError as? SSLError, Toolbox.message(rejected.clientError))
        XCTAssertEqual(error.kind, .verificationFailure)
        XCTAssertEqual(error.verifyResult, Int(X509_V_ERR_APPLICATION_VERIFICATION), "\(error)")
        XCTAssertNotNil(rejected.serverError, "the server sees the client's alert")
    }

    /// A callback that throws fails the handshake with its own error (not OpenSSL's), and it is not
    /// left behind for a later call on the thread.
    func testVerifyCallbackErrorIsRethrown() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        setVerificationMode(client, side: .client, mode: .always) { _, store in
            if store.depth == 0 { throw CallbackRefusal(reason: "pinned key mismatch") }
            return true
        }
        let outcome = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(outcome.clientError as? CallbackRefusal, CallbackRefusal(reason: "pinned key mismatch"), Toolbox.message(outcome.clientError))
        XCTAssertNil(CallbackRegistry.takePendingError())
        // With verification off OpenSSL still runs the callback and would go on after a refusal; the
        // thrown error stops the handshake all the same.
        setVerificationMode(client, side: .client, mode: .never) { _, _ in throw CallbackRefusal(reason: "never") }
        let stopped = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual(stopped.clientError as? CallbackRefusal, CallbackRefusal(reason: "never"), Toolbox.message(stopped.clientError))
        setVerificationMode(client, side: .client, mode: .never) { _, _ in true }
        let passes = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue(passes.succeeded, Toolbox.message(passes.clientError))
    }

    /// A callback can accept what the default verification refuses (a self-signed server), and sees why.
    func testVerifyCallbackCanOverrideAFailure() throws {
        let pki = try Fixtures.pki
        let server = try Fixtures.serverContext(cert: pki.selfSignedCert)
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let refused = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual((refused.clientError as? SSLError)?.kind, .verificationFailure)
        let reasons = Recorder<String>()
        setVerificationMode(client, side: .client, mode: .always) { ok, store in
            if !ok { reasons.append(store.errorString) }
            return true
        }
        let accepted = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue(accepted.succeeded, Toolbox.message(accepted.clientError))
        XCTAssertTrue(reasons.values.contains { $0.contains("self-signed") || $0.contains("self signed") }, "\(reasons.values)")
    }

    func testExpectedHostAndIPAddress() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let wrongName = try Toolbox.connect(server: server, client: client, sslConfigure: { try $0.setExpectedHost("other.example") })
        XCTAssertEqual((wrongName.clientError as? SSLError)?.verifyResultText, "hostname mismatch", Toolbox.message(wrongName.clientError))
        let wrongIP = try Toolbox.connect(server: server, client: client, sslConfigure: { try $0.setExpectedHost("10.1.2.3") })
        XCTAssertEqual((wrongIP.clientError as? SSLError)?.verifyResultText, "IP address mismatch", Toolbox.message(wrongIP.clientError))
        for good in ["localhost", "127.0.0.1", "::1"] {
            let outcome = try Toolbox.connect(server: server, client: client, sslConfigure: { try $0.setExpectedHost(good) })
            XCTAssertTrue(outcome.succeeded, "\(good): \(Toolbox.message(outcome.clientError))")
        }
        let ssl = try sslNew(client)
        defer { destroySSL(ssl) }
        XCTAssertThrowsError(try ssl.setExpectedHost("")) { XCTAssertEqual(($0 as? SSLError)?.call, "SSL_set1_host") }
    }

    /// Trust from memory, a verify depth too small for the chain, and the system store call.
    func testInMemoryTrustAndVerifyDepth() throws {
        let chain = Toolbox.chain
        let server = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(server) }
        try useIdentity(server, certificate: chain.leaf, key: chain.leafKey, chain: [chain.intermediate])
        let client = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(client) }
        setVerificationMode(client, side: .client, mode: .always)
        let untrusted = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual((untrusted.clientError as? SSLError)?.verifyResult, Int(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
                       Toolbox.message(untrusted.clientError))
        try client.trust([chain.root])
        let trusted = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.verifiedChain.map(\.subject), ["CN=localhost", "CN=toolbox intermediate", "CN=toolbox root"])
        })
        XCTAssertTrue(trusted.succeeded, Toolbox.message(trusted.clientError))
        client.verifyDepth = 0
        XCTAssertEqual(client.verifyDepth, 0)
        let tooDeep = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual((tooDeep.clientError as? SSLError)?.verifyResult, Int(X509_V_ERR_CERT_CHAIN_TOO_LONG), Toolbox.message(tooDeep.clientError))
        client.verifyDepth = 5
        // The system store loads (Debian's ca-certificates may be absent: then it is empty, not an error).
        XCTAssertNoThrow(try client.trustSystemStore())
        XCTAssertThrowsError(try client.trust(file: try Fixtures.pki.missing)) { error in
            XCTAssertEqual((error as? SSLError)?.file, try? Fixtures.pki.missing)
        }
    }

    /// CRLs made in memory: checking without a CRL fails, a CRL revoking the server refuses it, an empty
    /// CRL lets it through.
    func testCRLChecking() throws {
        let chain = Toolbox.chain
        let server = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(server) }
        let leafKey = try PrivateKey.generateEC()
        let leaf = try makeCertificate(.server(hosts: ["localhost"]), key: leafKey, issuer: (chain.root, chain.rootKey))
        try useIdentity(server, certificate: leaf, key: leafKey)

        func client(crl: CertificateRevocationList?) throws -> SSLContextPointer {
            let ctx = try makeSSLCtx(protocol: .default, side: .client)
            setVerificationMode(ctx, side: .client, mode: .always)
            try ctx.trust([chain.root])
            try ctx.setCRLChecking(.leaf)
            if let crl { try ctx.addCRL(crl) }
            return ctx
        }
        let noCRL = try client(crl: nil)
        defer { destroySSLCtx(noCRL) }
        let missing = try Toolbox.connect(server: server, client: noCRL)
        XCTAssertEqual((missing.clientError as? SSLError)?.verifyResult, Int(X509_V_ERR_UNABLE_TO_GET_CRL), Toolbox.message(missing.clientError))

        let revokingCRL = try CertificateRevocationList.make(issuer: (chain.root, chain.rootKey), revoking: [leaf])
        XCTAssertEqual(revokingCRL.revokedSerialNumbers, [leaf.serialNumber])
        let reread = try CertificateRevocationList(pem: try revokingCRL.pem())
        XCTAssertEqual(reread.revokedSerialNumbers, [leaf.serialNumber])
        let revoking = try client(crl: reread)
        defer { destroySSLCtx(revoking) }
        let revoked = try Toolbox.connect(server: server, client: revoking)
        let error = try XCTUnwrap(revoked.clientError as? SSLError)
        XCTAssertEqual(error.verifyResultText, "certificate revoked", "\(error)")

        let empty = try client(crl: try CertificateRevocationList.make(issuer: (chain.root, chain.rootKey), revoking: []))
        defer { destroySSLCtx(empty) }
        let fine = try Toolbox.connect(server: server, client: empty)
        XCTAssertTrue(fine.succeeded, Toolbox.message(fine.clientError))
        try empty.setCRLChecking(.off)
        XCTAssertThrowsError(try CertificateRevocationList(pem: "not a CRL")) { XCTAssertEqual(($0 as? SSLError)?.call, "PEM_read_bio_X509_CRL") }
    }
}
