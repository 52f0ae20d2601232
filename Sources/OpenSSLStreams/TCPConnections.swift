import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

/// Connects to `host:port` and returns a stream, with TLS attached (client side) when `sslCtx` is given —
/// LispWorks' `open-tcp-stream`.
///
/// - Parameters:
///   - host: a DNS name, an IPv4 or an IPv6 address (bare or bracketed as in a URL: `::1`, `[::1]`; a
///     malformed one is refused without a DNS query); every resolved address is tried in turn.
///   - port: the TCP port, 1 to 65535.
///   - sslCtx: nil for plaintext; otherwise what ``SocketStream/attachSSL(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:)``
///     takes, with the same ownership rules.
///   - ctxConfigure: called with a new `SSL_CTX` the stream made (with `sslCtx: .protocol(…)` only).
///   - sslConfigure: called with the new `SSL` before the handshake.
///   - handshakeTimeout: seconds the whole handshake may take (nil: `TLSTimeouts.handshake`; see
///     `TimeoutValue`).
///   - hostName: the name the certificate is checked against and sent as SNI (default: `host`).
///   - connectTimeout: seconds each address may take to connect (nil or `.infinity`: the system's limit;
///     see `TimeoutValue`).
///   - cancel: ends the connect and the handshake from another thread (`StreamError` `.cancelled`), and
///     stays the stream's ``SocketStream/cancelHandle``.
///   - security: the secure defaults (`TLSConfiguration.secure`: verify, check the host, TLS ≥ 1.2).
///   - readTimeout: seconds a read may wait for data (nil: no limit).
///   - writeTimeout: seconds a flush may wait for the socket to take data (nil: no limit).
/// - Throws: ``HostResolutionError`` when the name does not resolve, `SocketError` (with errno and the
///   address) when no address connects, `SSLError` when TLS fails — in which case the socket is closed.
public func openTCPStream(host: String, port: Int, sslCtx: SSLContextArgument? = nil,
                          ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                          sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                          handshakeTimeout: TimeInterval? = nil, hostName: String? = nil,
                          connectTimeout: TimeInterval? = nil, security: TLSConfiguration = .secure,
                          readTimeout: TimeInterval? = nil, writeTimeout: TimeInterval? = nil,
                          cancel: CancelHandle? = nil) throws -> SocketStream {
    let connectLimit = try TimeoutValue.resolve(connectTimeout, default: nil, name: "the connect timeout", call: "openTCPStream")
    let fd = try connectTCP(host: host, port: port, timeout: connectLimit.seconds, cancel: cancel)
    let stream = SocketStream(fileDescriptor: fd, closesDescriptor: true, remoteHost: host,
                              readTimeout: readTimeout, writeTimeout: writeTimeout)
    stream.cancelHandle = cancel
    if let sslCtx {
        do {
            try stream.attachSSL(ctx: sslCtx, side: .client, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
                                 handshakeTimeout: handshakeTimeout, hostName: hostName ?? host, security: security)
        } catch {
            stream.closeQuietly()
            throw error
        }
    }
    return stream
}

/// Opens a listening TCP socket (`socket`, `bind`, `listen`).
///
/// - Parameters:
///   - port: the port; 0 picks a free one (read it back from ``TCPListener/port``).
///   - backlog: how many connections may wait to be accepted.
///   - host: the address to listen on ("127.0.0.1", "::1", a name); nil listens on every address,
///     IPv6 and IPv4 where the system allows both.
///   - reuseAddress: set `SO_REUSEADDR`, so a restarted server can bind at once.
public func listen(port: Int = 0, backlog: Int32 = 128, host: String? = nil, reuseAddress: Bool = true) throws -> TCPListener {
    try TCPListener(port: port, backlog: backlog, host: host, reuseAddress: reuseAddress)
}

/// A listening TCP socket that accepts ``SocketStream``s, optionally with TLS attached server side.
///
/// A listener is `Sendable`: its properties never change and its socket is guarded by a lock, so several
/// threads may accept on it at once, and another thread may ``close()`` it while they wait. Each accepted
/// ``SocketStream`` is not `Sendable`: hand it to the thread that serves it with
/// ``startThread(stackSize:_:)``.
public final class TCPListener: Sendable {
    /// The listening socket.
    public let fileDescriptor: Int32
    /// The port it listens on (the one picked, when 0 was asked for).
    public let port: Int
    /// The numeric address it listens on.
    public let host: String
    /// True once ``close()`` ran.
    public var isClosed: Bool { gate?.isClosed ?? true }
    /// Closes the descriptor safely while accepts wait on other threads.
    private let gate: ListenerGate?

