import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// The NIO handler against real peers over loopback: `openssl s_server` / `s_client`, the blocking
/// `SocketStream` layer, and swift-nio-ssl (BoringSSL) — in both directions.
final class NIOInteropTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        clearOpenSSLErrors()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        group = nil
    }

    // MARK: openssl s_server / s_client

    func testClientAgainstOpenSSLServer() throws {
        let pki = try NIOFixtures.pki
        for (version, expected) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let server = try BackgroundProcess("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                                    "-key", pki.serverKey, "-www", "-naccept", "1", version])
            defer { server.terminate() }
            let port = try XCTUnwrap(server.acceptedPort(), "s_server did not start: \(server.errorOutput)")
            let collector = Collector()
            let channel = try resolve(connectTLSChannel(host: "localhost", port: port, group: group, handshakeTimeout: 10,
                                                     security: try NIOFixtures.trustTestCA) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }, "connect + handshake")
            let attachment = try XCTUnwrap(try resolve(channel.sslAttachment()))
            XCTAssertEqual(SSL_get_version(attachment.ssl), expected)
            XCTAssertEqual(attachment.side, .client)
            XCTAssertEqual(SSL_get_verify_result(attachment.ssl), Int(X509_V_OK))
            try resolve(channel.send("GET / HTTP/1.0\r\n\r\n"))
            XCTAssertTrue(collector.waitForEvent("inactive", timeout: 10), "s_server did not close: \(collector.events)")
            XCTAssertTrue(collector.text.hasPrefix("HTTP/1.0 200 ok"), collector.text)
            XCTAssertTrue(collector.text.contains(expected), collector.text)
            // s_server ends with close_notify: a clean end, no error.
            XCTAssertTrue(collector.events.contains("closeNotify"), "\(collector.events)")
            XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
        }
    }

    func testOpenSSLClientAgainstOurServer() throws {
        let pki = try NIOFixtures.pki
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let errors = ErrorLog()
        let server = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: group, ctx: .context(serverCtx),
                                                handshakeTimeout: 10, sslErrorCallback: { _, error in errors.add(error) }) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineEcho()) }
        }, "bind")
        defer { server.close(promise: nil) }
        for version in ["-tls1_3", "-tls1_2"] {
            let client = try BackgroundProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.boundPort)",
                                                                    "-CAfile", pki.caCert, "-verify_return_error", "-servername", "localhost",
                                                                    "-verify_hostname", "localhost", "-brief", version])
            defer { client.terminate() }
            client.write("hello from s_client\n")
            XCTAssertTrue(client.waitFor("echo: hello from s_client", timeout: 10), "stdout: \(client.output) stderr: \(client.errorOutput)")
            client.write("quit\n")  // our server closes with close_notify; s_client exits
            XCTAssertEqual(client.waitForExit(timeout: 10), 0, client.errorOutput)
            XCTAssertTrue(client.errorOutput.contains("Verification: OK"), client.errorOutput)
            XCTAssertTrue(client.errorOutput.contains(version == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"), client.errorOutput)
        }
        XCTAssertTrue(errors.all.isEmpty, "\(errors.all)")
    }

    // MARK: The blocking layer

    func testClientAgainstSocketStreamServer() throws {
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        for host in ["127.0.0.1", "::1"] {
            let listener = try listen(port: 0, host: host)
            defer { listener.close() }
            let peer = Background("stream server") {
                let s = try listener.accept(sslCtx: .context(serverCtx), handshakeTimeout: 10, timeout: 10, readTimeout: 10)
                defer { try? s.close() }
                XCTAssertEqual(try s.readLine(), "from NIO")
                try s.writeLine("from streams")
                try s.flush()
                XCTAssertNil(try s.readLine())  // the client's close_notify
            }
            let collector = Collector()
            let channel = try resolve(connectTLSChannel(host: host, port: listener.port, group: group, handshakeTimeout: 10,
                                                     security: try NIOFixtures.trustTestCA) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            })
            try resolve(channel.send("from NIO\r\n"))
            XCTAssertTrue(collector.waitForText("from streams\r\n"))
            try resolve(channel.close())
            try peer.join()
            XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
        }
    }

    func testSocketStreamClientAgainstOurServer() throws {
        let pki = try NIOFixtures.pki
        let server = try resolve(acceptTLSChannels(host: "::1", port: 0, group: group, ctx: .default,
                                                ctxConfigure: NIOFixtures.loadServerIdentity(), handshakeTimeout: 10) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineEcho()) }
        })
        defer { server.close(promise: nil) }
        for proto in [SSLContextArgument.tlsV1_2, .tlsV1_3] {
            let stream = try openTCPStream(host: "::1", port: server.boundPort, sslCtx: proto, handshakeTimeout: 10,
                                           hostName: "localhost", security: .trusting(caFile: pki.caCert), readTimeout: 10)
            try stream.writeLine("one")
            XCTAssertEqual(try stream.readLine(), "echo: one")
            try stream.writeLine(String(repeating: "x", count: 100_000))
            XCTAssertEqual(try stream.readLine(maxLength: 200_000)?.count, 100_006)
            try stream.writeLine("quit")
            XCTAssertNil(try stream.readLine())  // our close_notify
            try stream.close()
        }
    }

    // MARK: swift-nio-ssl

    func testClientAgainstSwiftNIOSSLServer() throws {
        let pki = try NIOFixtures.pki
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(pki.serverCert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: pki.serverKey, format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        let sslContext = try NIOSSLContext(configuration: configuration)
        let server = try resolve(ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    try channel.pipeline.syncOperations.addHandler(LineEcho())
                }
            }
            .bind(host: "127.0.0.1", port: 0))
        defer { server.close(promise: nil) }
        let collector = Collector()
        let channel = try resolve(connectTLSChannel(host: "localhost", port: server.boundPort, group: group, handshakeTimeout: 10,
                                                 security: try NIOFixtures.trustTestCA) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
        })
        let big = String(repeating: "b", count: 300_000)
        try resolve(channel.send("hello boring\n" + big + "\n"))
        XCTAssertTrue(collector.waitForText("echo: hello boring\n"))
        XCTAssertTrue(collector.waitForCount(19 + 300_007), "\(collector.bytes.count)")
        try resolve(channel.send("quit\n"))
        XCTAssertTrue(collector.waitForEvent("inactive"))
        XCTAssertTrue(collector.events.contains("closeNotify"), "\(collector.events)")
        XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
    }

    func testSwiftNIOSSLClientAgainstOurServer() throws {
        let pki = try NIOFixtures.pki
        let serverCtx = try NIOFixtures.serverContext()
        defer { destroySSLCtx(serverCtx) }
        let server = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: group, ctx: .context(serverCtx),
                                                handshakeTimeout: 10) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineEcho()) }
        })
        defer { server.close(promise: nil) }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(pki.caCert)
        let sslContext = try NIOSSLContext(configuration: configuration)
        let collector = Collector()
        let channel = try resolve(ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: server.boundPort))
        try resolve(channel.send("hello from boring\n"))
        XCTAssertTrue(collector.waitForText("echo: hello from boring\n"), collector.text)
        try resolve(channel.send("quit\n"))
        XCTAssertTrue(collector.waitForEvent("inactive"), "\(collector.events)")
        XCTAssertTrue(collector.errors.isEmpty, "\(collector.errors)")
    }
}
