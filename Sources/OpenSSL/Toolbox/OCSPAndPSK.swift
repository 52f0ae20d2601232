import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_TLSEXT_ERR_ALERT_FATAL
import var OpenSSLFLI.SSL_TLSEXT_ERR_NOACK
import var OpenSSLFLI.SSL_TLSEXT_ERR_OK
import var OpenSSLFLI.TLS1_3_VERSION
import var OpenSSLFLI.TLSEXT_STATUSTYPE_ocsp

// MARK: OCSP stapling

/// Server: returns the DER OCSP response to staple for a connection, or nil to staple nothing.
/// A thrown error fails the handshake and is rethrown by the call that drove it.
public typealias SSLOCSPResponder = @Sendable (_ ssl: SSLPointer) throws -> [UInt8]?

/// Client: sees the stapled DER OCSP response (nil when the server stapled none) and returns whether
/// to go on; false or a thrown error fails the handshake.
public typealias SSLOCSPResponseCallback = @Sendable (_ ssl: SSLPointer, _ response: [UInt8]?) throws -> Bool

// One C callback serves both sides (OpenSSL has one slot): the server staples, the client checks.
private let statusTrampoline: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { ssl, _ in
    guard let ssl = SSLPointer(ssl) else { return 0 }
    if COpenSSL.SSL_is_server(ssl.rawValue) == 1 {
        guard let responder: SSLOCSPResponder = CallbackRegistry.lookup(.ocspResponder, for: ssl) else { return SSL_TLSEXT_ERR_NOACK }
        do {
            guard let der = try responder(ssl), !der.isEmpty else { return SSL_TLSEXT_ERR_NOACK }
            // OpenSSL takes the buffer and frees it with OPENSSL_free.
            guard let copy = COpenSSL.CRYPTO_malloc(der.count, #fileID, #line) else { return SSL_TLSEXT_ERR_ALERT_FATAL }
            der.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: der.count) }
            guard SSL_set_tlsext_status_ocsp_resp(ssl, copy, der.count) == 1 else {
                COpenSSL.CRYPTO_free(copy, #fileID, #line)
                return SSL_TLSEXT_ERR_ALERT_FATAL
            }
            return SSL_TLSEXT_ERR_OK
        } catch {
            CallbackRegistry.storePendingError(error)
            return SSL_TLSEXT_ERR_ALERT_FATAL
        }
    }
    guard let check: SSLOCSPResponseCallback = CallbackRegistry.lookup(.ocspCheck, for: ssl) else { return 1 }
    do {
        return try check(ssl, ssl.ocspResponse) ? 1 : 0
    } catch {
        CallbackRegistry.storePendingError(error)
        return -1
    }
}

extension SSLContextPointer {
    /// Server: sets (or with nil removes) the OCSP responder whose answer is stapled when a client asks
    /// (`SSL_CTX_set_tlsext_status_cb` + `SSL_set_tlsext_status_ocsp_resp`).
    public func setOCSPResponder(_ responder: SSLOCSPResponder?) {
        let registry = CallbackRegistry.of(self)
        registry.setClosure(.ocspResponder, responder)
        installStatusCallback(registry)
    }

    /// Server: staples this DER OCSP response (for the context's certificate) to every handshake whose
    /// client asks for it.
    public func setStapledOCSPResponse(_ der: [UInt8]) {
        setOCSPResponder { _ in der }
    }

    /// Client: asks servers for a stapled OCSP response (`SSL_CTX_set_tlsext_status_type`) and, with a
    /// callback, checks it during the handshake. The response is readable afterwards with
    /// ``SSLPointer/ocspResponse``.
    /// - Corresponds: `SSL_CTX_set_tlsext_status_type`.
    public func requestOCSPStatus(_ callback: SSLOCSPResponseCallback? = nil) throws {
        guard SSL_CTX_set_tlsext_status_type(self, Int(TLSEXT_STATUSTYPE_ocsp)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_tlsext_status_type")
        }
        let registry = CallbackRegistry.of(self)
        registry.setClosure(.ocspCheck, callback)
        installStatusCallback(registry)
    }

