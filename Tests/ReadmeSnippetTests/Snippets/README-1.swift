// Generated from README.md, line 71, by SnippetFreshnessTests. Do not edit.
import OpenSSLFLI

func snippet_README_1() async throws {

    let ctx = SSL_CTX_new(TLS_client_method())          // SSLContextPointer?
    _ = SSL_CTX_set_min_proto_version(ctx, Int(TLS1_2_VERSION))   // a ctrl macro, generated as a function
    _ = SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET)     // SSL_OP_* built with SSL_OP_BIT: generated constants
    let ssl = SSL_new(ctx)                              // SSLPointer?
    _ = SSL_set_tlsext_host_name(ssl!, "example.org")  // a literal: passed as its static C string
    let cipher = SSL_get_current_cipher(ssl)            // SSLCipherPointer?
    let (bits, algBits) = SSL_CIPHER_get_bits(cipher)   // out-parameter → tuple, LispWorks' two values
    let name: String? = SSL_CIPHER_get_name(cipher)     // const char * → String?
    print(bits, algBits, name ?? "no cipher before the handshake")
    SSL_free(ssl); SSL_CTX_free(ctx)
}
