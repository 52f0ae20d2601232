import Foundation
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLSeeds
import OpenSSLStreams
import TestSupport

// MARK: Cases (the columns)

/// A server every client entry point meets, and what the client must do against it.
enum ClientCase: String, CaseIterable, Sendable {
    /// A good server (test CA, for localhost / 127.0.0.1 / ::1): the client must connect. Proves that
    /// the trust given is real, so a refusal below cannot come from everything failing.
    case control
    /// The good server on ::1, reached as the bracketed literal `[::1]`: must connect.
    case controlBracketedIPv6
    case selfSigned
    case wrongHost
    case expired
    case notYetValid
    case untrustedCA
    /// `openssl s_server -tls1 -cipher DEFAULT@SECLEVEL=0` (DTLS: `-dtls1`).
    case tls10Only
    /// `hostName: ""` against a server whose certificate is for another host: an empty name must not
    /// switch the name check off.
    case emptyHostName
    /// `[::1]` against a certificate for 127.0.0.2 / ::2 only.
    case bracketedIPv6OtherAddress

    /// What the client must do.
    var expected: ClientExpectation {
        switch self {
        case .control, .controlBracketedIPv6: return .connects
        case .selfSigned, .wrongHost, .expired, .notYetValid, .untrustedCA, .bracketedIPv6OtherAddress:
            return .refused(.verificationFailure)
        // The client's floor is TLS 1.2: no certificate is ever looked at, the versions do not meet,
        // and the refusal is a protocol-version failure (kind .failure, reason "unsupported protocol"
        // or the peer's "protocol version" alert), not a verification failure.
        case .tls10Only: return .refused(.protocolVersion)
        // The one identity resolver refuses an empty name (usage error) or checks something that the
        // other host's certificate does not match (verification failure): either refuses.
        case .emptyHostName: return .refused(.verificationFailureOrUsage)
        }
    }

    /// The certificate the server serves.
    func certificate(_ pki: TestPKI) -> String {
        switch self {
        case .control, .controlBracketedIPv6, .tls10Only: return pki.serverCert
        case .selfSigned: return pki.selfSignedCert
        case .wrongHost, .emptyHostName: return pki.wrongHostCert
        case .expired: return pki.expiredCert
        case .notYetValid: return pki.notYetValidCert
        case .untrustedCA: return pki.untrustedLeafCert
        case .bracketedIPv6OtherAddress: return pki.otherAddressCert
        }
    }

    var ipv6: Bool { self == .controlBracketedIPv6 || self == .bracketedIPv6OtherAddress }

    func serverOptions(datagram: Bool) -> [String] {
        guard self == .tls10Only else { return [] }
        return [datagram ? "-dtls1" : "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]
    }
}

enum ClientExpectation: Sendable {
    case connects
    case refused(Refusal)
}

/// How a client must refuse.
enum Refusal: String, Sendable {
    case verificationFailure, protocolVersion, verificationFailureOrUsage

    func matches(_ error: Error) -> Bool {
        switch self {
        case .verificationFailure: return isVerificationFailure(error)
        case .protocolVersion: return isProtocolVersionFailure(error)
        case .verificationFailureOrUsage: return isVerificationFailure(error) || isUsage(error)
        }
    }

    private func isVerificationFailure(_ error: Error) -> Bool {
        if let exit = error as? SSLCatExit { return exit.stderr.lowercased().contains("verif") }
        return (error as? SSLError)?.kind == .verificationFailure
    }

    private func isProtocolVersionFailure(_ error: Error) -> Bool {
        let texts: [String]
        if let exit = error as? SSLCatExit {
            texts = [exit.stderr]
        } else if let ssl = error as? SSLError, ssl.kind == .failure {
            texts = [ssl.message] + ssl.reasons
        } else {
            return false
        }
        return texts.contains { text in
            let t = text.lowercased()
            return t.contains("protocol version") || t.contains("unsupported protocol")
        }
    }

