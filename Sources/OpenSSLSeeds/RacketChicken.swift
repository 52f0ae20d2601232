import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import OpenSSLTLS

// Racket's `openssl` library and Chicken's `openssl` egg, in Swift: contexts as objects, connections as a
// pair of input / output ports, listeners, the context procedures, SHA-1.

// MARK: Availability

/// Whether OpenSSL is usable (Racket's `ssl-available?`): `ensureSSL()` succeeded.
public var sslAvailable: Bool { sslLoadFailReason == nil }

/// Why OpenSSL is not usable, or nil when it is (Racket's `ssl-load-fail-reason`).
public var sslLoadFailReason: String? {
    do { try ensureSSL(); return nil } catch { return "\(error)" }
}

extension SSLStatus {
    /// Chicken's status symbol for this `SSL_get_error` result: "zero-return", "want-read", "want-write",
    /// "want-connect", "want-accept", "want-x509-lookup", "syscall", "ssl", "none" …
    public var chickenSymbol: String {
        switch self {
        case .none: return "none"
        case .ssl: return "ssl"
        case .wantRead: return "want-read"
        case .wantWrite: return "want-write"
        case .wantX509Lookup: return "want-x509-lookup"
        case .syscall: return "syscall"
        case .zeroReturn: return "zero-return"
        case .wantConnect: return "want-connect"
        case .wantAccept: return "want-accept"
        case .wantAsync: return "want-async"
        case .wantAsyncJob: return "want-async-job"
        case .wantClientHello: return "want-client-hello"
        case .wantRetryVerify: return "want-retry-verify"
        case .other(let code): return "unknown-\(code)"
        }
    }
}

// MARK: Contexts

/// Something the context procedures work on: a client context, a server context or a listener
/// (Racket's `ssl-load-certificate-chain!` … accept any of them).
public protocol SSLContextHolder: AnyObject {
    /// The `SSL_CTX` the procedures change.
    var sslContext: SSLContextPointer { get }
    /// The side it serves.
    var sslSide: SSLSide { get }
}

extension SSLContextHolder {
    /// Loads the certificate chain (PEM: the certificate, then intermediates) — `ssl-load-certificate-chain!`.
    public func loadCertificateChain(_ path: String) throws { try useCertificateChainFile(sslContext, file: path) }

    /// Loads the private key — `ssl-load-private-key!`: PEM, or DER with `asn1`; with `rsa` the key
    /// must be an RSA key.
    /// - Corresponds: `EVP_PKEY_get_base_id`, `SSL_CTX_get0_privatekey`.
    public func loadPrivateKey(_ path: String, rsa: Bool = false, asn1: Bool = false) throws {
        try usePrivateKeyFile(sslContext, file: path, type: asn1 ? .asn1 : .pem)
        if rsa {
            guard let key = COpenSSL.SSL_CTX_get0_privatekey(sslContext.rawValue), COpenSSL.EVP_PKEY_get_base_id(key) == COpenSSL.EVP_PKEY_RSA else {
                throw SSLError(kind: .error, call: "SSL_CTX_use_RSAPrivateKey_file", file: path, message: "the key is not an RSA key")
            }
        }
    }

    /// Turns verification of the peer on or off — `ssl-set-verify!`. On a server, on means a client
    /// certificate is asked for and required.
    public func setVerify(_ on: Bool) {
        setVerificationMode(sslContext, side: sslSide == .client ? .client : .server, mode: on ? .always : .never)
    }

    /// Trusts the certificates of a PEM file or a hashed directory — `ssl-load-verify-root-certificates!`.
    public func loadVerifyRootCertificates(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            try loadVerifyLocations(sslContext, directory: path)
        } else {
            try loadVerifyLocations(sslContext, file: path)
        }
    }

    /// Trusts a file and/or a directory.
    public func loadVerifyRootCertificates(file: String? = nil, directory: String? = nil) throws {
        try loadVerifyLocations(sslContext, file: file, directory: directory)
    }

    /// Sends the subjects of the certificates in a PEM file as the CAs a client certificate should come
    /// from — `ssl-load-suggested-certificate-authorities!` (`SSL_load_client_CA_file`).
    /// - Corresponds: `SSL_CTX_set_client_CA_list`, `SSL_load_client_CA_file`.
    public func loadSuggestedCertificateAuthorities(_ path: String) throws {
        try ensureSSL()
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SSLError(kind: .error, call: "SSL_load_client_CA_file", file: path, errno: ENOENT, message: "cannot read the file")
        }
        guard let names = COpenSSL.SSL_load_client_CA_file(path) else {
            throw SSLError.fromQueue(call: "SSL_load_client_CA_file", file: path, message: "no certificate in the file")
        }
        COpenSSL.SSL_CTX_set_client_CA_list(sslContext.rawValue, names)  // takes the list
    }
}

