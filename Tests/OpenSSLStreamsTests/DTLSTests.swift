import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// DTLS over UDP on loopback: `openssl s_server -dtls1_2` / `s_client -dtls1_2`, our own ends, loss,
/// spoofed ClientHellos.
final class DTLSTests: XCTestCase {
    func serverIdentity() -> (SSLContextPointer) throws -> Void { Fixtures.loadServerIdentity() }
    var trust: SSLSecurity { get throws { try Fixtures.trustTestCA } }

    func testOurClientWithOpenSSLServer() throws {
        let pki = try Fixtures.pki
        let peer = try BackgroundProcess(Fixtures.openssl, ["s_server", "-dtls1_2", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                            "-key", pki.serverKey])
        defer { peer.terminate() }
        let port = try XCTUnwrap(peer.acceptedPort(), peer.errorOutput)
        let socket = try openDTLS(host: "127.0.0.1", port: port, handshakeTimeout: 10, hostName: "localhost", security: try trust)
        defer { try? socket.close() }
        XCTAssertEqual(SSL_get_version(socket.ssl), "DTLSv1.2")
        XCTAssertGreaterThan(socket.maximumDatagramSize, 1000)
        try socket.send(Array("hello from dtls\n".utf8))
        XCTAssertTrue(peer.waitFor("hello from dtls", timeout: 10), peer.output)
        peer.write("one datagram\n")
        XCTAssertEqual(try socket.receive(timeout: 10).map { String(decoding: $0, as: UTF8.self) }, "one datagram\n")
    }

    func testOpenSSLClientWithOurServer() throws {
        let pki = try Fixtures.pki
        let listener = try listenDTLS(ctxConfigure: serverIdentity())
        defer { listener.close() }
        let server = Background("dtls echo") {
            let socket = try listener.accept(timeout: 10, handshakeTimeout: 10)
            while let datagram = try socket.receive(timeout: 10) {
                try socket.send(Array("echo: ".utf8) + datagram)
            }
            try socket.close()
        }
        let client = try BackgroundProcess(Fixtures.openssl, ["s_client", "-dtls1_2", "-connect", "127.0.0.1:\(listener.port)",
                                                              "-CAfile", pki.caCert, "-verify_return_error", "-servername", "localhost", "-quiet", "-no_ign_eof"])
        defer { client.terminate() }
        client.write("first\n")
        XCTAssertTrue(client.waitFor("echo: first", timeout: 10), client.output + client.errorOutput)
        client.write("second\n")
        XCTAssertTrue(client.waitFor("echo: second", timeout: 10), client.output)
        client.closeInput()  // s_client sends close_notify at the end of its input
        try server.join(timeout: 20)
        XCTAssertGreaterThanOrEqual(listener.cookieCounts.requests, 1, "the client went through the cookie exchange")
        XCTAssertGreaterThanOrEqual(listener.cookieCounts.verified, 1, "it came back with a valid cookie")
    }

