import COpenSSL
import OpenSSLFLI
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.DTLS1_2_VERSION
import var OpenSSLFLI.TLS1_1_VERSION
import var OpenSSLFLI.TLS1_2_VERSION
import var OpenSSLFLI.TLS1_3_VERSION
import var OpenSSLFLI.TLS1_VERSION

/// The protocol a context speaks (LispWorks' ssl-ctx symbols).
public enum SSLProtocol: Sendable, Hashable, CaseIterable {
    /// The flexible TLS method, every version the library allows (TLS 1.2 and 1.3 on Debian's defaults).
    case `default`
    /// The same as ``default`` (LispWorks' `:v23`).
    case v23
    /// SSL 2.0: OpenSSL 3 has none; refused.
    case v2
    /// SSL 3.0: OpenSSL 3 has none; refused.
    case v3
    /// TLS 1.0 only. Debian's default security level refuses it at handshake time.
    case tlsV1
    /// TLS 1.1 only. Debian's default security level refuses it at handshake time.
    case tlsV1_1
    /// TLS 1.2 only.
    case tlsV1_2
    /// TLS 1.3 only.
    case tlsV1_3
    /// DTLS, every version the library allows.
    case dtls
    /// DTLS 1.2 only.
    case dtlsV1_2

    /// The pinned version (min = max), or nil for the flexible methods.
    var pinnedVersion: Int32? {
        switch self {
        case .tlsV1: return TLS1_VERSION
        case .tlsV1_1: return TLS1_1_VERSION
        case .tlsV1_2: return TLS1_2_VERSION
        case .tlsV1_3: return TLS1_3_VERSION
        case .dtlsV1_2: return DTLS1_2_VERSION
        default: return nil
        }
    }
}

/// Which end of the connection a context or connection is for.
public enum SSLSide: Sendable, Hashable {
    case client, server
    /// Either: neither connect nor accept state is set.
    case both
}

/// Makes an `SSL_CTX` (LispWorks' `make-ssl-ctx`). Free it with ``destroySSLCtx(_:)``.
///
/// Goes through `ensureSSL(alreadyDone:libraryPath:)` first. `.v2` and `.v3` throw: OpenSSL 3 has neither.
/// - Corresponds: `DTLS_client_method`, `DTLS_method`, `DTLS_server_method`, `SSL_CTX_free`, `SSL_CTX_new`,
///   `SSL_CTX_set_max_proto_version`, `SSL_CTX_set_min_proto_version`, `TLS_client_method`, `TLS_method`,
///   `TLS_server_method`.
public func makeSSLCtx(protocol proto: SSLProtocol = .default, side: SSLSide = .both) throws -> SSLContextPointer {
    try ensureSSL()
    let method: OpaquePointer?
    switch (proto, side) {
    case (.v2, _), (.v3, _):
        throw SSLError.usage("\(proto == .v2 ? "SSLv2" : "SSLv3") is not available: OpenSSL 3 removed it; use .default (TLS 1.2/1.3)",
                             call: "makeSSLCtx")
    case (.dtls, .client), (.dtlsV1_2, .client): method = COpenSSL.DTLS_client_method()
    case (.dtls, .server), (.dtlsV1_2, .server): method = COpenSSL.DTLS_server_method()
    case (.dtls, .both), (.dtlsV1_2, .both): method = COpenSSL.DTLS_method()
    case (_, .client): method = COpenSSL.TLS_client_method()
    case (_, .server): method = COpenSSL.TLS_server_method()
    case (_, .both): method = COpenSSL.TLS_method()
    }
    guard let raw = COpenSSL.SSL_CTX_new(method) else { throw SSLError.fromQueue(call: "SSL_CTX_new") }
    let ctx = SSLContextPointer(raw)
    if let version = proto.pinnedVersion {
        guard SSL_CTX_set_min_proto_version(ctx, Int(version)) == 1, SSL_CTX_set_max_proto_version(ctx, Int(version)) == 1 else {
            let error = SSLError.fromQueue(call: "SSL_CTX_set_min_proto_version", message: "cannot pin the protocol version to \(proto)")
            COpenSSL.SSL_CTX_free(raw)
            throw error
        }
    }
    return ctx
}

