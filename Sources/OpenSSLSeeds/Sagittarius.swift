import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import OpenSSLTLS

// Sagittarius' `(rfc tls)`: client and server TLS sockets, explicit handshakes, a certificate verifier,
// authorities, send / receive with flags, port views.

/// Sagittarius' `certificate-verifier`: gets the depth (0 = the peer's own certificate), the
/// verification error OpenSSL found so far (nil when none) and the certificate in DER form; returns
/// whether to accept it. A thrown error fails the handshake and is rethrown.
public typealias TLSCertificateVerifier = @Sendable (_ depth: Int, _ previousError: Int32?, _ derCertificate: [UInt8]) throws -> Bool

/// Flags of ``TLSSocket/receive(_:flags:)`` and ``TLSSocket/send(_:flags:)``.
public struct TLSMessageFlags: OptionSet, Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// Receive: look at the bytes without consuming them (`MSG_PEEK`).
    public static let peek = TLSMessageFlags(rawValue: Int32(MSG_PEEK))
    /// Receive: return what is there now, possibly nothing, without waiting (`MSG_DONTWAIT`).
    public static let dontWait = TLSMessageFlags(rawValue: Int32(MSG_DONTWAIT))
    /// Receive: wait for the full size unless the stream ends (`MSG_WAITALL`).
    public static let waitAll = TLSMessageFlags(rawValue: Int32(MSG_WAITALL))
}

/// What a TLS socket negotiated (Sagittarius' `tls-socket-info` values).
public struct TLSSocketInfo: Sendable, Hashable {
    public var version: TLSVersion?
    public var cipher: String?
    public var cipherBits: Int32
    public var peerSubject: String?
    public var serverName: String?
}

/// A TLS socket (Sagittarius' `<tls-socket>`): a connected `SocketStream` with TLS attached.
///
/// Not `Sendable`, like its stream: use it from one thread at a time (hand it to another with `startThread`).
public final class TLSSocket {
    /// The stream underneath (for everything the socket API does not cover).
    public let stream: SocketStream

    init(stream: SocketStream) { self.stream = stream }

    /// The `SSL` (for direct calls), nil once closed.
    public var ssl: SSLPointer? { stream.ssl }
    /// Whether ``close()`` ran (`tls-socket-closed?`).
    public var isClosed: Bool { stream.isClosed }
    /// The peer's address, "host:port" (`tls-socket-peer`).
    public var peer: String? { stream.peerAddress }
    /// The local address, "host:port" (`tls-socket-name`).
    public var name: String? { stream.localAddress }

    /// What was negotiated (`tls-socket-info`).
    /// - Corresponds: `SSL_CIPHER_get_bits`, `SSL_get_current_cipher`.
    public var info: TLSSocketInfo {
        guard let ssl = stream.ssl else { return TLSSocketInfo(version: nil, cipher: nil, cipherBits: 0, peerSubject: nil, serverName: nil) }
        let bits = COpenSSL.SSL_get_current_cipher(ssl.rawValue).map { COpenSSL.SSL_CIPHER_get_bits($0, nil) } ?? 0
        return TLSSocketInfo(version: ssl.protocolVersion, cipher: ssl.cipherName, cipherBits: bits,
                             peerSubject: ssl.peerCertificate?.subject, serverName: ssl.serverName)
    }

    /// Runs the handshake now (`tls-client-handshake` / `tls-server-handshake` for a deferred one).
    public func handshake(timeout: TimeInterval? = nil) throws { try stream.handshake(timeout: timeout) }

    /// Encrypts and sends `bytes` (`tls-socket-send`); returns the number sent. No send flag changes
    /// anything for TLS (given flags are checked, then ignored).
    @discardableResult
    public func send(_ bytes: [UInt8], flags: TLSMessageFlags = []) throws -> Int {
        guard flags.subtracting([.dontWait]).isEmpty else {
            throw SSLError.usage("send flags \(flags.rawValue) are not supported over TLS", call: "tls-socket-send")
        }
        try stream.write(bytes)
        try stream.flush()
        return bytes.count
    }

