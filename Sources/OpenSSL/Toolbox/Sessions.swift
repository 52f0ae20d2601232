import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_MAX_SID_CTX_LENGTH
import var OpenSSLFLI.SSL_SESS_CACHE_BOTH
import var OpenSSLFLI.SSL_SESS_CACHE_CLIENT
import var OpenSSLFLI.SSL_SESS_CACHE_NO_AUTO_CLEAR
import var OpenSSLFLI.SSL_SESS_CACHE_NO_INTERNAL
import var OpenSSLFLI.SSL_SESS_CACHE_NO_INTERNAL_LOOKUP
import var OpenSSLFLI.SSL_SESS_CACHE_NO_INTERNAL_STORE
import var OpenSSLFLI.SSL_SESS_CACHE_SERVER
import var OpenSSLFLI.TLS1_3_VERSION

/// A TLS session that frees itself (`SSL_SESSION_free`): what a client keeps to resume a connection.
public final class SSLSession: @unchecked Sendable {  // immutable handle; a session is reference-counted and may be offered on any thread
    /// The session, valid while this object lives. Pass it to direct calls; do not free it.
    public let pointer: SSLSessionPointer

    /// Takes ownership of a session reference.
    public init(taking pointer: SSLSessionPointer) { self.pointer = pointer }

    /// Keeps a session OpenSSL owns (takes a reference with `SSL_SESSION_up_ref`).
    /// - Corresponds: `SSL_SESSION_up_ref`.
    public init(retaining pointer: SSLSessionPointer) {
        COpenSSL.SSL_SESSION_up_ref(pointer.rawValue)
        self.pointer = pointer
    }

    /// Reads a session saved with ``der()`` (`d2i_SSL_SESSION`).
    /// - Corresponds: `d2i_SSL_SESSION`.
    public init(der: [UInt8]) throws {
        try ensureSSL()
        let session: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return COpenSSL.d2i_SSL_SESSION(nil, &cursor, buffer.count)
        }
        guard let session else { throw SSLError.fromQueue(call: "d2i_SSL_SESSION", message: "not a DER-encoded TLS session") }
        pointer = SSLSessionPointer(session)
    }

    deinit { COpenSSL.SSL_SESSION_free(pointer.rawValue) }

    /// The session in DER form (`i2d_SSL_SESSION`), to keep it beyond this process. It holds the
    /// session's secret: store it as a secret.
    /// - Corresponds: `i2d_SSL_SESSION`.
    public func der() throws -> [UInt8] {
        let length = COpenSSL.i2d_SSL_SESSION(pointer.rawValue, nil)
        guard length > 0 else { throw SSLError.fromQueue(call: "i2d_SSL_SESSION") }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return COpenSSL.i2d_SSL_SESSION(pointer.rawValue, &cursor)
        }
        guard written == length else { throw SSLError.fromQueue(call: "i2d_SSL_SESSION") }
        return bytes
    }

    /// Whether the session can resume a connection (`SSL_SESSION_is_resumable`).
    /// - Corresponds: `SSL_SESSION_is_resumable`.
    public var isResumable: Bool { COpenSSL.SSL_SESSION_is_resumable(pointer.rawValue) == 1 }
    /// The protocol version (`TLS1_3_VERSION` …).
    /// - Corresponds: `SSL_SESSION_get_protocol_version`.
    public var protocolVersion: Int32 { COpenSSL.SSL_SESSION_get_protocol_version(pointer.rawValue) }
    /// The session's lifetime in seconds.
    /// - Corresponds: `SSL_SESSION_get_timeout`.
    public var timeout: Int { COpenSSL.SSL_SESSION_get_timeout(pointer.rawValue) }
    /// Whether the server gave a ticket for it.
    /// - Corresponds: `SSL_SESSION_has_ticket`.
    public var hasTicket: Bool { COpenSSL.SSL_SESSION_has_ticket(pointer.rawValue) == 1 }
    /// The session ID (empty for TLS 1.3 ticket sessions on some servers).
    /// - Corresponds: `SSL_SESSION_get_id`.
    public var id: [UInt8] {
        var length: UInt32 = 0
        guard let bytes = COpenSSL.SSL_SESSION_get_id(pointer.rawValue, &length) else { return [] }
        return Array(UnsafeBufferPointer(start: bytes, count: Int(length)))
    }
}

/// `SSL_SESS_CACHE_*` modes of a context's session cache.
public struct SSLSessionCacheMode: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// `SSL_SESS_CACHE_OFF`.
    public static let off = SSLSessionCacheMode([])
    /// `SSL_SESS_CACHE_CLIENT`: client sessions are cached (and passed to the new-session callback).
    public static let client = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_CLIENT))
    /// `SSL_SESS_CACHE_SERVER`: the server keeps sessions for resumption by session ID (its default).
    public static let server = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_SERVER))
    /// `SSL_SESS_CACHE_BOTH`.
    public static let both = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_BOTH))
    /// `SSL_SESS_CACHE_NO_AUTO_CLEAR`.
    public static let noAutoClear = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_NO_AUTO_CLEAR))
    /// `SSL_SESS_CACHE_NO_INTERNAL_LOOKUP`.
    public static let noInternalLookup = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_NO_INTERNAL_LOOKUP))
    /// `SSL_SESS_CACHE_NO_INTERNAL_STORE`.
    public static let noInternalStore = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_NO_INTERNAL_STORE))
    /// `SSL_SESS_CACHE_NO_INTERNAL`.
    public static let noInternal = SSLSessionCacheMode(rawValue: Int(SSL_SESS_CACHE_NO_INTERNAL))
}

