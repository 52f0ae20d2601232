import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLTLS

// DTLS over UDP (Bigloo's 'dtls protocol): a client over a connected UDP socket, a server that answers
// the cookie exchange statelessly before it keeps anything, and per-peer sessions that send and receive
// whole datagrams.

/// One DTLS association over a connected UDP socket: datagrams in, datagrams out, message boundaries
/// kept (one record per message). Made by ``openDTLS(host:port:sslCtx:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:mtu:)``
/// or ``DTLSListener/accept(timeout:handshakeTimeout:cancel:)``. Not thread-safe, so not `Sendable`: hand it
/// to the thread that uses it with ``startThread(stackSize:_:)``.
public final class DTLSSocket {
    /// The connected UDP socket.
    public let fileDescriptor: Int32
    /// The `SSL` (for direct calls) and its context.
    public let ssl: SSLPointer
    public let ctx: SSLContextPointer
    public let side: SSLSide
    let objects: TLSObjects
    /// Seconds ``receive(timeout:)`` waits when given no timeout (nil: forever).
    public var readTimeout: TimeInterval?
    /// "host:port" of the peer.
    public let peerAddress: String
    public private(set) var isClosed = false
    /// The core engine that runs the OpenSSL calls.
    let machine: TLSMachine
    /// The peer's close_notify arrived.
    public var peerClosed: Bool { machine.peerClosed }
    private var failed: Bool { machine.failed }

    init(fileDescriptor: Int32, objects: TLSObjects, side: SSLSide, peerAddress: String) {
        self.fileDescriptor = fileDescriptor; self.objects = objects; self.side = side
        ssl = objects.ssl; ctx = objects.ctx; self.peerAddress = peerAddress
        machine = TLSMachine(ssl: objects.ssl, input: DatagramInput.shared)
    }

    deinit { closeQuietly() }

    /// The largest datagram ``send(_:)`` takes (`DTLS_get_data_mtu`: the MTU less headers and expansion).
    /// - Corresponds: `DTLS_get_data_mtu`.
    public var maximumDatagramSize: Int { DTLS_get_data_mtu(ssl) }

    /// Runs the handshake (and its retransmissions) within a total of `timeout` seconds (nil:
    /// `TLSTimeouts.handshake`; see `TimeoutValue`).
    /// - Corresponds: `SSL_do_handshake`, `DTLSv1_get_timeout`, `DTLSv1_handle_timeout`.
    public func handshake(timeout: TimeInterval? = nil) throws {
        let limit = try TimeoutValue.resolve(timeout, default: TLSTimeouts.handshake, name: "the handshake timeout", call: "SSL_do_handshake")
        try handshake(limit: limit)
    }

    func handshake(limit: TimeoutValue) throws {
        if machine.handshakeDone { return }
        _ = try drive(call: "SSL_do_handshake", deadline: limit.deadline,
                      timeoutError: SSLError(kind: .handshakeTimeout, call: "SSL_do_handshake",
                                             message: "the DTLS handshake did not finish within \(describeSeconds(limit.seconds)) (\(peerAddress))")) {
            machine.handshake()
        }
    }

    /// Sends one datagram (one DTLS record). Larger than ``maximumDatagramSize`` is an error.
    /// - Corresponds: `SSL_write`.
    public func send(_ datagram: [UInt8]) throws {
        try checkOpen("SSL_write")
        guard !datagram.isEmpty else { throw SSLError.usage("an empty datagram", call: "SSL_write") }
        let limit = maximumDatagramSize
        guard limit <= 0 || datagram.count <= limit else {
            throw SSLError.usage("the datagram has \(datagram.count) bytes; at most \(limit) fit the MTU", call: "SSL_write")
        }
        _ = try drive(call: "SSL_write", deadline: .after(readTimeout),
                      timeoutError: SocketError(call: "SSL_write", errno: ETIMEDOUT, context: peerAddress)) {
            datagram.withUnsafeBytes { machine.write($0) }
        }
    }

