import COpenSSL
import Foundation
import OpenSSL
import Synchronization
import OpenSSLFLI

extension SSLProtocol {
    /// DTLS (datagrams) rather than TLS.
    package var isDatagram: Bool { self == .dtls || self == .dtlsV1_2 }

    /// The protocol pins one version (min = max), so no other minimum applies.
    package var isPinned: Bool {
        switch self {
        case .tlsV1, .tlsV1_1, .tlsV1_2, .tlsV1_3, .dtlsV1_2: return true
        default: return false
        }
    }
}

/// The `SSL_CTX` and `SSL` of one TLS connection, made (and configured) or the caller's, with
/// LispWorks' ownership rules, written once for every entry point (see ``SSLContextArgument``):
///
/// - a protocol symbol: an `SSL_CTX` is made, the configuration's context settings applied, then the
///   configuration's and the entry point's `ctxConfigure`; then as for a context;
/// - a context: an `SSL` is made, the configuration's connection settings applied (verification, peer
///   identity, versions, ALPN, renegotiation), then the `sslConfigure` hooks;
/// - a connection: used as it is; nothing is made, applied or called.
///
/// What was made here is freed by ``release()`` (once); the caller's objects never are.
package final class TLSObjects {
    package let ssl: SSLPointer
    package let ctx: SSLContextPointer
    /// The `SSL` was made here.
    package let ownsSSL: Bool
    /// The `SSL_CTX` was made here.
    package let ownsContext: Bool
    private var released = false

    package init(ssl: SSLPointer, ctx: SSLContextPointer, ownsSSL: Bool, ownsContext: Bool) {
        self.ssl = ssl; self.ctx = ctx; self.ownsSSL = ownsSSL; self.ownsContext = ownsContext
    }

    /// Makes what `argument` asks for (see the type's rules). On failure whatever was made is freed.
    /// - Parameters:
    ///   - hostName: the peer a client expects (resolved by ``PeerIdentity``); nil when unknown.
    ///   - call: the entry point, for errors.
    /// - Corresponds: `SSL_CTX_new` (through ``makeSSLCtx(protocol:side:)``), `SSL_new`, `SSL_get_SSL_CTX`.
    package static func make(_ argument: SSLContextArgument, side: SSLSide, configuration: TLSConfiguration,
                             ctxConfigure: ((SSLContextPointer) throws -> Void)?, sslConfigure: ((SSLPointer) throws -> Void)?,
                             hostName: String?, identityLater: Bool = false, call: String) throws -> TLSObjects {
        switch argument {
        case .connection(let given):
            guard let owner = SSL_get_SSL_CTX(given) else { throw SSLError.usage("the SSL has no SSL_CTX", call: call) }
            return TLSObjects(ssl: given, ctx: owner, ownsSSL: false, ownsContext: false)
        case .protocol, .context:
            let context = try TLSContextHolder.make(argument, side: side, configuration: configuration, ctxConfigure: ctxConfigure, call: call)
            return try make(on: context, side: side, configuration: configuration, sslConfigure: sslConfigure, hostName: hostName,
                            identityLater: identityLater, call: call)
        }
    }

    /// Makes an `SSL` on `context` (taking over the context's ownership when it made the context):
    /// the configuration's connection settings, then the `sslConfigure` hooks.
    package static func make(on context: TLSContextHolder, side: SSLSide, configuration: TLSConfiguration,
                             sslConfigure: ((SSLPointer) throws -> Void)?, hostName: String?, identityLater: Bool = false,
                             call: String, takeContext: Bool = true) throws -> TLSObjects {
        try ensureSSL()
        // The identity is resolved before anything is made: an empty or malformed name fails alike
        // for every entry point.
        let identity = try hostName.map { try PeerIdentity($0, call: call) }
        let made = try sslNew(context.ctx)
        SSLStreamCensus.track(made.rawValue)
        do {
            try configuration.configure(connection: made, side: side, identity: identity, pinned: context.pinned,
                                        datagram: context.datagram, identityLater: identityLater, call: call)
            try configuration.sslConfigure?(made)
            try sslConfigure?(made)
        } catch {
            COpenSSL.SSL_free(made.rawValue)
            throw error
        }
        let owns = takeContext && context.disown()
        return TLSObjects(ssl: made, ctx: context.ctx, ownsSSL: true, ownsContext: owns)
    }

    /// Frees what was made here (once); takes the library's BIO off a caller's `SSL`.
    /// - Corresponds: `SSL_free`, `SSL_CTX_free`, `SSL_set_bio`.
    package func release() {
        guard !released else { return }
        released = true
        if ownsSSL {
            COpenSSL.SSL_free(ssl.rawValue)  // frees its BIOs too
        } else {
            COpenSSL.SSL_set_bio(ssl.rawValue, nil, nil)  // frees the library's BIO, leaves the SSL
        }
        if ownsContext { COpenSSL.SSL_CTX_free(ctx.rawValue) }
    }

    deinit { release() }
}