    private func installStatusCallback(_ registry: CallbackRegistry) {
        let needed = registry.closure(.ocspResponder) != nil
            || registry.closure(.ocspCheck) != nil
        _ = SSL_CTX_set_tlsext_status_cb(self, needed ? statusTrampoline : nil)
    }
}

extension SSLPointer {
    /// Client: asks the server of this connection for a stapled OCSP response.
    /// - Corresponds: `SSL_set_tlsext_status_type`.
    public func requestOCSPStatus() throws {
        guard SSL_set_tlsext_status_type(self, Int(TLSEXT_STATUSTYPE_ocsp)) == 1 else {
            throw SSLError.fromQueue(call: "SSL_set_tlsext_status_type")
        }
    }

    /// Client: the DER OCSP response the server stapled, if any (`SSL_get_tlsext_status_ocsp_resp`).
    /// - Corresponds: `SSL_get_tlsext_status_ocsp_resp`.
    public var ocspResponse: [UInt8]? {
        var data: UnsafeMutablePointer<UInt8>?
        let length = SSL_get_tlsext_status_ocsp_resp(self, &data)
        guard length > 0, let data else { return nil }
        return Array(UnsafeBufferPointer(start: data, count: length))
    }
}

// MARK: PSK

/// A pre-shared key and the identity it goes by.
public struct SSLPreSharedKey: Sendable, Hashable {
    /// The identity the client sends (at most 128 bytes for TLS 1.2).
    public var identity: String
    /// The key.
    public var key: [UInt8]
    /// The TLS 1.3 cipher suite the key is used with (its hash must match the peer's: SHA-256 for
    /// `TLS_AES_128_GCM_SHA256`, OpenSSL's choice for external PSKs without one).
    public var tls13Cipher: String

    public init(identity: String, key: [UInt8], tls13Cipher: String = "TLS_AES_128_GCM_SHA256") {
        self.identity = identity; self.key = key; self.tls13Cipher = tls13Cipher
    }
}

/// Client: gets the server's identity hint (TLS 1.2 only, may be nil) and returns the key to use, or
/// nil for none. A thrown error fails the handshake and is rethrown.
public typealias SSLPSKClientCallback = @Sendable (_ ssl: SSLPointer, _ hint: String?) throws -> SSLPreSharedKey?

/// Server: gets the identity the client sent and returns its key, or nil when it is unknown. A thrown
/// error fails the handshake and is rethrown.
public typealias SSLPSKServerCallback = @Sendable (_ ssl: SSLPointer, _ identity: String) throws -> [UInt8]?

/// The TLS 1.3 cipher suites by name, as their two-byte IDs (for `SSL_CIPHER_find`).
private let tls13CipherIDs: [String: [UInt8]] = [
    "TLS_AES_128_GCM_SHA256": [0x13, 0x01], "TLS_AES_256_GCM_SHA384": [0x13, 0x02],
    "TLS_CHACHA20_POLY1305_SHA256": [0x13, 0x03], "TLS_AES_128_CCM_SHA256": [0x13, 0x04],
    "TLS_AES_128_CCM_8_SHA256": [0x13, 0x05],
]

/// A TLS 1.3 external-PSK session for `key` (`SSL_SESSION_new` + master key + cipher + version).
private func makePSKSession(_ ssl: SSLPointer, key: [UInt8], cipherName: String) throws -> OpaquePointer {
    guard let id = tls13CipherIDs[cipherName] else {
        throw SSLError.usage("\(cipherName) is not a TLS 1.3 cipher suite", call: "SSL_CIPHER_find")
    }
    guard let cipher = COpenSSL.SSL_CIPHER_find(ssl.rawValue, id) else {
        throw SSLError.fromQueue(call: "SSL_CIPHER_find", message: "cipher suite \(cipherName) is not available")
    }
    guard let session = COpenSSL.SSL_SESSION_new() else { throw SSLError.fromQueue(call: "SSL_SESSION_new") }
    guard COpenSSL.SSL_SESSION_set1_master_key(session, key, key.count) == 1,
          COpenSSL.SSL_SESSION_set_cipher(session, cipher) == 1,
          COpenSSL.SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) == 1 else {
        COpenSSL.SSL_SESSION_free(session)
        throw SSLError.fromQueue(call: "SSL_SESSION_set1_master_key", message: "cannot make a PSK session")
    }
    return session
}

