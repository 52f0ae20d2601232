import COpenSSL
import OpenSSLFLI
import Foundation
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL3_RT_HANDSHAKE
import var OpenSSLFLI.SSL_CB_ALERT
import var OpenSSLFLI.SSL_CB_EXIT
import var OpenSSLFLI.SSL_CB_HANDSHAKE_DONE
import var OpenSSLFLI.SSL_CB_HANDSHAKE_START
import var OpenSSLFLI.SSL_CB_LOOP
import var OpenSSLFLI.SSL_CB_READ
import var OpenSSLFLI.SSL_CB_WRITE

// Callbacks that watch a connection: key log, info, message. They cannot fail a handshake, so their
// closures do not throw.

// MARK: Key log

/// Gets each key log line of the NSS format ("CLIENT_RANDOM …", "CLIENT_HANDSHAKE_TRAFFIC_SECRET …"),
/// without a newline. The lines hold secrets that decrypt the connection: write them only where that
/// is intended (a debugging `SSLKEYLOGFILE`).
public typealias SSLKeylogCallback = @Sendable (_ ssl: SSLPointer, _ line: String) -> Void

private let keylogTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl = SSLPointer(ssl), let line,
          let callback: SSLKeylogCallback = CallbackRegistry.lookup(.keylog, for: ssl) else { return }
    callback(ssl, String(cString: line))
}

extension SSLContextPointer {
    /// Sets (or with nil removes) the key log callback (`SSL_CTX_set_keylog_callback`). Off unless set
    /// here: nothing in this package turns it on from an environment variable.
    /// - Corresponds: `SSL_CTX_set_keylog_callback`.
    public func setKeylogCallback(_ callback: SSLKeylogCallback?) {
        CallbackRegistry.of(self).setClosure(.keylog, callback)
        SSL_CTX_set_keylog_callback(self, callback == nil ? nil : keylogTrampoline)
    }

    /// Appends the key log lines to a file (created with mode 0600), as `SSLKEYLOGFILE` readers
    /// (Wireshark) expect. Only when called: never from the environment.
    public func writeKeylog(toFile path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SSLError(kind: .error, call: "open", file: path, errno: errno, message: "cannot open the key log file")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let lock = NSLock()
        setKeylogCallback { _, line in
            lock.lock(); defer { lock.unlock() }
            handle.write(Data((line + "\n").utf8))
        }
    }
}

// MARK: Info callback

/// One event of the info callback (`SSL_CTX_set_info_callback`): where in the protocol it happened
/// (`SSL_CB_*` flags) and its value (for alerts, the alert; for exits, the return code).
public struct SSLInfoEvent: Sendable, Hashable, CustomStringConvertible {
    /// The `SSL_CB_*` flags (`where`).
    public var whereFlags: Int32
    /// The value (`ret`): the alert (type << 8 | description) for alert events.
    public var value: Int32
    /// `SSL_state_string_long` at the time.
    public var state: String

    public var isHandshakeStart: Bool { whereFlags & SSL_CB_HANDSHAKE_START != 0 }
    public var isHandshakeDone: Bool { whereFlags & SSL_CB_HANDSHAKE_DONE != 0 }
    public var isAlert: Bool { whereFlags & SSL_CB_ALERT != 0 }
    public var isRead: Bool { whereFlags & SSL_CB_READ != 0 }
    public var isWrite: Bool { whereFlags & SSL_CB_WRITE != 0 }
    public var isLoop: Bool { whereFlags & SSL_CB_LOOP != 0 }
    public var isExit: Bool { whereFlags & SSL_CB_EXIT != 0 }
    /// For an alert: "fatal" or "warning".
    /// - Corresponds: `SSL_alert_type_string_long`.
    public var alertType: String? { isAlert ? COpenSSL.SSL_alert_type_string_long(value).map { String(cString: $0) } : nil }
    /// For an alert: its description ("handshake failure", "close notify" …).
    /// - Corresponds: `SSL_alert_desc_string_long`.
    public var alertDescription: String? { isAlert ? COpenSSL.SSL_alert_desc_string_long(value).map { String(cString: $0) } : nil }

    public var description: String {
        if isAlert { return "alert \(isRead ? "read" : "written"): \(alertType ?? "?") \(alertDescription ?? "?")" }
        if isHandshakeStart { return "handshake start" }
        if isHandshakeDone { return "handshake done" }
        return "\(isExit ? "exit" : "loop"): \(state)"
    }
}

/// Called for each info event of a connection.
public typealias SSLInfoCallback = @Sendable (_ ssl: SSLPointer, _ event: SSLInfoEvent) -> Void

