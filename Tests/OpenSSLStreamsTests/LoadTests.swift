import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// Load through the blocking layer: 4 client threads × 250 concurrent TLS connections to 4 server
/// threads polling their connections, checksummed echoes, then nothing left open.
final class LoadTests: XCTestCase {
    func testFourThreadsTimes250ConcurrentConnectionsEchoIntact() throws {
        let threads = 4, perThread = 250, rounds = 3, chunk = 4096
        let server = try Toolbox.serverContext()
        defer { destroySSLCtx(server) }
        let client = try Toolbox.clientContext()
        defer { destroySSLCtx(client) }
        let before = SeedByteStreamTests.openDescriptorCount()  // after the fixtures (made by child processes)
        let liveBefore = SSLStreamCensus.liveConnections
        let listener = try listen(port: 0, backlog: 1024, host: "127.0.0.1")
        let serverErrors = Recorder<String>()
        let echoed = Recorder<Int>()

        // Server threads: accept (and handshake) their share, then echo with poll until every peer closes.
        let servers = (0..<threads).map { index in
            Background("server \(index)") {
                var streams: [SocketStream] = []
                for _ in 0..<perThread {
                    do {
                        let stream = try listener.accept(sslCtx: .context(server), handshakeTimeout: 30, timeout: 60, readTimeout: 30, writeTimeout: 30)
                        try stream.handshake(timeout: 30)
                        streams.append(stream)
                    } catch {
                        serverErrors.append("accept: \(error)")
                    }
                }
                var bytes = 0
                var buffer = [UInt8](repeating: 0, count: 16 * 1024)
                let deadline = Date().addingTimeInterval(120)
                while !streams.isEmpty && Date() < deadline {
                    var fds = streams.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }
                    let buffered = streams.indices.filter { streams[$0].hasBufferedInput }
                    if buffered.isEmpty { _ = poll(&fds, nfds_t(fds.count), 200) }
                    var closed: Set<Int> = []
                    for i in streams.indices where fds[i].revents != 0 || buffered.contains(i) {
                        do {
                            let n = try buffer.withUnsafeMutableBytes { try streams[i].read(into: $0) }
                            if n == 0 { closed.insert(i); continue }
                            try buffer.withUnsafeBytes { try streams[i].write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                            try streams[i].flush()
                            bytes += n
                        } catch {
                            serverErrors.append("echo: \(error)")
                            closed.insert(i)
                        }
                    }
                    for i in closed.sorted(by: >) { try? streams[i].close(); streams.remove(at: i) }
                }
                for stream in streams { try? stream.close() }
                echoed.append(bytes)
            }
        }

        // Client threads: open 250 connections each, send checksummed chunks round by round, check echoes.
        let clientErrors = Recorder<String>()
        let verified = Recorder<Int>()
        let clients = (0..<threads).map { index in
            Background("client \(index)") {
                var streams: [SocketStream] = []
                for _ in 0..<perThread {
                    do {
                        streams.append(try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .context(client), handshakeTimeout: 30,
                                                         hostName: "localhost", readTimeout: 30, writeTimeout: 30))
                    } catch {
                        clientErrors.append("connect: \(error)")
                    }
                }
                var good = 0
                // One pattern per thread, stamped per connection and round: building each payload element by
                // element costs a generic-metadata lookup per byte in a debug build, which serialises the
                // threads under ThreadSanitizer (a round took 55 s there instead of 0.5 s).
                let pattern = (0..<(chunk - 32)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
                for round in 0..<rounds {
                    var sent: [[UInt8]] = []
                    for (k, stream) in streams.enumerated() {
                        var payload = pattern
                        payload[0] = UInt8(truncatingIfNeeded: k); payload[1] = UInt8(truncatingIfNeeded: k >> 8)
                        payload[2] = UInt8(truncatingIfNeeded: round); payload[3] = UInt8(truncatingIfNeeded: index)
                        payload += (try? sha256(payload)) ?? []
                        sent.append(payload)
                        do { try stream.write(payload); try stream.flush() } catch { clientErrors.append("write: \(error)") }
                    }
                    for (k, stream) in streams.enumerated() {
                        do {
                            let back = try stream.readExactly(chunk)
                            if back == sent[k], Array(back.suffix(32)) == (try sha256(Array(back.dropLast(32)))) { good += 1 } else {
                                clientErrors.append("connection \(k) round \(round): corrupted echo")
                            }
                        } catch {
                            clientErrors.append("read: \(error)")
                        }
                    }
                }
                for stream in streams { try? stream.close() }
                verified.append(good)
            }
        }
        for background in clients { try background.join(timeout: 300) }
        for background in servers { try background.join(timeout: 300) }
        listener.close()

        XCTAssertEqual(clientErrors.values.prefix(5).map { $0 }, [], "\(clientErrors.values.count) client errors")
        XCTAssertEqual(serverErrors.values.prefix(5).map { $0 }, [], "\(serverErrors.values.count) server errors")
        XCTAssertEqual(verified.values.reduce(0, +), threads * perThread * rounds, "every echo intact")
        XCTAssertEqual(echoed.values.reduce(0, +), threads * perThread * rounds * chunk, "not a byte lost")
        XCTAssertEqual(SSLStreamCensus.liveConnections, liveBefore, "every SSL freed")
        XCTAssertEqual(SeedByteStreamTests.openDescriptorCount(), before, "no descriptor left open")
    }
}
