import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport
import XCTest

/// The catalogue of bad inputs: each gives a clear, typed error (which call, which file, OpenSSL's
/// reason), quickly, and leaves no error in OpenSSL's queue and no descriptor open.
final class BadInputCatalogueTests: XCTestCase {
    var pki: TestPKI { get throws { try Fixtures.pki } }
    func text(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    override func setUp() { clearOpenSSLErrors() }
    override func tearDown() { XCTAssertEqual(drainOpenSSLErrors().map(\.description), [], "the error queue is left empty") }

    func expectSSLError(_ label: String, call: String? = nil, file: String? = nil, mentions: [String] = [],
                        _ body: () throws -> Void) {
        let started = Date()
        XCTAssertThrowsError(try body(), label) { error in
            guard let error = error as? SSLError else { return XCTFail("\(label): not an SSLError: \(error)") }
            if let call { XCTAssertEqual(error.call, call, "\(label): \(error)") }
            if let file { XCTAssertEqual(error.file, file, "\(label): \(error)") }
            let description = "\(error)"
            for word in mentions { XCTAssertTrue(description.contains(word), "\(label): '\(word)' not in \(description)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(label) answered quickly")
    }

    func testMalformedTruncatedAndOversizedPEMAndDER() throws {
        let pki = try pki
        let certificatePEM = try text(pki.serverCert)
        let der = try Array(Data(contentsOf: URL(fileURLWithPath: pki.certDER)))
        expectSSLError("truncated PEM", call: "PEM_read_bio_X509") { _ = try Certificate(pem: String(certificatePEM.prefix(certificatePEM.count / 2))) }
        expectSSLError("corrupted base64", call: "PEM_read_bio_X509") {
            _ = try Certificate(pem: certificatePEM.replacingOccurrences(of: "M", with: "!"))
        }
        expectSSLError("empty text", call: "PEM_read_bio_X509") { _ = try Certificate(pem: "") }
        let oversized = "-----BEGIN CERTIFICATE-----\n" + String(repeating: "QUFB", count: 2 << 20) + "\n-----END CERTIFICATE-----\n"
        expectSSLError("8 MiB of base64 that is no certificate", call: "PEM_read_bio_X509") { _ = try Certificate(pem: oversized) }
        expectSSLError("truncated DER", call: "d2i_X509") { _ = try Certificate(der: Array(der.prefix(der.count - 10))) }
        expectSSLError("empty DER", call: "d2i_X509") { _ = try Certificate(der: []) }
        expectSSLError("DER with trailing garbage length", call: "d2i_X509") { _ = try Certificate(der: [0x30, 0x84, 0xff, 0xff, 0xff, 0xff] + der) }
        XCTAssertNoThrow(try Certificate(der: der), "the real DER reads")
    }

    func testWrongTypesEncryptedKeysAndMismatches() throws {
        let pki = try pki
        expectSSLError("a key where a certificate is expected", call: "PEM_read_bio_X509") { _ = try Certificate(pem: try text(pki.serverKey)) }
        expectSSLError("a certificate where a key is expected", call: "PEM_read_bio_PrivateKey") { _ = try PrivateKey(pem: try text(pki.serverCert)) }
        expectSSLError("a certificate where a CRL is expected", call: "PEM_read_bio_X509_CRL") { _ = try CertificateRevocationList(pem: try text(pki.serverCert)) }
        expectSSLError("encrypted key without a pass phrase", call: "PEM_read_bio_PrivateKey", mentions: ["no pass phrase"]) {
            _ = try PrivateKey(pem: try text(pki.encryptedKey))
        }
        expectSSLError("encrypted key with a wrong pass phrase", call: "PEM_read_bio_PrivateKey", mentions: ["cannot decrypt"]) {
            _ = try PrivateKey(pem: try text(pki.encryptedKey), passphrase: "wrong")
        }
        let ctx = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(ctx) }
        // No password callback: no prompt on the terminal, an error at once.
        expectSSLError("encrypted key file without a callback", call: "SSL_CTX_use_PrivateKey_file", file: pki.encryptedKey) {
            try usePrivateKeyFile(ctx, file: pki.encryptedKey)
        }
        try setSSLCtxPasswordCallback(ctx, password: "wrong")
        expectSSLError("encrypted key file, wrong password", call: "SSL_CTX_use_PrivateKey_file", file: pki.encryptedKey, mentions: ["bad decrypt"]) {
            try usePrivateKeyFile(ctx, file: pki.encryptedKey)
        }
        try setSSLCtxPasswordCallback(ctx)
        expectSSLError("a certificate file as the key", call: "SSL_CTX_use_PrivateKey_file", file: pki.serverCert) {
            try usePrivateKeyFile(ctx, file: pki.serverCert)
        }
        expectSSLError("a key file as the certificate chain", call: "SSL_CTX_use_certificate_chain_file", file: pki.serverKey) {
            try useCertificateChainFile(ctx, file: pki.serverKey)
        }
        try useCertificateChainFile(ctx, file: pki.serverCert)
        expectSSLError("key and certificate do not match", call: "SSL_CTX_use_PrivateKey_file", file: pki.otherKey, mentions: ["mismatch"]) {
            try usePrivateKeyFile(ctx, file: pki.otherKey)
        }
        let other = try PrivateKey(pem: try text(pki.otherKey))
        expectSSLError("in-memory mismatch", call: "SSL_CTX_use_PrivateKey", mentions: ["mismatch"]) {
            try useIdentity(ctx, certificate: try Certificate(pem: try self.text(pki.serverCert)), key: other)
        }
    }

    func testEmptyFilesDirectoriesAndUnreadablePaths() throws {
        let pki = try pki
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bad-paths-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let empty = dir + "/empty.pem"
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        let underAFile = pki.serverCert + "/child.pem"  // ENOTDIR, even for root
        let ctx = try makeSSLCtx(protocol: .default, side: .server)
        defer { destroySSLCtx(ctx) }
        for path in [empty, dir, underAFile, pki.missing] {
            expectSSLError("certificate chain from \(path)", call: "SSL_CTX_use_certificate_chain_file", file: path) {
                try useCertificateChainFile(ctx, file: path)
            }
            expectSSLError("key from \(path)", call: "SSL_CTX_use_PrivateKey_file", file: path) { try usePrivateKeyFile(ctx, file: path) }
            expectSSLError("trust from \(path)", file: path) { try loadVerifyLocations(ctx, file: path) }
            XCTAssertThrowsError(try readPEMFile(path), path) { error in
                let reason = "\(error)"
                switch path {
                case dir: XCTAssertTrue(reason.contains("Is a directory"), reason)
                case underAFile: XCTAssertTrue(reason.contains("Not a directory"), reason)
                case pki.missing: XCTAssertTrue(reason.contains("No such file"), reason)
                default: XCTAssertEqual((error as? SSLError)?.file, path, reason)
                }
            }
        }
        expectSSLError("a file as a CA directory") { try loadVerifyLocations(ctx, directory: pki.serverCert) }
    }

    func testHostNamesPortsAndAddresses() throws {
        let before = SeedByteStreamTests.openDescriptorCount()
        let listener = try Fixtures.loopbackListener(ipv6: true)
        defer { listener.close() }
        // IPv6 literals: plain works; bracketed and malformed do not resolve.
        let v6 = try openTCPStream(host: "::1", port: listener.port, connectTimeout: 5)
        try v6.close()
        _ = try listener.accept(timeout: 5)
        // A URL-style literal works, and its certificate check is the IP's (the server's SAN has ::1).
        let serverCtx = try Fixtures.serverContextShared
        let serverSide = Background("server") {
            let stream = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10)
            try stream.writeLine("over [::1]")
            try stream.close()
        }
        let bracketed = try openTCPStream(host: "[::1]", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                          connectTimeout: 5, security: try Fixtures.trustTestCA)
        XCTAssertEqual(try bracketed.readLine(), "over [::1]")
        try bracketed.close()
        try serverSide.join()
        // Malformed literals and stray brackets are refused by the parser at once, never sent to DNS.
        for bad in ["::1::2", "[::1", "::1]", "[localhost]", "[]", "fe80::zz", "[127.0.0.1]", ""] {
            let started = Date()
            XCTAssertThrowsError(try openTCPStream(host: bad, port: listener.port, connectTimeout: 5), bad) { error in
                guard let error = error as? HostResolutionError else { return XCTFail("\(bad): \(error)") }
                XCTAssertEqual(error.host, bad)
                XCTAssertTrue(["not a valid IPv6 address", "brackets", "empty"].contains { error.message.contains($0) }, "\(bad): \(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, "\(bad) went to a resolver")
        }
        // (Names that would need DNS to fail are left out: CI machines may have no resolver.)
        for bad in ["local\u{0}host", "127.0.0.1\u{0}.evil.example"] {
            XCTAssertThrowsError(try openTCPStream(host: bad, port: listener.port, connectTimeout: 5), bad) { error in
                XCTAssertTrue(error is HostResolutionError, "\(bad): \(error)")
            }
        }
        for port in [-1, 65_536, Int.max] {
            XCTAssertThrowsError(try openTCPStream(host: "127.0.0.1", port: port, connectTimeout: 5), "port \(port)")
            XCTAssertThrowsError(try listen(port: port, host: "127.0.0.1"), "port \(port)")
        }
        // A NUL in a name to check is refused, not cut short to the part before it.
        let ctx = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        expectSSLError("NUL in an expected host", call: "SSL_set1_host", mentions: ["NUL"]) { try ssl.setExpectedHost("localhost\u{0}.evil.example") }
        expectSSLError("NUL in SNI", call: "SSL_set_tlsext_host_name", mentions: ["NUL"]) { try ssl.setServerName("localhost\u{0}x") }
        let plain = try openTCPStream(host: "::1", port: listener.port, connectTimeout: 5)
        expectSSLError("NUL in attachSSL's host name", mentions: ["NUL"]) {
            try plain.attachSSL(ctx: .default, side: .client, handshakeTimeout: 1, hostName: "localhost\u{0}evil")
        }
        try plain.close()
        XCTAssertEqual(SeedByteStreamTests.openDescriptorCount(), before + 1, "only the listener is still open")
    }

    func testAbsurdTimeoutsAndBufferSizes() throws {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        for timeout in [-1.0, 0, .nan, -.infinity] {
            let started = Date()
            XCTAssertThrowsError(try listener.accept(timeout: timeout), "accept timeout \(timeout)")
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, "\(timeout) has passed already")
        }
        // Infinity waits like nil (here: until a client comes).
        let client = Background("client") { try? openTCPStream(host: "127.0.0.1", port: listener.port).close() }
        XCTAssertNoThrow(try listener.accept(timeout: .infinity).close())
        try client.join()
        for size in [0, -5, 1, Int.max] {
            let stream = SocketStream(fileDescriptor: dup(listener.fileDescriptor), closesDescriptor: true, bufferSize: size)
            XCTAssertTrue((512...(64 << 20)).contains(stream.bufferSize), "buffer size \(size) → \(stream.bufferSize)")
            try stream.close()
        }
        expectSSLError("NaN handshake timeout", call: "openDTLS", mentions: ["not a number"]) {
            _ = try openDTLS(host: "127.0.0.1", port: 9, handshakeTimeout: .nan, security: .insecure)
        }
    }
}
