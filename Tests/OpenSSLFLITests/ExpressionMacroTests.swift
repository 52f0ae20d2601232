import Foundation
import XCTest
import TestSupport
import OpenSSLFLI
#if canImport(Glibc)
import Glibc
#endif

/// The expression macros of ssl.h and tls1.h (SSL_get_cipher*, SSL_in_*_init, TLS1_get_*version,
/// SSL_OP_BIT, the no-op SSL_*_set_ecdh_auto) and the session BIO macros, against `openssl s_server`.
final class ExpressionMacroTests: XCTestCase {
    func errors() -> String {
        var out: [String] = []
        while case let e = ERR_get_error(), e != 0 { out.append(ERR_error_string(e, nil).map { String(cString: $0) } ?? "\(e)") }
        return out.joined(separator: "; ")
    }

    /// A TLS 1.2 client over direct calls; `session` is offered for resumption.
    func connect(_ ctx: SSLContextPointer, port: Int, session: SSLSessionPointer? = nil) throws -> (SSLPointer, Int32) {
        let ssl = try XCTUnwrap(SSL_new(ctx))
        let fd = try connectLoopback(port)
        XCTAssertEqual(SSL_set_fd(ssl, fd), 1)
        if let session { XCTAssertEqual(SSL_set_session(ssl, session), 1) }
        XCTAssertEqual(SSL_set1_host(ssl, "localhost"), 1)
        SSL_set_connect_state(ssl)
        XCTAssertTrue(SSL_in_connect_init(ssl), "a client before its handshake")
        XCTAssertFalse(SSL_in_accept_init(ssl))
        XCTAssertEqual(SSL_connect(ssl), 1, "handshake: \(errors())")
        XCTAssertFalse(SSL_in_connect_init(ssl), "the handshake is over")
        return (ssl, fd)
    }

    func testCipherVersionAndSessionBIOMacrosAgainstOpenSSLServer() throws {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:0", "-cert", pki.serverCert,
                                                                "-key", pki.serverKey, "-tls1_2", "-naccept", "2"])
        defer { server.terminate() }
        let port = try XCTUnwrap(server.acceptedPort(), "s_server did not start: \(server.errorOutput)")
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_client_method()))
        defer { SSL_CTX_free(ctx) }
        XCTAssertEqual(SSL_CTX_set_max_proto_version(ctx, Int(TLS1_2_VERSION)), 1)
        XCTAssertEqual(SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256"), 1)
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, pki.caCert, nil), 1)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)

        let (ssl, fd) = try connect(ctx, port: port)
        defer { close(fd) }
        defer { SSL_free(ssl) }
        XCTAssertEqual(SSL_get_cipher(ssl), "ECDHE-ECDSA-AES128-GCM-SHA256")
        XCTAssertEqual(SSL_get_cipher_name(ssl), "ECDHE-ECDSA-AES128-GCM-SHA256")
        XCTAssertEqual(SSL_get_cipher_version(ssl), "TLSv1.2")
        var algBits: Int32 = 0
        XCTAssertEqual(SSL_get_cipher_bits(ssl, &algBits), 128)
        XCTAssertEqual(algBits, 128)
        XCTAssertEqual(SSL_get_cipher_bits(ssl, nil), 128, "np may be NULL, as in C")
        XCTAssertEqual(TLS1_get_version(ssl), TLS1_2_VERSION)
        XCTAssertEqual(TLS1_get_client_version(ssl), TLS1_2_VERSION)

        // The session through a memory BIO: i2d_SSL_SESSION_bio writes the DER that i2d_SSL_SESSION makes,
        // d2i_SSL_SESSION_bio reads it back, and the server resumes the decoded session.
        let session = try XCTUnwrap(SSL_get1_session(ssl))
        defer { SSL_SESSION_free(session) }
        let bio = try XCTUnwrap(BIO_new(BIO_s_mem()))
        defer { _ = BIO_free(bio) }
        XCTAssertEqual(i2d_SSL_SESSION_bio(bio, session), 1, errors())
        let derLength = Int(i2d_SSL_SESSION(session, nil))
        XCTAssertGreaterThan(derLength, 0)
        XCTAssertEqual(BIO_ctrl_pending(bio), derLength)
        var copyOut: OpaquePointer? = nil
        let decoded = try XCTUnwrap(d2i_SSL_SESSION_bio(bio, &copyOut), errors())
        defer { SSL_SESSION_free(decoded) }
        XCTAssertEqual(copyOut, decoded.rawValue, "the reused-object out-parameter gets the new session, as in C")
        XCTAssertEqual(BIO_ctrl_pending(bio), 0, "the whole DER was read")
        let original = SSL_SESSION_get_id(session), copy = SSL_SESSION_get_id(decoded)
        XCTAssertEqual(copy.len, original.len)
        XCTAssertGreaterThan(original.len, 0)
        XCTAssertEqual(memcmp(try XCTUnwrap(copy.id), try XCTUnwrap(original.id), Int(original.len)), 0)
        _ = SSL_shutdown(ssl)

        let (again, fd2) = try connect(ctx, port: port, session: decoded)
        defer { close(fd2) }
        defer { SSL_free(again) }
        XCTAssertEqual(SSL_session_reused(again), 1, "the server resumes the session read back from the BIO")
        _ = SSL_shutdown(again)

        // Garbage in the BIO: NULL and a queued ASN.1 error, no crash.
        XCTAssertEqual(BIO_write(bio, "not a session", 13), 13)
        ERR_clear_error()
        XCTAssertNil(d2i_SSL_SESSION_bio(bio, nil))
        XCTAssertNotEqual(ERR_peek_error(), 0)
        ERR_clear_error()
    }

    func testServerSideAndArithmeticMacros() throws {
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_server_method()))
        defer { SSL_CTX_free(ctx) }
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        SSL_set_accept_state(ssl)
        XCTAssertTrue(SSL_in_accept_init(ssl))
        XCTAssertFalse(SSL_in_connect_init(ssl))
        XCTAssertEqual(SSL_get_cipher(ssl), "(NONE)", "no cipher before a handshake: SSL_CIPHER_get_name(NULL) is \"(NONE)\"")
        XCTAssertEqual(TLS1_get_version(ssl), TLS1_3_VERSION, "before a handshake SSL_version is the highest version enabled")
        XCTAssertEqual(SSL_OP_BIT(29), SSL_OP_NO_TLSv1_3)
        XCTAssertEqual(SSL_OP_BIT(0), 1)
    }

    @available(*, deprecated, message: "calls the deprecated no-op SSL_*_set_ecdh_auto")
    func testECDHAutoIsANoOpThatSucceeds() throws {
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_method()))
        defer { SSL_CTX_free(ctx) }
        let before = SSL_CTX_get_options(ctx)
        XCTAssertTrue(SSL_CTX_set_ecdh_auto(ctx, 1))
        XCTAssertFalse(SSL_CTX_set_ecdh_auto(ctx, 0), "C evaluates ((onoff) != 0)")
        XCTAssertEqual(SSL_CTX_get_options(ctx), before, "nothing changes")
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        XCTAssertTrue(SSL_set_ecdh_auto(ssl, 1))
    }
}