/// Whether an `SSL_METHOD` is one of DTLS's.
private func isDatagramMethod(_ method: OpaquePointer) -> Bool {
    method == COpenSSL.DTLS_method() || method == COpenSSL.DTLS_client_method() || method == COpenSSL.DTLS_server_method()
}

/// An `SSL_CTX` for connections: made from a protocol symbol (configured, and freed by this holder
/// unless a ``TLSObjects`` took it over) or the caller's (never freed).
///
/// `Sendable`: listeners that accept on several threads share one; whether it still owns the context is
/// an atomic flag, so the context is freed once.
package final class TLSContextHolder: Sendable {
    package let ctx: SSLContextPointer
    /// The protocol pins one version.
    package let pinned: Bool
    /// DTLS.
    package let datagram: Bool
    private let owns: Atomic<Bool>

    private init(ctx: SSLContextPointer, owns: Bool, pinned: Bool, datagram: Bool) {
        self.ctx = ctx; self.owns = Atomic(owns); self.pinned = pinned; self.datagram = datagram
    }

    /// A protocol symbol makes a context (the configuration's context settings, then its and the entry
    /// point's `ctxConfigure`); a caller's context is taken as it is, once the configuration was checked
    /// to need nothing of it (``TLSConfiguration/checkApplicable(toCallersContext:)``).
    /// - Corresponds: `SSL_CTX_new`, `SSL_CTX_get_ssl_method`.
    package static func make(_ argument: SSLContextArgument, side: SSLSide, configuration: TLSConfiguration,
                             ctxConfigure: ((SSLContextPointer) throws -> Void)?, call: String) throws -> TLSContextHolder {
        try ensureSSL()
        switch argument {
        case .protocol(let proto):
            let made = try makeSSLCtx(protocol: proto, side: side)
            SSLStreamCensus.track(context: made.rawValue)
            let holder = TLSContextHolder(ctx: made, owns: true, pinned: proto.isPinned, datagram: proto.isDatagram)
            try configuration.configure(context: made, side: side)
            try configuration.ctxConfigure?(made)
            try ctxConfigure?(made)
            return holder
        case .context(let given):
            try configuration.checkApplicable(toCallersContext: call)
            let datagram = COpenSSL.SSL_CTX_get_ssl_method(given.rawValue).map { isDatagramMethod($0) } ?? false
            return TLSContextHolder(ctx: given, owns: false, pinned: false, datagram: datagram)
        case .connection:
            throw SSLError.usage("a connection (SSL) has no context to hold", call: call)
        }
    }

    /// Gives up ownership (to a ``TLSObjects``); true when this holder owned the context.
    package func disown() -> Bool { owns.exchange(false, ordering: .acquiringAndReleasing) }

    /// Whether this holder frees the context.
    package var ownsContext: Bool { owns.load(ordering: .acquiring) }

    /// Frees the context if this holder made it and still owns it.
    package func release() {
        if owns.exchange(false, ordering: .acquiringAndReleasing) { COpenSSL.SSL_CTX_free(ctx.rawValue) }
    }

    deinit { release() }
}