/// Frees an `SSL_CTX` made by ``makeSSLCtx(protocol:side:)`` (`SSL_CTX_free`; closures kept for it are
/// released).
/// - Corresponds: `SSL_CTX_free`.
public func destroySSLCtx(_ ctx: SSLContextPointer) { COpenSSL.SSL_CTX_free(ctx.rawValue) }

/// Makes an `SSL` for a context (`SSL_new`). Free it with ``destroySSL(_:)``.
/// - Corresponds: `SSL_new`.
public func sslNew(_ ctx: SSLContextPointer) throws -> SSLPointer {
    guard let raw = COpenSSL.SSL_new(ctx.rawValue) else { throw SSLError.fromQueue(call: "SSL_new") }
    return SSLPointer(raw)
}

/// Frees an `SSL` (`SSL_free`; also frees the BIOs attached to it).
/// - Corresponds: `SSL_free`.
public func destroySSL(_ ssl: SSLPointer) { COpenSSL.SSL_free(ssl.rawValue) }

/// An owned `SSL_CTX` (rust-openssl's `SslContext`, swift-nio-ssl's `NIOSSLContext`): made here and
/// freed when the last reference goes (`SSL_CTX_free`). Its ``pointer`` is the handle for direct calls
/// and for the toolbox; pass the object itself where a context is taken (`.context(sslContext)`).
///
/// A connection made from it holds OpenSSL's own reference to the context (`SSL_new` takes one), so the
/// object may go before its connections do. Sendable: once configured, one `SSL_CTX` serves connections
/// on many threads (OpenSSL locks what they share); configure it before sharing it.
public final class SSLContext: @unchecked Sendable {  // SSL_CTX is reference-counted and thread-safe for SSL_new
    /// The handle, for direct calls (valid while this object lives).
    public let pointer: SSLContextPointer

    /// Makes a context (``makeSSLCtx(protocol:side:)``).
    /// - Corresponds: `SSL_CTX_new`.
    public init(protocol proto: SSLProtocol = .default, side: SSLSide = .both) throws {
        pointer = try makeSSLCtx(protocol: proto, side: side)
    }

    /// Takes ownership of a context made elsewhere (this object frees it).
    public init(taking pointer: SSLContextPointer) { self.pointer = pointer }

    /// Shares a context made elsewhere: takes a reference of its own (`SSL_CTX_up_ref`), so the caller
    /// still frees theirs.
    /// - Corresponds: `SSL_CTX_up_ref`.
    public init(sharing pointer: SSLContextPointer) {
        _ = COpenSSL.SSL_CTX_up_ref(pointer.rawValue)
        self.pointer = pointer
    }

    deinit { COpenSSL.SSL_CTX_free(pointer.rawValue) }
}

/// An owned `SSL` (rust-openssl's `Ssl`): made from an ``SSLContext`` and freed when the last reference
/// goes (`SSL_free`, which also frees its BIOs). Its ``pointer`` is the handle for direct calls. Not
/// Sendable: one connection is used by one thread at a time.
public final class SSLConnection {
    /// The handle, for direct calls (valid while this object lives).
    public let pointer: SSLPointer

    /// Makes a connection on `context` (which it keeps alive through OpenSSL's own reference).
    /// - Corresponds: `SSL_new`.
    public init(context: SSLContext) throws { pointer = try sslNew(context.pointer) }

    /// Takes ownership of a connection made elsewhere (this object frees it).
    public init(taking pointer: SSLPointer) { self.pointer = pointer }

    deinit { COpenSSL.SSL_free(pointer.rawValue) }
}
