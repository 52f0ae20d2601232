import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO

/// The Swift side of the `nio` and `nio-ssl` layers of `sslcat bench`: one SwiftNIO harness, run with
/// this package's ``OpenSSLHandler`` (system OpenSSL over memory BIOs) or with swift-nio-ssl's
/// `NIOSSLHandler` (BoringSSL) on both ends. Client and server each have an event loop of their own
/// (two threads, as the C reference), in this process, over loopback TCP. The same workloads as
/// `Benchmarks/CReference/main.c`: TLS 1.3 (OpenSSL: TLS_AES_128_GCM_SHA256; BoringSSL picks
/// AES-128-GCM first where the CPU has AES instructions), the client verifies the certificate and the
/// host name "localhost".
///
/// Bulk: after the handshake, the client writes `total` bytes in `writeSize` writes, flushing each write
/// (one record per write, as the C reference: the OpenSSL handler's coalescing is off) or every 64 KiB
/// (coalesced), pausing while the channel is not writable; the time runs from the first write to the
/// server's last byte read, and the server counts the bytes it received (records and the client's
/// handshake). Handshakes: `count` connections one after the other (connect, handshake, one byte from
/// the server, close), resuming the previous one's session when asked (the OpenSSL engine). Memory:
/// resident bytes per idle connection, both ends in this process. Concurrent: `connections` at once.
final class NIOBench {
    enum Engine: String {
        case openSSL = "nio"
        case nioSSL = "nio-ssl"
    }

    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let serverCtx: SSLContextPointer
    let clientCtx: SSLContextPointer
    let nioServerContext: NIOSSLContext
    let nioClientContext: NIOSSLContext

