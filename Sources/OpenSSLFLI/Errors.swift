import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// The result of `SSL_get_error` after a failed TLS call (Chicken's status symbols).
public enum SSLStatus: Sendable, Hashable, CustomStringConvertible {
    case none, ssl, wantRead, wantWrite, wantX509Lookup, syscall, zeroReturn, wantConnect, wantAccept
    case wantAsync, wantAsyncJob, wantClientHello, wantRetryVerify
    case other(Int32)

    /// Maps an `SSL_ERROR_*` code.
    public init(code: Int32) {
        switch code {
        case SSL_ERROR_NONE: self = .none
        case SSL_ERROR_SSL: self = .ssl
        case SSL_ERROR_WANT_READ: self = .wantRead
        case SSL_ERROR_WANT_WRITE: self = .wantWrite
        case SSL_ERROR_WANT_X509_LOOKUP: self = .wantX509Lookup
        case SSL_ERROR_SYSCALL: self = .syscall
        case SSL_ERROR_ZERO_RETURN: self = .zeroReturn
        case SSL_ERROR_WANT_CONNECT: self = .wantConnect
        case SSL_ERROR_WANT_ACCEPT: self = .wantAccept
        case SSL_ERROR_WANT_ASYNC: self = .wantAsync
        case SSL_ERROR_WANT_ASYNC_JOB: self = .wantAsyncJob
        case SSL_ERROR_WANT_CLIENT_HELLO_CB: self = .wantClientHello
        case SSL_ERROR_WANT_RETRY_VERIFY: self = .wantRetryVerify
        default: self = .other(code)
        }
    }

    /// The `SSL_ERROR_*` code.
    public var code: Int32 {
        switch self {
        case .none: return SSL_ERROR_NONE
        case .ssl: return SSL_ERROR_SSL
        case .wantRead: return SSL_ERROR_WANT_READ
        case .wantWrite: return SSL_ERROR_WANT_WRITE
        case .wantX509Lookup: return SSL_ERROR_WANT_X509_LOOKUP
        case .syscall: return SSL_ERROR_SYSCALL
        case .zeroReturn: return SSL_ERROR_ZERO_RETURN
        case .wantConnect: return SSL_ERROR_WANT_CONNECT
        case .wantAccept: return SSL_ERROR_WANT_ACCEPT
        case .wantAsync: return SSL_ERROR_WANT_ASYNC
        case .wantAsyncJob: return SSL_ERROR_WANT_ASYNC_JOB
        case .wantClientHello: return SSL_ERROR_WANT_CLIENT_HELLO_CB
        case .wantRetryVerify: return SSL_ERROR_WANT_RETRY_VERIFY
        case .other(let c): return c
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .ssl: return "ssl"
        case .wantRead: return "wantRead"
        case .wantWrite: return "wantWrite"
        case .wantX509Lookup: return "wantX509Lookup"
        case .syscall: return "syscall"
        case .zeroReturn: return "zeroReturn"
        case .wantConnect: return "wantConnect"
        case .wantAccept: return "wantAccept"
        case .wantAsync: return "wantAsync"
        case .wantAsyncJob: return "wantAsyncJob"
        case .wantClientHello: return "wantClientHello"
        case .wantRetryVerify: return "wantRetryVerify"
        case .other(let c): return "other(\(c))"
        }
    }
}

/// One entry of OpenSSL's per-thread error queue.
public struct OpenSSLErrorEntry: Sendable, Hashable, CustomStringConvertible {
    /// The packed error code (`ERR_get_error`).
    public var code: UInt
    /// The library that raised it (`ERR_lib_error_string`), e.g. "SSL routines", "system library".
    public var library: String?
    /// OpenSSL's reason (`ERR_reason_error_string`), e.g. "no start line".
    public var reason: String?
    /// The one-line text of `ERR_error_string_n`.
    public var text: String
    /// Where in OpenSSL it was raised.
    public var file: String?
    public var line: Int32
    public var function: String?
    /// Extra data OpenSSL attached (often the file name or the failing call's argument).
    public var data: String?

    public var description: String {
        var s = reason ?? text
        if let library { s = "\(library): \(s)" }
        if let data, !data.isEmpty { s += " (\(data))" }
        return s
    }
}