    /// Receives one datagram, waiting up to `timeout` seconds (default ``readTimeout``); nil once the
    /// peer sent close_notify. Throws `SocketError` `ETIMEDOUT` when nothing came in time.
    /// - Corresponds: `SSL_read`.
    public func receive(timeout: TimeInterval?? = nil) throws -> [UInt8]? {
        try checkOpen("SSL_read")
        if peerClosed { return nil }
        let limit = timeout ?? readTimeout
        if let limit, limit.isNaN { throw SSLError.usage("the receive timeout is not a number (NaN)", call: "SSL_read") }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        do {
            let n = try drive(call: "SSL_read", deadline: .after(limit),
                              timeoutError: SocketError(call: "SSL_read", errno: ETIMEDOUT, context: "no datagram within \(describeSeconds(limit)) from \(peerAddress)")) {
                buffer.withUnsafeMutableBytes { machine.read(into: $0) }
            }
            return Array(buffer.prefix(n))
        } catch let error as SSLError where error.kind == .closed {
            return nil
        }
    }

    /// Sends close_notify (once) and closes the socket; frees what was made for it.
    /// - Corresponds: `SSL_shutdown`.
    public func close() throws {
        guard !isClosed else { return }
        defer { closeQuietly() }
        _ = machine.shutdown()  // the datagram BIO sends it at once
    }

    func closeQuietly() {
        guard !isClosed else { return }
        isClosed = true
        objects.release()
        Glibc.close(fileDescriptor)
    }

    private func checkOpen(_ call: String) throws {
        if isClosed { throw StreamError(kind: .closed, call: call, message: "the DTLS socket is closed") }
        if failed { throw SSLError.usage("the DTLS association failed earlier", call: call) }
    }

    /// Runs one step of the core engine until it completes, waiting for datagrams and driving
    /// retransmissions (`DTLSv1_get_timeout` / `DTLSv1_handle_timeout`) until `deadline`.
    func drive(call: String, deadline: Deadline, timeoutError: @autoclosure () -> Error, _ step: () -> TLSResult) throws -> Int {
        while true {
            let result = step()
            switch result {
            case .complete(let n): return n
            case .closed: throw machine.closeNotify ?? SSLError(kind: .closed, call: call, message: "SSL connection closed")
            case .failed(let error): throw error
            case .wantRead, .wantWrite:
                if deadline.hasPassed { machine.markFailedIfHandshaking(); throw timeoutError() }
                let events = Int16({ if case .wantRead = result { return POLLIN } else { return POLLOUT } }())
                let (timerSet, timer) = DTLSv1_get_timeout(ssl)
                var wait = deadline.pollMilliseconds
                if timerSet == 1 {
                    let timerMs = Int32(clamping: timer.tv_sec * 1000 + timer.tv_usec / 1000)
                    wait = wait < 0 ? timerMs : min(wait, timerMs)
                }
                var entry = pollfd(fd: fileDescriptor, events: events, revents: 0)
                let ready = poll(&entry, 1, wait)
                if ready < 0 && errno != EINTR { throw SocketError(call: "poll", errno: errno, context: peerAddress) }
                if ready > 0 { continue }
                if timerSet == 1 {
                    // When the retransmission timer ran out this resends the last flight (else it does nothing).
                    if DTLSv1_handle_timeout(ssl) < 0 {
                        machine.markFailed()
                        throw SSLError.fromQueue(call: "DTLSv1_handle_timeout", kind: .failure, message: "too many retransmissions to \(peerAddress)")
                    }
                }
                if deadline.hasPassed { machine.markFailedIfHandshaking(); throw timeoutError() }
            }
        }
    }
}

/// The input side of a datagram BIO: UDP has no end of stream, so it is never exhausted.
final class DatagramInput: CiphertextInput, Sendable {  // no state: one instance serves every socket
    static let shared = DatagramInput()
    var isExhausted: Bool { false }
}

/// Sets the link MTU (`SSL_OP_NO_QUERY_MTU` + `DTLS_set_link_mtu`).
private func setMTU(_ ssl: SSLPointer, _ mtu: Int?) throws {
    guard let mtu else { return }
    guard mtu >= 256 && mtu <= 65_535 else { throw SSLError.usage("an MTU of \(mtu) is out of range 256…65535", call: "DTLS_set_link_mtu") }
    _ = SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU)
    guard DTLS_set_link_mtu(ssl, mtu) == 1 else { throw SSLError.fromQueue(call: "DTLS_set_link_mtu") }
}

