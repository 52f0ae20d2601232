import LispNames
import XCTest

final class LispNamesTests: XCTestCase {
    let resolver = LispNameResolver(cNames: ["SSL_CTX_use_RSAPrivateKey_file", "SSL_CTX_new", "SSL_new", "SSL_load_client_CA_file",
                                             "d2i_ASN1_TYPE", "X509_free", "x509_FREE", "SSL_new"])

    func testLispNameOfACName() {
        XCTAssertEqual(lispName(forC: "SSL_CTX_use_RSAPrivateKey_file"), "ssl-ctx-use-rsaprivatekey-file")
        XCTAssertEqual(lispName(forC: "d2i_ASN1_TYPE"), "d2i-asn1-type")
    }

    func testResolvesSpecialCasingsAndSymbols() {
        XCTAssertEqual(try resolver.resolve("ssl-ctx-use-rsaprivatekey-file").get(), "SSL_CTX_use_RSAPrivateKey_file")
        XCTAssertEqual(try resolver.resolve("ssl-load-client-ca-file").get(), "SSL_load_client_CA_file")
        XCTAssertEqual(try resolver.resolve("SSL-CTX-NEW").get(), "SSL_CTX_new")
        XCTAssertEqual(try resolver.resolve("COMM:SSL-NEW").get(), "SSL_new")
        XCTAssertEqual(try resolver.resolve("comm::ssl-new").get(), "SSL_new")
        XCTAssertEqual(try resolver.resolve("anything", explicit: "SSL_new").get(), "SSL_new")
    }

    func testRefusals() {
        XCTAssertEqual(resolver.resolve("ssl-ctx-frobnicate"), .failure(.unknown(name: "ssl-ctx-frobnicate")))
        XCTAssertEqual(resolver.resolve("x509-free"), .failure(.ambiguous(name: "x509-free", candidates: ["X509_free", "x509_FREE"])))
        XCTAssertEqual(resolver.resolve("x", explicit: "SSL_nope"), .failure(.unknownExplicit(name: "x", cName: "SSL_nope")))
        for bad in ["", "comm:", ":ssl-new", "ssl_new", "ssl new", "ssl-new\0evil", "-ssl-new", "ssl-new-", "ssl-néw", "a:b:c", "İssl-new"] {
            guard case .failure(.invalid) = resolver.resolve(bad) else { return XCTFail("\(bad.debugDescription) accepted") }
        }
        XCTAssertTrue(LispNameProblem.invalid(name: "a\0b", reason: "x").description.hasPrefix("a\\0b"), "control characters escaped")
    }

    func testSpecLines() {
        XCTAssertEqual(LispNameEntry.parse("lisp ssl-new"), LispNameEntry(lisp: "ssl-new"))
        XCTAssertEqual(LispNameEntry.parse("lisp ssl-ctx-sess-get-cache-mode = SSL_CTX_get_session_cache_mode | renamed"),
                       LispNameEntry(lisp: "ssl-ctx-sess-get-cache-mode", explicit: "SSL_CTX_get_session_cache_mode", note: "renamed"))
        for bad in ["lisp", "lisp a b", "lisp a = ", "function ssl.h SSL_new", "lisp a == b", ""] {
            XCTAssertNil(LispNameEntry.parse(bad), bad)
        }
        let entry = LispNameEntry(lisp: "ssl-new", explicit: "SSL_new", note: "a note")
        XCTAssertEqual(LispNameEntry.parse(entry.line), entry)
    }
}
