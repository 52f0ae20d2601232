import Foundation
import OpenSSLFLI
import OpenSSLStreams

/// `serve --http`: answers each HTTP/1.1 request (any method, any path) with a plain-text page about the
/// TLS session, as `openssl s_server -www` does; keep-alive until the client closes, asks to close, or
/// stays quiet for the stream's read timeout.
func serveHTTP(_ stream: SocketStream) {
    let peer = stream.peerAddress ?? "client"
    do {
        var requests = 0
        while true {
            guard let requestLine = try stream.readLine(maxLength: 8192) else { break }
            if requestLine.isEmpty { continue }  // stray CR LF between requests (RFC 9112 2.2)
            var close = requestLine.hasSuffix("HTTP/1.0")
            var headers = 0
            while let line = try stream.readLine(maxLength: 8192), !line.isEmpty {
                headers += 1
                guard headers <= 100 else { throw SSLCatFailure("more than 100 header lines") }
                let lower = line.lowercased()
                if lower.hasPrefix("connection:") {
                    if lower.contains("close") { close = true } else if lower.contains("keep-alive") { close = false }
                }
            }
            let parts = requestLine.split(separator: " ")
            let valid = parts.count == 3 && parts[2].hasPrefix("HTTP/1.")
            let body = valid ? sessionPage(stream.ssl, request: requestLine) : "sslcat: not an HTTP/1.1 request line: \(requestLine.prefix(80))\n"
            let bytes = Array(body.utf8)
            var head = valid ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 400 Bad Request\r\n"
            head += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(bytes.count)\r\nCache-Control: no-store\r\n"
            if close || !valid { head += "Connection: close\r\n" }
            try stream.write(head + "\r\n")
            try stream.write(bytes)
            try stream.flush()
            requests += 1
            if close || !valid { break }
        }
        printError("sslcat: \(peer): \(requests) HTTP request(s) answered")
    } catch {
        reportConnectionError(error, peer: peer, idleTimeout: stream.readTimeout)
    }
    try? stream.close()
}

/// The page: what this connection negotiated.
func sessionPage(_ ssl: SSLPointer?, request: String) -> String {
    guard let ssl else { return "no TLS\n" }
    var lines = ["sslcat serve --http", "", "request:            \(request)"]
    let cipher = SSL_get_current_cipher(ssl)
    lines.append("protocol:           \(SSL_get_version(ssl) ?? "?")")
    lines.append("cipher:             \(SSL_CIPHER_get_name(cipher) ?? "?") (\(SSL_CIPHER_get_bits(cipher).bits) bits)")
    lines.append("group:              \(negotiatedGroup(ssl) ?? "none")")
    lines.append("ALPN:               \(ssl.alpnSelected ?? "none")")
    lines.append("SNI:                \(SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)) ?? "none")")
    lines.append("resumed:            \(SSL_session_reused(ssl) == 1 ? "yes" : "no")")
    let chain = peerCertificates(ssl)
    if chain.isEmpty {
        lines.append("client certificate: none")
    } else {
        for (i, cert) in chain.enumerated() {
            lines.append("client certificate \(i): subject \(cert.subject), issuer \(cert.issuer)")
        }
        let verify = SSL_get_verify_result(ssl)
        lines.append("client verify:      \(verify) (\(X509_verify_cert_error_string(verify) ?? "?"))")
    }
    return lines.joined(separator: "\n") + "\n"
}

/// The name of the key exchange group (`SSL_get_negotiated_group`, `SSL_group_to_name`).
func negotiatedGroup(_ ssl: SSLPointer) -> String? {
    let id = SSL_get_negotiated_group(ssl)
    guard id != 0 else { return nil }
    return SSL_group_to_name(ssl, Int32(truncatingIfNeeded: id)) ?? "group \(id)"
}