/// Takes every entry off this thread's OpenSSL error queue, oldest first.
/// - Corresponds: `ERR_error_string_n`, `ERR_get_error_all`, `ERR_lib_error_string`, `ERR_reason_error_string`.
public func drainOpenSSLErrors() -> [OpenSSLErrorEntry] {
    var entries: [OpenSSLErrorEntry] = []
    for _ in 0..<256 {  // bounded: the queue holds at most 16 entries
        var file: UnsafePointer<CChar>? = nil, function: UnsafePointer<CChar>? = nil, data: UnsafePointer<CChar>? = nil
        var line: Int32 = 0, flags: Int32 = 0
        let code = COpenSSL.ERR_get_error_all(&file, &line, &function, &data, &flags)
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        COpenSSL.ERR_error_string_n(code, &buffer, buffer.count)
        entries.append(OpenSSLErrorEntry(
            code: code,
            library: COpenSSL.ERR_lib_error_string(code).map { String(cString: $0) },
            reason: COpenSSL.ERR_reason_error_string(code).map { String(cString: $0) },
            text: buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) },
            file: file.map { String(cString: $0) }, line: line,
            function: function.map { String(cString: $0) },
            data: (flags & ERR_TXT_STRING) != 0 ? data.map { String(cString: $0) } : nil))
    }
    return entries
}

/// Empties this thread's OpenSSL error queue. An empty queue is left as it is: `ERR_peek_error` (which
/// only looks) costs a tenth of what `ERR_clear_error` costs on OpenSSL 3.0 (it clears all 16 slots),
/// and the queue is empty on every call that succeeded — the hot path of each TLS record.
/// - Corresponds: `ERR_peek_error`, `ERR_clear_error`.
@inline(__always)
public func clearOpenSSLErrors() {
    if COpenSSL.ERR_peek_error() != 0 { COpenSSL.ERR_clear_error() }
}

/// LispWorks' SSL condition classes: what kind of failure an ``SSLError`` is.
public enum SSLConditionKind: Sendable, Hashable {
    /// The peer closed the TLS connection (close_notify or EOF) — `ssl-closed`.
    case closed
    /// A misuse or a local failure (bad argument, file, key) — `ssl-error`.
    case error
    /// The TLS protocol failed (handshake, record layer) — `ssl-failure`.
    case failure
    /// A certificate lookup callback asked to be called again — `ssl-x509-lookup`.
    case x509Lookup
    /// The handshake did not finish in time — `ssl-handshake-timeout`.
    case handshakeTimeout
    /// The peer's certificate did not verify — `ssl-verification-failure`.
    case verificationFailure
}

/// The family of errors of socket streams: plain socket failures and TLS failures alike (LispWorks'
/// `socket-error` with `ssl-condition` below it).
public protocol SocketErrorFamily: Error, CustomStringConvertible {
    /// The C call that failed (`connect`, `SSL_read`, `SSL_CTX_use_PrivateKey_file` …).
    var call: String { get }
}

/// A TLS or OpenSSL failure, with everything OpenSSL said about it.
public struct SSLError: SocketErrorFamily {
    public var kind: SSLConditionKind
    /// The C call that failed.
    public var call: String
    /// The file involved, if any (certificate, key, CA file).
    public var file: String?
    /// `SSL_get_error`'s verdict, for calls on an `SSL`.
    public var status: SSLStatus?
    /// The C call's return value.
    public var returnCode: Int?
    /// OpenSSL's error queue at the time, oldest first.
    public var queue: [OpenSSLErrorEntry]
    /// `errno`, when the failure came from the system.
    public var errno: Int32?
    /// `SSL_get_verify_result`, when verification failed.
    public var verifyResult: Int?
    /// A summary written by this package.
    public var message: String

    public init(kind: SSLConditionKind, call: String, file: String? = nil, status: SSLStatus? = nil,
                returnCode: Int? = nil, queue: [OpenSSLErrorEntry] = [], errno: Int32? = nil,
                verifyResult: Int? = nil, message: String) {
        self.kind = kind; self.call = call; self.file = file; self.status = status
        self.returnCode = returnCode; self.queue = queue; self.errno = errno
        self.verifyResult = verifyResult; self.message = message
    }

    /// OpenSSL's reasons, oldest first.
    public var reasons: [String] { queue.compactMap(\.reason) }

    /// The text of ``verifyResult`` (`X509_verify_cert_error_string`).
    /// - Corresponds: `X509_verify_cert_error_string`.
    public var verifyResultText: String? {
        verifyResult.flatMap { COpenSSL.X509_verify_cert_error_string($0).map { String(cString: $0) } }
    }