    /// 10,000 datagrams of random sizes up to the MTU, each with a sequence number and a checksum,
    /// echoed back: boundaries, order and content kept.
    func testTenThousandDatagramsKeepBoundariesAndContent() throws {
        let listener = try listenDTLS(ctxConfigure: serverIdentity(), mtu: 1400)
        defer { listener.close() }
        let server = Background("dtls echo") {
            let socket = try listener.accept(timeout: 10, handshakeTimeout: 10)
            while let datagram = try socket.receive(timeout: 10) { try socket.send(datagram) }
            try socket.close()
        }
        let socket = try openDTLS(host: "127.0.0.1", port: listener.port, handshakeTimeout: 10, hostName: "localhost",
                                  security: try trust, mtu: 1400)
        let limit = socket.maximumDatagramSize
        XCTAssertGreaterThan(limit, 1000)
        XCTAssertLessThan(limit, 1400)
        var generator = SystemRandomNumberGenerator()
        for sequence in 0..<10_000 {
            let size = Int.random(in: 40...limit, using: &generator)
            var datagram = withUnsafeBytes(of: UInt32(sequence).bigEndian, Array.init)
            datagram += (0..<(size - 36)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            datagram += try sha256(datagram)
            try socket.send(datagram)
            let echo = try XCTUnwrap(try socket.receive(timeout: 5), "datagram \(sequence)")
            guard echo == datagram else { XCTFail("datagram \(sequence) came back different (\(echo.count) of \(size) bytes)"); break }
            XCTAssertEqual(Array(echo.suffix(32)), try sha256(Array(echo.dropLast(32))))
        }
        XCTAssertThrowsError(try socket.send([UInt8](repeating: 1, count: limit + 1))) { XCTAssertTrue("\($0)".contains("fit the MTU")) }
        try socket.close()
        try server.join(timeout: 20)
    }

    /// A relay that drops datagrams during the handshake (10 %, and the first flight back): the
    /// retransmission timers still complete it.
    func testHandshakeCompletesThroughALossyRelay() throws {
        let listener = try listenDTLS(ctxConfigure: serverIdentity())
        defer { listener.close() }
        let relay = try LossyRelay(target: listener.port, dropEvery: 10, alsoDrop: [1])
        defer { relay.stop() }
        let server = Background("dtls server") {
            let socket = try listener.accept(timeout: 30, handshakeTimeout: 30)
            if let datagram = try socket.receive(timeout: 30) { try socket.send(datagram) }
            try socket.close()
        }
        let socket = try openDTLS(host: "127.0.0.1", port: relay.port, handshakeTimeout: 30, hostName: "localhost", security: try trust)
        relay.stopDropping()  // DTLS retransmits handshake flights, not application data
        try socket.send(Array("through the relay".utf8))
        XCTAssertEqual(try socket.receive(timeout: 30).map { String(decoding: $0, as: UTF8.self) }, "through the relay")
        try socket.close()
        try server.join(timeout: 40)
        XCTAssertGreaterThan(relay.dropped, 0, "datagrams were lost and the handshake retransmitted")
    }

    /// A ClientHello from a spoofed source gets a HelloVerifyRequest and the server keeps no state.
    func testSpoofedClientHelloGetsACookieRequestAndNoState() throws {
        // A real ClientHello, captured by a UDP socket posing as a server.
        let capture = try UDPSocket()
        XCTAssertThrowsError(try openDTLS(host: "127.0.0.1", port: capture.port, handshakeTimeout: 0.3, hostName: "localhost", security: .insecure))
        let clientHello = try XCTUnwrap(capture.receive(timeout: 5))
        XCTAssertEqual(clientHello.first, 22, "a handshake record")

        let listener = try listenDTLS(ctxConfigure: serverIdentity())
        defer { listener.close() }
        let spoofer = try UDPSocket()
        try spoofer.send(clientHello, toPort: listener.port)
        let acceptor = Background("accept") {
            XCTAssertThrowsError(try listener.accept(timeout: 1)) { XCTAssertEqual(($0 as? SocketError)?.errno, ETIMEDOUT) }
        }
        let answer = try XCTUnwrap(spoofer.receive(timeout: 5), "the server answers")
        try acceptor.join()
        XCTAssertEqual(answer.first, 22)
        XCTAssertEqual(answer.count > 13 ? answer[13] : 0, 3, "HelloVerifyRequest (handshake type 3)")
        XCTAssertEqual(listener.cookieCounts.requests, 1)
        XCTAssertEqual(listener.cookieCounts.verified, 0, "no ClientHello came back with the cookie: nothing kept")
    }

    func testBadInput() throws {
        XCTAssertThrowsError(try openDTLS(host: "", port: 4433)) { XCTAssertTrue("\($0)".contains("host name is empty")) }
        XCTAssertThrowsError(try openDTLS(host: "127.0.0.1", port: 0))
        XCTAssertThrowsError(try listenDTLS(port: 70000))
        let ctx = try makeSSLCtx(protocol: .dtls, side: .server)
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        defer { destroySSL(ssl) }
        XCTAssertThrowsError(try listenDTLS(sslCtx: .connection(ssl)))
        let listener = try listenDTLS(ctxConfigure: serverIdentity())
        defer { listener.close() }
        XCTAssertThrowsError(try openDTLS(host: "127.0.0.1", port: listener.port, handshakeTimeout: 0, mtu: 10)) {
            XCTAssertTrue("\($0)".contains("MTU"))
        }
        // Nobody answers: the handshake times out within its limit.
        let silent = try UDPSocket()
        let started = Date()
        XCTAssertThrowsError(try openDTLS(host: "127.0.0.1", port: silent.port, handshakeTimeout: 0.5, security: .insecure)) {
            XCTAssertEqual(($0 as? SSLError)?.kind, .handshakeTimeout, "\($0)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
    }
}

func sha256(_ bytes: [UInt8]) throws -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    guard EVP_Digest(bytes, bytes.count, &digest, &length, EVP_sha256(), nil) == 1 else { throw SSLError.fromQueue(call: "EVP_Digest") }
    return digest
}

/// A plain UDP socket on 127.0.0.1 for tests.
final class UDPSocket: Sendable {  // immutable: a descriptor and its port
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    func receive(timeout: TimeInterval) -> [UInt8]? {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? Array(buffer.prefix(n)) : nil
    }

    func send(_ bytes: [UInt8], toPort port: Int) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let n = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if n < 0 { throw SocketError(call: "sendto", errno: errno) }
    }
}

/// A UDP relay between one client and a server port that drops every `dropEvery`-th datagram (and the
/// ones numbered in `alsoDrop`, counting from 0) while it runs.
final class LossyRelay: @unchecked Sendable {  // fixed after init; `state` is the relay thread's, its shared flags under `state.lock`
    final class State: @unchecked Sendable {  // the flags are touched under `lock`; `client` and `count` by the relay thread only
        let lock = NSLock()
        var stopped = false
        var dropping = true
        var dropped = 0
        var client: sockaddr_in?
        var count = 0
    }
    let front: UDPSocket
    let back: UDPSocket
    var port: Int { front.port }
    private let state: State
    private let thread: Background
    var dropped: Int { state.lock.lock(); defer { state.lock.unlock() }; return state.dropped }

