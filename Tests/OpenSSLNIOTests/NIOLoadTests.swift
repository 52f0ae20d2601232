import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// Load through the NIO layer: 1,000 concurrent TLS connections on one event-loop group, each echoing
/// checksummed data; nothing lost or corrupted, every SSL freed, no descriptor left open.
final class NIOLoadTests: XCTestCase {
    func testThousandConcurrentConnectionsEchoChecksummedData() throws {
        let connections = 1000, size = 8 * 1024
        let server = try NIOFixtures.serverContext()
        defer { destroySSLCtx(server) }
        let client = try makeSSLCtx(protocol: .default, side: .client)
        defer { destroySSLCtx(client) }
        try client.trust(file: try NIOFixtures.pki.caCert)
        setVerificationMode(client, side: .client, mode: .always)
        let before = openDescriptors()
        let liveBefore = SSLStreamCensus.liveConnections
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let errors = ErrorLog()
        let listener = try resolve(acceptTLSChannels(host: "127.0.0.1", port: 0, group: group, ctx: .context(server), handshakeTimeout: 60,
                                                     backlog: 1024, sslErrorCallback: { _, error in errors.add(error) },
                                                     childChannelInitializer: { $0.pipeline.addHandler(Echo()) }), timeout: 30, "listen")
        let port = try XCTUnwrap(listener.localAddress?.port)

        // Connect all, in waves, keeping every connection open until all have echoed.
        var channels: [(Channel, Collector, [UInt8])] = []
        for wave in 0..<(connections / 100) {
            let futures = (0..<100).map { _ -> (EventLoopFuture<Channel>, Collector) in
                let collector = Collector()
                let future = connectTLSChannel(host: "127.0.0.1", port: port, group: group, ctx: .context(client), handshakeTimeout: 60,
                                               hostName: "localhost", channelInitializer: { $0.pipeline.addHandler(collector) })
                return (future, collector)
            }
            for (k, (future, collector)) in futures.enumerated() {
                let channel = try resolve(future, timeout: 120, "connection \(wave * 100 + k)")
                var payload = (0..<(size - 32)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ wave &* 7 &+ k) }
                payload += try sha256(payload)
                channel.writeAndFlush(ByteBuffer(bytes: payload), promise: nil)
                channels.append((channel, collector, payload))
            }
        }
        var intact = 0
        for (index, (_, collector, payload)) in channels.enumerated() {
            guard collector.waitForCount(size, timeout: 60) else { XCTFail("connection \(index): \(collector.bytes.count) of \(size) bytes"); break }
            let echoed = collector.bytes
            if echoed == payload, Array(echoed.suffix(32)) == (try sha256(Array(echoed.dropLast(32)))) { intact += 1 }
        }
        XCTAssertEqual(intact, connections, "every echo intact")
        XCTAssertEqual(errors.all.count, 0, "\(errors.all.prefix(3))")
        for (channel, _, _) in channels { try? resolve(channel.close(), timeout: 30, "close") }
        channels.removeAll()
        try resolve(listener.close(), timeout: 30, "close listener")
        try group.syncShutdownGracefully()
        XCTAssertTrue(NIOFixtures.waitForCensus(connections: liveBefore, contexts: SSLStreamCensus.liveContexts, timeout: 10),
                      "every SSL freed: \(SSLStreamCensus.liveConnections) live, \(liveBefore) before")
        // The event loops' own descriptors (epoll, eventfd, timerfd) go with the group.
        XCTAssertEqual(openDescriptors(), before, "no descriptor left open")
    }

    func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
}

func sha256(_ bytes: [UInt8]) throws -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    guard EVP_Digest(bytes, bytes.count, &digest, &length, EVP_sha256(), nil) == 1 else { throw SSLError.fromQueue(call: "EVP_Digest") }
    return digest
}