/// A BIO_ADDR for a socket address (freed by the caller with `BIO_ADDR_free`).
private func makeBIOAddress(_ storage: sockaddr_storage) -> OpaquePointer? {
    guard let address = COpenSSL.BIO_ADDR_new() else { return nil }
    var copy = storage
    let ok: Int32 = withUnsafeBytes(of: &copy) { raw in
        if Int32(storage.ss_family) == AF_INET {
            let sin = raw.load(as: sockaddr_in.self)
            var ip = sin.sin_addr
            return COpenSSL.BIO_ADDR_rawmake(address, AF_INET, &ip, MemoryLayout<in_addr>.size, sin.sin_port)
        } else {
            let sin6 = raw.load(as: sockaddr_in6.self)
            var ip = sin6.sin6_addr
            return COpenSSL.BIO_ADDR_rawmake(address, AF_INET6, &ip, MemoryLayout<in6_addr>.size, sin6.sin6_port)
        }
    }
    guard ok == 1 else { COpenSSL.BIO_ADDR_free(address); return nil }
    return address
}

/// A datagram BIO over `fd` (not closing it), connected to `peer`.
private func makeDatagramBIO(_ fd: Int32, peer: OpaquePointer?) throws -> OpaquePointer {
    guard let bio = COpenSSL.BIO_new_dgram(fd, COpenSSL.BIO_NOCLOSE) else { throw SSLError.fromQueue(call: "BIO_new_dgram") }
    if let peer { _ = COpenSSL.BIO_ctrl(bio, COpenSSL.BIO_CTRL_DGRAM_SET_CONNECTED, 0, UnsafeMutableRawPointer(peer)) }
    return bio
}

private func setNonBlocking(_ fd: Int32) { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }

/// Connects a DTLS client to `host:port` over UDP and runs the handshake within a total of
/// `handshakeTimeout` seconds (`TimeoutValue`: nil for the configuration's, else `TLSTimeouts.handshake`).
///
/// Arguments and ownership are those of `attachSSL` (`SSLContextArgument`; `.protocol(.dtls)` by
/// default: DTLS 1.2 with the secure defaults — the server is verified and its name checked).
/// `mtu` sets the link MTU (default: the path MTU OpenSSL finds).
/// - Corresponds: `BIO_ADDR_free`, `SSL_set_bio`, `SSL_set_connect_state`.
public func openDTLS(host: String, port: Int, sslCtx: SSLContextArgument = .protocol(.dtls),
                     ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil, sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                     handshakeTimeout: TimeInterval? = nil, hostName: String? = nil, security: TLSConfiguration = .secure,
                     mtu: Int? = nil) throws -> DTLSSocket {
    guard !host.isEmpty else { throw SSLError.usage("the host name is empty", call: "openDTLS") }
    let limit = try security.handshakeLimit(handshakeTimeout, call: "openDTLS")
    guard (1...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 1…65535", call: "openDTLS") }
    let candidates = try resolveTCP(host: host, port: port)
    guard let target = candidates.first else { throw HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "no address") }
    let fd = socket(target.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketError(call: "socket", errno: errno, context: target.text) }
    var storage = sockaddr_storage()
    _ = withUnsafeMutableBytes(of: &storage) { target.address.copyBytes(to: $0) }
    let connected = target.address.withUnsafeBytes { raw in
        Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
    }
    guard connected == 0 else {
        let e = errno
        Glibc.close(fd)
        throw SocketError(call: "connect", errno: e, context: target.text)
    }
    setNonBlocking(fd)
    let objects: TLSObjects
    do {
        objects = try TLSObjects.make(sslCtx, side: .client, configuration: security, ctxConfigure: ctxConfigure,
                                      sslConfigure: sslConfigure, hostName: hostName ?? host, call: "openDTLS")
    } catch {
        Glibc.close(fd)
        throw error
    }
    let socket = DTLSSocket(fileDescriptor: fd, objects: objects, side: .client, peerAddress: target.text)
    do {
        let peer = makeBIOAddress(storage)
        defer { if let peer { COpenSSL.BIO_ADDR_free(peer) } }
        let bio = try makeDatagramBIO(fd, peer: peer)
        COpenSSL.SSL_set_bio(objects.ssl.rawValue, bio, bio)
        try setMTU(objects.ssl, mtu)
        COpenSSL.SSL_set_connect_state(objects.ssl.rawValue)
        try socket.handshake(limit: limit)
    } catch {
        socket.closeQuietly()
        throw error
    }
    return socket
}

// MARK: Server

/// The stateless cookie of a DTLS server: an HMAC-SHA256 of the client's address under a secret made
/// per listener, so the server keeps nothing for a ClientHello until it is repeated with the cookie
/// (which a spoofed source cannot do).
final class DTLSCookieJar: @unchecked Sendable {  // `secret` never changes; the counts are only touched under `lock`
    let secret: [UInt8]
    private let lock = NSLock()
    private var requests = 0
    private var verified = 0