    /// Receives at most `size` bytes (`tls-socket-recv`); [] at the end of the stream (or with
    /// `.dontWait` when nothing is there).
    public func receive(_ size: Int, flags: TLSMessageFlags = []) throws -> [UInt8] {
        guard size >= 0 else { throw SSLError.usage("the size must not be negative", call: "tls-socket-recv") }
        guard flags.subtracting([.peek, .dontWait, .waitAll]).isEmpty else {
            throw SSLError.usage("receive flags \(flags.rawValue) are not supported over TLS", call: "tls-socket-recv")
        }
        if size == 0 { return [] }
        if flags.contains(.dontWait) && !stream.hasBufferedInput {
            var entry = pollfd(fd: stream.fileDescriptor, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, 0) != 1 { return [] }
        }
        if flags.contains(.peek) { return try stream.peek(maxLength: size) }
        if flags.contains(.waitAll) {
            var result: [UInt8] = []
            while result.count < size {
                let part = try stream.read(maxLength: size - result.count)
                if part.isEmpty { break }
                result += part
            }
            return result
        }
        return try stream.read(maxLength: size)
    }

    /// Sends close_notify and closes the socket (`tls-socket-close`).
    public func close() throws { try stream.close() }

    /// The input as a byte port (`tls-socket-input-port`); closing the port closes the socket only when
    /// `closesSocket`.
    public func inputPort(closesSocket: Bool = true) -> ByteReadable { SocketPortView(socket: self, closesSocket: closesSocket) }
    /// The output as a byte port (`tls-socket-output-port`).
    public func outputPort(closesSocket: Bool = true) -> ByteWritable { SocketPortView(socket: self, closesSocket: closesSocket) }
}

/// A port view of a TLS socket.
final class SocketPortView: ByteReadable, ByteWritable {
    let socket: TLSSocket
    let closesSocket: Bool
    init(socket: TLSSocket, closesSocket: Bool) { self.socket = socket; self.closesSocket = closesSocket }
    func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try socket.stream.read(into: buffer) }
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try socket.stream.write(bytes); try socket.stream.flush() }
    func closeReading() throws { if closesSocket { try socket.close() } }
    func closeWriting() throws { if closesSocket { try socket.close() } else { try socket.stream.flush() } }
}

/// The context settings shared by client and server sockets: identity, verifier, authorities.
private func configureTLSSocketContext(_ ctx: SSLContextPointer, side: SSLSide, certificates: [Certificate], privateKey: PrivateKey?,
                                       verifier: TLSCertificateVerifier?, authorities: [Certificate], requireClientCertificate: Bool) throws {
    if let first = certificates.first {
        guard let privateKey else { throw SSLError.usage("certificates were given without a private key", call: "make-tls-socket") }
        try useIdentity(ctx, certificate: first, key: privateKey, chain: Array(certificates.dropFirst()))
    } else if privateKey != nil {
        throw SSLError.usage("a private key was given without certificates", call: "make-tls-socket")
    }
    if !authorities.isEmpty {
        try ctx.trust(authorities)
        // The certificate request lists the authorities' subjects.
        for authority in authorities {
            guard COpenSSL.SSL_CTX_add_client_CA(ctx.rawValue, authority.pointer.rawValue) == 1 else {
                throw SSLError.fromQueue(call: "SSL_CTX_add_client_CA")
            }
        }
    }
    let verifyMode: SSLVerificationMode
    if side == .server {
        verifyMode = authorities.isEmpty && verifier == nil ? .never
            : .flags(requireClientCertificate ? [.peer, .failIfNoPeerCertificate] : .peer)
    } else {
        verifyMode = .always
    }
    if let verifier {
        setVerificationMode(ctx, side: side, mode: verifyMode) { ok, store in
            guard let der = try store.currentCertificate?.der() else { return false }
            return try verifier(Int(store.depth), ok ? nil : store.error, der)
        }
    } else {
        setVerificationMode(ctx, side: side, mode: verifyMode)
    }
}