    public var description: String {
        var s = "\(call)"
        if let file { s += " (\(file))" }
        s += ": \(message)"
        if let status { s += " [status \(status)]" }
        if let verifyResultText, verifyResult != Int(X509_V_OK) { s += " [verify: \(verifyResultText)]" }
        if !queue.isEmpty { s += " — OpenSSL: " + queue.map(\.description).joined(separator: "; ") }
        if let errno, errno != 0 { s += " — \(String(cString: strerror(errno)))" }
        return s
    }

    /// An error for a failed call, with the error queue drained into it.
    public static func fromQueue(call: String, file: String? = nil, kind: SSLConditionKind = .error,
                                 message: String? = nil, returnCode: Int? = nil) -> SSLError {
        let queue = drainOpenSSLErrors()
        let text = message ?? queue.last?.reason ?? "failed"
        return SSLError(kind: kind, call: call, file: file, returnCode: returnCode, queue: queue, message: text)
    }

    /// An error for a misuse detected in Swift, before any C call.
    public static func usage(_ message: String, call: String) -> SSLError {
        SSLError(kind: .error, call: call, message: message)
    }

    /// The message of an error for an EOF without close_notify (see ``isUnexpectedEOF``).
    public static let unexpectedEOFMessage = "the peer closed the connection without close_notify (unexpected EOF)"

    /// True when the peer closed the transport without sending close_notify first (kind ``SSLConditionKind/error``).
    public var isUnexpectedEOF: Bool { message == SSLError.unexpectedEOFMessage }

    /// The error of a failed `SSL_*` I/O call (`SSL_do_handshake`, `SSL_read`, `SSL_write`, `SSL_shutdown`):
    /// `SSL_get_error` decides the status and the condition kind. Call it right after the failing call,
    /// on the same thread, before anything else touches the error queue or `errno`.
    /// - Corresponds: `SSL_get_error`, `SSL_get_verify_result`, `SSL_is_init_finished`,
    ///   `X509_verify_cert_error_string`.
    public static func fromIO(ssl: SSLPointer, returnCode: Int32, call: String) -> SSLError {
        let savedErrno = Glibc.errno
        let status = SSLStatus(code: COpenSSL.SSL_get_error(ssl.rawValue, returnCode))
        let queue = drainOpenSSLErrors()
        let verify = COpenSSL.SSL_get_verify_result(ssl.rawValue)
        var kind: SSLConditionKind = .failure
        var message = "TLS failure"
        func sslReason(_ reason: Int32) -> Bool {
            queue.contains { COpenSSL.ERR_GET_LIB($0.code) == ERR_LIB_SSL && COpenSSL.ERR_GET_REASON($0.code) == reason }
        }
        let verifyFailed = sslReason(SSL_R_CERTIFICATE_VERIFY_FAILED)
        switch status {
        case .zeroReturn:
            kind = .closed; message = "the peer closed the TLS connection"
        case .syscall where queue.isEmpty && savedErrno == 0:
            // An EOF without close_notify is not a clean close (it may be a truncation attack):
            // LispWorks' ssl-error, not ssl-closed.
            kind = .error; message = unexpectedEOFMessage
        case .ssl where sslReason(SSL_R_UNEXPECTED_EOF_WHILE_READING):
            // OpenSSL 3 reports an EOF without close_notify this way (before 3.0: syscall, errno 0).
            kind = .error; message = unexpectedEOFMessage
        case .syscall:
            message = "system call failed"
        case .wantX509Lookup:
            kind = .x509Lookup; message = "certificate lookup callback asked to be called again"
        case .wantRead, .wantWrite:
            message = "the call would block (\(status))"
        default:
            // A failed verify result counts while the handshake runs (SSL_connect, SSL_accept,
            // SSL_do_handshake, or SSL_read/SSL_write doing it implicitly), whatever the call is named.
            if verifyFailed || (verify != Int(X509_V_OK) && COpenSSL.SSL_is_init_finished(ssl.rawValue) == 0) {
                kind = .verificationFailure
                let text = verify == Int(X509_V_OK) ? nil : COpenSSL.X509_verify_cert_error_string(verify).map { String(cString: $0) }
                message = "certificate verification failed" + (text.map { ": \($0)" } ?? "")
            } else {
                message = queue.last?.reason ?? "TLS failure"
            }
        }
        return SSLError(kind: kind, call: call, status: status, returnCode: Int(returnCode), queue: queue,
                        errno: status == .syscall ? savedErrno : nil,
                        verifyResult: verify == Int(X509_V_OK) && kind != .verificationFailure ? nil : verify,
                        message: message)
    }
}
