import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Protocol settings, chain building, certificate accessors and closure lifetimes.
final class ToolboxSettingsTests: XCTestCase {
    func testVersionsCipherListCiphersuitesAndGroups() throws {
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }

        try server.setProtocolVersions(minimum: .tls1_2, maximum: .tls1_2)
        XCTAssertEqual(server.minimumProtocolVersion, .tls1_2)
        XCTAssertEqual(server.maximumProtocolVersion, .tls1_2)
        try server.setCipherList("ECDHE-ECDSA-AES256-GCM-SHA384")
        XCTAssertTrue(server.cipherNames.contains("ECDHE-ECDSA-AES256-GCM-SHA384"))
        XCTAssertFalse(server.cipherNames.contains("ECDHE-ECDSA-AES128-GCM-SHA256"))
        let tls12 = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.protocolVersion, .tls1_2)
            XCTAssertEqual(stream.ssl?.cipherName, "ECDHE-ECDSA-AES256-GCM-SHA384")
        })
        XCTAssertTrue(tls12.succeeded, Toolbox.message(tls12.clientError))

        try server.setProtocolVersions(minimum: .tls1_3)
        XCTAssertNil(server.maximumProtocolVersion)
        try server.setCiphersuites("TLS_AES_256_GCM_SHA384")
        try client.setGroups("P-384")  // one group: a 3.5 server would prefer X25519 from a longer list
        let tls13 = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.protocolVersion, .tls1_3)
            XCTAssertEqual(stream.ssl?.cipherName, "TLS_AES_256_GCM_SHA384")
            XCTAssertEqual(stream.ssl?.negotiatedGroup, "secp384r1")
        })
        XCTAssertTrue(tls13.succeeded, Toolbox.message(tls13.clientError))

        // The client allows TLS 1.2 only: no common version.
        try client.setProtocolVersions(minimum: .tls1_2, maximum: .tls1_2)
        let none = try Toolbox.connect(server: server, client: client)
        XCTAssertTrue(((none.serverError as? SSLError)?.reasons ?? []).contains("unsupported protocol"), Toolbox.message(none.serverError))

        // Bad input: clear errors, nothing changed.
        XCTAssertThrowsError(try client.setCipherList("NO-SUCH-CIPHER")) { error in
            XCTAssertEqual((error as? SSLError)?.call, "SSL_CTX_set_cipher_list")
            XCTAssertTrue((error as? SSLError)?.reasons.contains("no cipher match") ?? false, "\(error)")
        }
        XCTAssertThrowsError(try client.setCiphersuites("TLS_NOT_A_SUITE"))
        XCTAssertThrowsError(try client.setGroups("no-such-group"))
        XCTAssertThrowsError(try client.setSignatureAlgorithms("BOGUS+SHA1"))
        XCTAssertThrowsError(try client.setProtocolVersions(minimum: .tls1_3, maximum: .tls1_2)) { error in
            XCTAssertTrue("\(error)".contains("above the maximum"))
        }
        XCTAssertEqual(client.maximumProtocolVersion, .tls1_2, "unchanged by the refused call")
    }

    /// A P-256 key gives 128 bits of security: accepted at level 2 and 3, refused at level 4 (192 bits).
    func testSecurityLevel() throws {
        let ctx = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(ctx) }
        XCTAssertGreaterThanOrEqual(ctx.securityLevel, 1)
        ctx.securityLevel = 3
        XCTAssertNoThrow(try useIdentity(ctx, certificate: Toolbox.chain.leaf, key: Toolbox.chain.leafKey))
        ctx.securityLevel = 4
        XCTAssertEqual(ctx.securityLevel, 4)
        let strict = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(strict) }
        strict.securityLevel = 4
        XCTAssertThrowsError(try useIdentity(strict, certificate: Toolbox.chain.leaf, key: Toolbox.chain.leafKey)) { error in
            XCTAssertTrue((error as? SSLError)?.reasons.contains("ee key too small") ?? false, "\(error)")
        }
    }

    /// The server builds its chain (leaf → intermediate) from the certificates it trusts; a client that
    /// trusts only the root then verifies it. Without the build it cannot.
    func testCertificateChainBuilding() throws {
        let chain = Toolbox.chain
        let server = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(server) }
        try useIdentity(server, certificate: chain.leaf, key: chain.leafKey)
        let client = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(client) }
        setVerificationMode(client, side: .client, mode: .always)
        try client.trust([chain.root])

        let unbuilt = try Toolbox.connect(server: server, client: client)
        XCTAssertEqual((unbuilt.clientError as? SSLError)?.verifyResultText, "unable to get local issuer certificate", Toolbox.message(unbuilt.clientError))
        XCTAssertThrowsError(try server.buildCertificateChain(), "the server trusts nothing yet")

        try server.trust([chain.intermediate, chain.root])
        try server.buildCertificateChain()
        XCTAssertEqual(server.chainCertificates.map(\.subject), ["CN=toolbox intermediate"])
        XCTAssertEqual(server.certificate?.subject, "CN=localhost")
        let built = try Toolbox.connect(server: server, client: client, clientBody: { stream in
            XCTAssertEqual(stream.ssl?.peerCertificateChain.map(\.subject), ["CN=localhost", "CN=toolbox intermediate"])
        })
        XCTAssertTrue(built.succeeded, Toolbox.message(built.clientError))

        try server.buildCertificateChain(includeRoot: true)
        XCTAssertEqual(server.chainCertificates.count, 2)
        let explicit = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(explicit) }
        try useIdentity(explicit, certificate: chain.leaf, key: chain.leafKey)
        try explicit.addChainCertificate(chain.intermediate)
        XCTAssertEqual(explicit.chainCertificates.map(\.subject), ["CN=toolbox intermediate"])
    }

    /// Certificates and keys in and out of PEM and DER, and their accessors, checked against the openssl CLI.
    func testCertificateAndKeyAccessors() throws {
        let key = try PrivateKey.generateEC()
        let profile = CertificateProfile(commonName: "accessors.example", dnsNames: ["accessors.example", "www.accessors.example"],
                                         ipAddresses: ["192.0.2.7", "2001:db8::7"], validity: 3 * 86_400, serial: 0x1234ABCD)
        let certificate = try makeCertificate(profile, key: key, issuer: (Toolbox.chain.root, Toolbox.chain.rootKey))
        XCTAssertEqual(certificate.subjectAlternativeNames,
                       ["DNS:accessors.example", "DNS:www.accessors.example", "IP:192.0.2.7", "IP:2001:db8::7"])
        XCTAssertEqual(certificate.dnsNames, ["accessors.example", "www.accessors.example"])
        XCTAssertEqual(certificate.ipAddresses, ["192.0.2.7", "2001:db8::7"])
        XCTAssertEqual(certificate.serialNumber, "1234ABCD")
        XCTAssertEqual(certificate.issuer, "CN=toolbox root")
        let notBefore = try XCTUnwrap(certificate.notBefore), notAfter = try XCTUnwrap(certificate.notAfter)
        XCTAssertEqual(notAfter.timeIntervalSince(notBefore), 3 * 86_400, accuracy: 1)
        XCTAssertEqual(notBefore.timeIntervalSinceNow, -300, accuracy: 60)
        XCTAssertTrue(certificate.isValid(forHost: "www.accessors.example"))
        XCTAssertTrue(certificate.isValid(forHost: "2001:db8::7"))
        XCTAssertFalse(certificate.isValid(forHost: "other.example"))
        XCTAssertTrue(certificate.matches(key))
        XCTAssertFalse(certificate.matches(Toolbox.chain.rootKey))

        // DER and PEM round trips.
        let der = try certificate.der()
        XCTAssertEqual(try Certificate(der: der).fingerprintSHA256, certificate.fingerprintSHA256)
        let keyDER = try key.der()
        XCTAssertTrue(certificate.matches(try PrivateKey(der: keyDER)))
        let encrypted = try key.pem(passphrase: "s3cret")
        XCTAssertTrue(encrypted.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        XCTAssertTrue(certificate.matches(try PrivateKey(pem: encrypted, passphrase: "s3cret")))
        XCTAssertThrowsError(try PrivateKey(pem: encrypted, passphrase: "wrong"))
        XCTAssertThrowsError(try key.pem(passphrase: ""))
        XCTAssertThrowsError(try Certificate(der: [0x30, 0x03, 1, 2, 3])) { XCTAssertEqual(($0 as? SSLError)?.call, "d2i_X509") }
        XCTAssertThrowsError(try PrivateKey(der: [1, 2, 3])) { XCTAssertEqual(($0 as? SSLError)?.call, "d2i_AutoPrivateKey") }
        let bundle = try certificate.pem() + Toolbox.chain.root.pem()
        XCTAssertEqual(try Certificate.all(pem: bundle).map(\.subject), ["CN=accessors.example", "CN=toolbox root"])
        XCTAssertThrowsError(try Certificate.all(pem: "nothing here"))

        // The CLI reads the same fingerprints, serial and names.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("accessors-\(UUID().uuidString).pem").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try certificate.pem().write(toFile: file, atomically: true, encoding: .utf8)
        let cli = try runProcess(Fixtures.openssl, ["x509", "-in", file, "-noout", "-serial", "-fingerprint", "-sha256"], timeout: 20)
        XCTAssertTrue(cli.stdout.contains("serial=1234ABCD"), cli.stdout)
        XCTAssertTrue(cli.stdout.contains("Fingerprint=\(certificate.fingerprintSHA256)"), cli.stdout)
        let sha1 = try runProcess(Fixtures.openssl, ["x509", "-in", file, "-noout", "-fingerprint", "-sha1"], timeout: 20)
        XCTAssertTrue(sha1.stdout.contains("Fingerprint=\(certificate.fingerprintSHA1)"), sha1.stdout)

        let rsa = try PrivateKey.generateRSA(bits: 2048)
        let rsaCertificate = try makeCertificate(.server(hosts: ["rsa.example"]), key: rsa)
        XCTAssertTrue(rsaCertificate.matches(rsa))
        XCTAssertThrowsError(try PrivateKey.generateRSA(bits: 512))
    }

    // MARK: Lifetimes

    /// Every callback setter keeps its closure in ex_data: replacing it releases the old closure, and
    /// freeing the context (or connection) releases them all.
    func testClosuresAreReleasedOnReplaceAndOnFree() throws {
        let setters: [(String, (SSLContextPointer, LifetimeProbe?) throws -> Void)] = [
            ("verify", { ctx, p in setVerificationMode(ctx, side: .client, mode: .always) { ok, _ in p?.touch(); return ok } }),
            ("servername", { ctx, p in ctx.setServerNameCallback { _, _ in p?.touch(); return nil } }),
            ("alpn", { ctx, p in ctx.setALPNSelectCallback { _, _ in p?.touch(); return nil } }),
            ("new-session", { ctx, p in ctx.setNewSessionCallback { _, _ in p?.touch() } }),
            ("keylog", { ctx, p in ctx.setKeylogCallback { _, _ in p?.touch() } }),
            ("info", { ctx, p in ctx.setInfoCallback { _, _ in p?.touch() } }),
            ("message", { ctx, p in ctx.setMessageCallback { _, _ in p?.touch() } }),
            ("ocsp-responder", { ctx, p in ctx.setOCSPResponder { _ in p?.touch(); return nil } }),
            ("ocsp-check", { ctx, p in try ctx.requestOCSPStatus { _, _ in p?.touch(); return true } }),
            ("psk-client", { ctx, p in ctx.setPSKClientCallback { _, _ in p?.touch(); return nil } }),
            ("psk-server", { ctx, p in ctx.setPSKServerCallback { _, _ in p?.touch(); return nil } }),
            ("password", { ctx, p in try setSSLCtxPasswordCallback(ctx, callback: { _, _ in p?.touch(); return nil }) }),
        ]
        for (name, set) in setters {
            let ctx = try makeSSLCtx(protocol: .default, side: .both)
            weak var replaced: LifetimeProbe?
            weak var freed: LifetimeProbe?
            do {
                let first = LifetimeProbe()
                replaced = first
                try set(ctx, first)
            }
            XCTAssertNotNil(replaced, "\(name): kept while set")
            do {
                let second = LifetimeProbe()
                freed = second
                try set(ctx, second)
            }
            XCTAssertNil(replaced, "\(name): released when replaced")
            XCTAssertNotNil(freed, "\(name): the new one is kept")
            destroySSLCtx(ctx)
            XCTAssertNil(freed, "\(name): released when the context is freed")
        }

        // Connection-level closures go with the connection.
        let ctx = try makeSSLCtx(protocol: .default, side: .both)
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        weak var connectionProbe: LifetimeProbe?
        do {
            let probe = LifetimeProbe()
            connectionProbe = probe
            ssl.setInfoCallback { _, _ in probe.touch() }
            setVerificationMode(ssl, side: .client, mode: .always) { ok, _ in probe.touch(); return ok }
        }
        XCTAssertNotNil(connectionProbe)
        ssl.setInfoCallback(nil)
        XCTAssertNotNil(connectionProbe, "still held by the verify callback")
        destroySSL(ssl)
        XCTAssertNil(connectionProbe, "released when the connection is freed")
    }

    /// A client session cache installed on a context lives as long as the context.
    func testSessionCacheLivesWithTheContext() throws {
        let ctx = try makeSSLCtx(protocol: .default, side: .client)
        weak var weakCache: ClientSessionCache?
        do {
            let cache = ClientSessionCache(capacity: 2)
            weakCache = cache
            cache.install(on: ctx)
        }
        XCTAssertNotNil(weakCache)
        destroySSLCtx(ctx)
        XCTAssertNil(weakCache)
    }
}