/// A client context (Racket's `ssl-make-client-context`), freed with the object.
public final class SSLClientContext: SSLContextHolder, Sendable {
    let holder: TLSContextHolder
    public var sslContext: SSLContextPointer { holder.ctx }
    public var sslSide: SSLSide { .client }
    /// The configuration its connections get (verification, host name check, SNI …).
    public let security: TLSConfiguration

    /// A client context for `protocol`, with `security`'s defaults (verification on, trusting the
    /// system store, unless told otherwise).
    public init(protocol proto: SSLProtocol = .default, security: TLSConfiguration = .secure) throws {
        holder = try TLSContextHolder.make(.protocol(proto), side: .client, configuration: security, ctxConfigure: nil,
                                           call: "ssl-make-client-context")
        self.security = security
    }
}

/// A server context (Racket's `ssl-make-server-context`), freed with the object.
public final class SSLServerContext: SSLContextHolder, Sendable {
    let holder: TLSContextHolder
    public var sslContext: SSLContextPointer { holder.ctx }
    public var sslSide: SSLSide { .server }
    /// The configuration its connections get.
    public let security: TLSConfiguration

    public init(protocol proto: SSLProtocol = .default, security: TLSConfiguration = .secure) throws {
        holder = try TLSContextHolder.make(.protocol(proto), side: .server, configuration: security, ctxConfigure: nil,
                                           call: "ssl-make-server-context")
        self.security = security
    }
}

/// `ssl-make-client-context`.
public func sslMakeClientContext(protocol proto: SSLProtocol = .default, security: TLSConfiguration = .secure) throws -> SSLClientContext {
    try SSLClientContext(protocol: proto, security: security)
}

/// `ssl-make-server-context`.
public func sslMakeServerContext(protocol proto: SSLProtocol = .default) throws -> SSLServerContext {
    try SSLServerContext(protocol: proto)
}

/// `ssl-client-context?`.
public func isClientContext(_ value: Any) -> Bool { value is SSLClientContext }
/// `ssl-server-context?`.
public func isServerContext(_ value: Any) -> Bool { value is SSLServerContext }
/// `ssl-listener?`.
public func isListener(_ value: Any) -> Bool { value is SSLListener }
/// `ssl-port?`: a TLS input or output port.
public func isSSLPort(_ value: Any) -> Bool { value is TLSInputPort || value is TLSOutputPort }

// MARK: Connections

/// Racket's `client-protocol` / `server-protocol` argument is a protocol symbol or a prepared context:
/// here `protocol:` (an ``SSLProtocol``, the one vocabulary of protocols) or `context:`, not both.
private func seedContext<Context>(_ proto: SSLProtocol?, _ context: Context?, call: String,
                                  make: (SSLProtocol) throws -> Context) throws -> Context {
    switch (proto, context) {
    case (.some, .some): throw SSLError.usage("give a protocol or a context, not both", call: call)
    case (_, .some(let given)): return given
    case (let proto, nil): return try make(proto ?? .default)
    }
}

