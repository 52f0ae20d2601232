import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import OpenSSLTLS

// Bigloo's SSL sockets: client sockets with buffer modes and a timeout, `cert` + `pkey`, `CAs` (an
// in-memory list that turns verification on) and `accepted-certs` (pinning); upgrading a plain client
// socket; server sockets; reading certificates and keys.

/// Bigloo's `:buffer` argument of a socket: how writes are buffered.
public enum SocketBufferMode: Sendable, Hashable {
    /// The default buffer (16 KiB): call `flush()` to send.
    case buffered
    /// Every write is sent at once.
    case unbuffered
    /// A buffer of this many bytes.
    case size(Int)

    var bufferSize: Int {
        switch self {
        case .buffered, .unbuffered: return 16 * 1024
        case .size(let n): return n
        }
    }
}

/// A socket made by the Bigloo-style functions: a `SocketStream` and its buffer mode. With
/// `.unbuffered` every `write` is flushed.
///
/// Not `Sendable`, like its stream: use it from one thread at a time (hand it to another with `startThread`).
public final class BiglooSocket {
    /// The stream (TLS attached for SSL sockets).
    public let stream: SocketStream
    public let bufferMode: SocketBufferMode

    init(stream: SocketStream, bufferMode: SocketBufferMode) { self.stream = stream; self.bufferMode = bufferMode }

    /// The `SSL`, nil for a plain socket.
    public var ssl: SSLPointer? { stream.ssl }
    /// The peer's certificate.
    public var peerCertificate: Certificate? { stream.ssl?.peerCertificate }

    public func write(_ text: String) throws { try stream.write(text); if bufferMode == .unbuffered { try stream.flush() } }
    public func write(_ bytes: [UInt8]) throws { try stream.write(bytes); if bufferMode == .unbuffered { try stream.flush() } }
    public func flush() throws { try stream.flush() }
    public func readLine() throws -> String? { try stream.readLine() }
    public func read(maxLength: Int) throws -> [UInt8] { try stream.read(maxLength: maxLength) }
    /// Closes the socket (close_notify first for SSL sockets).
    public func close() throws { try stream.close() }
    public var isClosed: Bool { stream.isClosed }
}

/// Applies Bigloo's `cert`/`pkey`, `CAs` and `accepted-certs` to a context.
private func configureBigloo(_ ctx: SSLContextPointer, side: SSLSide, cert: Certificate?, pkey: PrivateKey?,
                             cas: [Certificate], acceptedCerts: [Certificate]?) throws {
    if let cert, let pkey { try useIdentity(ctx, certificate: cert, key: pkey) }
    if !cas.isEmpty { try ctx.trust(cas) }
    let verify = !cas.isEmpty || acceptedCerts != nil
    let mode: SSLVerificationMode = verify ? (side == .client ? .always : .flags([.peer, .failIfNoPeerCertificate])) : .never
    guard let accepted = acceptedCerts else {
        // A client's verification is the configuration's (on by default); only a server's mode is Bigloo's.
        if verify || side == .server { setVerificationMode(ctx, side: side, mode: mode) }
        return
    }
    // Pinning: the peer's own certificate must be one of the accepted ones (compared by DER), whatever
    // else verification says about it; the CAs, if any, still check the rest of the chain.
    let pinned = Set(try accepted.map { try $0.der() })
    setVerificationMode(ctx, side: side, mode: mode) { ok, store in
        guard store.depth == 0 else { return cas.isEmpty ? true : ok }
        guard let der = try store.currentCertificate?.der(), pinned.contains(der) else {
            store.error = COpenSSL.X509_V_ERR_APPLICATION_VERIFICATION
            throw SSLError(kind: .verificationFailure, call: "accepted-certs",
                           message: "the peer's certificate (\(store.currentCertificate?.subject ?? "?")) is not one of the accepted certificates")
        }
        return cas.isEmpty ? true : ok
    }
}

private func checkIdentity(cert: Certificate?, pkey: PrivateKey?, call: String) throws {
    if (cert == nil) != (pkey == nil) {
        throw SSLError.usage("cert and pkey go together: give both or neither", call: call)
    }
    if let cert, let pkey, !cert.matches(pkey) {
        throw SSLError.usage("pkey is not the private key of cert (\(cert.subject))", call: call)
    }
}