    init(port: Int, backlog: Int32, host: String?, reuseAddress: Bool) throws {
        var candidates = try host.map { try resolveTCP(host: $0, port: port, passive: true) } ?? []
        if host == nil {
            // Every address: IPv6 dual-stack first, IPv4 if the system has no IPv6.
            candidates = try resolveTCP(host: "::", port: port, passive: true) + resolveTCP(host: "0.0.0.0", port: port, passive: true)
        }
        var lastError: Error = SocketError(call: "bind", errno: EADDRNOTAVAIL, context: "\(host ?? "*"):\(port)")
        for candidate in candidates {
            let fd = socket(candidate.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { lastError = SocketError(call: "socket", errno: errno, context: candidate.text); continue }
            do {
                if reuseAddress { try setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR") }
                if candidate.family == AF_INET6 && host == nil {
                    try? setSocketOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0, "IPV6_V6ONLY")
                }
                let rc = candidate.address.withUnsafeBytes { raw in
                    bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
                }
                if rc != 0 { throw SocketError(call: "bind", errno: errno, context: candidate.text) }
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                if Glibc.listen(fd, backlog) != 0 { throw SocketError(call: "listen", errno: errno, context: candidate.text) }
                guard let bound = socketAddress(fd, peer: false) else {
                    throw SocketError(call: "getsockname", errno: errno, context: candidate.text)
                }
                fileDescriptor = fd
                gate = ListenerGate(fd)
                self.port = bound.port
                self.host = bound.host
                return
            } catch {
                Glibc.close(fd)
                lastError = error
            }
        }
        throw lastError
    }

    deinit { close() }

    /// "127.0.0.1:4433" or "[::1]:4433".
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Waits up to `timeout` seconds (nil: forever) for a connection and returns it as a plaintext
    /// stream. Throws `SocketError` with `ETIMEDOUT` when none came in time.
    ///
    /// `cancel` (or ``close()`` from another thread) ends the wait: `StreamError` `.cancelled` (`.closed`).
    public func accept(timeout: TimeInterval? = nil, readTimeout: TimeInterval? = nil,
                       writeTimeout: TimeInterval? = nil, cancel: CancelHandle? = nil) throws -> SocketStream {
        let fd = try acceptDescriptor(timeout: timeout, cancel: cancel)
        let stream = SocketStream(fileDescriptor: fd, closesDescriptor: true, readTimeout: readTimeout, writeTimeout: writeTimeout)
        stream.cancelHandle = cancel
        return stream
    }

    /// Whether a connection is waiting, so that ``accept(timeout:readTimeout:writeTimeout:cancel:)`` would not
    /// wait (Chicken's `ssl-accept-ready?`).
    public var acceptReady: Bool {
        guard !isClosed else { return false }
        var entry = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLIN) != 0
    }

    /// Accepts a connection and returns its descriptor (blocking, close-on-exec, TCP_NODELAY); the
    /// caller closes it.
    /// - Corresponds: `accept(2)`, `poll(2)`.
    package func acceptDescriptor(timeout: TimeInterval?, cancel: CancelHandle? = nil) throws -> Int32 {
        let wait = try TimeoutValue.resolve(timeout, default: nil, name: "the accept timeout", call: "accept")
        let deadline = wait.deadline
        let closedError = StreamError(kind: .closed, call: "accept", message: "the listener is closed")
        guard let gate, gate.enter() else { throw closedError }
        defer { gate.leave() }
        while true {
            if isClosed { throw closedError }
            // The listening socket is non-blocking: accept takes a waiting connection at once, and
            // answers EAGAIN (then poll waits) when none is there. Accepted sockets are blocking (Linux
            // does not inherit O_NONBLOCK).
            let fd = Glibc.accept(fileDescriptor, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK {
                guard try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline, cancel: cancel, call: "accept") else {
                    throw SocketError(call: "accept", errno: ETIMEDOUT, context: "no connection within \(describeSeconds(wait.seconds)) on \(address)")
                }
                continue
            }
            // A connection that went away before accept, or an interrupted call: wait for the next.
            if [EINTR, ECONNABORTED, EPROTO].contains(e) { continue }
            if isClosed { throw closedError }  // closed by another thread: shut down under us
            throw SocketError(call: "accept", errno: e, context: address)
        }
    }

    /// Accepts a connection and attaches TLS server side (see
    /// ``SocketStream/attachSSL(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:)``;
    /// with a protocol symbol each connection gets its own `SSL_CTX`, configured by `ctxConfigure`; pass
    /// an `SSLContextPointer` to share one). The handshake runs at the first read or write, or at
    /// ``SocketStream/handshake(timeout:)``, within `handshakeTimeout`. When attaching fails the
    /// connection is closed and the error thrown.
    public func accept(sslCtx: SSLContextArgument, ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil,
                       sslConfigure: ((SSLPointer) throws -> Void)? = nil, handshakeTimeout: TimeInterval? = nil,
                       security: TLSConfiguration = .secure, timeout: TimeInterval? = nil,
                       readTimeout: TimeInterval? = nil, writeTimeout: TimeInterval? = nil,
                       cancel: CancelHandle? = nil) throws -> SocketStream {
        let stream = try accept(timeout: timeout, readTimeout: readTimeout, writeTimeout: writeTimeout, cancel: cancel)
        do {
            try stream.attachSSL(ctx: sslCtx, side: .server, ctxConfigure: ctxConfigure, sslConfigure: sslConfigure,
                                 handshakeTimeout: handshakeTimeout, security: security)
        } catch {
            stream.closeQuietly()
            throw error
        }
        return stream
    }

    /// Stops listening and closes the socket. Closing twice does nothing. From another thread it ends
    /// an accept that waits (`StreamError` `.closed`): the socket is shut down at once and closed when
    /// that accept has returned.
    /// - Corresponds: `shutdown(2)`, `close(2)`.
    public func close() {
        gate?.close { _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR)) }  // the shutdown wakes a waiting poll
    }
}