    init(target: Int, dropEvery: Int, alsoDrop: Set<Int>) throws {
        let front = try UDPSocket(), back = try UDPSocket()
        let state = State()
        self.front = front; self.back = back; self.state = state
        thread = Background("relay") {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var entries = [pollfd(fd: front.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: back.fd, events: Int16(POLLIN), revents: 0)]
            while true {
                state.lock.lock(); let done = state.stopped; state.lock.unlock()
                if done { return }
                guard poll(&entries, 2, 100) > 0 else { continue }
                for index in 0..<2 where entries[index].revents & Int16(POLLIN) != 0 {
                    var from = sockaddr_in()
                    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                    let n = withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(entries[index].fd, &buffer, buffer.count, 0, $0, &length) }
                    }
                    guard n > 0 else { continue }
                    let number = state.count
                    state.count += 1
                    state.lock.lock(); let dropping = state.dropping; state.lock.unlock()
                    if dropping && (number % dropEvery == dropEvery - 1 || alsoDrop.contains(number)) {
                        state.lock.lock(); state.dropped += 1; state.lock.unlock()
                        continue
                    }
                    let datagram = Array(buffer.prefix(n))
                    if index == 0 {
                        state.client = from
                        try? back.send(datagram, toPort: target)
                    } else if var client = state.client {
                        _ = withUnsafePointer(to: &client) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                                sendto(front.fd, datagram, datagram.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                            }
                        }
                    }
                }
            }
        }
    }

    func stopDropping() { state.lock.lock(); state.dropping = false; state.lock.unlock() }

    func stop() {
        state.lock.lock(); state.stopped = true; state.lock.unlock()
        try? thread.join(timeout: 5)
    }
}