/// Keeps the identity bytes OpenSSL points to until the connection is freed.
final class IdentityBuffer: @unchecked Sendable {  // immutable: the bytes are written in init and only read after
    let bytes: UnsafeMutablePointer<UInt8>
    let count: Int
    init(_ identity: [UInt8]) {
        count = identity.count
        bytes = .allocate(capacity: max(1, identity.count))
        bytes.initialize(from: identity, count: identity.count)
    }
    deinit { bytes.deallocate() }
}

// TLS 1.3, client: SSL_psk_use_session_cb_func.
private let pskUseSessionTrampoline: @convention(c) (OpaquePointer?, OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                                      UnsafeMutablePointer<Int>?, UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = {
    ssl, md, idOut, idLengthOut, sessionOut in
    sessionOut?.pointee = nil
    guard let ssl = SSLPointer(ssl), let idOut, let idLengthOut, let sessionOut,
          let callback: SSLPSKClientCallback = CallbackRegistry.lookup(.pskClient, for: ssl) else { return 1 }
    do {
        guard let psk = try callback(ssl, nil) else { return 1 }
        let session = try makePSKSession(ssl, key: psk.key, cipherName: psk.tls13Cipher)
        if let md, let cipher = COpenSSL.SSL_SESSION_get0_cipher(session),
           COpenSSL.SSL_CIPHER_get_handshake_digest(cipher) != md {
            COpenSSL.SSL_SESSION_free(session)  // not usable with the hash the handshake settled on
            return 1
        }
        let identity = IdentityBuffer(Array(psk.identity.utf8))
        CallbackRegistry.of(ssl).setClosure(.pskIdentity, identity)
        idOut.pointee = UnsafePointer(identity.bytes)
        idLengthOut.pointee = identity.count
        sessionOut.pointee = session
        return 1
    } catch {
        CallbackRegistry.storePendingError(error)
        return 0
    }
}

// TLS 1.3, server: SSL_psk_find_session_cb_func.
private let pskFindSessionTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = {
    ssl, identity, identityLength, sessionOut in
    sessionOut?.pointee = nil
    guard let ssl = SSLPointer(ssl), let sessionOut,
          let callback: SSLPSKServerCallback = CallbackRegistry.lookup(.pskServer, for: ssl) else { return 1 }
    let name = identity.map { String(decoding: UnsafeBufferPointer(start: $0, count: identityLength), as: UTF8.self) } ?? ""
    do {
        guard let key = try callback(ssl, name) else { return 1 }
        let cipher: String = CallbackRegistry.lookup(.pskServerCipher, for: ssl) ?? "TLS_AES_128_GCM_SHA256"
        sessionOut.pointee = try makePSKSession(ssl, key: key, cipherName: cipher)
        return 1
    } catch {
        CallbackRegistry.storePendingError(error)
        return 0
    }
}

// TLS 1.2, client: SSL_psk_client_cb_func.
private let pskClientTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UInt32,
                                                  UnsafeMutablePointer<UInt8>?, UInt32) -> UInt32 = {
    ssl, hint, identityOut, maxIdentity, pskOut, maxPSK in
    guard let ssl = SSLPointer(ssl), let identityOut, let pskOut,
          let callback: SSLPSKClientCallback = CallbackRegistry.lookup(.pskClient, for: ssl) else { return 0 }
    do {
        guard let psk = try callback(ssl, hint.map { String(cString: $0) }) else { return 0 }
        let identity = Array(psk.identity.utf8)
        guard identity.count < Int(maxIdentity), psk.key.count <= Int(maxPSK), !psk.key.isEmpty else {
            throw SSLError.usage("the PSK identity (\(identity.count) bytes, at most \(Int(maxIdentity) - 1)) or key (\(psk.key.count) bytes, at most \(maxPSK)) does not fit",
                                 call: "SSL_CTX_set_psk_client_callback")
        }
        identity.withUnsafeBytes { UnsafeMutableRawPointer(identityOut).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(identityOut), byteCount: identity.count) }
        identityOut[identity.count] = 0
        psk.key.withUnsafeBytes { UnsafeMutableRawPointer(pskOut).copyMemory(from: $0.baseAddress!, byteCount: psk.key.count) }
        return UInt32(psk.key.count)
    } catch {
        CallbackRegistry.storePendingError(error)
        return 0
    }
}

