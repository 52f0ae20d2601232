import COpenSSL
import OpenSSLFLI

/// LispWorks' `set-ssl-ctx-options` keywords as an option set over `SSL_OP_*`.
///
/// Every member is a flag that OpenSSL 3 still has (none is 0, so `contains` never lies).
///
/// LispWorks' list also names flags that are 0 in OpenSSL 3's headers, because the bug work-arounds and
/// SSLv2 switches they stood for are gone. They are not offered here, since an option equal to `[]` would
/// make `options.contains(.thatFlag)` true for every set. Code that passed them can drop them: they never
/// changed anything on OpenSSL 3. They are `SSL_OP_MICROSOFT_SESS_ID_BUG`, `SSL_OP_NETSCAPE_CHALLENGE_BUG`,
/// `SSL_OP_NETSCAPE_REUSE_CIPHER_CHANGE_BUG`, `SSL_OP_SSLREF2_REUSE_CERT_TYPE_BUG`,
/// `SSL_OP_MICROSOFT_BIG_SSLV3_BUFFER`, `SSL_OP_MSIE_SSLV2_RSA_PADDING`, `SSL_OP_SSLEAY_080_CLIENT_DH_BUG`,
/// `SSL_OP_TLS_D5_BUG`, `SSL_OP_TLS_BLOCK_PADDING_BUG`, `SSL_OP_SINGLE_DH_USE` (DH keys are always
/// single-use), `SSL_OP_EPHEMERAL_RSA`, `SSL_OP_NO_SSLv2`, `SSL_OP_PKCS1_CHECK_1` and `SSL_OP_PKCS1_CHECK_2`.
///
/// - Corresponds: the `SSL_OP_*` constants of `SSL_CTX_set_options`.
public struct SSLContextOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// `SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS`.
    public static let dontInsertEmptyFragments = SSLContextOptions(rawValue: SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS)
    /// `SSL_OP_ALL`: all the harmless bug work-arounds OpenSSL 3 still has.
    public static let all = SSLContextOptions(rawValue: SSL_OP_ALL)
    /// `SSL_OP_NO_QUERY_MTU` (DTLS).
    public static let noQueryMTU = SSLContextOptions(rawValue: SSL_OP_NO_QUERY_MTU)
    /// `SSL_OP_COOKIE_EXCHANGE` (DTLS).
    public static let cookieExchange = SSLContextOptions(rawValue: SSL_OP_COOKIE_EXCHANGE)
    /// `SSL_OP_NO_TICKET`: no stateless session tickets.
    public static let noTicket = SSLContextOptions(rawValue: SSL_OP_NO_TICKET)
    /// `SSL_OP_CIPHER_SERVER_PREFERENCE`.
    public static let cipherServerPreference = SSLContextOptions(rawValue: SSL_OP_CIPHER_SERVER_PREFERENCE)
    /// `SSL_OP_TLS_ROLLBACK_BUG`.
    public static let tlsRollbackBug = SSLContextOptions(rawValue: SSL_OP_TLS_ROLLBACK_BUG)
    /// `SSL_OP_NO_SSLv3`.
    public static let noSSLv3 = SSLContextOptions(rawValue: SSL_OP_NO_SSLv3)
    /// `SSL_OP_NO_TLSv1`.
    public static let noTLSv1 = SSLContextOptions(rawValue: SSL_OP_NO_TLSv1)
    /// `SSL_OP_NO_TLSv1_1`.
    public static let noTLSv1_1 = SSLContextOptions(rawValue: SSL_OP_NO_TLSv1_1)
    /// `SSL_OP_NO_TLSv1_2`.
    public static let noTLSv1_2 = SSLContextOptions(rawValue: SSL_OP_NO_TLSv1_2)
    /// `SSL_OP_NO_TLSv1_3`.
    public static let noTLSv1_3 = SSLContextOptions(rawValue: SSL_OP_NO_TLSv1_3)
    /// `SSL_OP_NO_COMPRESSION`.
    public static let noCompression = SSLContextOptions(rawValue: SSL_OP_NO_COMPRESSION)
    /// `SSL_OP_NO_RENEGOTIATION`.
    public static let noRenegotiation = SSLContextOptions(rawValue: SSL_OP_NO_RENEGOTIATION)
    /// `SSL_OP_IGNORE_UNEXPECTED_EOF`: treat EOF without close_notify as a normal close.
    public static let ignoreUnexpectedEOF = SSLContextOptions(rawValue: SSL_OP_IGNORE_UNEXPECTED_EOF)
    /// `SSL_OP_ENABLE_KTLS`.
    public static let enableKTLS = SSLContextOptions(rawValue: SSL_OP_ENABLE_KTLS)
}

/// Sets (and clears) options of a context (LispWorks' `set-ssl-ctx-options`) and returns the options in
/// force afterwards.
/// - Corresponds: `SSL_CTX_clear_options`, `SSL_CTX_set_options`.
@discardableResult
public func setSSLCtxOptions(_ ctx: SSLContextPointer, options: SSLContextOptions, clear: SSLContextOptions = []) -> SSLContextOptions {
    if !clear.isEmpty { _ = SSL_CTX_clear_options(ctx, clear.rawValue) }
    return SSLContextOptions(rawValue: SSL_CTX_set_options(ctx, options.rawValue))
}
