import ArgumentParser
import Foundation
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
        _ = try OpenSSLFLI.alpnWireFormat(names)
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
    if let chain = SSL_get_peer_cert_chain(ssl) {
        for i in 0..<sk_X509_num(chain) {
            if let x509 = sk_X509_value(chain, i) {
                let cert = Certificate(retaining: x509)
                lines.append("peer certificate \(i): subject \(cert.subject), issuer \(cert.issuer)")
            }
        }
    } else {
        lines.append("peer certificate: none")
    }
    let verify = SSL_get_verify_result(ssl)
    lines.append("verify result: \(verify) (\(X509_verify_cert_error_string(verify) ?? "?"))")
    return lines
}

/// Copies stdin to the stream and the stream to stdout until both are done: stdin ends (then the
/// peer gets `idleAfterInput` seconds to finish) and the peer closes.
func relay(_ stream: SocketStream, idleAfterInput: TimeInterval, input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws {
    var inputOpen = true
    var inputEndedAt: Date?
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        if let ended = inputEndedAt, Date().timeIntervalSince(ended) > idleAfterInput { return }
        if !stream.hasBufferedInput {
            var fds = [pollfd(fd: stream.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            if inputOpen { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
            let r = poll(&fds, nfds_t(fds.count), 200)
            if r < 0 && errno != EINTR { throw SSLCatFailure("poll: \(String(cString: strerror(errno)))") }
            if r <= 0 { continue }
            if inputOpen, fds.count > 1, fds[1].revents != 0 {
                let n = Glibc.read(input, &buffer, buffer.count)
                if n <= 0 {
                    inputOpen = false
                    inputEndedAt = Date()
                } else {
                    try buffer.withUnsafeBytes { try stream.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    try stream.flush()
                }
            }
            if fds[0].revents == 0 { continue }
        }
        let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
        if n == 0 { return }  // the peer closed
        var written = 0
        while written < n {
            let w = buffer.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + written, n - written) }
            if w <= 0 { throw SSLCatFailure("write to stdout: \(String(cString: strerror(errno)))") }
            written += w
        }
    }
}
