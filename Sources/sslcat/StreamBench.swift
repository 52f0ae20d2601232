import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// The Swift side of the stream benchmarks: the same workloads as `Benchmarks/CReference/main.c`, on
/// `SocketStream` (`openTCPStream` + `TCPListener`), in this process. One `SSL_CTX` per side, reused;
/// TLS 1.3 with TLS_AES_128_GCM_SHA256; the client verifies the certificate and the host name; the
/// server reads with 16 KiB buffers. No timeouts, as in the C reference (which has none).
final class StreamBench: Sendable {
    let serverCtx: SSLContextPointer
    let clientCtx: SSLContextPointer

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
    }

    deinit { destroySSLCtx(serverCtx); destroySSLCtx(clientCtx) }

    /// Runs `server` on another thread beside `client`; rethrows the server's error.
    func withServer<T>(_ server: @escaping @Sendable (TCPListener) throws -> Void, client: (Int) throws -> T) throws -> T {
        let listener = try listen(port: 0, backlog: 4096, host: "127.0.0.1")
        defer { listener.close() }
        let outcome = ErrorBox()
        let done = DispatchGroup()
        done.enter()
        Thread.detachNewThread {
            do { try server(listener) } catch { outcome.error = error }
            done.leave()
        }
        let result: T
        do {
            result = try client(listener.port)
        } catch {
            listener.close()
            _ = done.wait(timeout: .now() + 10)
            throw outcome.error ?? error
        }
        guard done.wait(timeout: .now() + 120) == .success else { throw SSLCatFailure("the benchmark server did not finish") }
        if let error = outcome.error { throw error }
        return result
    }

    func connect(_ port: Int, session: SSLSessionPointer? = nil) throws -> SocketStream {
        // As the C reference: connect to 127.0.0.1, check the certificate for (and send SNI) "localhost".
        try openTCPStream(host: "127.0.0.1", port: port, sslCtx: .context(clientCtx), sslConfigure: { ssl in
            if let session { _ = SSL_set_session(ssl, session) }
        }, handshakeTimeout: nil, hostName: "localhost")
    }

    /// Seconds to move `total` bytes client → server in `writeSize` writes (first write to last byte
    /// read), and the bytes the server received from its socket (records and the client's handshake).
    /// `flushEach`: every write is flushed, one TLS record per write as the C reference sends; without it
    /// the client flushes every 64 KiB, and the stream coalesces writes into full records (bulk_1k_coalesced).
    func bulk(writeSize: Int, total: Int, flushEach: Bool) throws -> (seconds: Double, wire: Int) {
        final class End: @unchecked Sendable { var time = 0.0; var wire = 0 }  // written by the server thread, read after it ended (joined)
        let end = End()
        let serverCtx = self.serverCtx
        let seconds = try withServer({ listener in
            let s = try listener.accept(sslCtx: .context(serverCtx))
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            var got = 0
            try buffer.withUnsafeMutableBytes { raw in
                while got < total {
                    let n = try s.read(into: raw)
                    if n == 0 { throw SSLCatFailure("bulk: the client closed after \(got) bytes") }
                    got += n
                }
            }
            end.time = now()
            end.wire = s.bytesReceived
            try s.write("k"); try s.flush()
            try s.close()
        }, client: { port in
            let c = try connect(port)
            let chunk = (0..<writeSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let start = now()
            var sent = 0
            try chunk.withUnsafeBytes { raw in
                while sent < total {
                    let n = min(writeSize, total - sent)
                    try c.write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                    sent += n
                    if flushEach || sent % (64 * 1024) == 0 { try c.flush() }
                }
            }
            try c.flush()
            _ = try c.readExactly(1)
            let elapsed = end.time - start
            try c.close()
            return elapsed
        })
        return (seconds, end.wire)
    }

    /// Seconds for `connections` connections (a client and a server thread each, connected and
    /// handshaken first) to move `total` bytes in all, `total / connections` each in `writeSize`
    /// writes, all at once: from the start to the last server's last byte. As the C reference.
    func concurrent(connections: Int, writeSize: Int, total: Int) throws -> Double {
        let each = total / connections
        final class Shared: @unchecked Sendable {  // its state is only touched under `lock`
            let lock = NSLock()
            var end = 0.0
            var error: Error?
            func record(_ t: Double) { lock.lock(); if t > end { end = t }; lock.unlock() }
            func fail(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
        }
        let shared = Shared()
        let serverCtx = self.serverCtx
        let servers = DispatchGroup()
        return try withServer({ listener in
            for _ in 0..<connections {
                let s = try listener.accept(sslCtx: .context(serverCtx))
                servers.enter()
                startThread {  // the stream is this thread's from here
                    defer { servers.leave() }
                    do {
                        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
                        var got = 0
                        try buffer.withUnsafeMutableBytes { raw in
                            while got < each {
                                let n = try s.read(into: raw)
                                if n == 0 { throw SSLCatFailure("concurrent: a client closed after \(got) bytes") }
                                got += n
                            }
                        }
                        shared.record(now())
                        try s.write("k"); try s.flush()
                        try s.close()
                    } catch { shared.fail(error) }
                }
            }
            guard servers.wait(timeout: .now() + 120) == .success else { throw SSLCatFailure("concurrent: the servers did not finish") }
            if let error = shared.error { throw error }
        }, client: { port in
            // Each client connects and handshakes on its own thread, then waits for the start.
            let ready = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
            let clients = DispatchGroup()
            for _ in 0..<connections {
                clients.enter()
                Thread.detachNewThread {
                    defer { clients.leave() }
                    do {
                        let c = try self.connect(port)
                        ready.signal()
                        go.wait()
                        let chunk = (0..<writeSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
                        var sent = 0
                        try chunk.withUnsafeBytes { raw in
                            while sent < each {
                                let n = min(writeSize, each - sent)
                                try c.write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                                sent += n
                            }
                        }
                        try c.flush()
                        _ = try c.readExactly(1)
                        try c.close()
                    } catch { shared.fail(error); ready.signal() }
                }
            }
            for _ in 0..<connections { ready.wait() }
            if let error = shared.error { throw error }
            let start = now()
            for _ in 0..<connections { go.signal() }
            guard clients.wait(timeout: .now() + 120) == .success else { throw SSLCatFailure("concurrent: the clients did not finish") }
            if let error = shared.error { throw error }
            return shared.end - start
        })
    }

    /// Seconds for `count` client connections (handshake, one byte from the server, close), resuming the
    /// previous session when `resume`; and how many were resumed.
    func handshakes(count: Int, resume: Bool) throws -> (seconds: Double, reused: Int) {
        let serverCtx = self.serverCtx
        return try withServer({ listener in
            for _ in 0...count {
                let s = try listener.accept(sslCtx: .context(serverCtx))
                try s.handshake()
                try s.write("k"); try s.flush()
                try s.close()
            }
        }, client: { port in
            var reused = 0
            func connection(_ session: SSLSessionPointer?) throws -> SSLSessionPointer? {
                let c = try connect(port, session: session)
                _ = try c.readExactly(1)  // brings the session tickets
                if SSL_session_reused(c.ssl) == 1 { reused += 1 }
                let next = SSL_get1_session(c.ssl)
                try c.close()
                return next
            }
            var session = try connection(nil)
            reused = 0
            let start = now()
            for _ in 0..<count {
                let next = try connection(resume ? session : nil)
                SSL_SESSION_free(session)
                session = next
            }
            let elapsed = now() - start
            SSL_SESSION_free(session)
            return (elapsed, reused)
        })
    }

    /// Resident bytes per idle TLS connection (both ends in this process), over `count` connections.
    func memoryPerConnection(count: Int) throws -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        final class Servers: @unchecked Sendable { var streams: [SocketStream] = [] }  // written by the server thread, read after it ended (joined)
        func open(_ n: Int) throws -> (clients: [SocketStream], servers: Servers) {
            let servers = Servers()
            let serverCtx = self.serverCtx
            let clients = try withServer({ listener in
                for _ in 0..<n {
                    let s = try listener.accept(sslCtx: .context(serverCtx))
                    try s.handshake()
                    try s.write("k"); try s.flush()
                    servers.streams.append(s)
                }
            }, client: { port -> [SocketStream] in
                var clients: [SocketStream] = []
                clients.reserveCapacity(n)
                for _ in 0..<n {
                    let c = try connect(port)
                    _ = try c.readExactly(1)
                    clients.append(c)
                }
                return clients
            })
            return (clients, servers)
        }
        // Warm-up, as in the C reference: the same work once with a few connections.
        var warm: (clients: [SocketStream], servers: Servers)? = try open(16)
        for s in warm!.clients + warm!.servers.streams { try? s.close() }
        warm = nil
        let before = residentBytes()
        let opened = try open(count)
        let after = residentBytes()
        for s in opened.clients + opened.servers.streams { try? s.close() }
        return (after - before) / count
    }
}

/// An error handed from one thread to another.
final class ErrorBox: @unchecked Sendable { var error: Error? }  // written by one thread, read after it ended

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The process's resident memory (`/proc/self/statm`), in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}
