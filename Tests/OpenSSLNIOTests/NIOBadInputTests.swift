import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// Bad arguments and failing handshakes give typed errors and leak nothing; the ownership rules of
/// `.protocol` / `.context` / `.connection` hold; a Swift callback's error is the handshake's error.
final class NIOBadInputTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        clearOpenSSLErrors()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        group = nil
    }

    private var census: (Int, Int) { (SSLStreamCensus.liveConnections, SSLStreamCensus.liveContexts) }

    /// The census once objects of earlier tests (freed a tick after their channels closed) have gone:
    /// unchanged for 100 ms, waited for at most 5 s.
    private var settledCensus: (Int, Int) {
        var last = census
        for _ in 0..<50 {
            usleep(100_000)
            let now = census
            if now == last { return now }
            last = now
        }
        return last
    }

    private func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// An echo server on our handler, with the test certificate.
    private func echoServer(_ serverCtx: SSLContextPointer, errors: ErrorLog? = nil) throws -> Channel {
        try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: group, ctx: .context(serverCtx), handshakeTimeout: 10,
                                      sslErrorCallback: { _, error in errors?.add(error) }) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineEcho()) }
        })
    }

    private func plainChannel(to port: Int, _ collector: Collector = Collector()) throws -> Channel {
        try NIOFixtures.plainClient(group: group, port: port, collector: collector)
    }

    // MARK: Arguments

    func testRefusedProtocolsThrowAndMakeNothing() throws {
        let before = settledCensus
        XCTAssertThrowsError(try OpenSSLHandler(ctx: .protocol(.v3))) { error in
            XCTAssertEqual(sslError(error)?.kind, .error)
            XCTAssertTrue("\(error)".contains("SSLv3"), "\(error)")
        }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let channel = try plainChannel(to: listener.port)
        defer { channel.close(promise: nil) }
        XCTAssertThrowsError(try resolve(channel.attachSSL(ctx: .protocol(.v2)))) { error in
            XCTAssertEqual(sslError(error)?.kind, .error)
            XCTAssertTrue("\(error)".contains("SSLv2"), "\(error)")
        }
        XCTAssertNil(try resolve(channel.sslAttachment()), "nothing was attached")
        XCTAssertTrue(channel.isActive, "a refused argument leaves the channel as it was")
        XCTAssertEqual(census.0, before.0); XCTAssertEqual(census.1, before.1)
    }

    func testUnreadableCertificateInCtxConfigure() throws {
        let pki = try NIOFixtures.pki
        let before = settledCensus
        let fds = openDescriptors()
        for bad in [pki.missing, pki.garbagePEM] {
            let listener = try listen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            let channel = try plainChannel(to: listener.port)
            XCTAssertThrowsError(try resolve(channel.attachSSL(ctx: .default, side: .server, ctxConfigure: { ctx in
                try useCertificateChainFile(ctx, file: bad)
            }))) { error in
                let e = sslError(error)
                XCTAssertEqual(e?.file, bad)
                XCTAssertEqual(e?.kind, .error)
            }
            XCTAssertNil(try resolve(channel.sslAttachment()))
            try resolve(channel.close())
        }
        XCTAssertTrue(NIOFixtures.waitForCensus(connections: before.0, contexts: before.1), "the SSL_CTX made for the attach leaked")
        usleep(50_000)
        XCTAssertEqual(openDescriptors(), fds, "descriptors leaked")
    }

    func testAttachingTwiceIsAnError() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let server = try echoServer(serverCtx)
        defer { server.close(promise: nil) }
        let collector = Collector()
        let channel = try plainChannel(to: server.boundPort, collector)
        defer { channel.close(promise: nil) }
        let first = try resolve(channel.attachSSL(ctx: .default, hostName: "localhost", security: try NIOFixtures.trustTestCA))
        let before = settledCensus
        final class Flag: @unchecked Sendable { var value = false }  // set on the channel's loop, read after the future
        let configured = Flag()
        XCTAssertThrowsError(try resolve(channel.attachSSL(ctx: .default, ctxConfigure: { _ in configured.value = true }))) { error in
            XCTAssertEqual(sslError(error)?.kind, .error)
            XCTAssertTrue("\(error)".contains("already attached"), "\(error)")
        }
        XCTAssertFalse(configured.value, "nothing is made when TLS is attached already")
        XCTAssertEqual(census.0, before.0); XCTAssertEqual(census.1, before.1)
        XCTAssertEqual(try resolve(channel.sslAttachment()), first)
        try resolve(channel.send("still fine\n"))
        XCTAssertTrue(collector.waitForText("echo: still fine\n"))
    }

    // MARK: Failing handshakes

    func testServerWithoutCertificateFailsBothSidesWithTypedErrors() throws {
        let bare = try makeSSLCtx(side: .server)  // no certificate, no key
        defer { destroySSLCtx(bare) }
        let errors = ErrorLog()
        let server = try echoServer(bare, errors: errors)
        defer { server.close(promise: nil) }
        let collector = Collector()
        let channel = try plainChannel(to: server.boundPort, collector)
        XCTAssertThrowsError(try resolve(channel.attachSSL(ctx: .default, hostName: "localhost", security: try NIOFixtures.trustTestCA))) { error in
            let e = sslError(error)
            XCTAssertEqual(e?.kind, .failure, "\(error)")
            XCTAssertFalse(e?.reasons.isEmpty ?? true, "OpenSSL's reasons are kept: \(error)")
        }
        let serverError = try XCTUnwrap(errors.waitForAny())
        XCTAssertEqual(sslError(serverError)?.kind, .failure, "\(serverError)")
        try resolve(channel.closeFuture)
        XCTAssertTrue(collector.errors.count == 1, "the failure went down the pipeline once: \(collector.errors)")
    }

    func testVerificationFailures() throws {
        let pki = try NIOFixtures.pki
        for (cert, expected) in [(pki.wrongHostCert, "hostname mismatch"), (pki.untrustedLeafCert, "unable to get local issuer certificate"),
                                 (pki.expiredCert, "certificate has expired"), (pki.selfSignedCert, "self-signed certificate")] {
            let serverCtx = try NIOFixtures.serverContext(cert: cert)
            defer { destroySSLCtx(serverCtx) }
            let server = try echoServer(serverCtx)
            defer { server.close(promise: nil) }
            XCTAssertThrowsError(try resolve(connectTLSChannel(host: "localhost", port: server.boundPort, group: group,
                                                               handshakeTimeout: 10, security: try NIOFixtures.trustTestCA))) { error in
                let e = sslError(error)
                XCTAssertEqual(e?.kind, .verificationFailure, "\(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
        // The same wrong-host certificate with verification switched off connects.
        let serverCtx = try NIOFixtures.serverContext(cert: pki.wrongHostCert)
        defer { destroySSLCtx(serverCtx) }
        let server = try echoServer(serverCtx)
        defer { server.close(promise: nil) }
        let channel = try resolve(connectTLSChannel(host: "localhost", port: server.boundPort, group: group, handshakeTimeout: 10,
                                                    security: .insecure))
        try resolve(channel.close())
    }

    func testVerifyCallbackErrorIsTheHandshakeError() throws {
        struct Refused: Error, Equatable { var depth: Int32 }
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let server = try echoServer(serverCtx)
        defer { server.close(promise: nil) }
        let channel = try plainChannel(to: server.boundPort)
        XCTAssertThrowsError(try resolve(channel.attachSSL(ctx: .default, sslConfigure: { ssl in
            setVerificationMode(ssl, side: .client, mode: .always) { _, store in throw Refused(depth: store.depth) }
        }, hostName: "localhost", security: try NIOFixtures.trustTestCA))) { error in
            XCTAssertEqual(error as? Refused, Refused(depth: 1), "\(error)")
        }
        try resolve(channel.closeFuture)
    }

    func testBadArgumentOnTheServerGoesToTheErrorCallback() throws {
        let errors = ErrorLog()
        let server = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: group, ctx: .protocol(.v2),
                                                   sslErrorCallback: { _, error in errors.add(error) }) { channel in
            channel.eventLoop.makeSucceededVoidFuture()
        })
        defer { server.close(promise: nil) }
        let client = try openTCPStream(host: "127.0.0.1", port: server.boundPort, readTimeout: 10)
        defer { try? client.close() }
        let error = try XCTUnwrap(errors.waitForAny())
        XCTAssertTrue("\(error)".contains("SSLv2"), "\(error)")
        XCTAssertEqual(try client.read(maxLength: 16), [], "the connection was closed")
    }

    // MARK: Ownership (LispWorks' rules)

    func testOwnershipOfProtocolContextAndConnection() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let server = try echoServer(serverCtx)
        defer { server.close(promise: nil) }
        let security = try NIOFixtures.trustTestCA
        let before = settledCensus

        // A protocol symbol: an SSL_CTX and an SSL are made, configured in order, and freed.
        final class Calls: @unchecked Sendable { var list: [String] = [] }  // appended on the channel's loop, read after the future
        let calls = Calls()
        var channel = try plainChannel(to: server.boundPort)
        let made = try resolve(channel.attachSSL(ctx: .tlsV1_3, ctxConfigure: { _ in calls.list.append("ctx") },
                                                 sslConfigure: { _ in calls.list.append("ssl") }, hostName: "localhost", security: security))
        XCTAssertEqual(calls.list, ["ctx", "ssl"])
        XCTAssertEqual(census.1, before.1 + 1)
        XCTAssertEqual(SSL_get_version(made.ssl), "TLSv1.3")
        try resolve(channel.close())
        XCTAssertTrue(NIOFixtures.waitForCensus(connections: before.0, contexts: before.1), "what attach made was not freed")

        // The caller's context: only an SSL is made (and freed); only sslConfigure runs; the context lives on.
        let clientCtx = try makeSSLCtx(side: .client)
        defer { destroySSLCtx(clientCtx) }
        try loadVerifyLocations(clientCtx, file: try NIOFixtures.pki.caCert)
        setVerificationMode(clientCtx, side: .client, mode: .always)
        for round in 1...2 {
            calls.list = []
            channel = try plainChannel(to: server.boundPort)
            let attached = try resolve(channel.attachSSL(ctx: .context(clientCtx), ctxConfigure: { _ in calls.list.append("ctx") },
                                                         sslConfigure: { _ in calls.list.append("ssl") }, hostName: "localhost"))
            XCTAssertEqual(attached.ctx, clientCtx)
            XCTAssertEqual(calls.list, ["ssl"], "round \(round)")
            XCTAssertEqual(census.1, before.1, "no context is made for .context")
            try resolve(channel.close())
            XCTAssertTrue(NIOFixtures.waitForCensus(connections: before.0, contexts: before.1))
        }

        // The caller's SSL: used as it is, no callback, never freed; our BIO is taken off it again.
        let ssl = try sslNew(clientCtx)
        defer { destroySSL(ssl) }
        _ = SSL_set1_host(ssl, "localhost")
        calls.list = []
        let collector = Collector()
        channel = try plainChannel(to: server.boundPort, collector)
        let attached = try resolve(channel.attachSSL(ctx: .connection(ssl), ctxConfigure: { _ in calls.list.append("ctx") },
                                                     sslConfigure: { _ in calls.list.append("ssl") }))
        XCTAssertEqual(attached.ssl, ssl)
        XCTAssertEqual(attached.ctx, clientCtx)
        XCTAssertEqual(calls.list, [])
        try resolve(channel.send("mine\n"))
        XCTAssertTrue(collector.waitForText("echo: mine\n"))
        try resolve(channel.close())
        try resolve(channel.closeFuture)
        let end = Date().addingTimeInterval(5)
        while SSL_get_rbio(ssl) != nil && Date() < end { usleep(10_000) }
        XCTAssertNil(SSL_get_rbio(ssl), "the handler's BIO was taken off the caller's SSL")
        XCTAssertEqual(SSL_get_SSL_CTX(ssl), clientCtx, "the caller's SSL is still alive")
        // (The server's end of the connection is freed a moment later, on its event loop.)
        XCTAssertTrue(NIOFixtures.waitForCensus(connections: before.0, contexts: before.1))
    }
}
