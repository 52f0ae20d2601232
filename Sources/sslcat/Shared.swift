import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// A failure sslcat reports as one line on stderr, exiting non-zero.
struct SSLCatFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes a line to stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// "host:port", "[v6]:port" → host and port.
func parseHostPort(_ text: String) throws -> (host: String, port: Int) {
    var host = text, portText = ""
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        host = String(text[text.index(after: text.startIndex)..<close])
        let rest = text[text.index(after: close)...]
        guard rest.hasPrefix(":") else { throw ValidationError("expected [IPv6]:PORT, got '\(text)'") }
        portText = String(rest.dropFirst())
    } else if let colon = text.lastIndex(of: ":") {
        host = String(text[..<colon])
        portText = String(text[text.index(after: colon)...])
    } else {
        throw ValidationError("expected HOST:PORT, got '\(text)' (no port)")
    }
    guard !host.isEmpty else { throw ValidationError("expected HOST:PORT, got '\(text)' (no host)") }
    guard let port = Int(portText), (1...65535).contains(port) else {
        throw ValidationError("expected HOST:PORT, got '\(text)' (the port must be 1…65535)")
    }
    return (host, port)
}

/// The ALPN protocol names of a comma-separated option value, checked (1 to 255 bytes each).
func alpnProtocols(_ list: String, option: String = "--alpn") throws -> [String] {
    let names = list.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    guard !list.isEmpty else { throw ValidationError("\(option) needs at least one protocol name") }
    do {
        _ = try OpenSSL.alpnWireFormat(names)
    } catch {
        throw ValidationError("bad ALPN protocol name in \(option) '\(list)' (each name has 1 to 255 bytes)")
    }
    return names
}

/// Fails early, with the file named, when a file option names nothing readable.
func checkReadable(_ path: String?, option: String) throws {
    guard let path else { return }
    guard FileManager.default.isReadableFile(atPath: path) else {
        throw ValidationError("\(option) \(path): cannot read the file (\(FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file"))")
    }
}

/// What was negotiated on a TLS connection, for people.
func handshakeSummary(_ stream: SocketStream) -> [String] { handshakeSummary(ssl: stream.ssl) }

/// The peer's certificate first, then the rest of the chain it sent. The peer's own certificate comes from
/// `SSL_get1_peer_certificate`: on a server `SSL_get_peer_cert_chain` leaves it out (on a client it is
/// the chain's first entry, which is then not repeated).
func peerCertificates(_ ssl: SSLPointer) -> [Certificate] {
    guard let leaf = SSL_get1_peer_certificate(ssl) else { return [] }
    let peer = Certificate(taking: leaf)
    var list = [peer]
    if let chain = SSL_get_peer_cert_chain(ssl) {
        for i in 0..<sk_X509_num(chain) {
            guard let x509 = sk_X509_value(chain, i) else { continue }
            if i == 0 && X509_cmp(x509, leaf) == 0 { continue }
            list.append(Certificate(retaining: x509))
        }
    }
    return list
}

/// One line: protocol, cipher, ALPN, the peer's subject and the verify result (`--brief`).
func briefSummary(ssl: SSLPointer?) -> String {
    guard let ssl else { return "no TLS" }
    var parts = ["\(SSL_get_version(ssl) ?? "?")", SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)) ?? "?"]
    if let alpn = ssl.alpnSelected { parts.append("ALPN \(alpn)") }
    parts.append("peer " + (peerCertificates(ssl).first.map { $0.subject } ?? "none"))
    let verify = SSL_get_verify_result(ssl)
    parts.append(verify == X509_V_OK ? "verified" : "verify \(verify) (\(X509_verify_cert_error_string(verify) ?? "?"))")
    return parts.joined(separator: ", ")
}

/// The handshake summary of a connection (TLS or DTLS).
func handshakeSummary(ssl: SSLPointer?) -> [String] {
    guard let ssl else { return ["no TLS"] }
    var lines: [String] = []
    let cipher = SSL_get_current_cipher(ssl)
    let bits = SSL_CIPHER_get_bits(cipher)
    lines.append("protocol: \(SSL_get_version(ssl) ?? "?"), cipher: \(SSL_CIPHER_get_name(cipher) ?? "?") (\(bits.bits) bits)")
    let alpn = SSL_get0_alpn_selected(ssl)
    if let data = alpn.data, alpn.len > 0 {
        lines.append("ALPN: \(String(decoding: UnsafeBufferPointer(start: data, count: Int(alpn.len)), as: UTF8.self))")
    }
    let chain = peerCertificates(ssl)
    if chain.isEmpty { lines.append("peer certificate: none") }
    for (i, cert) in chain.enumerated() {
        lines.append("peer certificate \(i): subject \(cert.subject), issuer \(cert.issuer)")
    }
    let verify = SSL_get_verify_result(ssl)
    lines.append("verify result: \(verify) (\(X509_verify_cert_error_string(verify) ?? "?"))")
    return lines
}

/// Checks `--timeout` by the library's one deadline model (``TimeoutValue``): NaN and negative values
/// are refused as option errors (exit 64), zero is a deadline that has passed, `inf` is no limit.
func checkTimeoutOption(_ seconds: Double) throws {
    do {
        _ = try TimeoutValue.resolve(seconds, default: nil, name: "--timeout", call: "sslcat")
    } catch {
        throw ValidationError("--timeout: \((error as? SSLError)?.message ?? "\(error)")")
    }
}