private let infoTrampoline: @convention(c) (OpaquePointer?, Int32, Int32) -> Void = { ssl, whereFlags, value in
    guard let ssl = SSLPointer(ssl), let callback: SSLInfoCallback = CallbackRegistry.lookup(.info, for: ssl) else { return }
    let state = COpenSSL.SSL_state_string_long(ssl.rawValue).map { String(cString: $0) } ?? ""
    callback(ssl, SSLInfoEvent(whereFlags: whereFlags, value: value, state: state))
}

extension SSLContextPointer {
    /// Sets (or with nil removes) the info callback of the context's connections (`SSL_CTX_set_info_callback`).
    /// - Corresponds: `SSL_CTX_set_info_callback`.
    public func setInfoCallback(_ callback: SSLInfoCallback?) {
        CallbackRegistry.of(self).setClosure(.info, callback)
        COpenSSL.SSL_CTX_set_info_callback(rawValue, callback == nil ? nil : infoTrampoline)
    }
}

extension SSLPointer {
    /// Sets (or with nil removes) the info callback of this connection (`SSL_set_info_callback`).
    /// - Corresponds: `SSL_set_info_callback`.
    public func setInfoCallback(_ callback: SSLInfoCallback?) {
        CallbackRegistry.of(self).setClosure(.info, callback)
        COpenSSL.SSL_set_info_callback(rawValue, callback == nil ? nil : infoTrampoline)
    }
}

// MARK: Message callback

/// One protocol message seen by the message callback (`SSL_CTX_set_msg_callback`).
public struct SSLProtocolMessage: Sendable, Hashable {
    /// True for a message sent, false for one received.
    public var sent: Bool
    /// The protocol version (`TLS1_3_VERSION` …), or 0 for pseudo content types.
    public var version: Int32
    /// The content type: `SSL3_RT_HANDSHAKE` (22), `SSL3_RT_ALERT` (21), `SSL3_RT_CHANGE_CIPHER_SPEC`
    /// (20), `SSL3_RT_APPLICATION_DATA` (23), or a pseudo type such as `SSL3_RT_HEADER` (256).
    public var contentType: Int32
    /// The message's bytes (for handshake messages the first byte is the handshake type).
    public var bytes: [UInt8]

    /// For a handshake message, its type (1 ClientHello, 2 ServerHello, 11 Certificate, 20 Finished …).
    public var handshakeType: UInt8? { contentType == SSL3_RT_HANDSHAKE ? bytes.first : nil }
}

/// Called for each protocol message a connection sends or receives.
public typealias SSLMessageCallback = @Sendable (_ ssl: SSLPointer, _ message: SSLProtocolMessage) -> Void

private let messageTrampoline: @convention(c) (Int32, Int32, Int32, UnsafeRawPointer?, Int, OpaquePointer?, UnsafeMutableRawPointer?) -> Void = {
    sent, version, contentType, buffer, length, ssl, _ in
    guard let ssl = SSLPointer(ssl), let callback: SSLMessageCallback = CallbackRegistry.lookup(.message, for: ssl) else { return }
    let bytes = buffer.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
    callback(ssl, SSLProtocolMessage(sent: sent != 0, version: version, contentType: contentType, bytes: bytes))
}

extension SSLContextPointer {
    /// Sets (or with nil removes) the message callback (`SSL_CTX_set_msg_callback`).
    /// - Corresponds: `SSL_CTX_set_msg_callback`.
    public func setMessageCallback(_ callback: SSLMessageCallback?) {
        CallbackRegistry.of(self).setClosure(.message, callback)
        COpenSSL.SSL_CTX_set_msg_callback(rawValue, callback == nil ? nil : messageTrampoline)
    }
}

// MARK: Exporter

extension SSLPointer {
    /// Keying material derived from the connection's secrets (RFC 5705 / RFC 8446 §7.5,
    /// `SSL_export_keying_material`): both ends get the same bytes for the same label and context.
    /// - Corresponds: `SSL_export_keying_material`.
    public func exportKeyingMaterial(label: String, context: [UInt8]? = nil, length: Int) throws -> [UInt8] {
        guard length > 0 else { throw SSLError.usage("the length must be positive", call: "SSL_export_keying_material") }
        var output = [UInt8](repeating: 0, count: length)
        let labelBytes = Array(label.utf8)
        let result: Int32 = output.withUnsafeMutableBufferPointer { out in
            if let context {
                return context.withUnsafeBufferPointer { ctx in
                    COpenSSL.SSL_export_keying_material(rawValue, out.baseAddress, length, label, labelBytes.count,
                                                        ctx.baseAddress ?? UnsafePointer(out.baseAddress), ctx.count, 1)
                }
            }
            return COpenSSL.SSL_export_keying_material(rawValue, out.baseAddress, length, label, labelBytes.count, nil, 0, 0)
        }
        guard result == 1 else {
            throw SSLError.fromQueue(call: "SSL_export_keying_material", message: "no keying material (is the handshake done?)")
        }
        return output
    }
}
