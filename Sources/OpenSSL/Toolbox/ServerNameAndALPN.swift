import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_AD_INTERNAL_ERROR
import var OpenSSLFLI.SSL_AD_UNRECOGNIZED_NAME
import var OpenSSLFLI.SSL_TLSEXT_ERR_ALERT_FATAL
import var OpenSSLFLI.SSL_TLSEXT_ERR_NOACK
import var OpenSSLFLI.SSL_TLSEXT_ERR_OK
import var OpenSSLFLI.TLSEXT_NAMETYPE_host_name

// MARK: SNI

/// A server's SNI callback: sees the name the client asked for (nil when it sent none) and returns the
/// context to continue with (certificate per name), or nil to keep the current one. A thrown error
/// refuses the handshake (alert `unrecognized_name`) and is rethrown by the call that drove it.
public typealias SSLServerNameCallback = @Sendable (_ ssl: SSLPointer, _ serverName: String?) throws -> SSLContextPointer?

private let serverNameTrampoline: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = { ssl, alert, _ in
    guard let ssl = SSLPointer(ssl), let callback: SSLServerNameCallback = CallbackRegistry.lookup(.serverName, for: ssl) else {
        return SSL_TLSEXT_ERR_NOACK
    }
    do {
        guard let next = try callback(ssl, ssl.serverName) else { return SSL_TLSEXT_ERR_OK }
        if let current = COpenSSL.SSL_get_SSL_CTX(ssl.rawValue), current != next.rawValue {
            // Callbacks still set on the first context stay reachable after the switch.
            let own = CallbackRegistry.of(ssl)
            if own.closure(.originContext) == nil,
               let origin = CallbackRegistry.existing(SSLContextPointer(current)) {
                own.setClosure(.originContext, origin)
            }
            guard COpenSSL.SSL_set_SSL_CTX(ssl.rawValue, next.rawValue) != nil else {
                CallbackRegistry.storePendingError(SSLError.fromQueue(call: "SSL_set_SSL_CTX", kind: .failure,
                                                                      message: "cannot switch to the context for this server name"))
                alert?.pointee = Int32(SSL_AD_INTERNAL_ERROR)
                return SSL_TLSEXT_ERR_ALERT_FATAL
            }
        }
        return SSL_TLSEXT_ERR_OK
    } catch {
        CallbackRegistry.storePendingError(error)
        alert?.pointee = Int32(SSL_AD_UNRECOGNIZED_NAME)
        return SSL_TLSEXT_ERR_ALERT_FATAL
    }
}

extension SSLContextPointer {
    /// Sets (or with nil removes) the server's SNI callback (`SSL_CTX_set_tlsext_servername_callback`).
    /// The closure is kept in the context's ex_data and released when replaced or when the context is freed.
    ///
    /// After a switch (`SSL_set_SSL_CTX`) the connection uses the new context's certificate and key, and
    /// OpenSSL reads most context callbacks (ALPN, key log, status) from the new context: set them there
    /// too. The connection keeps its own callbacks and the verify settings it was made with.
    /// - Corresponds: `SSL_CTX_set_tlsext_servername_callback`.
    public func setServerNameCallback(_ callback: SSLServerNameCallback?) {
        CallbackRegistry.of(self).setClosure(.serverName, callback)
        _ = SSL_CTX_set_tlsext_servername_callback(self, callback == nil ? nil : serverNameTrampoline)
    }
}

extension SSLPointer {
    /// Client: the server name to send (SNI, `SSL_set_tlsext_host_name`). Does not check the
    /// certificate against it: see ``setExpectedHost(_:)``.
    /// - Corresponds: `SSL_set_tlsext_host_name`.
    public func setServerName(_ name: String) throws {
        guard !name.isEmpty else { throw SSLError.usage("the server name is empty", call: "SSL_set_tlsext_host_name") }
        guard !name.utf8.contains(0) else { throw SSLError.usage("the server name contains a NUL byte", call: "SSL_set_tlsext_host_name") }
        guard SSL_set_tlsext_host_name(self, name) == 1 else {
            throw SSLError.fromQueue(call: "SSL_set_tlsext_host_name", message: "cannot send server name \(name)")
        }
    }

