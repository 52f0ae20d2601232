import Foundation
import XCTest
import TestSupport
import OpenSSLFLI
#if canImport(Glibc)
import Glibc
#endif

/// The calls later OpenSSL releases added (codegen/openssl-additions.json): callable on the library
/// that has them, refusing clearly (ERR_R_UNSUPPORTED naming the version) when built against older headers.
final class VersionedCallTests: XCTestCase {
    /// The headers this package was compiled with are the library it runs with (a linked system package).
    var runningMinor: UInt32 { openSSLVersion.minor }

    func drainErrors() -> [String] {
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 512)
        while true {
            let e = ERR_get_error_all()
            guard e.code != 0 else { break }
            ERR_error_string_n(e.code, &buffer, buffer.count)
            let data = (e.flags & ERR_TXT_STRING) != 0 ? e.data.map { String(cString: $0) } ?? "" : ""
            lines.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + (data.isEmpty ? "" : ": " + data))
        }
        return lines
    }

    func testSSLGet0GroupNameIsCallableOrRefusesNamingItsVersion() throws {
        guard runningMinor < 2 else {
            // The library's own function reads the session, which exists only after a handshake: called
            // before one it crashes, as in C. testX25519MLKEM768WithOpenSSLServer calls it after one.
            XCTAssertTrue(try XCTUnwrap(directCall(named: "SSL_get0_group_name")).isCallable)
            return
        }
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_client_method()))
        defer { SSL_CTX_free(ctx) }
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        ERR_clear_error()
        XCTAssertNil(SSL_get0_group_name(ssl), "the stand-in returns NULL")
        let errors = drainErrors()
        XCTAssertTrue(errors.contains { $0.contains("SSL_get0_group_name needs OpenSSL 3.2.0") }, "\(errors)")
    }

    /// The post-quantum hybrid group of OpenSSL 3.5, negotiated with `openssl s_server` through direct calls.
    func testX25519MLKEM768WithOpenSSLServer() throws {
        guard runningMinor >= 5 else {
            throw XCTSkip("X25519MLKEM768 needs OpenSSL 3.5; this process runs \(openSSLVersion.text)")
        }
        let pki = try TestPKI.shared
        let server = try BackgroundProcess("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                                "-key", pki.serverKey, "-tls1_3", "-groups", "X25519MLKEM768",
                                                                "-naccept", "1"])
        defer { server.terminate() }
        let port = try XCTUnwrap(server.acceptedPort(), "s_server did not start: \(server.errorOutput)")
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_client_method()))
        defer { SSL_CTX_free(ctx) }
        XCTAssertEqual(SSL_CTX_set1_groups_list(ctx, "X25519MLKEM768"), 1)
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, pki.caCert, nil), 1)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        let fd = try connectLoopback(port)
        defer { close(fd) }
        XCTAssertEqual(SSL_set_fd(ssl, fd), 1)
        XCTAssertEqual(SSL_set_tlsext_host_name(ssl, "localhost"), 1)
        XCTAssertEqual(SSL_set1_host(ssl, "localhost"), 1)
        let rc = SSL_connect(ssl)
        XCTAssertEqual(rc, 1, "handshake: \(drainErrors()) \(server.errorOutput)")
        XCTAssertEqual(SSL_get_verify_result(ssl), Int(X509_V_OK))
        XCTAssertEqual(SSL_get0_group_name(ssl), "X25519MLKEM768")
        XCTAssertEqual(SSL_get_version(ssl), "TLSv1.3")
        _ = SSL_shutdown(ssl)
    }
}
