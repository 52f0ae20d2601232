import Foundation
import OpenSSLFLI
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport
import XCTest

/// The Racket `openssl` / Chicken `openssl` egg API, with `openssl s_server` / `s_client` as peers.
final class SeedRacketChickenTests: XCTestCase {
    func testAvailabilityTypeChecksAndStatusSymbols() throws {
        XCTAssertTrue(sslAvailable)
        XCTAssertNil(sslLoadFailReason)
        let client = try sslMakeClientContext()
        let server = try sslMakeServerContext(protocol: .tlsV1_3)
        XCTAssertTrue(isClientContext(client))
        XCTAssertFalse(isClientContext(server))
        XCTAssertTrue(isServerContext(server))
        XCTAssertFalse(isListener(server))
        XCTAssertFalse(isSSLPort(client))
        XCTAssertEqual(SSLStatus.zeroReturn.chickenSymbol, "zero-return")
        XCTAssertEqual(SSLStatus.wantRead.chickenSymbol, "want-read")
        XCTAssertEqual(SSLStatus.syscall.chickenSymbol, "syscall")
        XCTAssertThrowsError(try sslMakeClientContext(protocol: .v2))
    }

    /// `ssl-connect` to `openssl s_server -rev`, with a client context trusting the test CA; a protocol
    /// symbol (system store only) refuses the test server.
    func testSSLConnectToOpenSSLServer() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey, "-rev"])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        XCTAssertThrowsError(try sslConnect(host: "127.0.0.1", port: port)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .verificationFailure, "secure by default: \(error)")
        }
        let context = try sslMakeClientContext()
        try context.loadVerifyRootCertificates(pki.caCert)
        let (input, output) = try sslConnect(host: "localhost", port: port, context: context)
        XCTAssertTrue(isSSLPort(input) && isSSLPort(output))
        try output.write("racket\n")
        XCTAssertEqual(String(decoding: try input.read(maxLength: 100), as: UTF8.self), "tekcar\n")
        XCTAssertEqual(input.ssl.protocolVersion, .tls1_3)
        try output.close(shutdown: true)
        try input.close()
    }

    /// `ssl-listen` + `ssl-accept` for `openssl s_client`; the context procedures on the listener; the
    /// listener's port, descriptor and accept readiness.
    func testListenerContextProceduresAndAcceptReady() throws {
        let pki = try Fixtures.pki
        let listener = try sslListen(port: 0, backlog: 5, reuse: true, host: "127.0.0.1")
        defer { sslClose(listener) }
        XCTAssertTrue(isListener(listener))
        XCTAssertGreaterThan(listener.port, 0)
        XCTAssertGreaterThanOrEqual(listener.fileDescriptor, 0)
        try listener.loadCertificateChain(pki.serverCert)
        try listener.loadPrivateKey(pki.serverKey)
        try listener.loadVerifyRootCertificates(pki.caCert)
        try listener.loadSuggestedCertificateAuthorities(pki.caCert)
        XCTAssertFalse(listener.acceptReady, "no client yet")
        let client = try BackgroundProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-CAfile", pki.caCert,
                                                              "-verify_return_error", "-servername", "localhost", "-quiet"])
        defer { client.terminate() }
        var ready = false
        for _ in 0..<100 where !ready { ready = listener.acceptReady; if !ready { usleep(50_000) } }
        XCTAssertTrue(ready, "a client is waiting")
        let (input, output) = try sslAccept(listener, timeout: 10)
        XCTAssertFalse(listener.acceptReady)
        client.write("from s_client\n")
        XCTAssertEqual(String(decoding: try input.read(maxLength: 100), as: UTF8.self), "from s_client\n")
        try output.write("from racket\n")
        XCTAssertTrue(client.waitFor("from racket", timeout: 10), client.output)
        try output.close(shutdown: true)
        try input.close()

        // The suggested CAs are what a client is told when it is asked for a certificate.
        listener.setVerify(true)
        let refused = Recorder<String>()
        let acceptor = Background("accept") {
            do { _ = try sslAccept(listener, timeout: 10, handshakeTimeout: 10) } catch { refused.append("\(error)") }
        }
        let probe = try runProcess(Fixtures.openssl, ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-CAfile", pki.caCert],
                                   timeout: 20, stdin: Data())
        try acceptor.join()
        XCTAssertEqual(refused.values.count, 1, "the client sends no certificate: refused")
        XCTAssertTrue(probe.stdout.contains("Acceptable client certificate CA names") && probe.stdout.contains("swift-openssl-fli test CA"),
                      probe.stdout)
    }

    /// Closing the output half sends no close_notify unless asked: the peer sees an unclean EOF; with
    /// `shutdown: true` it sees a clean close.
    func testOutputCloseSendsShutdownOnlyWhenAsked() throws {
        let listener = try sslListen(port: 0, host: "127.0.0.1")
        defer { sslClose(listener) }
        let pki = try Fixtures.pki
        try listener.loadCertificateChain(pki.serverCert)
        try listener.loadPrivateKey(pki.serverKey)
        let context = try sslMakeClientContext(security: .trusting(caFile: pki.caCert))
        for shutdown in [false, true] {
            final class Box: @unchecked Sendable { var outcome = "" }  // written by the background thread, read after it was joined
            let box = Box()
            let server = Background("accept") {
                let (input, output) = try sslAccept(listener, timeout: 10)
                do {
                    let rest = try input.readAll()
                    box.outcome = "clean end after \(rest.count) bytes"
                } catch let error as SSLError where error.isUnexpectedEOF {
                    box.outcome = "unexpected EOF"
                }
                try output.close()
                try input.close()
            }
            let (input, output) = try sslConnect(host: "localhost", port: listener.port, context: context)
            try output.write("bye")
            try output.close(shutdown: shutdown)
            try input.close()  // both halves closed: the socket closes
            try server.join()
            XCTAssertEqual(box.outcome, shutdown ? "clean end after 3 bytes" : "unexpected EOF")
        }
    }

    func testSHA1MatchesOpenSSLDgst() throws {
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 256) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sha1-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data(bytes)))
        let cli = try runProcess(Fixtures.openssl, ["dgst", "-sha1", "-r", file], timeout: 20)
        let expected = String(cli.stdout.prefix(40))
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: file))
        XCTAssertEqual(try sha1(handle), expected)
        XCTAssertEqual(bytesToHexString(try sha1Bytes(bytes)), expected)
        XCTAssertEqual(try sha1(MemoryByteChannel.closed(with: [])), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(bytesToHexString([0x00, 0x0f, 0xa0, 0xff]), "000fa0ff")
    }

    /// Bad input: clear errors, and no descriptor left open.
    func testBadInputLeavesNoDescriptor() throws {
        let pki = try Fixtures.pki
        let before = SeedByteStreamTests.openDescriptorCount()
        XCTAssertThrowsError(try sslConnect(host: "", port: 443)) { XCTAssertTrue("\($0)".contains("host name is empty")) }
        XCTAssertThrowsError(try sslConnect(host: "127.0.0.1", port: 70000)) { XCTAssertTrue("\($0)".contains("out of range")) }
        XCTAssertThrowsError(try sslListen(port: -1)) { XCTAssertTrue("\($0)".contains("out of range")) }
        // Racket's protocol argument is a symbol or a context: one of them.
        let both = "give a protocol or a context, not both"
        XCTAssertThrowsError(try sslConnect(host: "127.0.0.1", port: 443, protocol: .tlsV1_3, context: try sslMakeClientContext())) {
            XCTAssertTrue("\($0)".contains(both), "\($0)")
        }
        XCTAssertThrowsError(try sslListen(port: 0, protocol: .default, context: try sslMakeServerContext())) {
            XCTAssertTrue("\($0)".contains(both), "\($0)")
        }
        let listener = try sslListen(port: 0, host: "127.0.0.1")
        XCTAssertThrowsError(try listener.loadCertificateChain(pki.missing)) { XCTAssertEqual(($0 as? SSLError)?.file, pki.missing) }
        XCTAssertThrowsError(try listener.loadPrivateKey(pki.garbagePEM))
        XCTAssertThrowsError(try listener.loadPrivateKey(pki.serverKey, rsa: true)) { XCTAssertTrue("\($0)".contains("not an RSA key")) }
        XCTAssertNoThrow(try listener.loadPrivateKey(pki.keyDER, asn1: true))
        XCTAssertThrowsError(try listener.loadSuggestedCertificateAuthorities(pki.missing))
        // A listener that never answers: the handshake times out, the socket is closed.
        let client = try sslMakeClientContext()
        let started = Date()
        XCTAssertThrowsError(try sslConnect(host: "127.0.0.1", port: listener.port, context: client, handshakeTimeout: 0.5)) { error in
            XCTAssertEqual((error as? SSLError)?.kind, .handshakeTimeout, "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        _ = try? listener.listenerAcceptAndClose()
        sslClose(listener)
        XCTAssertThrowsError(try sslConnect(host: "127.0.0.1", port: listener.port, context: client)) { error in
            XCTAssertEqual((error as? SocketError)?.errno, ECONNREFUSED, "\(error)")
        }
        XCTAssertTrue(listener.isClosed)
        XCTAssertThrowsError(try sslAccept(listener, timeout: 1))
        XCTAssertEqual(SeedByteStreamTests.openDescriptorCount(), before)
    }
}

extension SSLListener {
    /// Takes the connection waiting in the backlog and closes it (test helper).
    func listenerAcceptAndClose() throws {
        let fd = Glibc.accept(fileDescriptor, nil, nil)
        if fd >= 0 { Glibc.close(fd) }
    }
}

extension MemoryByteChannel {
    /// A channel holding `bytes` and then its end.
    static func closed(with bytes: [UInt8]) throws -> MemoryByteChannel {
        let channel = MemoryByteChannel(capacity: max(bytes.count, 1))
        try channel.writeAll(bytes)
        try channel.closeWriting()
        return channel
    }
}