/// Connects to `host:port` and makes a client TLS socket (Sagittarius' `make-client-tls-socket`).
///
/// - Parameters:
///   - host: the server's name or address, also the name its certificate is checked against.
///   - port: the server's port.
///   - handshake: run the handshake now; with false call ``tlsClientHandshake(_:timeout:)`` later.
///   - certificates: a client identity (the certificate, then its chain), with `privateKey`, or neither.
///   - privateKey: the client certificate's private key.
///   - certificateVerifier: decides on each certificate instead of the default verification (no host
///     name check then either; check in the verifier).
///   - security: without a verifier, the secure defaults (system store, host name check, SNI).
///   - timeout: seconds for connecting and for the handshake, a total (`TimeoutValue`).
public func makeClientTLSSocket(host: String, port: Int, handshake: Bool = true, certificates: [Certificate] = [],
                                privateKey: PrivateKey? = nil, certificateVerifier: TLSCertificateVerifier? = nil,
                                security: TLSConfiguration = .secure, timeout: TimeInterval? = 30) throws -> TLSSocket {
    guard !host.isEmpty else { throw SSLError.usage("the host name is empty", call: "make-client-tls-socket") }
    guard (1...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 1…65535", call: "make-client-tls-socket") }
    if !certificates.isEmpty && privateKey == nil || certificates.isEmpty && privateKey != nil {
        throw SSLError.usage("certificates and a private key go together", call: "make-client-tls-socket")
    }
    var effective = security
    if certificateVerifier != nil { effective.checkHostName = false }
    // The seed's timeout is a plain total (no LispWorks "defer" meaning): checked here, before connecting.
    let limit = try effective.handshakeLimit(timeout, call: "make-client-tls-socket")
    let stream = try openTCPStream(host: host, port: port, connectTimeout: limit.seconds.flatMap { $0 > 0 ? $0 : nil })
    do {
        try stream.attachSSL(ctx: .default, side: .client, ctxConfigure: { ctx in
            try configureTLSSocketContext(ctx, side: .client, certificates: certificates, privateKey: privateKey,
                                          verifier: certificateVerifier, authorities: [], requireClientCertificate: false)
        }, handshakeTimeout: handshake ? limit.asAttachTimeout : 0, hostName: host, security: effective)
    } catch {
        try? stream.close()
        throw error
    }
    return TLSSocket(stream: stream)
}

/// Runs a client socket's deferred handshake (`tls-client-handshake`).
public func tlsClientHandshake(_ socket: TLSSocket, timeout: TimeInterval? = 30) throws { try socket.handshake(timeout: timeout) }

/// A listening TLS server socket (Sagittarius' `make-server-tls-socket` result).
public final class TLSServerSocket: Sendable {
    let listener: TCPListener
    let context: TLSContextHolder
    /// The context every accepted connection uses (owned; freed with the socket).
    public var ctx: SSLContextPointer { context.ctx }

    init(listener: TCPListener, context: TLSContextHolder) { self.listener = listener; self.context = context }
    deinit { listener.close() }

    /// The port (the one picked for port 0).
    public var port: Int { listener.port }
    /// Stops listening.
    public func close() { listener.close() }
    public var isClosed: Bool { listener.isClosed }
}

/// Listens for TLS clients (Sagittarius' `make-server-tls-socket`) with the server identity
/// (`certificates`: the certificate, then its chain) and `privateKey`. With `authorities` the server
/// asks for a client certificate from those CAs (their names are listed in the request) and verifies
/// the one it gets; `requireClientCertificate` refuses clients without one.
public func makeServerTLSSocket(port: Int, certificates: [Certificate], privateKey: PrivateKey, authorities: [Certificate] = [],
                                requireClientCertificate: Bool = false, certificateVerifier: TLSCertificateVerifier? = nil,
                                host: String? = nil) throws -> TLSServerSocket {
    guard (0...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 0…65535", call: "make-server-tls-socket") }
    guard !certificates.isEmpty else { throw SSLError.usage("a server needs its certificate", call: "make-server-tls-socket") }
    let context = try TLSContextHolder.make(.protocol(.default), side: .server, configuration: .secure, ctxConfigure: { ctx in
        try configureTLSSocketContext(ctx, side: .server, certificates: certificates, privateKey: privateKey,
                                      verifier: certificateVerifier, authorities: authorities,
                                      requireClientCertificate: requireClientCertificate)
    }, call: "make-server-tls-socket")
    return TLSServerSocket(listener: try listen(port: port, host: host), context: context)
}

/// Accepts a client (`tls-server-socket-accept`). With `handshake: false` the server handshake runs at
/// the first read or write (or ``TLSSocket/handshake(timeout:)``). When the handshake fails: with
/// `raiseError` the error is thrown, otherwise nil is returned; either way the connection is closed.
public func tlsServerSocketAccept(_ server: TLSServerSocket, handshake: Bool = true, raiseError: Bool = true,
                                  timeout: TimeInterval? = nil, handshakeTimeout: TimeInterval? = 30) throws -> TLSSocket? {
    let stream = try server.listener.accept(sslCtx: .context(server.ctx), handshakeTimeout: handshakeTimeout, timeout: timeout)
    guard handshake else { return TLSSocket(stream: stream) }
    do {
        try stream.handshake(timeout: handshakeTimeout)
        return TLSSocket(stream: stream)
    } catch {
        try? stream.close()
        if raiseError { throw error }
        return nil
    }
}

/// One thread at a time, like its stream.
@available(*, unavailable, message: "a TLSSocket serves one thread at a time: hand it on with startThread")
extension TLSSocket: Sendable {}