    init(caFile: String, certFile: String, keyFile: String) throws {
        serverCtx = try makeSSLCtx(side: .server)
        clientCtx = try makeSSLCtx(side: .client)
        try useCertificateChainFile(serverCtx, file: certFile)
        try usePrivateKeyFile(serverCtx, file: keyFile)
        try loadVerifyLocations(clientCtx, file: caFile)
        SSL_CTX_set_verify(clientCtx, SSL_VERIFY_PEER, nil)
        for ctx in [serverCtx, clientCtx] {
            _ = SSL_CTX_set_min_proto_version(ctx, Int(TLS1_3_VERSION))
            guard SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") == 1 else {
                throw SSLError.fromQueue(call: "SSL_CTX_set_ciphersuites")
            }
        }
        _ = SSL_CTX_set_session_cache_mode(clientCtx, Int(SSL_SESS_CACHE_CLIENT))
        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem)))
        server.minimumTLSVersion = .tlsv13
        var client = TLSConfiguration.makeClientConfiguration()
        client.trustRoots = .file(caFile)
        client.minimumTLSVersion = .tlsv13
        nioServerContext = try NIOSSLContext(configuration: server)
        nioClientContext = try NIOSSLContext(configuration: client)
    }

    /// Stops the event loops and frees the contexts (call it from outside the event loops).
    func shutdown() {
        try? clientGroup.syncShutdownGracefully()
        try? serverGroup.syncShutdownGracefully()
        destroySSLCtx(serverCtx)
        destroySSLCtx(clientCtx)
    }

    /// Reads of up to 256 KiB (NIO's default stops at 64 KiB): many records per system call, as the
    /// streams layer reads. The same for both engines.
    static var receiveAllocator: AdaptiveRecvByteBufferAllocator {
        ProcessInfo.processInfo.environment["NIOBENCH_DEFAULT_RECV"] != nil ? AdaptiveRecvByteBufferAllocator()
            : AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 16 * 1024, maximum: 256 * 1024)
    }

    // MARK: Handlers of either engine

    /// `OpenSSLHandler.bufferReleaseDelay` from NIOBENCH_RELEASE_DELAY_MS (icount.sh stretches it by
    /// valgrind's slowdown, so that the idle release comes as often per request as in a native run).
    static let releaseDelay: TimeAmount? = ProcessInfo.processInfo.environment["NIOBENCH_RELEASE_DELAY_MS"]
        .flatMap { Int64($0) }.map { .milliseconds($0) }

    private static func serverTLS(_ engine: Engine, _ ctx: SSLContextPointer, _ context: NIOSSLContext) throws -> ChannelHandler {
        switch engine {
        case .openSSL:
            let handler = try OpenSSLHandler(ctx: .context(ctx), side: .server)
            if let releaseDelay { handler.bufferReleaseDelay = releaseDelay }
            return handler
        case .nioSSL: return NIOSSLServerHandler(context: context)
        }
    }

    private static func clientTLS(_ engine: Engine, _ ctx: SSLContextPointer, _ context: NIOSSLContext,
                                  coalesces: Bool = true, session: SSLSessionPointer? = nil) throws -> ChannelHandler {
        switch engine {
        case .openSSL:
            // As the C reference: connected to 127.0.0.1, the certificate checked for (and SNI) "localhost".
            let handler = try OpenSSLHandler(ctx: .context(ctx), side: .client, sslConfigure: { ssl in
                if let session { _ = SSL_set_session(ssl, session) }
            }, hostName: "localhost")
            handler.coalescesWrites = coalesces
            if let releaseDelay { handler.bufferReleaseDelay = releaseDelay }
            return handler
        case .nioSSL:
            return try NIOSSLClientHandler(context: context, serverHostname: "localhost")
        }
    }

    /// True for either engine's handshake-completed event.
    static func isHandshakeCompleted(_ event: Any) -> Bool {
        if case OpenSSLEvent.handshakeCompleted = event { return true }
        if case TLSUserEvent.handshakeCompleted = event { return true }
        return false
    }

    private func listen(_ engine: Engine, wire: WireCount? = nil, _ makeHandler: @escaping @Sendable () -> ChannelHandler) throws -> Channel {
        let (ctx, context) = (serverCtx, nioServerContext)
        return try ServerBootstrap(group: serverGroup)
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: NIOBench.receiveAllocator)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let wire { try channel.pipeline.syncOperations.addHandler(WireCounter(wire)) }
                    try channel.pipeline.syncOperations.addHandler(NIOBench.serverTLS(engine, ctx, context))
                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    private func connect(_ engine: Engine, port: Int, coalesces: Bool = true, _ handler: ChannelHandler) throws -> Channel {
        let (ctx, context) = (clientCtx, nioClientContext)
        let app = LoopBox(handler)
        return try ClientBootstrap(group: clientGroup)
            .channelOption(ChannelOptions.recvAllocator, value: NIOBench.receiveAllocator)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOBench.clientTLS(engine, ctx, context, coalesces: coalesces))
                    try channel.pipeline.syncOperations.addHandler(app.value)
                }
            }
            .connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)).wait()
    }

    // MARK: Bulk

    /// The ciphertext bytes a server channel received (used on its event loop only).
    final class WireCount: @unchecked Sendable { var bytes = 0 }

    /// Counts the bytes that arrive from the socket, below the TLS handler.
    final class WireCounter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let count: WireCount
        init(_ count: WireCount) { self.count = count }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            count.bytes += unwrapInboundIn(data).readableBytes
            context.fireChannelRead(data)
        }
    }

    /// Counts the bytes; when all arrived notes the time and answers with one byte.
    final class Sink: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let total: Int
        let end: EventLoopPromise<Double>
        var got = 0
        var ended = false

        init(total: Int, end: EventLoopPromise<Double>) { self.total = total; self.end = end }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            got += unwrapInboundIn(data).readableBytes
            if got >= total && !ended {
                ended = true
                end.succeed(now())
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "k")), promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            if !ended { ended = true; end.fail(error) }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !ended { ended = true; end.fail(SSLCatFailure("bulk: the server's connection closed after \(got) of \(total) bytes")) }
            context.fireChannelInactive()
        }
    }

    /// After the handshake, writes `total` bytes in `writeSize` writes, flushing every 64 KiB, pausing
    /// while the channel is not writable; completes when the server's byte arrives.
    final class Source: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let total: Int
        let chunk: ByteBuffer
        let start: EventLoopPromise<Double>?
        let done: EventLoopPromise<Void>
        let flushEach: Bool
        /// For a concurrent run: succeeded at the handshake; the writing starts at ``go()``.
        let ready: EventLoopPromise<Void>?
        var context: ChannelHandlerContext?
        var sent = 0
        var started = false
        var finished = false

        init(total: Int, writeSize: Int, flushEach: Bool = false, start: EventLoopPromise<Double>?, ready: EventLoopPromise<Void>? = nil,
             done: EventLoopPromise<Void>) {
            self.total = total; self.start = start; self.done = done; self.flushEach = flushEach; self.ready = ready
            chunk = ByteBuffer(bytes: (0..<writeSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if NIOBench.isHandshakeCompleted(event) && !started {
                if let ready {
                    self.context = context
                    ready.succeed(())
                } else {
                    started = true
                    start?.succeed(now())
                    pump(context: context)
                }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if started { pump(context: context) }
            context.fireChannelWritabilityChanged()
        }

        /// Starts writing (a concurrent run), on the channel's event loop.
        func go() {
            guard let context, !started else { return }
            started = true
            pump(context: context)
        }

        private func pump(context: ChannelHandlerContext) {
            let batch = flushEach ? 1 : 64 * 1024
            while sent < total && context.channel.isWritable {
                var inBatch = 0
                while sent < total && inBatch < batch {
                    let n = min(chunk.readableBytes, total - sent)
                    context.write(wrapOutboundOut(n == chunk.readableBytes ? chunk : chunk.getSlice(at: chunk.readerIndex, length: n)!),
                                  promise: nil)
                    sent += n
                    inBatch += n
                }
                context.flush()
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            finish(.success(()))
        }

        private func finish(_ result: Result<Void, Error>) {
            guard !finished else { return }
            finished = true
            if !started, case .failure(let error) = result {
                started = true
                start?.fail(error)
                ready?.fail(error)
            }
            done.completeWith(result)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            finish(.failure(error))
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish(.failure(SSLCatFailure("bulk: the client's connection closed early")))
            context.fireChannelInactive()
        }
    }

    /// Seconds to move `total` bytes client → server in `writeSize` writes (first write to last byte
    /// read), and the bytes the server received. `flushEach`: one flush (one record) per write.
    func bulk(_ engine: Engine, writeSize: Int, total: Int, flushEach: Bool) throws -> (seconds: Double, wire: Int) {
        let end = serverGroup.next().makePromise(of: Double.self)
        let wire = WireCount()
        let server = try listen(engine, wire: wire) { Sink(total: total, end: end) }
        defer { try? server.close().wait() }
        let start = clientGroup.next().makePromise(of: Double.self)
        let done = clientGroup.next().makePromise(of: Void.self)
        let channel = try connect(engine, port: server.localAddress!.port!, coalesces: !flushEach,
                                  Source(total: total, writeSize: writeSize, flushEach: flushEach, start: start, done: done))
        defer { try? channel.close().wait() }
        try done.futureResult.wait()
        let seconds = try end.futureResult.wait() - start.futureResult.wait()
        // The Sink ended on the server's loop; the count is read there.
        let bytes = try server.eventLoop.submit { wire.bytes }.wait()
        return (seconds, bytes)
    }

    /// Seconds for `connections` connections (connected and handshaken first) to move `total` bytes in
    /// all, `total / connections` each in `writeSize` writes, all at once: from the start to the last
    /// server's last byte.
    func concurrent(_ engine: Engine, connections: Int, writeSize: Int, total: Int) throws -> Double {
        let each = total / connections
        final class Ends: @unchecked Sendable {
            let lock = NSLock()
            var promises: [EventLoopPromise<Double>] = []
        }
        let ends = Ends()
        let serverLoop = serverGroup.next()
        let server = try listen(engine) {
            let end = serverLoop.makePromise(of: Double.self)
            ends.lock.lock(); ends.promises.append(end); ends.lock.unlock()
            return Sink(total: each, end: end)
        }
        defer { try? server.close().wait() }
        let loop = clientGroup.next()
        var channels: [Channel] = [], sources: [Source] = [], readies: [EventLoopFuture<Void>] = [], dones: [EventLoopFuture<Void>] = []
        defer { for channel in channels { try? channel.close().wait() } }
        for _ in 0..<connections {
            let ready = loop.makePromise(of: Void.self), done = loop.makePromise(of: Void.self)
            let source = Source(total: each, writeSize: writeSize, start: nil, ready: ready, done: done)
            channels.append(try connect(engine, port: server.localAddress!.port!, source))
            sources.append(source); readies.append(ready.futureResult); dones.append(done.futureResult)
        }
        for ready in readies { try ready.wait() }
        let box = LoopBox(sources)
        let start = try loop.submit { () -> Double in
            let t = now()
            for source in box.value { source.go() }
            return t
        }.wait()
        for done in dones { try done.wait() }
        ends.lock.lock(); let promises = ends.promises; ends.lock.unlock()
        var last = 0.0
        for end in promises { last = max(last, try end.futureResult.wait()) }
        return last - start
    }

    // MARK: Requests

    /// The request and response of the requests workload: the sizes of an HTTP/1.1 `GET /` from wrk
    /// and of the example server's answer (head and body written apart, flushed once).
    static let request = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fli-bench-nio\r\n\r\n")
    static let responseHead = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                             + "Content-Length: 13\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\n\r\n")
    static let responseBody = ByteBuffer(string: "Hello, world!")

    /// Answers each whole request on the next tick of its event loop (as an async responder does:
    /// after the read burst ended), head and body in two writes and one flush.
    final class Responder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var got = 0
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            got += unwrapInboundIn(data).readableBytes
            let size = NIOBench.request.readableBytes
            while got >= size {
                got -= size
                let bound = LoopBox(context)
                context.eventLoop.execute {
                    let context = bound.value
                    context.write(NIOAny(NIOBench.responseHead), promise: nil)
                    context.writeAndFlush(NIOAny(NIOBench.responseBody), promise: nil)
                }
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
    }

    /// Sends a request after the handshake and again after each whole response, `count` times.
    final class Requester: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let done: EventLoopPromise<Double>
        var left: Int
        var got = 0
        var start = 0.0
        var finished = false
        init(count: Int, done: EventLoopPromise<Double>) { left = count; self.done = done }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if NIOBench.isHandshakeCompleted(event) && start == 0 {
                start = now()
                context.writeAndFlush(wrapOutboundOut(NIOBench.request), promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            got += unwrapInboundIn(data).readableBytes
            let size = NIOBench.responseHead.readableBytes + NIOBench.responseBody.readableBytes
            guard got >= size, !finished else { return }
            got -= size
            left -= 1
            if left == 0 {
                finished = true
                done.succeed(now() - start)
            } else {
                context.writeAndFlush(wrapOutboundOut(NIOBench.request), promise: nil)
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            if !finished { finished = true; done.fail(error) }
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            if !finished { finished = true; done.fail(SSLCatFailure("requests: the connection closed with \(left) left")) }
            context.fireChannelInactive()
        }
    }

    /// Seconds for `count` request/response exchanges on each of `connections` connections at once,
    /// one exchange at a time on each (the server answers as an HTTP/1.1 keep-alive server does): the
    /// per-request cost of the TLS handler, alone or among many connections. The time runs from the
    /// first handshake's end to the last connection's last response.
    func requests(_ engine: Engine, count: Int, connections: Int) throws -> Double {
        let server = try listen(engine) { Responder() }
        defer { try? server.close().wait() }
        var channels: [Channel] = [], dones: [EventLoopFuture<Double>] = []
        defer { for channel in channels { try? channel.close().wait() } }
        let begin = now()
        for _ in 0..<connections {
            let done = clientGroup.next().makePromise(of: Double.self)
            channels.append(try connect(engine, port: server.localAddress!.port!, Requester(count: count, done: done)))
            dones.append(done.futureResult)
        }
        var longest = 0.0
        for done in dones { longest = max(longest, try done.wait()) }
        return connections == 1 ? longest : now() - begin
    }

    // MARK: Memory

    /// After the handshake, sends one byte and stays open.
    final class IdleGreeter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if NIOBench.isHandshakeCompleted(event) {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "k")), promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
    }

    /// Resident bytes per idle TLS connection (handshake done, one byte from the server; both ends in
    /// this process), over `count` connections, after a warm-up with 16, as the C reference.
    func memoryPerConnection(_ engine: Engine, count: Int) throws -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let server = try listen(engine) { IdleGreeter() }
        defer { try? server.close().wait() }
        func open(_ n: Int) throws -> [Channel] {
            var channels: [Channel] = []
            for _ in 0..<n {
                let done = clientGroup.next().makePromise(of: Bool.self)
                let channel = try connect(engine, port: server.localAddress!.port!, Receiver(done: done))
                channels.append(channel)
                _ = try done.futureResult.wait()
            }
            return channels
        }
        for channel in try open(16) { try? channel.close().wait() }
        let before = residentBytes()
        let opened = try open(count)
        let after = residentBytes()
        for channel in opened { try? channel.close().wait() }
        return (after - before) / count
    }

    // MARK: Handshakes

    /// After the handshake, sends one byte and closes.
    final class Greeter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if NIOBench.isHandshakeCompleted(event) {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "k")), promise: nil)
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
    }

    /// Completes when the server's byte arrived (with whether the session was resumed, for OpenSSL);
    /// `keep` then receives the session to resume next.
    final class Receiver: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let done: EventLoopPromise<Bool>
        let keep: ((SSLSessionPointer?) -> Void)?
        var finished = false
        init(done: EventLoopPromise<Bool>, keep: ((SSLSessionPointer?) -> Void)? = nil) { self.done = done; self.keep = keep }
        private func finish(_ result: Result<Bool, Error>) {
            if !finished { finished = true; done.completeWith(result) }
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let ssl = context.pipeline.syncOperations.openSSLHandler?.ssl
            if !finished, let keep { keep(ssl.flatMap { SSL_get1_session($0) }) }
            finish(.success(ssl.map { SSL_session_reused($0) == 1 } ?? false))
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) { finish(.failure(error)); context.close(promise: nil) }
        func channelInactive(context: ChannelHandlerContext) {
            finish(.failure(SSLCatFailure("handshake: the connection closed before the server's byte")))
            context.fireChannelInactive()
        }
    }

    /// Seconds for `count` client connections one after the other (handshake, one byte from the
    /// server, close), and how many were resumed (the OpenSSL engine resumes the previous connection's
    /// session when `resume`). The loop runs on the client's event loop, as the C reference's runs on
    /// its thread: no hop per connection.
    func handshakes(_ engine: Engine, count: Int, resume: Bool) throws -> (seconds: Double, reused: Int) {
        let server = try listen(engine) { Greeter() }
        defer { try? server.close().wait() }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: server.localAddress!.port!)
        let loop = clientGroup.next()
        let (ctx, context) = (clientCtx, nioClientContext)
        let bootstrap = LoopBox(ClientBootstrap(group: loop))
        let finished = loop.makePromise(of: (seconds: Double, reused: Int).self)
        final class Progress: @unchecked Sendable { var left = 0, reused = 0, start = 0.0; var session: SSLSessionPointer? }
        let progress = Progress()
        progress.left = count + 1  // one more first: the warm-up, as the C reference's first connection
        @Sendable func next() {
            if progress.left == count { progress.start = now(); progress.reused = 0 }
            if progress.left == 0 {
                finished.succeed((now() - progress.start, progress.reused))
                return
            }
            progress.left -= 1
            let done = loop.makePromise(of: Bool.self)
            let session = resume ? progress.session : nil
            let keep: ((SSLSessionPointer?) -> Void)? = resume ? { next in
                SSL_SESSION_free(progress.session)
                progress.session = next
            } : nil
            bootstrap.value
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOBench.clientTLS(engine, ctx, context, session: session))
                        try channel.pipeline.syncOperations.addHandler(Receiver(done: done, keep: keep))
                    }
                }
                .connect(to: address)
                .whenComplete { connected in
                    switch connected {
                    case .failure(let error): finished.fail(error)
                    case .success(let channel):
                        done.futureResult.whenComplete { outcome in
                            switch outcome {
                            case .failure(let error): finished.fail(error)
                            case .success(let resumed):
                                if resumed { progress.reused += 1 }
                                channel.close(promise: nil)
                                channel.closeFuture.whenComplete { _ in next() }
                            }
                        }
                    }
                }
        }
        loop.execute { next() }
        defer { SSL_SESSION_free(progress.session) }
        return try finished.futureResult.wait()
    }
}

/// Carries a value into an event loop's closure (used there only).
private struct LoopBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The process's resident memory (`/proc/self/statm`), in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}