/// Called when a new session is ready to be kept (a client after the handshake or, in TLS 1.3, for each
/// ticket the server sends; a server when it made a session). The session is the callback's to keep.
public typealias SSLNewSessionCallback = @Sendable (_ ssl: SSLPointer, _ session: SSLSession) -> Void

private let newSessionTrampoline: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl = SSLPointer(ssl), let session = SSLSessionPointer(session),
          let callback: SSLNewSessionCallback = CallbackRegistry.lookup(.newSession, for: ssl) else { return 0 }
    // The Swift object takes its own reference; returning 0 leaves OpenSSL's as it was.
    callback(ssl, SSLSession(retaining: session))
    return 0
}

extension SSLContextPointer {
    /// Sets the session cache mode (`SSL_CTX_set_session_cache_mode`) and returns the previous one.
    /// - Corresponds: `SSL_CTX_set_session_cache_mode`.
    @discardableResult
    public func setSessionCacheMode(_ mode: SSLSessionCacheMode) -> SSLSessionCacheMode {
        SSLSessionCacheMode(rawValue: SSL_CTX_set_session_cache_mode(self, mode.rawValue))
    }

    /// The session cache mode.
    /// - Corresponds: `SSL_CTX_get_session_cache_mode`.
    public var sessionCacheMode: SSLSessionCacheMode { SSLSessionCacheMode(rawValue: SSL_CTX_get_session_cache_mode(self)) }

    /// How many sessions the internal cache keeps (`SSL_CTX_sess_set_cache_size`; 0 = no limit).
    /// - Corresponds: `SSL_CTX_sess_get_cache_size`, `SSL_CTX_sess_set_cache_size`.
    public var sessionCacheSize: Int {
        get { SSL_CTX_sess_get_cache_size(self) }
        nonmutating set { _ = SSL_CTX_sess_set_cache_size(self, newValue) }
    }

    /// The number of sessions in the internal cache now (`SSL_CTX_sess_number`).
    /// - Corresponds: `SSL_CTX_sess_number`.
    public var sessionCount: Int { SSL_CTX_sess_number(self) }

    /// The number of resumed handshakes (`SSL_CTX_sess_hits`).
    /// - Corresponds: `SSL_CTX_sess_hits`.
    public var sessionHits: Int { SSL_CTX_sess_hits(self) }

    /// Server: turns stateless session tickets on (the default) or off (`SSL_OP_NO_TICKET`; TLS 1.3
    /// then uses stateful, single-use tickets from the cache).
    /// - Corresponds: `SSL_CTX_clear_options`, `SSL_CTX_set_options`.
    public func setSessionTickets(enabled: Bool) {
        if enabled { _ = SSL_CTX_clear_options(self, SSL_OP_NO_TICKET) } else { _ = SSL_CTX_set_options(self, SSL_OP_NO_TICKET) }
    }

    /// Server: sets the keys stateless session tickets are protected with, instead of the random ones
    /// each context makes for itself — so that several servers (or a restarted one) resume each other's
    /// sessions. `keys` is OpenSSL's 80-byte layout: a 16-byte key name, a 32-byte HMAC-SHA256 key and a
    /// 32-byte AES-256-CBC key. Keep them secret and rotate them: whoever has them can decrypt the
    /// tickets, and so resume (and, before TLS 1.3's (EC)DHE resumption, read) the sessions.
    /// - Throws: `SSLError` (usage) for a key of another length, or OpenSSL's error.
    /// - Corresponds: `SSL_CTX_set_tlsext_ticket_keys`.
    public func setSessionTicketKeys(_ keys: [UInt8]) throws {
        guard keys.count == 80 else {
            throw SSLError.usage("session ticket keys are 80 bytes (16 name, 32 HMAC, 32 AES), not \(keys.count)",
                                 call: "SSL_CTX_set_tlsext_ticket_keys")
        }
        var copy = keys
        let ok = copy.withUnsafeMutableBytes { SSL_CTX_set_tlsext_ticket_keys(self, $0.baseAddress, $0.count) }
        guard ok == 1 else { throw SSLError.fromQueue(call: "SSL_CTX_set_tlsext_ticket_keys") }
    }

    /// Server: the number of TLS 1.3 tickets sent after a full handshake (`SSL_CTX_set_num_tickets`; 2 by default).
    /// - Corresponds: `SSL_CTX_get_num_tickets`, `SSL_CTX_set_num_tickets`.
    public var ticketCount: Int {
        get { COpenSSL.SSL_CTX_get_num_tickets(rawValue) }
        nonmutating set { _ = COpenSSL.SSL_CTX_set_num_tickets(rawValue, newValue) }
    }

