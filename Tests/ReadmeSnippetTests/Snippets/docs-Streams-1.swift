// Generated from docs/Streams.md, line 83, by SnippetFreshnessTests. Do not edit.
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

func snippet_docs_Streams_1() async throws {

    let cert = try Certificate(pem: String(contentsOfFile: "server.pem", encoding: .utf8))
    let key = try PrivateKey(pem: String(contentsOfFile: "server.key", encoding: .utf8))
    let listener = try listenDTLS(port: 0, ctxConfigure: { try useIdentity($0, certificate: cert, key: key) })
    let peer = try listener.accept(timeout: 10)          // cookie exchange first (DTLSv1_listen, HMAC cookie)
    while let datagram = try peer.receive() { try peer.send(datagram) }

    let client = try openDTLS(host: "localhost", port: listener.port, security: .trusting(caFile: "ca.pem"), mtu: 1400)
    try client.send(Array("one datagram".utf8))          // one record per message, boundaries kept
}
