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

    /// FuzzLispNames found it (Fuzz/regressions/FuzzLispNames-combining-mark): a note starting with a
    /// combining mark did not parse back from its own line, because " " + U+036B is one Character and
    /// the blank was not trimmed. The syntax is now read scalar by scalar.
    func testCombiningMarksDoNotHideSeparators() throws {
        let found = "lisp t = SSL_get_mssl-ctx-set-statel\u{0E}|\t\u{036B}\u{FFFD}s-cookie-verify-cbode |"
        let entry = try XCTUnwrap(LispNameEntry.parse(found))
        XCTAssertEqual(entry.note?.unicodeScalars.first, "\u{036B}")
        XCTAssertEqual(LispNameEntry.parse(entry.line), entry)
        // A combining mark after the blank of the head or after the bar is not part of the separator.
        XCTAssertEqual(LispNameEntry.parse("lisp \u{0301}x"), LispNameEntry(lisp: "\u{0301}x"))
        XCTAssertEqual(LispNameEntry.parse("lisp a = b |\u{0301}n"), LispNameEntry(lisp: "a", explicit: "b", note: "\u{0301}n"))
        XCTAssertEqual(LispNameEntry.parse("lisp a |\u{0301}")?.note, "\u{0301}")
        for text in ["lisp \u{0301}x", "lisp a = b | \u{0301}n", "lisp a |\u{0301}|"] {
            let e = try XCTUnwrap(LispNameEntry.parse(text), text)
            XCTAssertEqual(LispNameEntry.parse(e.line), e, text.debugDescription)
        }
        guard case .failure(.invalid) = LispNameResolver(cNames: ["SSL_new"]).resolve("\u{0301}x") else {
            return XCTFail("a name starting with a combining mark accepted")
        }
    }
}
