import Foundation
import NIOCore
import NIOPosix
import NIOTLS
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

struct NIOTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits for a future with a time limit (a test never hangs on one).
@discardableResult
func resolve<T>(_ future: EventLoopFuture<T>, timeout: TimeInterval = 20, _ what: String = "future") throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    future.whenComplete { result in box.result = result; done.signal() }
    guard done.wait(timeout: .now() + timeout) == .success, let result = box.result else {
        throw NIOTestFailure("\(what) did not complete within \(timeout) s")
    }
    return try result.get()
}

final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }  // written once by the task, read after it was waited for

/// Runs `body` with a time limit; a body that runs over is cancelled and the test fails.
func withDeadline<T: Sendable>(_ seconds: TimeInterval, _ what: String = "the test",
                               _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw NIOTestFailure("\(what) did not finish within \(seconds) s")
        }
        return value
    }
}

/// Collects what reaches the end of a pipeline: plaintext, events, errors.
final class Collector: ChannelInboundHandler, @unchecked Sendable {  // its state is only touched under `condition`
    typealias InboundIn = ByteBuffer

    private let condition = NSCondition()
    private var received: [UInt8] = []
    private var seen: [String] = []
    private var caught: [Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        condition.lock(); received += bytes; condition.broadcast(); condition.unlock()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let name: String
        switch event {
        case OpenSSLEvent.closeNotifyReceived: name = "closeNotify"
        case OpenSSLEvent.handshakeCompleted: name = "handshake"
        case ChannelEvent.inputClosed: name = "inputClosed"
        case is TLSUserEvent:  // fired with OpenSSLEvent.handshakeCompleted, for NIO's ALPN handlers
            context.fireUserInboundEventTriggered(event)
            return
        default: name = "\(event)"
        }
        note(name)
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        condition.lock(); caught.append(error); seen.append("error"); condition.broadcast(); condition.unlock()
    }

    func channelInactive(context: ChannelHandlerContext) {
        note("inactive")
        context.fireChannelInactive()
    }

    private func note(_ name: String) {
        condition.lock(); seen.append(name); condition.broadcast(); condition.unlock()
    }

    var bytes: [UInt8] { condition.lock(); defer { condition.unlock() }; return received }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    var events: [String] { condition.lock(); defer { condition.unlock() }; return seen }
    var errors: [Error] { condition.lock(); defer { condition.unlock() }; return caught }

    /// Waits until `predicate` holds for (text, events), up to `timeout` seconds.
    @discardableResult
    func wait(timeout: TimeInterval = 10, until predicate: (String, [String]) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        condition.lock(); defer { condition.unlock() }
        while !predicate(String(decoding: received, as: UTF8.self), seen) {
            if !condition.wait(until: end) { return predicate(String(decoding: received, as: UTF8.self), seen) }
        }
        return true
    }

    func waitForText(_ text: String, timeout: TimeInterval = 10) -> Bool { wait(timeout: timeout) { t, _ in t.contains(text) } }
    func waitForEvent(_ name: String, timeout: TimeInterval = 10) -> Bool { wait(timeout: timeout) { _, e in e.contains(name) } }
    func waitForCount(_ count: Int, timeout: TimeInterval = 10) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        condition.lock(); defer { condition.unlock() }
        while received.count < count {
            if !condition.wait(until: end) { return received.count >= count }
        }
        return true
    }
}

/// Errors reported from event loops (sslErrorCallback).
final class ErrorLog: @unchecked Sendable {  // `errors` is only touched under `lock`
    private let lock = NSLock()
    private var errors: [Error] = []
    func add(_ error: Error) { lock.lock(); errors.append(error); lock.unlock() }
    var all: [Error] { lock.lock(); defer { lock.unlock() }; return errors }

    /// Waits until at least one error was reported.
    func waitForAny(timeout: TimeInterval = 10) -> Error? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let first = all.first { return first }
            usleep(10_000)
        }
        return all.first
    }
}

/// Writes back what it reads.
final class Echo: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}

/// Answers each line with "echo: " + line; closes after the line "quit".
final class LineEcho: ChannelInboundHandler, @unchecked Sendable {  // used on its channel's event loop only
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var pending: [UInt8] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        pending += buffer.readBytes(length: buffer.readableBytes) ?? []
        while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
            var line = Array(pending[..<end])
            pending.removeSubrange(...end)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line == Array("quit".utf8) { context.close(promise: nil); return }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: Array("echo: ".utf8) + line + [UInt8(ascii: "\n")])), promise: nil)
        }
    }
}

enum NIOFixtures {
    static var pki: TestPKI { get throws { try TestPKI.shared } }

    /// A server context with the test certificate (or another).
    static func serverContext(cert: String? = nil, key: String? = nil, proto: SSLProtocol = .default,
                              requireClientCertificate: Bool = false) throws -> SSLContextPointer {
        let pki = try pki
        let ctx = try makeSSLCtx(protocol: proto, side: .server)
        try useCertificateChainFile(ctx, file: cert ?? pki.serverCert)
        try usePrivateKeyFile(ctx, file: key ?? pki.serverKey)
        if requireClientCertificate {
            try loadVerifyLocations(ctx, file: pki.caCert)
            setVerificationMode(ctx, side: .server, mode: .always)
        }
        return ctx
    }

    /// Client security trusting only the test CA.
    static var trustTestCA: SSLSecurity { get throws { SSLSecurity.trusting(caFile: try pki.caCert) } }

    /// A `ctxConfigure` that loads the test server certificate and key.
    static func loadServerIdentity() -> @Sendable (SSLContextPointer) throws -> Void {
        { ctx in
            let pki = try TestPKI.shared
            try useCertificateChainFile(ctx, file: pki.serverCert)
            try usePrivateKeyFile(ctx, file: pki.serverKey)
        }
    }

    /// A plain NIO client channel with a collector.
    static func plainClient(group: EventLoopGroup, port: Int, host: String = "127.0.0.1", collector: Collector,
                            halfClosure: Bool = false) throws -> Channel {
        try resolve(ClientBootstrap(group: group)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: halfClosure)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: host, port: port), "connect")
    }

    /// Polls until the stream census is back to `baseline` (objects are freed a tick after a close).
    static func waitForCensus(connections: Int, contexts: Int, timeout: TimeInterval = 5) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if SSLStreamCensus.liveConnections == connections && SSLStreamCensus.liveContexts == contexts { return true }
            usleep(10_000)
        }
        return false
    }
}

extension Channel {
    /// Writes and flushes a string.
    @discardableResult
    func send(_ text: String) -> EventLoopFuture<Void> { writeAndFlush(ByteBuffer(string: text)) }

    /// The port this (listening) channel is bound to.
    var boundPort: Int { localAddress?.port ?? -1 }
}

/// The SSLError in an error, or a test failure.
func sslError(_ error: Error, file: StaticString = #filePath, line: UInt = #line) -> SSLError? {
    guard let e = error as? SSLError else {
        XCTFail("expected an SSLError, got \(type(of: error)): \(error)", file: file, line: line)
        return nil
    }
    return e
}