    private func isUsage(_ error: Error) -> Bool {
        if let exit = error as? SSLCatExit { return exit.stderr.lowercased().contains("empty") }
        return DeadlineModel.isUsageError(error)
    }
}

/// `sslcat` ended with a non-zero status.
struct SSLCatExit: Error, CustomStringConvertible {
    var status: Int32
    var stderr: String
    var description: String { "sslcat exited \(status): \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))" }
}

// MARK: Entry points (the rows)

/// Where and how one client entry point connects in one cell.
struct ClientTarget: Sendable {
    /// The host as the case gives it: "127.0.0.1", or the bracketed literal "[::1]".
    let host: String
    let port: Int
    /// The same address unbracketed, for the transports the test connects itself.
    let address: String
    /// The case's explicit `hostName:` argument (nil: the entry point's default).
    let hostName: String?
    /// The name given to entry points whose only notion of the peer is a `hostName:` (they run over a
    /// transport the test connects): the explicit name, else the bracketed literal in the IPv6 cases,
    /// else nil (the default).
    var transportHostName: String? { hostName ?? (host.hasPrefix("[") ? host : nil) }
    /// The test CA (PEM), trusted the entry point's normal way.
    let caFile: String
}

/// One client entry point: called with its defaults (no opt-out), trusting the test CA the entry
/// point's normal way; `connect` returns when the handshake finished (and closes), or throws.
struct ClientEntryPoint: Sendable {
    let name: String
    var datagram = false
    /// How the entry point is told the peer's name, which decides what the `hostName: ""` case gives it.
    var nameInput = NameInput.hostNameParameter
    let connect: @Sendable (ClientTarget) throws -> Void
    /// The cells that fail on the current library, with the reason (see ``MatrixCell/knownFailure``).
    var knownFailures: [ClientCase: KnownFailure] = [:]
}

/// How a client entry point is told the name of its peer.
enum NameInput: Sendable {
    /// A `hostName:` argument (or `--servername`): the `hostName: ""` case passes "".
    case hostNameParameter
    /// Only the host it connects to: the `hostName: ""` case passes the host "".
    case hostOnly
    /// Neither (it upgrades a connection made elsewhere): the `hostName: ""` case does not apply.
    case none
}

/// The event loops the NIO rows run on.
let conformanceGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

enum ClientEntryPoints {
    static let all: [ClientEntryPoint] = [
        ClientEntryPoint(name: "openTCPStream(host:port:sslCtx:)", connect: { t in
            let stream = try openTCPStream(host: t.host, port: t.port, sslCtx: .default, hostName: t.hostName,
                                           security: .trusting(caFile: t.caFile))
            try stream.close()
        }),
        ClientEntryPoint(name: "SocketStream.attachSSL", connect: { t in
            let stream = try openTCPStream(host: t.host, port: t.port)
            defer { try? stream.close() }
            try stream.attachSSL(hostName: t.hostName, security: .trusting(caFile: t.caFile))
        }),
        ClientEntryPoint(name: "TLSEngine", connect: { t in
            let stream = try openTCPStream(host: t.address, port: t.port)
            defer { try? stream.close() }
            let engine = try TLSEngine(side: .client, hostName: t.transportHostName ?? t.host, security: .trusting(caFile: t.caFile))
            try pumpHandshake(engine, over: stream)
        }),
        ClientEntryPoint(name: "portsToSSLPorts", connect: { t in
            let stream = try openTCPStream(host: t.address, port: t.port)
            defer { try? stream.close() }
            _ = try portsToSSLPorts(input: stream, output: stream, hostName: t.transportHostName ?? t.host,
                                    security: .trusting(caFile: t.caFile))
        }),
        ClientEntryPoint(name: "sslConnect", nameInput: .hostOnly, connect: { t in
            let context = try sslMakeClientContext()
            try context.loadVerifyRootCertificates(t.caFile)
            let ports = try sslConnect(host: t.host, port: t.port, context: context)
            try? ports.output.close()
            try? ports.input.close()
        }),
        ClientEntryPoint(name: "makeClientTLSSocket", nameInput: .hostOnly, connect: { t in
            let socket = try makeClientTLSSocket(host: t.host, port: t.port, security: .trusting(caFile: t.caFile))
            try socket.close()
        }),
        ClientEntryPoint(name: "makeSSLClientSocket", nameInput: .hostOnly, connect: { t in
            let socket = try makeSSLClientSocket(host: t.host, port: t.port, CAs: [try readCertificate(t.caFile)])
            try socket.close()
        }),
        ClientEntryPoint(name: "clientSocketUseSSL", nameInput: .none, connect: { t in
            let socket = try makeClientSocket(host: t.host, port: t.port)
            defer { try? socket.close() }
            try clientSocketUseSSL(socket, CAs: [try readCertificate(t.caFile)])
        }),
        ClientEntryPoint(name: "openDTLS", datagram: true, connect: { t in
            let socket = try openDTLS(host: t.host, port: t.port, hostName: t.hostName, security: .trusting(caFile: t.caFile))
            try socket.close()
        }),
        ClientEntryPoint(name: "connectTLSChannel (future)", connect: { t in
            let channel = try resolve(connectTLSChannel(host: t.host, port: t.port, group: conformanceGroup, hostName: t.hostName,
                                                        security: .trusting(caFile: t.caFile)))
            try? resolve(channel.close())
        }),
        ClientEntryPoint(name: "connectTLSChannel (async)", connect: { t in
            try blocking {
                let channel = try await connectTLSChannel(host: t.host, port: t.port, group: conformanceGroup, hostName: t.hostName,
                                                          security: .trusting(caFile: t.caFile))
                try await channel.executeThenClose { _, _ in }
            }
        }),
        ClientEntryPoint(name: "Channel.attachSSL", connect: { t in
            let channel = try resolve(ClientBootstrap(group: conformanceGroup).connect(host: t.address, port: t.port))
            defer { try? resolve(channel.close()) }
            _ = try resolve(channel.attachSSL(hostName: t.transportHostName, security: .trusting(caFile: t.caFile)))
        }),
        // The system store is the trust of these defaults: during the client matrix it is the test CA
        // (`SSL_CERT_FILE`, see ``ClientEntryPoints/withTestCAAsSystemStore(_:)``).
        ClientEntryPoint(name: "openTCPStream (system store)", connect: { t in
            try openTCPStream(host: t.host, port: t.port, sslCtx: .default, hostName: t.hostName).close()
        }),
        ClientEntryPoint(name: "makeClientTLSSocket (system store)", nameInput: .hostOnly, connect: { t in
            try makeClientTLSSocket(host: t.host, port: t.port).close()
        }),
        ClientEntryPoint(name: "makeSSLClientSocket (no CAs: system store)", nameInput: .hostOnly, connect: { t in
            try makeSSLClientSocket(host: t.host, port: t.port).close()
        }),
        ClientEntryPoint(name: "clientSocketUseSSL (no CAs: system store)", nameInput: .none, connect: { t in
            let socket = try makeClientSocket(host: t.host, port: t.port)
            defer { try? socket.close() }
            try clientSocketUseSSL(socket)
        }),
        // A caller's context (makeSSLCtx, the LispWorks layer) that trusts the test CA, with the
        // default security.
        ClientEntryPoint(name: "openTCPStream(sslCtx: .context(makeSSLCtx(side: .client)))", connect: { t in
            let ctx = try makeSSLCtx(protocol: .default, side: .client)
            defer { destroySSLCtx(ctx) }
            try loadVerifyLocations(ctx, file: t.caFile)
            try openTCPStream(host: t.host, port: t.port, sslCtx: .context(ctx), hostName: t.hostName).close()
        }),
        ClientEntryPoint(name: "sslcat connect", connect: { t in
            var arguments = ["connect", "\(t.host):\(t.port)", "--cafile", t.caFile]
            if let name = t.hostName { arguments += ["--servername", name] }
            // Connected once the handshake summary is printed (then stopped: s_server never ends the
            // session); refused when it exits first.
            let process = try FileOutputProcess(SSLCatTool.path, arguments)
            defer { process.finish() }
            if process.wait(timeout: 15, until: { $0.contains("sslcat: protocol:") }) { return }
            guard let status = process.status else {
                throw ConformanceFailure("sslcat neither connected nor exited within 15 s: \(process.output)")
            }
            throw SSLCatExit(status: status, stderr: process.output)
        }),
    ]

