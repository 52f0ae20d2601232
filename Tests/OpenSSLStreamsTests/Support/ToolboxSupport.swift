import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// What one loopback connection between our server and our client ended with.
struct ConnectionOutcome {
    var clientError: Error?
    var serverError: Error?
    var succeeded: Bool { clientError == nil && serverError == nil }
}

/// An error thrown on purpose by a test callback.
struct CallbackRefusal: Error, Equatable {
    var reason: String
}

/// A class to watch closure lifetimes with a weak reference.
final class LifetimeProbe: @unchecked Sendable {  // touched by callbacks that run one at a time, read after they ended
    var touched = 0
    func touch() { touched += 1 }
}

/// Thread-safe collection of values seen by callbacks.
final class Recorder<T>: @unchecked Sendable {  // `items` is only touched under `lock`
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.lock(); items.append(item); lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

/// A value that a test changes while callbacks on other threads read it.
final class Locked<T>: @unchecked Sendable {  // `stored` is only touched under `lock`
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

enum Toolbox {
    /// In-process PKI: a root, an intermediate, a localhost leaf signed by the intermediate, and a leaf
    /// for "other.example" signed by the root.
    struct Chain {
        let rootKey: PrivateKey, root: Certificate
        let intermediateKey: PrivateKey, intermediate: Certificate
        let leafKey: PrivateKey, leaf: Certificate
        let otherKey: PrivateKey, other: Certificate
    }

    static let chain: Chain = {
        let rootKey = try! PrivateKey.generateEC()
        let root = try! makeCertificate(.authority("toolbox root"), key: rootKey)
        let intermediateKey = try! PrivateKey.generateEC()
        let intermediate = try! makeCertificate(.authority("toolbox intermediate"), key: intermediateKey, issuer: (root, rootKey))
        let leafKey = try! PrivateKey.generateEC()
        let leaf = try! makeCertificate(.server(hosts: ["localhost", "127.0.0.1", "::1"]), key: leafKey, issuer: (intermediate, intermediateKey))
        let otherKey = try! PrivateKey.generateEC()
        let other = try! makeCertificate(.server(hosts: ["other.example"]), key: otherKey, issuer: (root, rootKey))
        return Chain(rootKey: rootKey, root: root, intermediateKey: intermediateKey, intermediate: intermediate,
                     leafKey: leafKey, leaf: leaf, otherKey: otherKey, other: other)
    }()

    /// A server context with the test PKI's localhost certificate (signed by the test CA).
    static func serverContext(proto: SSLProtocol = .default) throws -> SSLContextPointer {
        try Fixtures.serverContext(proto: proto)
    }

    /// A client context that trusts the test CA and verifies the server.
    static func clientContext(proto: SSLProtocol = .default) throws -> SSLContextPointer {
        let ctx = try makeSSLCtx(protocol: proto, side: .client)
        try ctx.trust(file: try Fixtures.pki.caCert)
        setVerificationMode(ctx, side: .client, mode: .always)
        return ctx
    }

    /// One TLS connection between our server (on `server`) and our client (on `client`) over loopback.
    /// `serverBody` runs after the server's handshake, `clientBody` after the client's; both ends close
    /// afterwards. Errors of either end are returned, not thrown.
    @discardableResult
    static func connect(server: SSLContextPointer, client: SSLContextPointer, hostName: String = "localhost",
                        sslConfigure: ((SSLPointer) throws -> Void)? = nil,
                        serverBody: @escaping @Sendable (SocketStream) throws -> Void = { _ in },
                        clientBody: (SocketStream) throws -> Void = { _ in }) throws -> ConnectionOutcome {
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        let serverContext = server
        final class Box: @unchecked Sendable { var error: Error? }  // written by the background thread, read after it was joined
        let box = Box()
        let peer = Background("toolbox server") {
            do {
                let stream = try listener.accept(sslCtx: .context(serverContext), handshakeTimeout: 10, timeout: 10,
                                                 readTimeout: 10, writeTimeout: 10)
                defer { stream.closeQuietlyForTests() }
                try stream.handshake(timeout: 10)
                try serverBody(stream)
            } catch {
                box.error = error
            }
        }
        var outcome = ConnectionOutcome()
        do {
            // The security switches only concern contexts a stream makes; here the contexts are the test's.
            let stream = try openTCPStream(host: "127.0.0.1", port: listener.port, sslCtx: .context(client),
                                           sslConfigure: sslConfigure, handshakeTimeout: 10, hostName: hostName,
                                           security: SSLSecurity(checkHostName: false), readTimeout: 10, writeTimeout: 10)
            defer { stream.closeQuietlyForTests() }
            try clientBody(stream)
        } catch {
            outcome.clientError = error
        }
        try peer.join(timeout: 20)
        outcome.serverError = box.error
        return outcome
    }

    /// Runs our TLS server for up to `connections` connections (stopping at the first accept that waits
    /// longer than `idle` seconds), calling `body` on each after its handshake; errors of a connection
    /// are recorded, not thrown.
    static func serve(_ ctx: SSLContextPointer, on listener: TCPListener, connections: Int, idle: TimeInterval = 10,
                      body: @escaping @Sendable (SocketStream) throws -> Void) -> (Background, Recorder<Error>) {
        let errors = Recorder<Error>()
        let context = ctx
        let background = Background("toolbox server loop") {
            for _ in 0..<connections {
                let stream: SocketStream
                do {
                    stream = try listener.accept(sslCtx: .context(context), handshakeTimeout: 10, timeout: idle,
                                                 readTimeout: 10, writeTimeout: 10)
                } catch { return }
                do {
                    try stream.handshake(timeout: 10)
                    try body(stream)
                } catch {
                    errors.append(error)
                }
                stream.closeQuietlyForTests()
            }
        }
        return (background, errors)
    }

    static func message(_ error: Error?) -> String { error.map { "\($0)" } ?? "no error" }
}

extension SocketStream {
    /// Closes, ignoring errors (the peer may be gone).
    func closeQuietlyForTests() { try? close() }
}