    init() throws {
        var bytes = [UInt8](repeating: 0, count: 32)
        guard COpenSSL.RAND_bytes(&bytes, 32) == 1 else { throw SSLError.fromQueue(call: "RAND_bytes") }
        secret = bytes
    }

    var counts: (requests: Int, verified: Int) { lock.lock(); defer { lock.unlock() }; return (requests, verified) }
    func countRequest() { lock.lock(); requests += 1; lock.unlock() }
    func countVerified() { lock.lock(); verified += 1; lock.unlock() }

    /// The cookie for the peer of `ssl` (its address read from the datagram BIO).
    func cookie(for ssl: OpaquePointer) -> [UInt8]? {
        guard let bio = COpenSSL.SSL_get_rbio(ssl), let peer = COpenSSL.BIO_ADDR_new() else { return nil }
        defer { COpenSSL.BIO_ADDR_free(peer) }
        guard COpenSSL.BIO_ctrl(bio, COpenSSL.BIO_CTRL_DGRAM_GET_PEER, 0, UnsafeMutableRawPointer(peer)) > 0 else { return nil }
        var length = 0
        _ = COpenSSL.BIO_ADDR_rawaddress(peer, nil, &length)
        var message = [UInt8](repeating: 0, count: length + 4)
        _ = COpenSSL.BIO_ADDR_rawaddress(peer, &message, &length)
        let port = COpenSSL.BIO_ADDR_rawport(peer)
        message[length] = UInt8(port >> 8); message[length + 1] = UInt8(port & 0xFF)
        message[length + 2] = UInt8(truncatingIfNeeded: COpenSSL.BIO_ADDR_family(peer))
        var digest = [UInt8](repeating: 0, count: 32)
        var digestLength: UInt32 = 0
        guard COpenSSL.HMAC(COpenSSL.EVP_sha256(), secret, Int32(secret.count), message, message.count, &digest, &digestLength) != nil else {
            return nil
        }
        return Array(digest.prefix(Int(digestLength)))
    }
}

extension CallbackKey where Value == DTLSCookieJar {
    /// The listener's cookie secret.
    static var dtlsCookies: Self { Self("dtls-cookies") }
}

private let cookieGenerate: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt32>?) -> Int32 = { ssl, out, outLength in
    guard let ssl, let out, let outLength, let jar: DTLSCookieJar = CallbackRegistry.lookup(.dtlsCookies, for: SSLPointer(ssl)),
          let cookie = jar.cookie(for: ssl), cookie.count <= Int(COpenSSL.DTLS1_COOKIE_LENGTH) else { return 0 }
    cookie.withUnsafeBytes { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: cookie.count) }
    outLength.pointee = UInt32(cookie.count)
    jar.countRequest()
    return 1
}

private let cookieVerify: @convention(c) (OpaquePointer?, UnsafePointer<UInt8>?, UInt32) -> Int32 = { ssl, cookie, length in
    guard let ssl, let cookie, let jar: DTLSCookieJar = CallbackRegistry.lookup(.dtlsCookies, for: SSLPointer(ssl)),
          let expected = jar.cookie(for: ssl), expected.count == Int(length) else { return 0 }
    // Constant-time comparison.
    let ok = COpenSSL.CRYPTO_memcmp(expected, cookie, expected.count) == 0
    if ok { jar.countVerified() }
    return ok ? 1 : 0
}

/// A DTLS server on a UDP port (Bigloo's SSL server socket with 'dtls).
///
/// `Sendable`: its properties never change, each `accept` runs its own `SSL` and BIO, the cookie secret
/// is under a lock, and closing waits for accepts under way, so the descriptor is never closed under one
/// (accepts on several threads share the port's datagrams). Each accepted ``DTLSSocket`` is not
/// Sendable: hand it to its thread with ``startThread(stackSize:_:)``.
public final class DTLSListener: Sendable {
    /// The listening UDP socket.
    public let fileDescriptor: Int32
    public let port: Int
    public let host: String
    let local: RawSocketAddress
    let context: TLSContextHolder
    let configuration: TLSConfiguration
    let sslConfigure: (@Sendable (SSLPointer) throws -> Void)?
    let jar: DTLSCookieJar
    let mtu: Int?
    /// Cancelled by ``close()``: ends an accept that waits on another thread.
    private let closing: CancelHandle?
    private let gate: ListenerGate
    /// True once ``close()`` ran.
    public var isClosed: Bool { gate.isClosed }