/// Connects to `host:port` and runs a TLS client handshake (Racket's and Chicken's `ssl-connect`):
/// the plaintext input and output ports. With a protocol symbol (`protocol:`, `.default` when neither
/// is given) the server is verified against the system store (secure by default); pass a `context:`
/// made with other security to change that. The host name is checked and sent as SNI. Closing the output port does not send close_notify unless
/// asked (`close(shutdown: true)`); closing both closes the socket.
///
/// `handshakeTimeout` bounds the whole handshake (`TimeoutValue`; nil: `TLSTimeouts.handshake`): a
/// peer that stays silent, or trickles, then fails with an `SSLError` of kind `.handshakeTimeout`.
///
/// `cancel` ends the connect or the handshake from another thread (Racket's `ssl-connect/enable-break`):
/// `StreamError` `.cancelled`, and the socket is closed.
public func sslConnect(host: String, port: Int, protocol proto: SSLProtocol? = nil, context: SSLClientContext? = nil,
                       connectTimeout: TimeInterval? = nil, handshakeTimeout: TimeInterval? = nil,
                       cancel: CancelHandle? = nil) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    guard !host.isEmpty else { throw SSLError.usage("the host name is empty", call: "sslConnect") }
    guard (1...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 1…65535", call: "sslConnect") }
    let connectLimit = try TimeoutValue.resolve(connectTimeout, default: nil, name: "the connect timeout", call: "sslConnect")
    let client = try seedContext(proto, context, call: "sslConnect") { try SSLClientContext(protocol: $0) }
    let fd = try connectTCP(host: host, port: port, timeout: connectLimit.seconds, cancel: cancel)
    let transport = FileDescriptorTransport(fileDescriptor: fd, closesDescriptor: true)
    do {
        let watch = cancelling(fd, cancel)
        defer { watch.end() }
        let ports = try makeSSLPorts(input: transport, output: transport, closeOriginal: true, shutdownOnClose: false, errorHook: nil,
                                     handshake: true, handshakeLimit: client.security.handshakeLimit(handshakeTimeout, call: "sslConnect")) {
            try TLSEngine(on: client.holder, side: .client, configuration: client.security, hostName: host, call: "sslConnect")
        }
        ports.input.keepAlive(client)
        return ports
    } catch {
        transport.close()
        throw cancel?.isCancelled == true ? StreamError(kind: .cancelled, call: "sslConnect", message: "cancelled") : error
    }
}

/// Racket's `ssl-connect/enable-break`: ``sslConnect(host:port:protocol:context:connectTimeout:handshakeTimeout:cancel:)``
/// that `cancel` can end.
public func sslConnectEnableBreak(host: String, port: Int, protocol proto: SSLProtocol? = nil, context: SSLClientContext? = nil,
                                  cancel: CancelHandle) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    try sslConnect(host: host, port: port, protocol: proto, context: context, cancel: cancel)
}

/// While a blocking seed call runs on `fd`, a cancellation shuts the socket down, which ends a blocked
/// `poll` or `recv` at once; ``end()`` stops watching.
/// - Corresponds: `shutdown(2)`.
private func cancelling(_ fd: Int32, _ cancel: CancelHandle?) -> CancelWatch {
    guard let cancel else { return CancelWatch(end: {}) }
    let key = cancel.onCancel { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    return CancelWatch(end: { cancel.remove(key) })
}

private struct CancelWatch { let end: () -> Void }

/// A TLS listener (Racket's `ssl-listen` result): a listening socket and the server context its
/// connections use. Context procedures work on it.
public final class SSLListener: SSLContextHolder, Sendable {
    let listener: TCPListener
    let context: SSLServerContext
    public var sslContext: SSLContextPointer { context.sslContext }
    public var sslSide: SSLSide { .server }

    init(listener: TCPListener, context: SSLServerContext) { self.listener = listener; self.context = context }

    /// The port it listens on (Chicken's `ssl-listener-port`).
    public var port: Int { listener.port }
    /// The listening socket (Chicken's `ssl-listener-fileno`).
    public var fileDescriptor: Int32 { listener.fileDescriptor }
    /// Whether a connection waits, so that ``sslAccept(_:timeout:handshakeTimeout:cancel:)`` would not block (Chicken's `ssl-accept-ready?`).
    public var acceptReady: Bool { listener.acceptReady }
    /// Whether it was closed.
    public var isClosed: Bool { listener.isClosed }
    /// Stops listening (Racket's `ssl-close`).
    public func close() { listener.close() }
}

/// Listens for TLS connections (Racket's `ssl-listen`): port 0 picks a free port. Load a certificate and
/// key into the listener (or its context) before accepting.
public func sslListen(port: Int, backlog: Int32 = 5, reuse: Bool = false, host: String? = nil,
                      protocol proto: SSLProtocol? = nil, context: SSLServerContext? = nil) throws -> SSLListener {
    guard (0...65535).contains(port) else { throw SSLError.usage("port \(port) is out of range 0…65535", call: "sslListen") }
    if let host, host.isEmpty { throw SSLError.usage("the host name is empty", call: "sslListen") }
    let server = try seedContext(proto, context, call: "sslListen") { try SSLServerContext(protocol: $0) }
    return SSLListener(listener: try listen(port: port, backlog: backlog, host: host, reuseAddress: reuse), context: server)
}

/// Accepts a connection and runs the TLS server handshake (Racket's `ssl-accept`): its ports. When the
/// handshake fails the connection is closed and the error thrown.
///
/// `timeout` bounds the wait for a connection (nil: none), `handshakeTimeout` the whole handshake
/// (`TimeoutValue`; nil: `TLSTimeouts.handshake`).
///
/// `cancel` ends the wait or the handshake from another thread (Racket's `ssl-accept/enable-break`):
/// `StreamError` `.cancelled`.
public func sslAccept(_ listener: SSLListener, timeout: TimeInterval? = nil,
                      handshakeTimeout: TimeInterval? = nil, cancel: CancelHandle? = nil) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    let fd = try listener.listener.acceptDescriptor(timeout: timeout, cancel: cancel)
    let transport = FileDescriptorTransport(fileDescriptor: fd, closesDescriptor: true)
    let server = listener.context
    do {
        let watch = cancelling(fd, cancel)
        defer { watch.end() }
        let ports = try makeSSLPorts(input: transport, output: transport, closeOriginal: true, shutdownOnClose: false, errorHook: nil,
                                     handshake: true, handshakeLimit: server.security.handshakeLimit(handshakeTimeout, call: "sslAccept")) {
            try TLSEngine(on: server.holder, side: .server, configuration: server.security, hostName: nil, call: "sslAccept")
        }
        ports.input.keepAlive(server)
        return ports
    } catch {
        // A handshake that failed with an alert: let the client read it (a timeout sent none).
        if cancel?.isCancelled == true {
            transport.close()
            throw StreamError(kind: .cancelled, call: "sslAccept", message: "cancelled")
        }
        if (error as? SSLError)?.kind != .handshakeTimeout { AlertLinger.shared.linger(fd) }
        transport.close()
        throw error
    }
}

