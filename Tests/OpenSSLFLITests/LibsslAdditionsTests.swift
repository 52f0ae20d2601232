import Foundation
import XCTest
import OpenSSLFLI

/// The libssl parts the generator once missed: the SSL_want_* expression macros, srtp.h, ERR_load_SSL_strings.
final class LibsslAdditionsTests: XCTestCase {
    func testWantMacrosAndSRTP() throws {
        let ctx = try XCTUnwrap(SSL_CTX_new(DTLS_method()))
        defer { SSL_CTX_free(ctx) }
        // SSL_CTX_set_tlsext_use_srtp returns 0 on success (see its manual page).
        XCTAssertEqual(SSL_CTX_set_tlsext_use_srtp(ctx, "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM"), 0)
        XCTAssertNotEqual(SSL_CTX_set_tlsext_use_srtp(ctx, "NO_SUCH_PROFILE"), 0)
        ERR_clear_error()
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        XCTAssertTrue(SSL_want_nothing(ssl))
        XCTAssertFalse(SSL_want_read(ssl))
        XCTAssertFalse(SSL_want_write(ssl))
        XCTAssertFalse(SSL_want_x509_lookup(ssl))
        XCTAssertEqual(sk_SRTP_PROTECTION_PROFILE_num(SSL_get_srtp_profiles(ssl)), 2)
        XCTAssertNil(SSL_get_selected_srtp_profile(ssl), "nothing negotiated before a handshake")
        XCTAssertEqual(SSL_set_tlsext_use_srtp(ssl, "SRTP_AES128_CM_SHA1_80"), 0)
        XCTAssertEqual(sk_SRTP_PROTECTION_PROFILE_num(SSL_get_srtp_profiles(ssl)), 1)
        XCTAssertEqual(directCall(named: "ERR_load_SSL_strings")?.kind, .function)
    }
}
