// Generated from OpenSSLCrypto.docc/OpenSSLCrypto.md, line 14, by SnippetFreshnessTests. Do not edit.
import OpenSSLFLI
import OpenSSLCrypto

func snippet_OpenSSLCrypto_OpenSSLCrypto_1() async throws {

    let a = BN_new(), b = BN_new(), product = BN_new(), ctx = BN_CTX_new()
    _ = BN_set_word(a, 6); _ = BN_set_word(b, 7)
    _ = BN_mul(product, a, b, ctx)
    print(BN_get_word(product))          // 42
    BN_free(a); BN_free(b); BN_free(product); BN_CTX_free(ctx)
}
