import COpenSSL
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

struct StreamTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Helpers shared by the stream tests.
enum Fixtures {
    static var pki: TestPKI { get throws { try TestPKI.shared } }

    /// A server context with the test server certificate (or another one), optionally asking for and
    /// verifying client certificates against the test CA.
    static func serverContext(cert: String? = nil, key: String? = nil, requireClientCertificate: Bool = false,
                              proto: SSLProtocol = .default) throws -> SSLContextPointer {
        let pki = try pki
        let ctx = try makeSSLCtx(protocol: proto, side: .server)
        try useCertificateChainFile(ctx, file: cert ?? pki.serverCert)
        try usePrivateKeyFile(ctx, file: key ?? pki.serverKey)
        if requireClientCertificate {
            try loadVerifyLocations(ctx, file: pki.caCert)
            COpenSSL.SSL_CTX_set_verify(ctx.rawValue, COpenSSL.SSL_VERIFY_PEER | COpenSSL.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        return ctx
    }

    /// A `ctxConfigure` that loads the test server certificate and key.
    static func loadServerIdentity(cert: String? = nil, key: String? = nil) -> (SSLContextPointer) throws -> Void {
        { ctx in
            let pki = try TestPKI.shared
            try useCertificateChainFile(ctx, file: cert ?? pki.serverCert)
            try usePrivateKeyFile(ctx, file: key ?? pki.serverKey)
        }
    }

    /// A `ctxConfigure` that loads the test client certificate and key.
    static func loadClientIdentity() -> (SSLContextPointer) throws -> Void {
        { ctx in
            let pki = try TestPKI.shared
            try useCertificateChainFile(ctx, file: pki.clientCert)
            try usePrivateKeyFile(ctx, file: pki.clientKey)
        }
    }

    /// Client security trusting only the test CA.
    static var trustTestCA: SSLSecurity { get throws { SSLSecurity.trusting(caFile: try pki.caCert) } }

    /// A loopback listener on a free port.
    static func loopbackListener(ipv6: Bool = false) throws -> TCPListener {
        try listen(port: 0, backlog: 16, host: ipv6 ? "::1" : "127.0.0.1")
    }

    static let openssl = "/usr/bin/openssl"
    static let python = "/usr/bin/python3"
    static let curl = "/usr/bin/curl"
}

extension SSLPointer {
    /// The negotiated protocol version name ("TLSv1.3").
    var versionName: String { SSL_get_version(self) ?? "?" }
}