// TLS 1.2, server: SSL_psk_server_cb_func.
private let pskServerTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<UInt8>?, UInt32) -> UInt32 = {
    ssl, identity, pskOut, maxPSK in
    guard let ssl = SSLPointer(ssl), let pskOut,
          let callback: SSLPSKServerCallback = CallbackRegistry.lookup(.pskServer, for: ssl) else { return 0 }
    do {
        guard let key = try callback(ssl, identity.map { String(cString: $0) } ?? ""), !key.isEmpty else { return 0 }
        guard key.count <= Int(maxPSK) else {
            throw SSLError.usage("the PSK has \(key.count) bytes, at most \(maxPSK) fit", call: "SSL_CTX_set_psk_server_callback")
        }
        key.withUnsafeBytes { UnsafeMutableRawPointer(pskOut).copyMemory(from: $0.baseAddress!, byteCount: key.count) }
        return UInt32(key.count)
    } catch {
        CallbackRegistry.storePendingError(error)
        return 0
    }
}

extension SSLContextPointer {
    /// Client: sets (or with nil removes) the PSK callback, for TLS 1.3 external PSKs
    /// (`SSL_CTX_set_psk_use_session_callback`) and TLS 1.2 PSK cipher suites
    /// (`SSL_CTX_set_psk_client_callback`). With PSK only, no certificate is needed on either side.
    /// - Corresponds: `SSL_CTX_set_psk_client_callback`, `SSL_CTX_set_psk_use_session_callback`.
    public func setPSKClientCallback(_ callback: SSLPSKClientCallback?) {
        CallbackRegistry.of(self).setClosure(.pskClient, callback)
        COpenSSL.SSL_CTX_set_psk_use_session_callback(rawValue, callback == nil ? nil : pskUseSessionTrampoline)
        COpenSSL.SSL_CTX_set_psk_client_callback(rawValue, callback == nil ? nil : pskClientTrampoline)
    }

    /// Server: sets (or with nil removes) the PSK lookup, for TLS 1.3 (`SSL_CTX_set_psk_find_session_callback`,
    /// the key used with `tls13Cipher`) and TLS 1.2 (`SSL_CTX_set_psk_server_callback`).
    /// - Corresponds: `SSL_CTX_set_psk_find_session_callback`, `SSL_CTX_set_psk_server_callback`.
    public func setPSKServerCallback(tls13Cipher: String = "TLS_AES_128_GCM_SHA256", _ callback: SSLPSKServerCallback?) {
        let registry = CallbackRegistry.of(self)
        registry.setClosure(.pskServer, callback)
        registry.setClosure(.pskServerCipher, callback == nil ? nil : tls13Cipher)
        COpenSSL.SSL_CTX_set_psk_find_session_callback(rawValue, callback == nil ? nil : pskFindSessionTrampoline)
        COpenSSL.SSL_CTX_set_psk_server_callback(rawValue, callback == nil ? nil : pskServerTrampoline)
    }

    /// Server, TLS 1.2: the identity hint sent to clients (`SSL_CTX_use_psk_identity_hint`).
    /// - Corresponds: `SSL_CTX_use_psk_identity_hint`.
    public func setPSKIdentityHint(_ hint: String) throws {
        guard COpenSSL.SSL_CTX_use_psk_identity_hint(rawValue, hint) == 1 else {
            throw SSLError.fromQueue(call: "SSL_CTX_use_psk_identity_hint")
        }
    }
}