    /// Server: the session ID context (`SSL_CTX_set_session_id_context`): sessions only resume within
    /// the same context. Needed for resumption when client certificates are verified.
    /// - Corresponds: `SSL_CTX_set_session_id_context`.
    public func setSessionIDContext(_ id: String) throws {
        let bytes = Array(id.utf8)
        guard bytes.count <= Int(SSL_MAX_SID_CTX_LENGTH) else {
            throw SSLError.usage("a session ID context has at most \(SSL_MAX_SID_CTX_LENGTH) bytes", call: "SSL_CTX_set_session_id_context")
        }
        guard COpenSSL.SSL_CTX_set_session_id_context(rawValue, bytes, UInt32(bytes.count)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_session_id_context")
        }
    }

    /// Sets (or with nil removes) the new-session callback (`SSL_CTX_sess_set_new_cb`). A client sees
    /// sessions only when the cache mode includes ``SSLSessionCacheMode/client``.
    /// - Corresponds: `SSL_CTX_sess_set_new_cb`.
    public func setNewSessionCallback(_ callback: SSLNewSessionCallback?) {
        CallbackRegistry.of(self).setClosure(.newSession, callback)
        COpenSSL.SSL_CTX_sess_set_new_cb(rawValue, callback == nil ? nil : newSessionTrampoline)
    }
}

extension SSLPointer {
    /// The session of this connection (`SSL_get1_session`), to resume a later one; nil before the
    /// handshake. In TLS 1.3 the resumable session arrives after the handshake, with the first read.
    /// - Corresponds: `SSL_get1_session`.
    public var session: SSLSession? { COpenSSL.SSL_get1_session(rawValue).map { SSLSession(taking: SSLSessionPointer($0)) } }

    /// Client: offers a session to resume (`SSL_set_session`); call before the handshake.
    /// - Corresponds: `SSL_set_session`.
    public func setSession(_ session: SSLSession) throws {
        guard COpenSSL.SSL_set_session(rawValue, session.pointer.rawValue) == 1 else {
            throw SSLError.fromQueue(call: "SSL_set_session")
        }
    }

    /// Whether the handshake resumed a session (`SSL_session_reused`).
    /// - Corresponds: `SSL_session_reused`.
    public var isSessionReused: Bool { COpenSSL.SSL_session_reused(rawValue) == 1 }
}

/// A small client-side session cache keyed by "host:port", for resuming connections to the same server.
///
/// ``install(on:)`` sets the context's client cache mode and new-session callback, so that sessions
/// (TLS 1.2 sessions and TLS 1.3 tickets) are kept as they arrive; ``prepare(_:key:)`` names the
/// connection's key and offers the kept session, if any. The least recently used keys are dropped
/// beyond `capacity`. TLS 1.3 sessions are offered once (tickets are meant for one use); the new
/// handshake brings new ones.
public final class ClientSessionCache: @unchecked Sendable {  // `entries` and `order` are only touched under `lock`
    /// How many keys are kept.
    public let capacity: Int
    private let lock = NSLock()
    private var entries: [String: SSLSession] = [:]
    private var order: [String] = []

    public init(capacity: Int = 64) { self.capacity = max(1, capacity) }

    /// The key for a host and port.
    public static func key(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Lets the context's connections fill this cache (client cache mode + new-session callback).
    /// The context keeps a strong reference to the cache.
    public func install(on ctx: SSLContextPointer) {
        ctx.setSessionCacheMode(ctx.sessionCacheMode.union(.client))
        ctx.setNewSessionCallback { [self] ssl, session in
            guard let key: String = CallbackRegistry.existing(ssl)?.closure(.sessionCacheKey) else { return }
            store(session, for: key)
        }
    }

    /// Names the connection's key and offers the session kept for it; returns whether one was offered.
    @discardableResult
    public func prepare(_ ssl: SSLPointer, key: String) throws -> Bool {
        CallbackRegistry.of(ssl).setClosure(.sessionCacheKey, key)
        guard let session = take(key) else { return false }
        try ssl.setSession(session)
        return true
    }

    /// Keeps a session for a key.
    public func store(_ session: SSLSession, for key: String) {
        guard session.isResumable else { return }
        lock.lock()
        entries[key] = session
        order.removeAll { $0 == key }
        order.append(key)
        var dropped: [SSLSession] = []
        while order.count > capacity { if let old = entries.removeValue(forKey: order.removeFirst()) { dropped.append(old) } }
        lock.unlock()
        _ = dropped  // freed outside the lock
    }

    /// The session kept for a key (removed when it is a TLS 1.3 session, meant for one use).
    public func take(_ key: String) -> SSLSession? {
        lock.lock(); defer { lock.unlock() }
        guard let session = entries[key] else { return nil }
        if session.protocolVersion == TLS1_3_VERSION {
            entries[key] = nil
            order.removeAll { $0 == key }
        }
        return session
    }

    /// The number of keys with a session.
    public var count: Int { lock.lock(); defer { lock.unlock() }; return entries.count }

    /// Forgets every session.
    public func removeAll() { lock.lock(); let old = entries; entries = [:]; order = []; lock.unlock(); _ = old }
}