    /// The context every association uses.
    public var ctx: SSLContextPointer { context.ctx }

    /// HelloVerifyRequests sent (cookies handed out) and ClientHellos that came back with a valid cookie.
    public var cookieCounts: (requests: Int, verified: Int) { jar.counts }

    init(fileDescriptor: Int32, local: RawSocketAddress, context: TLSContextHolder, configuration: TLSConfiguration,
         sslConfigure: (@Sendable (SSLPointer) throws -> Void)?, jar: DTLSCookieJar, mtu: Int?) {
        self.fileDescriptor = fileDescriptor; self.local = local; self.context = context; self.configuration = configuration
        self.sslConfigure = sslConfigure; self.jar = jar; self.mtu = mtu
        closing = try? CancelHandle()
        gate = ListenerGate(fileDescriptor)
        let formatted = local.formatted
        port = formatted?.port ?? 0
        host = formatted?.host ?? "?"
    }

    /// Stops listening; associations already accepted go on. From another thread it ends an accept that
    /// waits (`StreamError` `.closed`); the socket is closed once that accept has returned.
    /// - Corresponds: `close(2)`.
    public func close() {
        gate.close { closing?.cancel() }
    }

    deinit {
        close()
        context.release()
    }

    /// Waits up to `timeout` seconds for a client that completes the cookie exchange (`DTLSv1_listen`,
    /// stateless until then), gives it a UDP socket of its own (connected to it, on the listening
    /// address), and finishes the handshake within a total of `handshakeTimeout` seconds. Both limits
    /// follow `TimeoutValue` (nil: no limit for the wait, the configuration's for the handshake).
    /// - Corresponds: `DTLSv1_listen`, `SSL_do_handshake`.
    /// `cancel` ends the wait from another thread (`StreamError` `.cancelled`).
    public func accept(timeout: TimeInterval? = nil, handshakeTimeout: TimeInterval? = nil, cancel: CancelHandle? = nil) throws -> DTLSSocket {
        let closedError = StreamError(kind: .closed, call: "DTLSv1_listen", message: "the listener is closed")
        guard gate.enter() else { throw closedError }
        defer { gate.leave() }
        let wait = try TimeoutValue.resolve(timeout, default: nil, name: "the accept timeout", call: "DTLSv1_listen")
        let limit = try configuration.handshakeLimit(handshakeTimeout, call: "DTLSv1_listen")
        let deadline = wait.deadline
        let connection = try TLSObjects.make(on: context, side: .server, configuration: configuration, sslConfigure: sslConfigure,
                                             hostName: nil, call: "DTLSv1_listen", takeContext: false)
        guard let peer = COpenSSL.BIO_ADDR_new() else { connection.release(); throw SSLError.fromQueue(call: "BIO_ADDR_new") }
        defer { COpenSSL.BIO_ADDR_free(peer) }
        var handedOver = false
        defer { if !handedOver { connection.release() } }
        let listenBIO = try makeDatagramBIO(fileDescriptor, peer: nil)
        COpenSSL.SSL_set_bio(connection.ssl.rawValue, listenBIO, listenBIO)
        try setMTU(connection.ssl, mtu)
        while true {
            COpenSSL.ERR_clear_error()
            let r = DTLSv1_listen(connection.ssl, BIOAddrPointer(peer))
            if r > 0 { break }
            if r < 0 { throw SSLError.fromQueue(call: "DTLSv1_listen", kind: .failure) }
            if isClosed { throw closedError }
            let ready: Bool
            do {
                ready = try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline, cancel: cancel, also: closing, call: "DTLSv1_listen")
            } catch let error as StreamError where error.kind == .cancelled && isClosed {
                throw closedError
            }
            if !ready && deadline.hasPassed {
                throw SocketError(call: "DTLSv1_listen", errno: ETIMEDOUT, context: "no DTLS client within \(describeSeconds(wait.seconds)) on \(host):\(port)")
            }
        }
        // A socket of its own for this peer: bound to the listening address, connected to the peer.
        let family = Int32(local.storage.ss_family)
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(call: "socket", errno: errno, context: "\(host):\(port)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var localCopy = local
        let bound = withUnsafePointer(to: &localCopy.storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, localCopy.length) }
        }
        var peerStorage = sockaddr_storage()
        var peerLength = socklen_t(0)
        let peerOK: Bool = withUnsafeMutableBytes(of: &peerStorage) { raw in
            var ipLength = 0
            _ = COpenSSL.BIO_ADDR_rawaddress(peer, nil, &ipLength)
            if COpenSSL.BIO_ADDR_family(peer) == AF_INET {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = COpenSSL.BIO_ADDR_rawport(peer)
                _ = COpenSSL.BIO_ADDR_rawaddress(peer, &sin.sin_addr, &ipLength)
                raw.storeBytes(of: sin, as: sockaddr_in.self)
                peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
                return true
            }
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = COpenSSL.BIO_ADDR_rawport(peer)
            _ = COpenSSL.BIO_ADDR_rawaddress(peer, &sin6.sin6_addr, &ipLength)
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            peerLength = socklen_t(MemoryLayout<sockaddr_in6>.size)
            return true
        }
        let connected = peerOK ? withUnsafePointer(to: &peerStorage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, peerLength) }
        } : -1
        guard bound == 0, connected == 0 else {
            let e = errno
            Glibc.close(fd)
            throw SocketError(call: bound != 0 ? "bind" : "connect", errno: e, context: "\(host):\(port)")
        }
        setNonBlocking(fd)
        let peerText = formatSocketAddress(peerStorage, peerLength)?.text ?? "?"
        // The association's BIO now reads and writes the new socket.
        let bio = try makeDatagramBIO(fd, peer: peer)
        COpenSSL.SSL_set_bio(connection.ssl.rawValue, bio, bio)
        handedOver = true
        let socket = DTLSSocket(fileDescriptor: fd, objects: connection, side: .server, peerAddress: peerText)
        do {
            try socket.handshake(limit: limit)
        } catch {
            socket.closeQuietly()
            throw error
        }
        return socket
    }
}

