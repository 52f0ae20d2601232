import COpenSSL
import Foundation
import OpenSSLFLI

/// Who a client expects the peer to be: a DNS name or an IP address. The one resolver of host identity
/// for every entry point: a certificate is checked against it, and a DNS name is sent as SNI.
///
/// Made from what a caller gives (`"example.org"`, `"127.0.0.1"`, `"::1"`, `"[::1]"`): the brackets of a
/// URL-style IPv6 literal are removed, a numeric address is an IP (checked against the certificate's IP
/// addresses, never sent as SNI), anything else is a DNS name. An empty name, a name with a NUL byte, a
/// name with a colon that is not an IPv6 address and stray brackets are refused: none of them can be
/// checked, and a check that cannot be made must not be skipped silently. An empty name and a name with
/// a NUL byte are refused as `.verificationFailure` (there is no name to verify against); malformed
/// literals as usage errors.
public enum PeerIdentity: Sendable, Hashable, CustomStringConvertible {
    /// A DNS name: `SSL_set1_host` checks it, and it is sent as SNI.
    case dnsName(String)
    /// A numeric IPv4 or IPv6 address (without brackets): `X509_VERIFY_PARAM_set1_ip_asc` checks it.
    case ipAddress(String)

    /// Resolves `name` by the rules above.
    /// - Parameters:
    ///   - name: a host name or a numeric address, with or without brackets.
    ///   - call: the entry point, for the usage error.
    public init(_ name: String, call: String) throws {
        guard !name.utf8.contains(0) else {
            // C sees a name up to its first NUL: "good.example\0evil" must not be checked as "good.example".
            throw SSLError(kind: .verificationFailure, call: call, message: "the host name contains a NUL byte: it cannot be checked")
        }
        guard !name.isEmpty else {
            throw SSLError(kind: .verificationFailure, call: call,
                           message: "the host name is empty: there is no name to check the certificate against (name the peer, or opt out with checkHostName: false)")
        }
        let inner = unbracketedHost(name)
        if inner != name || name.hasPrefix("[") || name.hasSuffix("]") {
            guard inner != name, !inner.contains("["), !inner.contains("]"), isIPv6Address(inner) else {
                throw SSLError.usage("brackets are only for an IPv6 address, as [::1] (got \"\(name)\")", call: call)
            }
            self = .ipAddress(inner)
            return
        }
        if isIPv4Address(name) || isIPv6Address(name) { self = .ipAddress(name); return }
        if name.contains(":") { throw SSLError.usage("\"\(name)\" is not a valid IPv6 address", call: call) }
        self = .dnsName(name)
    }

    /// The name or address, without brackets.
    public var name: String {
        switch self {
        case .dnsName(let n), .ipAddress(let n): return n
        }
    }

    public var description: String { name }

    /// Sets the checks on a client `SSL`: the certificate must be for this name or address (when
    /// `check`), and a DNS name is sent as SNI (when `sendServerName`).
    /// - Corresponds: `SSL_set1_host`, `X509_VERIFY_PARAM_set1_ip_asc`, `SSL_set_tlsext_host_name`.
    public func apply(to ssl: SSLPointer, check: Bool, sendServerName: Bool) throws {
        switch self {
        case .ipAddress(let address):
            guard check else { return }
            guard let param = COpenSSL.SSL_get0_param(ssl.rawValue),
                  COpenSSL.X509_VERIFY_PARAM_set1_ip_asc(param, address) == 1 else {
                throw SSLError.fromQueue(call: "X509_VERIFY_PARAM_set1_ip_asc", message: "cannot check IP address \(address)")
            }
        case .dnsName(let host):
            if check && COpenSSL.SSL_set1_host(ssl.rawValue, host) != 1 {
                throw SSLError.fromQueue(call: "SSL_set1_host", message: "cannot check host name \(host)")
            }
            if sendServerName && SSL_set_tlsext_host_name(ssl, host) != 1 {
                throw SSLError.fromQueue(call: "SSL_set_tlsext_host_name", message: "cannot send server name \(host)")
            }
        }
    }
}

/// True when `name` is a numeric IPv4 address.
package func isIPv4Address(_ name: String) -> Bool {
    var v4 = in_addr()
    return inet_pton(AF_INET, name, &v4) == 1
}

/// True when `name` is a numeric IPv6 address (no brackets).
package func isIPv6Address(_ name: String) -> Bool {
    var v6 = in6_addr()
    return inet_pton(AF_INET6, name, &v6) == 1
}

/// True when `name` is a numeric IPv4 or IPv6 address.
package func isIPAddress(_ name: String) -> Bool { isIPv4Address(name) || isIPv6Address(name) }

/// `host` without the brackets of a URL-style IPv6 literal (`[::1]` → `::1`); any other name as it is.
package func unbracketedHost(_ host: String) -> String {
    guard host.hasPrefix("["), host.hasSuffix("]"), host.utf8.count > 2 else { return host }
    return String(host.dropFirst().dropLast())
}
