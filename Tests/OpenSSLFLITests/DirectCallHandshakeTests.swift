import Foundation
import XCTest
import TestSupport
import OpenSSLFLI

/// Full TLS handshakes between two `SSLPointer`s over memory BIOs, made with nothing but the generated
/// direct calls (the C names), as a LispWorks user would write them.
final class DirectCallHandshakeTests: XCTestCase {
    /// A client and a server context built with direct calls only.
    struct Contexts {
        var client: SSLContextPointer
        var server: SSLContextPointer
        func free() { SSL_CTX_free(client); SSL_CTX_free(server) }
    }

    func makeContexts(version: Int32) throws -> Contexts {
        let pki = try TestPKI.shared
        let server = try XCTUnwrap(SSL_CTX_new(TLS_server_method()))
        let client = try XCTUnwrap(SSL_CTX_new(TLS_client_method()))
        XCTAssertEqual(SSL_CTX_use_certificate_chain_file(server, pki.serverCert), 1)
        XCTAssertEqual(SSL_CTX_use_PrivateKey_file(server, pki.serverKey, SSL_FILETYPE_PEM), 1)
        XCTAssertEqual(SSL_CTX_check_private_key(server), 1)
        for ctx in [server, client] {
            XCTAssertEqual(SSL_CTX_set_min_proto_version(ctx, Int(version)), 1)
            XCTAssertEqual(SSL_CTX_set_max_proto_version(ctx, Int(version)), 1)
            XCTAssertEqual(SSL_CTX_get_max_proto_version(ctx), Int(version))
        }
        XCTAssertEqual(SSL_CTX_load_verify_locations(client, pki.caCert, nil), 1)
        SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nil)
        XCTAssertEqual(SSL_CTX_get_verify_mode(client), SSL_VERIFY_PEER)
        // The client keeps sessions so that a second connection can resume.
        _ = SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_CLIENT)
        XCTAssertEqual(SSL_CTX_get_session_cache_mode(client), SSL_SESS_CACHE_CLIENT)
        XCTAssertEqual(SSL_CTX_set_session_id_context(server, "fli-test", 8), 1)
        return Contexts(client: client, server: server)
    }

    /// Connects a client and a server SSL through two memory BIOs and drives both handshakes.
    func connect(_ contexts: Contexts, session: SSLSessionPointer? = nil) throws -> (client: SSLPointer, server: SSLPointer) {
        let client = try XCTUnwrap(SSL_new(contexts.client))
        let server = try XCTUnwrap(SSL_new(contexts.server))
        let toServer = try XCTUnwrap(BIO_new(BIO_s_mem()))
        let toClient = try XCTUnwrap(BIO_new(BIO_s_mem()))
        // Each SSL takes one reference to each BIO it is given.
        XCTAssertEqual(BIO_up_ref(toServer), 1)
        XCTAssertEqual(BIO_up_ref(toClient), 1)
        SSL_set_bio(client, toClient, toServer)
        SSL_set_bio(server, toServer, toClient)
        XCTAssertEqual(SSL_set_tlsext_host_name(client, "localhost"), 1)
        XCTAssertEqual(SSL_set1_host(client, "localhost"), 1)
        if let session { XCTAssertEqual(SSL_set_session(client, session), 1) }
        SSL_set_connect_state(client)
        SSL_set_accept_state(server)
        var clientDone = false, serverDone = false
        var failed = false
        for _ in 0..<50 where !(clientDone && serverDone) && !failed {
            if !clientDone {
                let r = SSL_do_handshake(client)
                clientDone = r == 1
                if r != 1 && SSL_get_error(client, r) != SSL_ERROR_WANT_READ { XCTFail("client: \(drainErrorText())"); failed = true }
            }
            if !serverDone {
                let r = SSL_do_handshake(server)
                serverDone = r == 1
                if r != 1 && SSL_get_error(server, r) != SSL_ERROR_WANT_READ { XCTFail("server: \(drainErrorText())"); failed = true }
            }
        }
        XCTAssertTrue(clientDone && serverDone, "handshake did not complete")
        return (client, server)
    }

    func drainErrorText() -> String {
        var lines: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            lines.append(ERR_reason_error_string(code) ?? "code \(code)")
        }
        return lines.joined(separator: "; ")
    }

    /// Sends bytes one way and reads them on the other side (this also delivers TLS 1.3 session tickets).
    func exchange(from writer: SSLPointer, to reader: SSLPointer, _ text: String) throws {
        let bytes = Array(text.utf8)
        XCTAssertEqual(SSL_write(writer, bytes, Int32(bytes.count)), Int32(bytes.count))
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = SSL_read(reader, &buffer, Int32(buffer.count))
        XCTAssertEqual(n, Int32(bytes.count))
        XCTAssertEqual(String(decoding: buffer.prefix(Int(max(n, 0))), as: UTF8.self), text)
    }

    func checkHandshake(version: Int32, versionName: String) throws {
        let contexts = try makeContexts(version: version)
        defer { contexts.free() }

        // Options and mode round trips, on the context and on a connection.
        let before = SSL_CTX_get_options(contexts.server)
        let after = SSL_CTX_set_options(contexts.server, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE)
        XCTAssertEqual(after & (SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE), SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE)
        XCTAssertEqual(SSL_CTX_get_options(contexts.server), after)
        XCTAssertEqual(SSL_CTX_clear_options(contexts.server, SSL_OP_CIPHER_SERVER_PREFERENCE) & SSL_OP_CIPHER_SERVER_PREFERENCE, 0)
        XCTAssertEqual(before & SSL_OP_CIPHER_SERVER_PREFERENCE, 0)
        let mode = SSL_CTX_set_mode(contexts.client, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        XCTAssertEqual(mode & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        XCTAssertEqual(SSL_CTX_get_mode(contexts.client), mode)
        XCTAssertEqual(SSL_CTX_sess_set_cache_size(contexts.server, 77), Int(SSL_SESSION_CACHE_MAX_SIZE_DEFAULT))
        XCTAssertEqual(SSL_CTX_sess_get_cache_size(contexts.server), 77)
        XCTAssertEqual(SSL_CTX_set_max_cert_list(contexts.client, 65536) > 0, true)
        XCTAssertEqual(SSL_CTX_get_max_cert_list(contexts.client), 65536)
        XCTAssertEqual(SSL_CTX_set_cipher_list(contexts.server, "NO-SUCH-CIPHER"), 0)
        ERR_clear_error()
        XCTAssertEqual(SSL_CTX_set_cipher_list(contexts.server, "HIGH:!aNULL"), 1)

        // First connection: a full handshake.
        let (client, server) = try connect(contexts)
        XCTAssertEqual(SSL_get_version(client), versionName)
        XCTAssertEqual(SSL_get_version(server), versionName)
        XCTAssertEqual(SSL_get_verify_result(client), Int(X509_V_OK))
        let cipher = try XCTUnwrap(SSL_get_current_cipher(client))
        let name = try XCTUnwrap(SSL_CIPHER_get_name(cipher))
        XCTAssertFalse(name.isEmpty)
        XCTAssertEqual(SSL_CIPHER_get_name(try XCTUnwrap(SSL_get_current_cipher(server))), name)
        let bits = SSL_CIPHER_get_bits(cipher)
        XCTAssertTrue(bits.bits >= 128, "\(name): \(bits)")
        XCTAssertEqual(bits.bits, bits.algBits, "\(name): \(bits)")
        if version == TLS1_3_VERSION {
            XCTAssertEqual(SSL_CIPHER_get_version(cipher), "TLSv1.3")
        } else {
            XCTAssertEqual(SSL_CIPHER_get_version(cipher), "TLSv1.2")
        }
        let chain = try XCTUnwrap(SSL_get_peer_cert_chain(client))
        XCTAssertGreaterThanOrEqual(sk_X509_num(chain), 1)
        let peer = try XCTUnwrap(SSL_get1_peer_certificate(client))
        // With no buffer, X509_NAME_oneline allocates the string: the caller frees it (OPENSSL_free).
        let oneline = try XCTUnwrap(X509_NAME_oneline(X509_get_subject_name(peer), nil, 0))
        XCTAssertTrue(String(cString: oneline).contains("CN="), String(cString: oneline))
        CRYPTO_free(oneline, nil, 0)
        X509_free(peer)
        XCTAssertEqual(SSL_session_reused(client), 0)
        XCTAssertEqual(SSL_num_renegotiations(client), 0)
        XCTAssertEqual(SSL_total_renegotiations(client), 0)
        XCTAssertEqual(SSL_get_mode(client), mode)
        XCTAssertEqual(SSL_set_options(client, SSL_OP_NO_TICKET) & SSL_OP_NO_TICKET, SSL_OP_NO_TICKET)
        XCTAssertEqual(SSL_get_options(client) & SSL_OP_NO_TICKET, SSL_OP_NO_TICKET)
        XCTAssertEqual(SSL_clear_options(client, SSL_OP_NO_TICKET) & SSL_OP_NO_TICKET, 0)

        try exchange(from: client, to: server, "ping")
        try exchange(from: server, to: client, "pong")
        let session = try XCTUnwrap(SSL_get1_session(client))
        XCTAssertEqual(SSL_SESSION_is_resumable(session), 1)
        XCTAssertGreaterThanOrEqual(SSL_shutdown(client), 0)
        XCTAssertGreaterThanOrEqual(SSL_shutdown(server), 0)
        SSL_free(client)
        SSL_free(server)

        // Second connection: resumed from the session of the first.
        let (client2, server2) = try connect(contexts, session: session)
        XCTAssertEqual(SSL_session_reused(client2), 1)
        XCTAssertEqual(SSL_session_reused(server2), 1)
        XCTAssertEqual(SSL_get_version(client2), versionName)
        try exchange(from: client2, to: server2, "again")
        SSL_free(client2)
        SSL_free(server2)
        SSL_SESSION_free(session)
        XCTAssertEqual(ERR_peek_error(), 0, drainErrorText())
    }

    func testTLS13HandshakeWithDirectCalls() throws {
        try checkHandshake(version: TLS1_3_VERSION, versionName: "TLSv1.3")
    }

    func testTLS12HandshakeWithDirectCalls() throws {
        try checkHandshake(version: TLS1_2_VERSION, versionName: "TLSv1.2")
    }

    /// Calls OpenSSL 3 removed are generated as the headers define them: constant stubs.
    @available(*, deprecated)
    func testRemovedTemporaryRSACallsAreStubs() throws {
        let ctx = try XCTUnwrap(SSL_CTX_new(TLS_method()))
        defer { SSL_CTX_free(ctx) }
        XCTAssertEqual(SSL_CTX_need_tmp_RSA(ctx), 0)
        XCTAssertEqual(SSL_CTX_set_tmp_rsa(ctx, nil), 1)
        let ssl = try XCTUnwrap(SSL_new(ctx))
        defer { SSL_free(ssl) }
        XCTAssertEqual(SSL_need_tmp_RSA(ssl), 0)
        XCTAssertEqual(SSL_set_tmp_rsa(ssl, nil), 1)
    }

    /// Generated constants carry the headers' values (SSL_OP_BIT-built ones included).
    func testGeneratedConstantsHaveHeaderValues() {
        XCTAssertEqual(SSL_OP_NO_TICKET, UInt64(1) << 14)
        XCTAssertEqual(SSL_OP_NO_TLSv1_3, UInt64(1) << 29)
        XCTAssertEqual(SSL_OP_CIPHER_SERVER_PREFERENCE, UInt64(1) << 22)
        XCTAssertEqual(SSL_MODE_AUTO_RETRY, 4)
        XCTAssertEqual(SSL_SESS_CACHE_CLIENT, 1)
        XCTAssertEqual(SSL_FILETYPE_PEM, 1)
        XCTAssertEqual(SSL_FILETYPE_ASN1, 2)
    }
}