    /// Runs `body` with the test CA as the system's trust store (`SSL_CERT_FILE`, which
    /// `SSL_CTX_set_default_verify_paths` reads), so that the rows that trust the system store have a
    /// control that can connect.
    static func withTestCAAsSystemStore<T>(_ pki: TestPKI, _ body: () throws -> T) rethrows -> T {
        let saved = ProcessInfo.processInfo.environment["SSL_CERT_FILE"]
        setenv("SSL_CERT_FILE", pki.caCert, 1)
        defer { if let saved { setenv("SSL_CERT_FILE", saved, 1) } else { unsetenv("SSL_CERT_FILE") } }
        return try body()
    }

    /// The cells: every entry point × every case that applies to it.
    static func cells(_ pki: TestPKI) -> [MatrixCell] {
        all.flatMap { entry in
            ClientCase.allCases.filter { entry.nameInput != .none || $0 != .emptyHostName }.map { kase in
                MatrixCell(name: "\(entry.name) × \(kase.rawValue)", knownFailure: entry.knownFailures[kase]) {
                    runClientCell(entry, kase, pki)
                }
            }
        }
    }

    static func runClientCell(_ entry: ClientEntryPoint, _ kase: ClientCase, _ pki: TestPKI) -> RowProblem {
        let server: OpenSSLServer
        do {
            server = try OpenSSLServer(cert: kase.certificate(pki), key: pki.serverKey, ipv6: kase.ipv6, dtls: entry.datagram,
                                       extra: kase.serverOptions(datagram: entry.datagram))
        } catch {
            return "no server: \(error)"
        }
        defer { server.stop() }
        let emptyHost = kase == .emptyHostName && entry.nameInput == .hostOnly
        let target = ClientTarget(host: emptyHost ? "" : (kase.ipv6 ? "[::1]" : "127.0.0.1"), port: server.port,
                                  address: kase.ipv6 ? "::1" : "127.0.0.1",
                                  hostName: kase == .emptyHostName && !emptyHost ? "" : nil, caFile: pki.caCert)
        let result = Result { try entry.connect(target) }
        switch (kase.expected, result) {
        case (.connects, .success):
            return nil
        case (.connects, .failure(let error)):
            return "the control did not connect: \(describe(error))"
        case (.refused(let refusal), .success):
            return "connected: not refused (expected \(refusal.rawValue))"
        case (.refused(let refusal), .failure(let error)):
            return refusal.matches(error) ? nil : "refused, but not as \(refusal.rawValue): \(describe(error))"
        }
    }
}

// MARK: Helpers of the rows

/// Runs a client engine's handshake over a connected stream (5 s at most).
func pumpHandshake(_ engine: TLSEngine, over stream: SocketStream) throws {
    let end = Date().addingTimeInterval(5)
    stream.readTimeout = 5
    while true {
        let done = try engine.handshake()
        let outgoing = engine.takeOutgoing()
        if !outgoing.isEmpty { try stream.write(outgoing); try stream.flush() }
        if done { return }
        guard Date() < end else { throw ConformanceFailure("the engine's handshake did not finish within 5 s") }
        let incoming = try stream.read(maxLength: 16 * 1024)
        if incoming.isEmpty { engine.feedEOF() } else { try engine.feed(incoming) }
    }
}

final class ResultSlot<T>: @unchecked Sendable { var result: Result<T, Error>? }  // written once by the loop, read after the wait

/// Waits for a future (20 s at most; the cell's watchdog is the real bound).
@discardableResult
func resolve<T>(_ future: EventLoopFuture<T>, timeout: TimeInterval = 20) throws -> T {
    let slot = ResultSlot<T>()
    let done = DispatchSemaphore(value: 0)
    future.whenComplete { slot.result = $0; done.signal() }
    guard done.wait(timeout: .now() + timeout) == .success, let result = slot.result else {
        throw ConformanceFailure("a future did not complete within \(timeout) s")
    }
    return try result.get()
}

/// Runs async code from a blocking cell.
func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let slot = ResultSlot<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { slot.result = .success(try await body()) } catch { slot.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try slot.result!.get()
}
