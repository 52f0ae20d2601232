import Foundation
import XCTest
import TestSupport
import OpenSSLFLI

/// Each `const char *` parameter has a `String` form and a pointer form. These calls must compile without
/// ambiguity (`nil`, a literal, a `String`, a `String?`, a pointer, mixed) and agree with each other.
/// That a literal or `nil` selects the pointer form (no bridging) is measured by
/// `sslcat bench --only direct_call` with callgrind; here the forms are shown to do the same call.
final class StringFormTests: XCTestCase {
    func testEveryArgumentKindResolvesAndGivesTheSameResult() throws {
        let name = "SHA256"
        let optionalName: String? = name
        let fromLiteral = OBJ_sn2nid("SHA256")
        XCTAssertNotEqual(fromLiteral, 0)
        XCTAssertEqual(OBJ_sn2nid(name), fromLiteral)
        XCTAssertEqual(OBJ_sn2nid(optionalName), fromLiteral)
        name.withCString { XCTAssertEqual(OBJ_sn2nid($0), fromLiteral) }
        XCTAssertEqual(OBJ_sn2nid("no-such-digest"), 0)
        let stringForm: (String?) -> Int32 = OBJ_sn2nid
        let pointerForm: (UnsafePointer<CChar>?) -> Int32 = OBJ_sn2nid
        XCTAssertEqual(stringForm(name), fromLiteral)
        XCTAssertEqual(name.withCString { pointerForm($0) }, fromLiteral)

        // Two const char * parameters: literal, nil, String and pointer, mixed.
        let pki = try TestPKI.shared
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_method()))
        defer { SSL_CTX_free(ctx) }
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, nil, nil), 0, "neither a file nor a directory")
        ERR_clear_error()
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, "/nonexistent/ca.pem", nil), 0)
        ERR_clear_error()
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, pki.caCert, nil), 1)
        let directory: String? = nil
        XCTAssertEqual(SSL_CTX_load_verify_locations(ctx, pki.caCert, directory), 1)
        XCTAssertEqual(pki.caCert.withCString { SSL_CTX_load_verify_locations(ctx, $0, nil) }, 1)

        // A macro's const char * (SSL_set_tlsext_host_name is an SSL_ctrl macro).
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        XCTAssertEqual(SSL_set_tlsext_host_name(ssl, "example.org"), 1)
        XCTAssertEqual(SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)), "example.org")
        let host = "other.example"
        XCTAssertEqual(SSL_set_tlsext_host_name(ssl, host), 1)
        XCTAssertEqual(SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)), host)
        XCTAssertEqual(SSL_set_tlsext_host_name(ssl, nil), 1, "NULL clears the name, as in C")
        XCTAssertNil(SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)))
    }
}