/// Connects to `host:port` over TLS (Bigloo's `make-ssl-client-socket`).
///
/// With neither `CAs` nor `acceptedCerts` the server is verified against the system store with its host
/// name (secure by default); pass `security: .insecure` for Bigloo's unverified default.
///
/// - Parameters:
///   - host: the server's name or address, also the name its certificate is checked against.
///   - port: the server's port.
///   - buffer: write buffering (`.buffered`, `.unbuffered`, `.size(n)`).
///   - timeout: seconds for connecting and for the handshake, a total (`TimeoutValue`; nil: `TLSTimeouts.handshake`).
///   - proto: the protocol symbol (`protocol:`).
///   - cert: a client certificate; with `pkey`, or neither.
///   - pkey: the client certificate's private key.
///   - cas: trusted certificates (`CAs:`); a non-empty list turns verification on (against them only).
///   - acceptedCerts: the server's certificate must be one of these (pinning); turns verification on.
///   - security: the secure defaults and their switches (`TLSConfiguration.secure`).
public func makeSSLClientSocket(host: String, port: Int, buffer: SocketBufferMode = .buffered, timeout: TimeInterval? = nil,
                                protocol proto: SSLProtocol = .default, cert: Certificate? = nil, pkey: PrivateKey? = nil,
                                CAs cas: [Certificate] = [], acceptedCerts: [Certificate]? = nil,
                                security: TLSConfiguration = .secure) throws -> BiglooSocket {
    guard !host.isEmpty else { throw SSLError.usage("the host name is empty", call: "make-ssl-client-socket") }
    guard (1...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 1…65535", call: "make-ssl-client-socket") }
    try checkIdentity(cert: cert, pkey: pkey, call: "make-ssl-client-socket")
    if proto.isDatagram {
        throw SSLError.usage("'dtls runs over UDP: use openDTLS(host:port:…) (and listenDTLS for servers)", call: "make-ssl-client-socket")
    }
    // The seed's timeout is a plain total (no LispWorks "defer" meaning): checked before connecting.
    let limit = try security.handshakeLimit(timeout, call: "make-ssl-client-socket")
    let fd = try connectTCP(host: host, port: port, timeout: limit.seconds.flatMap { $0 > 0 ? $0 : nil })
    let stream = SocketStream(fileDescriptor: fd, closesDescriptor: true, remoteHost: host, bufferSize: buffer.bufferSize)
    let socket = BiglooSocket(stream: stream, bufferMode: buffer)
    do {
        try clientSocketUseSSL(socket, protocol: proto, cert: cert, pkey: pkey, CAs: cas, acceptedCerts: acceptedCerts,
                               timeout: timeout, security: security)
    } catch {
        try? stream.close()
        throw error
    }
    return socket
}

/// Opens a plain TCP client socket (Bigloo's `make-client-socket`), to upgrade later with ``clientSocketUseSSL(_:protocol:cert:pkey:CAs:acceptedCerts:timeout:security:)``.
public func makeClientSocket(host: String, port: Int, buffer: SocketBufferMode = .buffered, timeout: TimeInterval? = nil) throws -> BiglooSocket {
    guard !host.isEmpty else { throw SSLError.usage("the host name is empty", call: "make-client-socket") }
    guard (1...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 1…65535", call: "make-client-socket") }
    let fd = try connectTCP(host: host, port: port, timeout: timeout)
    return BiglooSocket(stream: SocketStream(fileDescriptor: fd, closesDescriptor: true, remoteHost: host, bufferSize: buffer.bufferSize),
                        bufferMode: buffer)
}

/// Upgrades a connected plain client socket to TLS (Bigloo's `client-socket-use-ssl!`), with the same
/// arguments as ``makeSSLClientSocket(host:port:buffer:timeout:protocol:cert:pkey:CAs:acceptedCerts:security:)``.
/// What was written and not flushed is sent in plaintext first.
public func clientSocketUseSSL(_ socket: BiglooSocket, protocol proto: SSLProtocol = .default, cert: Certificate? = nil,
                               pkey: PrivateKey? = nil, CAs cas: [Certificate] = [], acceptedCerts: [Certificate]? = nil,
                               timeout: TimeInterval? = nil, security: TLSConfiguration = .secure) throws {
    try checkIdentity(cert: cert, pkey: pkey, call: "client-socket-use-ssl!")
    let limit = try security.handshakeLimit(timeout, call: "client-socket-use-ssl!")
    var effective = security
    if !cas.isEmpty { effective.trustSystemStore = false }
    if acceptedCerts != nil && cas.isEmpty { effective.checkHostName = false }  // the pin is the identity
    try socket.stream.attachSSL(ctx: .protocol(proto), side: .client, ctxConfigure: { ctx in
        try configureBigloo(ctx, side: .client, cert: cert, pkey: pkey, cas: cas, acceptedCerts: acceptedCerts)
    }, handshakeTimeout: limit.asAttachTimeout, security: effective)
}

/// A TLS server socket (Bigloo's `make-ssl-server-socket` result).
public final class BiglooSSLServerSocket: Sendable {
    let listener: TCPListener
    let context: TLSContextHolder
    /// The context every accepted connection uses (owned).
    public var ctx: SSLContextPointer { context.ctx }
    init(listener: TCPListener, context: TLSContextHolder) { self.listener = listener; self.context = context }
    deinit { listener.close() }

    /// The port (the first free one for port 0).
    public var port: Int { listener.port }
    /// The address it listens on.
    public var host: String { listener.host }

    /// Accepts a client and runs the handshake; with `CAs` / `acceptedCerts` the client's certificate
    /// is checked here (a client without one, or with another, is refused: the error is thrown and the
    /// connection closed).
    public func accept(buffer: SocketBufferMode = .buffered, timeout: TimeInterval? = nil, handshakeTimeout: TimeInterval? = 30) throws -> BiglooSocket {
        let stream = try listener.accept(sslCtx: .context(ctx), handshakeTimeout: handshakeTimeout, timeout: timeout)
        do {
            try stream.handshake(timeout: handshakeTimeout)
        } catch {
            try? stream.close()
            throw error
        }
        return BiglooSocket(stream: stream, bufferMode: buffer)
    }

    public func close() { listener.close() }
}

/// Listens for TLS clients on `port` (0: the first free one) of the interface `name` (an address or a
/// host name; nil: every interface) — Bigloo's `make-ssl-server-socket`.
public func makeSSLServerSocket(port: Int = 0, name: String? = nil, protocol proto: SSLProtocol = .default,
                                cert: Certificate, pkey: PrivateKey, CAs cas: [Certificate] = [],
                                acceptedCerts: [Certificate]? = nil) throws -> BiglooSSLServerSocket {
    guard (0...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 0…65535", call: "make-ssl-server-socket") }
    if let name, name.isEmpty { throw SSLError.usage("the interface name is empty", call: "make-ssl-server-socket") }
    try checkIdentity(cert: cert, pkey: pkey, call: "make-ssl-server-socket")
    if proto.isDatagram {
        throw SSLError.usage("'dtls runs over UDP: use listenDTLS(port:host:…)", call: "make-ssl-server-socket")
    }
    let context = try TLSContextHolder.make(.protocol(proto), side: .server, configuration: .secure, ctxConfigure: { ctx in
        try configureBigloo(ctx, side: .server, cert: cert, pkey: pkey, cas: cas, acceptedCerts: acceptedCerts)
    }, call: "make-ssl-server-socket")
    return BiglooSSLServerSocket(listener: try listen(port: port, host: name), context: context)
}

/// Reads the first certificate of a PEM file (Bigloo's `read-certificate`).
public func readCertificate(_ path: String) throws -> Certificate {
    guard let first = try readPEMFile(path).first else {
        throw SSLError(kind: .error, call: "read-certificate", file: path, message: "no certificate in the file")
    }
    return first
}

/// Reads a PEM private key (Bigloo's `read-private-key`), unencrypted or with `passphrase`.
public func readPrivateKey(_ path: String, passphrase: String? = nil) throws -> PrivateKey {
    let text = try readTextFile(path, call: "read-private-key")
    do {
        return try PrivateKey(pem: text, passphrase: passphrase)
    } catch var error as SSLError {
        error.file = path
        throw error
    }
}

/// Reads every certificate of a PEM file (Bigloo's `read-pem-file`), in order.
public func readPEMFile(_ path: String) throws -> [Certificate] {
    let text = try readTextFile(path, call: "read-pem-file")
    do {
        return try Certificate.all(pem: text)
    } catch var error as SSLError {
        error.file = path
        throw error
    }
}

/// Reads a whole file as text (at most 64 MiB), with the exact `errno` on failure: a directory is EISDIR,
/// a missing file ENOENT, an unreadable one EACCES.
private func readTextFile(_ path: String, call: String) throws -> String {
    func failure(_ code: Int32) -> SSLError {
        SSLError(kind: .error, call: call, file: path, errno: code, message: String(cString: strerror(code)))
    }
    guard !path.utf8.contains(0) else { throw SSLError(kind: .error, call: call, errno: EINVAL, message: "the path contains a NUL byte") }
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-file.
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw failure(errno) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw failure(errno) }
    if (info.st_mode & S_IFMT) == S_IFDIR { throw failure(EISDIR) }
    if (info.st_mode & S_IFMT) != S_IFREG {
        throw SSLError(kind: .error, call: call, file: path, errno: EINVAL, message: "not a regular file (a FIFO, socket or device could block the read)")
    }
    let limit = 64 << 20
    var bytes = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw failure(errno)
        }
        if n == 0 { break }
        bytes += chunk.prefix(n)
        if bytes.count > limit { throw SSLError(kind: .error, call: call, file: path, message: "file larger than 64 MiB") }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// One thread at a time, like its stream.
@available(*, unavailable, message: "a BiglooSocket serves one thread at a time: hand it on with startThread")
extension BiglooSocket: Sendable {}
