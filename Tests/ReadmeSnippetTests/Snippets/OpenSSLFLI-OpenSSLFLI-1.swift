// Generated from OpenSSLFLI.docc/OpenSSLFLI.md, line 19, by SnippetFreshnessTests. Do not edit.
import OpenSSLFLI

func snippet_OpenSSLFLI_OpenSSLFLI_1() async throws {

    try ensureSSL()
    let ctx = SSL_CTX_new(TLS_client_method())               // SSLContextPointer?
    _ = SSL_CTX_set_min_proto_version(ctx, Int(TLS1_2_VERSION))
    let ssl = SSL_new(ctx)                                   // SSLPointer?
    _ = SSL_set_tlsext_host_name(ssl, "example.org")
    SSL_free(ssl)
    SSL_CTX_free(ctx)
}