    /// The server name: on a server, what the client asked for; on a client, what it sends.
    /// - Corresponds: `SSL_get_servername`.
    public var serverName: String? {
        COpenSSL.SSL_get_servername(rawValue, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }
}

// MARK: ALPN

/// A server's ALPN callback: gets the protocols the client offered, in its order, and returns the one to
/// use (it must be one of them), or nil to go on without ALPN. A thrown error refuses the handshake
/// (alert `no_application_protocol`) and is rethrown by the call that drove it.
public typealias SSLALPNSelectCallback = @Sendable (_ ssl: SSLPointer, _ offered: [String]) throws -> String?

/// The longest ALPN list accepted, in wire bytes. The list travels in one ClientHello extension whose
/// length field has 16 bits, beside the other extensions; half of that leaves room for them, and is far
/// above any real list (a few dozen bytes).
public let alpnWireFormatLimit = 32 * 1024

/// The ALPN wire format: each protocol name preceded by its length. Refuses an empty name, a name over
/// 255 bytes, a name with a NUL byte and a list over ``alpnWireFormatLimit`` bytes, naming `call`.
/// - Corresponds: none (the encoding `SSL_CTX_set_alpn_protos` / `SSL_set_alpn_protos` take).
public func alpnWireFormat(_ protocols: [String], call: String = "SSL_CTX_set_alpn_protos") throws -> [UInt8] {
    var wire: [UInt8] = []
    for name in protocols {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 255 else {
            throw SSLError.usage("an ALPN protocol name has 1 to 255 bytes (\"\(name.prefix(40))\" has \(bytes.count))", call: call)
        }
        guard !bytes.contains(0) else { throw SSLError.usage("an ALPN protocol name contains a NUL byte", call: call) }
        wire.append(UInt8(bytes.count))
        wire += bytes
        guard wire.count <= alpnWireFormatLimit else {
            throw SSLError.usage("the ALPN list is longer than \(alpnWireFormatLimit) bytes (\(protocols.count) names)", call: call)
        }
    }
    return wire
}

/// Splits the ALPN wire format into (offset, length) of each name.
private func alpnEntries(_ wire: UnsafeBufferPointer<UInt8>) -> [(offset: Int, length: Int)] {
    var entries: [(Int, Int)] = []
    var i = 0
    while i < wire.count {
        let length = Int(wire[i])
        guard length > 0, i + 1 + length <= wire.count else { break }
        entries.append((i + 1, length))
        i += 1 + length
    }
    return entries
}

private let alpnSelectTrampoline: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
                                                  UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?) -> Int32 = { ssl, out, outlen, input, inlen, _ in
    guard let ssl = SSLPointer(ssl), let out, let outlen, let input,
          let callback: SSLALPNSelectCallback = CallbackRegistry.lookup(.alpnSelect, for: ssl) else {
        return SSL_TLSEXT_ERR_NOACK
    }
    let wire = UnsafeBufferPointer(start: input, count: Int(inlen))
    let entries = alpnEntries(wire)
    let offered = entries.map { String(decoding: UnsafeBufferPointer(rebasing: wire[$0.offset..<($0.offset + $0.length)]), as: UTF8.self) }
    do {
        guard let chosen = try callback(ssl, offered) else { return SSL_TLSEXT_ERR_NOACK }
        guard let index = offered.firstIndex(of: chosen) else {
            CallbackRegistry.storePendingError(SSLError.usage("the ALPN callback chose \"\(chosen)\", which the client did not offer (\(offered))",
                                                              call: "SSL_CTX_set_alpn_select_cb"))
            return SSL_TLSEXT_ERR_ALERT_FATAL
        }
        // OpenSSL wants a pointer into the client's list, which lives until the callback returns.
        out.pointee = input + entries[index].offset
        outlen.pointee = UInt8(entries[index].length)
        return SSL_TLSEXT_ERR_OK
    } catch {
        CallbackRegistry.storePendingError(error)
        return SSL_TLSEXT_ERR_ALERT_FATAL
    }
}

extension SSLContextPointer {
    /// Client: the protocols to offer by ALPN, most preferred first (`SSL_CTX_set_alpn_protos`).
    /// - Corresponds: `SSL_CTX_set_alpn_protos`.
    public func setALPNProtocols(_ protocols: [String]) throws {
        let wire = try alpnWireFormat(protocols)
        // SSL_CTX_set_alpn_protos returns 0 on success.
        guard COpenSSL.SSL_CTX_set_alpn_protos(rawValue, wire, UInt32(wire.count)) == 0 else {
            throw SSLError.fromQueue(call: "SSL_CTX_set_alpn_protos")
        }
    }

    /// Server: sets (or with nil removes) the ALPN select callback (`SSL_CTX_set_alpn_select_cb`).
    /// - Corresponds: `SSL_CTX_set_alpn_select_cb`.
    public func setALPNSelectCallback(_ callback: SSLALPNSelectCallback?) {
        CallbackRegistry.of(self).setClosure(.alpnSelect, callback)
        COpenSSL.SSL_CTX_set_alpn_select_cb(rawValue, callback == nil ? nil : alpnSelectTrampoline, nil)
    }

    /// Server: selects the first of `supported` (the server's order of preference) that the client
    /// offered; without a match, goes on without ALPN, or refuses the handshake when `required`.
    public func setALPNServerProtocols(_ supported: [String], required: Bool = false) {
        setALPNSelectCallback { _, offered in
            if let match = supported.first(where: offered.contains) { return match }
            if required {
                throw SSLError(kind: .failure, call: "SSL_CTX_set_alpn_select_cb",
                               message: "no application protocol in common (client offered \(offered), server supports \(supported))")
            }
            return nil
        }
    }
}

extension SSLPointer {
    /// Client: the protocols to offer by ALPN for this connection (`SSL_set_alpn_protos`).
    /// - Corresponds: `SSL_set_alpn_protos`.
    public func setALPNProtocols(_ protocols: [String]) throws {
        let wire = try alpnWireFormat(protocols, call: "SSL_set_alpn_protos")
        guard COpenSSL.SSL_set_alpn_protos(rawValue, wire, UInt32(wire.count)) == 0 else {
            throw SSLError.fromQueue(call: "SSL_set_alpn_protos")
        }
    }

    /// The protocol ALPN settled on (`SSL_get0_alpn_selected`), nil when none.
    /// - Corresponds: `SSL_get0_alpn_selected`.
    public var alpnSelected: String? {
        let (data, length) = SSL_get0_alpn_selected(self)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }
}
