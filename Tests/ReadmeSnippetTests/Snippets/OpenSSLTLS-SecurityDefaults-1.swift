// Generated from OpenSSLTLS.docc/SecurityDefaults.md, line 26, by SnippetFreshnessTests. Do not edit.
import OpenSSLStreams

func snippet_OpenSSLTLS_SecurityDefaults_1() async throws {

    var config = TLSConfiguration.trusting(caFile: "ca.pem")   // a private CA instead of the system store
    config.minimumVersion = .tls1_3
    config.alpn = ["h2", "http/1.1"]
    config.handshakeTimeout = 5
    let stream = try openTCPStream(host: "internal.example", port: 8443, sslCtx: .default, security: config)
    try stream.close()
}
