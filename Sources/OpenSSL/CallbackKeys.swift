import OpenSSLFLI

/// A typed key of a ``CallbackRegistry``: the name it is kept under and the type of what is kept, so
/// a closure is always read back as the type it was stored with.
public struct CallbackKey<Value>: Hashable, Sendable {
    /// The name (unique per registry).
    public let name: String
    /// A key of your own (the toolbox's are the static members, e.g. `.verify`).
    public init(_ name: String) { self.name = name }
}

/// The keys under which the toolbox keeps its closures (one type each).
extension CallbackKey where Value == SSLPasswordCallback {
    /// `password`.
    public static var password: Self { Self("password") }
}
extension CallbackKey where Value == SSLVerifyCallback {
    /// `verify`.
    public static var verify: Self { Self("verify") }
}
extension CallbackKey where Value == SSLNewSessionCallback {
    /// `new-session`.
    public static var newSession: Self { Self("new-session") }
}
extension CallbackKey where Value == String {
    /// `session-cache-key`.
    public static var sessionCacheKey: Self { Self("session-cache-key") }
}
extension CallbackKey where Value == SSLServerNameCallback {
    /// `servername`.
    public static var serverName: Self { Self("servername") }
}
extension CallbackKey where Value == SSLALPNSelectCallback {
    /// `alpn-select`.
    public static var alpnSelect: Self { Self("alpn-select") }
}
extension CallbackKey where Value == SSLKeylogCallback {
    /// `keylog`.
    public static var keylog: Self { Self("keylog") }
}
extension CallbackKey where Value == SSLInfoCallback {
    /// `info`.
    public static var info: Self { Self("info") }
}
extension CallbackKey where Value == SSLMessageCallback {
    /// `message`.
    public static var message: Self { Self("message") }
}
extension CallbackKey where Value == SSLOCSPResponder {
    /// `ocsp-responder`.
    public static var ocspResponder: Self { Self("ocsp-responder") }
}
extension CallbackKey where Value == SSLOCSPResponseCallback {
    /// `ocsp-check`.
    public static var ocspCheck: Self { Self("ocsp-check") }
}
extension CallbackKey where Value == SSLPSKClientCallback {
    /// `psk-client`.
    public static var pskClient: Self { Self("psk-client") }
}
extension CallbackKey where Value == IdentityBuffer {
    /// `psk-identity`.
    static var pskIdentity: Self { Self("psk-identity") }
}
extension CallbackKey where Value == SSLPSKServerCallback {
    /// `psk-server`.
    public static var pskServer: Self { Self("psk-server") }
}
extension CallbackKey where Value == String {
    /// `psk-server-cipher`.
    public static var pskServerCipher: Self { Self("psk-server-cipher") }
}
extension CallbackKey where Value == CallbackRegistry {
    /// Where a connection keeps the registry of the context it was made with, once an SNI callback
    /// switched contexts.
    static var originContext: Self { Self("origin-context-registry") }
}
