import Foundation
import OpenSSL
import OpenSSLFLI
import TestSupport
import XCTest

/// Keys and CA-signed certificates made in memory, checked by OpenSSL's own verifier and by the
/// `openssl` command line (an independent reader of what we write).
final class CertificateGenerationTests: XCTestCase {
    func testCASignedServerAndClientCertificatesVerify() throws {
        let caKey = try PrivateKey.generateEC()
        let ca = try makeCertificate(.authority("fli test CA"), key: caKey)
        let serverKey = try PrivateKey.generateEC()
        let server = try makeCertificate(.server(hosts: ["localhost", "127.0.0.1", "::1"]), key: serverKey, issuer: (ca, caKey))
        let clientKey = try PrivateKey.generateEC()
        let client = try makeCertificate(.client("fli client"), key: clientKey, issuer: (ca, caKey))

        XCTAssertEqual(ca.subject, "CN=fli test CA")
        XCTAssertEqual(server.subject, "CN=localhost")
        XCTAssertEqual(server.issuer, "CN=fli test CA")
        XCTAssertEqual(server.fingerprintSHA256.split(separator: ":").count, 32)
        XCTAssertNotEqual(server.fingerprintSHA256, client.fingerprintSHA256)
        XCTAssertEqual(X509_check_host(server.pointer, "localhost", 0, 0, nil), 1)
        XCTAssertEqual(X509_check_ip_asc(server.pointer, "127.0.0.1", 0), 1)
        XCTAssertEqual(X509_check_ip_asc(server.pointer, "::1", 0), 1)
        XCTAssertNotEqual(X509_check_host(server.pointer, "example.org", 0, 0, nil), 1)

        // PEM out and back in.
        let again = try Certificate(pem: try server.pem())
        XCTAssertEqual(again.fingerprintSHA256, server.fingerprintSHA256)
        let keyAgain = try PrivateKey(pem: try serverKey.pem())
        XCTAssertEqual(X509_check_private_key(again.pointer, keyAgain.pointer), 1)
        XCTAssertNotEqual(X509_check_private_key(again.pointer, clientKey.pointer), 1)
        clearOpenSSLErrors()

        // The openssl command line verifies the chain and reads the extensions.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fli-gen-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ca.pem().write(toFile: dir + "/ca.pem", atomically: true, encoding: .utf8)
        try server.pem().write(toFile: dir + "/server.pem", atomically: true, encoding: .utf8)
        try client.pem().write(toFile: dir + "/client.pem", atomically: true, encoding: .utf8)
        let verify = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", dir + "/ca.pem", "-purpose", "sslserver", dir + "/server.pem"], timeout: 30)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("OK"), verify.stdout)
        let verifyClient = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", dir + "/ca.pem", "-purpose", "sslclient", dir + "/client.pem"], timeout: 30)
        XCTAssertEqual(verifyClient.status, 0, verifyClient.stdout + verifyClient.stderr)
        let text = try runProcess("/usr/bin/openssl", ["x509", "-in", dir + "/server.pem", "-noout", "-ext", "subjectAltName,extendedKeyUsage"], timeout: 30)
        XCTAssertTrue(text.stdout.contains("DNS:localhost"), text.stdout)
        XCTAssertTrue(text.stdout.contains("IP Address:127.0.0.1"), text.stdout)
        XCTAssertTrue(text.stdout.contains("TLS Web Server Authentication"), text.stdout)
        // A client certificate is not a server certificate.
        let wrongPurpose = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", dir + "/ca.pem", "-purpose", "sslserver", dir + "/client.pem"], timeout: 30)
        XCTAssertNotEqual(wrongPurpose.status, 0)
    }

    func testBadInputIsRefusedWithAReason() throws {
        XCTAssertThrowsError(try Certificate(pem: "not a certificate")) { error in
            XCTAssertEqual((error as? SSLError)?.call, "PEM_read_bio_X509", "\(error)")
        }
        XCTAssertThrowsError(try PrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")) { error in
            XCTAssertEqual((error as? SSLError)?.call, "PEM_read_bio_PrivateKey", "\(error)")
        }
        XCTAssertThrowsError(try PrivateKey.generateEC(curve: "no-such-curve")) { error in
            XCTAssertTrue("\(error)".contains("no-such-curve"), "\(error)")
        }
        // A key that does not match the certificate is refused by useIdentity.
        let key = try PrivateKey.generateEC(), other = try PrivateKey.generateEC()
        let cert = try makeCertificate(.server(hosts: ["localhost"]), key: key)
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        XCTAssertThrowsError(try useIdentity(ctx, certificate: cert, key: other)) { error in
            XCTAssertTrue(["SSL_CTX_use_PrivateKey", "SSL_CTX_check_private_key"].contains((error as? SSLError)?.call ?? ""), "\(error)")
        }
        XCTAssertNoThrow(try useIdentity(ctx, certificate: cert, key: key))
        clearOpenSSLErrors()
    }
}