/// Listens for DTLS clients on a UDP port (0: any free one) of `host` (default 127.0.0.1).
///
/// `sslCtx` is a protocol symbol (a context is made with `ctxConfigure`, which must load the server's
/// certificate and key) or the caller's context; the cookie exchange is set up on it.
/// - Corresponds: `SSL_CTX_set_cookie_generate_cb`, `SSL_CTX_set_cookie_verify_cb`.
public func listenDTLS(port: Int = 0, host: String = "127.0.0.1", sslCtx: SSLContextArgument = .protocol(.dtls),
                       ctxConfigure: ((SSLContextPointer) throws -> Void)? = nil, sslConfigure: (@Sendable (SSLPointer) throws -> Void)? = nil,
                       security: TLSConfiguration = .secure, mtu: Int? = nil) throws -> DTLSListener {
    guard (0...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 0…65535", call: "listenDTLS") }
    if case .connection = sslCtx { throw SSLError.usage("a DTLS listener needs a context, not one connection", call: "listenDTLS") }
    guard let target = try resolveTCP(host: host, port: port, passive: true).first else {
        throw HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "no address")
    }
    let contextOnly = try TLSContextHolder.make(sslCtx, side: .server, configuration: security, ctxConfigure: ctxConfigure, call: "listenDTLS")
    do {
        let jar = try DTLSCookieJar()
        CallbackRegistry.of(contextOnly.ctx).setClosure(.dtlsCookies, jar)
        SSL_CTX_set_cookie_generate_cb(contextOnly.ctx, cookieGenerate)
        SSL_CTX_set_cookie_verify_cb(contextOnly.ctx, cookieVerify)
        let fd = socket(target.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(call: "socket", errno: errno, context: target.text) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = target.address.withUnsafeBytes { raw in
            Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard rc == 0, let local = RawSocketAddress(fd, peer: false) else {
            let e = errno
            Glibc.close(fd)
            throw SocketError(call: "bind", errno: e, context: target.text)
        }
        setNonBlocking(fd)
        return DTLSListener(fileDescriptor: fd, local: local, context: contextOnly, configuration: security, sslConfigure: sslConfigure,
                            jar: jar, mtu: mtu)
    } catch {
        contextOnly.release()
        throw error
    }
}

/// One thread at a time, like a stream: hand a socket on with ``startThread(stackSize:_:)``.
@available(*, unavailable, message: "a DTLSSocket serves one thread at a time: hand it on with startThread")
extension DTLSSocket: Sendable {}
