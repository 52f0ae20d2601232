import COpenSSL
import OpenSSLFLI
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.SSL_CTRL_CLEAR_MODE
import var OpenSSLFLI.SSL_CTRL_MODE

/// The `SSL_MODE_*` flags of a context or connection, as an option set (`SSL_CTX_set_mode` and
/// friends, which are macros over `SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, …)` that Swift cannot import).
///
/// Values are taken from the headers (`COpenSSL.SSL_MODE_*`). OpenSSL 3 turns ``autoRetry`` on by
/// default in every new context.
public struct SSLContextMode: OptionSet, Sendable, Hashable {
    /// The flags as `SSL_CTX_ctrl` takes them (a C `long`).
    public let rawValue: Int
    /// Makes a mode set from `SSL_MODE_*` bits.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// `SSL_MODE_ENABLE_PARTIAL_WRITE`: `SSL_write` may return after writing part of the buffer.
    public static let enablePartialWrite = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_ENABLE_PARTIAL_WRITE))
    /// `SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`: a retried `SSL_write` may pass the same data at another address.
    public static let acceptMovingWriteBuffer = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
    /// `SSL_MODE_AUTO_RETRY`: reads retry after non-application records instead of returning "want read"
    /// (on by default in OpenSSL 3).
    public static let autoRetry = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_AUTO_RETRY))
    /// `SSL_MODE_NO_AUTO_CHAIN`: do not build the certificate chain from the trust store when sending it.
    public static let noAutoChain = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_NO_AUTO_CHAIN))
    /// `SSL_MODE_RELEASE_BUFFERS`: free the read and write buffers while the connection is idle.
    public static let releaseBuffers = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_RELEASE_BUFFERS))
    /// `SSL_MODE_SEND_CLIENTHELLO_TIME`: put the current time in the ClientHello random (legacy).
    public static let sendClientHelloTime = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_SEND_CLIENTHELLO_TIME))
    /// `SSL_MODE_SEND_SERVERHELLO_TIME`: put the current time in the ServerHello random (legacy).
    public static let sendServerHelloTime = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_SEND_SERVERHELLO_TIME))
    /// `SSL_MODE_SEND_FALLBACK_SCSV`: send the fallback signalling cipher (only for fallback retries).
    public static let sendFallbackSCSV = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_SEND_FALLBACK_SCSV))
    /// `SSL_MODE_ASYNC`: asynchronous crypto jobs (engines); calls may then fail with "want async".
    public static let async = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_ASYNC))
    /// `SSL_MODE_DTLS_SCTP_LABEL_LENGTH_BUG`: interoperate with DTLS/SCTP peers that have the label bug.
    public static let dtlsSCTPLabelLengthBug = SSLContextMode(rawValue: Int(COpenSSL.SSL_MODE_DTLS_SCTP_LABEL_LENGTH_BUG))
}

/// Sets (and first clears) mode flags of a context and returns the mode in force afterwards
/// (`SSL_CTX_clear_mode` then `SSL_CTX_set_mode`, i.e. `SSL_CTX_ctrl` with `SSL_CTRL_CLEAR_MODE` and
/// `SSL_CTRL_MODE`). Connections made afterwards start with this mode.
/// - Corresponds: `SSL_CTX_ctrl`.
@discardableResult
public func setSSLCtxMode(_ ctx: SSLContextPointer, mode: SSLContextMode, clear: SSLContextMode = []) -> SSLContextMode {
    if !clear.isEmpty { _ = COpenSSL.SSL_CTX_ctrl(ctx.rawValue, SSL_CTRL_CLEAR_MODE, clear.rawValue, nil) }
    return SSLContextMode(rawValue: COpenSSL.SSL_CTX_ctrl(ctx.rawValue, SSL_CTRL_MODE, mode.rawValue, nil))
}

/// The mode of a context (`SSL_CTX_get_mode`).
/// - Corresponds: `SSL_CTX_ctrl`.
public func getSSLCtxMode(_ ctx: SSLContextPointer) -> SSLContextMode {
    SSLContextMode(rawValue: COpenSSL.SSL_CTX_ctrl(ctx.rawValue, SSL_CTRL_MODE, 0, nil))
}

/// Sets (and first clears) mode flags of one connection and returns its mode afterwards
/// (`SSL_clear_mode` then `SSL_set_mode`).
/// - Corresponds: `SSL_ctrl`.
@discardableResult
public func setSSLMode(_ ssl: SSLPointer, mode: SSLContextMode, clear: SSLContextMode = []) -> SSLContextMode {
    if !clear.isEmpty { _ = COpenSSL.SSL_ctrl(ssl.rawValue, SSL_CTRL_CLEAR_MODE, clear.rawValue, nil) }
    return SSLContextMode(rawValue: COpenSSL.SSL_ctrl(ssl.rawValue, SSL_CTRL_MODE, mode.rawValue, nil))
}

/// The mode of one connection (`SSL_get_mode`).
/// - Corresponds: `SSL_ctrl`.
public func getSSLMode(_ ssl: SSLPointer) -> SSLContextMode {
    SSLContextMode(rawValue: COpenSSL.SSL_ctrl(ssl.rawValue, SSL_CTRL_MODE, 0, nil))
}
