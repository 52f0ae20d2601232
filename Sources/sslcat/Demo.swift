import ArgumentParser
import OpenSSLFLI

/// `sslcat demo`: a TLS client and server in one process, talking over memory BIOs, driven by the
/// generated direct calls only. Shows what the FLI layer is: the C API, with Swift types.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a TLS 1.3 and a TLS 1.2 handshake in memory with direct calls and print what was negotiated.")

    func run() throws {
        guard OPENSSL_init_ssl(UInt64(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS), nil) == 1 else {
            throw ValidationError("OPENSSL_init_ssl failed")
        }
        print("OpenSSL: \(OpenSSL_version(OPENSSL_VERSION) ?? "?")")
        let identity = try SelfSignedIdentity(commonName: "demo.localhost")
        defer { identity.free() }
        print("server certificate: \(X509_NAME_oneline(X509_get_subject_name(identity.certificate), nil, 0).map { String(cString: $0) } ?? "?") (EC P-256, self-signed, in memory)")
        for (version, label) in [(TLS1_3_VERSION, "TLS 1.3"), (TLS1_2_VERSION, "TLS 1.2")] {
            print("\n== \(label)")
            try runPair(version: version, identity: identity)
        }
    }

    func runPair(version: Int32, identity: SelfSignedIdentity) throws {
        guard let server = SSL_CTX_new(TLS_server_method()), let client = SSL_CTX_new(TLS_client_method()) else {
            throw ValidationError("SSL_CTX_new failed")
        }
        defer { SSL_CTX_free(server); SSL_CTX_free(client) }
        guard SSL_CTX_use_certificate(server, identity.certificate) == 1,
              SSL_CTX_use_PrivateKey(server, identity.key) == 1,
              X509_STORE_add_cert(SSL_CTX_get_cert_store(client), identity.certificate) == 1 else {
            throw ValidationError("loading the identity failed")
        }
        for ctx in [server, client] {
            _ = SSL_CTX_set_min_proto_version(ctx, Int(version))
            _ = SSL_CTX_set_max_proto_version(ctx, Int(version))
        }
        SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nil)
        _ = SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_CLIENT)
        _ = SSL_CTX_set_options(server, SSL_OP_CIPHER_SERVER_PREFERENCE)
        print("SSL_CTX_get_options(server) = 0x\(String(SSL_CTX_get_options(server), radix: 16))")
        print("SSL_CTX_get_mode(client)    = 0x\(String(SSL_CTX_get_mode(client), radix: 16))")

        var session: SSLSessionPointer?
        for attempt in 1...2 {
            let pair = try connect(client: client, server: server, session: session)
            defer { SSL_free(pair.client); SSL_free(pair.server) }
            let cipher = SSL_get_current_cipher(pair.client)
            let bits = cipher.map(SSL_CIPHER_get_bits) ?? (bits: 0, algBits: 0)
            print("connection \(attempt): SSL_get_version = \(SSL_get_version(pair.client) ?? "?"), " +
                  "cipher = \(cipher.flatMap(SSL_CIPHER_get_name) ?? "?"), bits = \(bits), " +
                  "SSL_session_reused = \(SSL_session_reused(pair.client)), verify = \(X509_verify_cert_error_string(SSL_get_verify_result(pair.client)) ?? "?")")
            let message = Array("hello over \(SSL_get_version(pair.client) ?? "TLS")".utf8)
            _ = SSL_write(pair.client, message, Int32(message.count))
            var buffer = [UInt8](repeating: 0, count: 128)
            let n = SSL_read(pair.server, &buffer, Int32(buffer.count))
            print("  server read \(n) bytes: \"\(String(decoding: buffer.prefix(Int(max(n, 0))), as: UTF8.self))\"")
            _ = SSL_write(pair.server, message, Int32(message.count))
            _ = SSL_read(pair.client, &buffer, Int32(buffer.count))  // also takes the TLS 1.3 session ticket
            if session == nil { session = SSL_get1_session(pair.client) }
            _ = SSL_shutdown(pair.client)
        }
        if let session { SSL_SESSION_free(session) }
    }

    /// Two SSLs joined by two memory BIOs, handshaken by alternating `SSL_do_handshake`.
    func connect(client: SSLContextPointer, server: SSLContextPointer, session: SSLSessionPointer?) throws -> (client: SSLPointer, server: SSLPointer) {
        guard let c = SSL_new(client), let s = SSL_new(server),
              let toServer = BIO_new(BIO_s_mem()), let toClient = BIO_new(BIO_s_mem()) else {
            throw ValidationError("SSL_new / BIO_new failed")
        }
        _ = BIO_up_ref(toServer); _ = BIO_up_ref(toClient)
        SSL_set_bio(c, toClient, toServer)
        SSL_set_bio(s, toServer, toClient)
        _ = SSL_set_tlsext_host_name(c, "demo.localhost")
        _ = SSL_set1_host(c, "demo.localhost")
        if let session { _ = SSL_set_session(c, session) }
        SSL_set_connect_state(c)
        SSL_set_accept_state(s)
        var done = (false, false)
        for _ in 0..<50 where !(done.0 && done.1) {
            if !done.0 { done.0 = SSL_do_handshake(c) == 1 }
            if !done.1 { done.1 = SSL_do_handshake(s) == 1 }
        }
        guard done.0 && done.1 else {
            let code = ERR_get_error()
            SSL_free(c); SSL_free(s)
            throw ValidationError("handshake failed: \(ERR_reason_error_string(code) ?? "code \(code)")")
        }
        return (c, s)
    }
}