/// Racket's `ssl-accept/enable-break`: ``sslAccept(_:timeout:handshakeTimeout:cancel:)`` that `cancel`
/// can end.
public func sslAcceptEnableBreak(_ listener: SSLListener, cancel: CancelHandle) throws -> (input: TLSInputPort, output: TLSOutputPort) {
    try sslAccept(listener, cancel: cancel)
}

/// Closes a listener (Racket's `ssl-close`).
public func sslClose(_ listener: SSLListener) { listener.close() }

// MARK: SHA-1

/// The SHA-1 digest of everything `input` gives until its end (Racket's `sha1-bytes`).
/// - Corresponds: `EVP_DigestFinal_ex`, `EVP_DigestInit_ex`, `EVP_DigestUpdate`, `EVP_MD_CTX_free`,
///   `EVP_MD_CTX_new`, `EVP_sha1`.
public func sha1Bytes(_ input: ByteReadable) throws -> [UInt8] {
    try ensureSSL()
    guard let md = COpenSSL.EVP_MD_CTX_new() else { throw SSLError.fromQueue(call: "EVP_MD_CTX_new") }
    defer { COpenSSL.EVP_MD_CTX_free(md) }
    guard COpenSSL.EVP_DigestInit_ex(md, COpenSSL.EVP_sha1(), nil) == 1 else { throw SSLError.fromQueue(call: "EVP_DigestInit_ex") }
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = try chunk.withUnsafeMutableBytes { try input.readSome(into: $0) }
        if n == 0 { break }
        guard COpenSSL.EVP_DigestUpdate(md, chunk, n) == 1 else { throw SSLError.fromQueue(call: "EVP_DigestUpdate") }
    }
    var digest = [UInt8](repeating: 0, count: 20)
    var length: UInt32 = 0
    guard COpenSSL.EVP_DigestFinal_ex(md, &digest, &length) == 1 else { throw SSLError.fromQueue(call: "EVP_DigestFinal_ex") }
    return Array(digest.prefix(Int(length)))
}

/// The SHA-1 digest of bytes.
public func sha1Bytes(_ bytes: [UInt8]) throws -> [UInt8] {
    let channel = MemoryByteChannel(capacity: max(bytes.count, 1))
    try channel.writeAll(bytes)
    try channel.closeWriting()
    return try sha1Bytes(channel)
}

/// The SHA-1 digest of everything `input` gives, as lower-case hex (Racket's `sha1`).
public func sha1(_ input: ByteReadable) throws -> String { bytesToHexString(try sha1Bytes(input)) }

/// Bytes as lower-case hex (Racket's `bytes->hex-string`).
public func bytesToHexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}
