import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
import COpenSSL

/// The hex digits of a `--pin sha256:…` value, upper-cased, colons taken out (64 of them).
func pinnedFingerprint(_ pin: String) throws -> String {
    guard pin.lowercased().hasPrefix("sha256:") else {
        throw ValidationError("--pin takes sha256:HEX (the SHA-256 fingerprint `serve` prints), got '\(pin)'")
    }
    let hex = pin.dropFirst(7).filter { $0 != ":" }.uppercased()
    guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
        throw ValidationError("--pin: a SHA-256 fingerprint has 64 hex digits (colons optional), got '\(pin.dropFirst(7))'")
    }
    return hex
}

/// `--status`: what the server stapled (`SSL_get_tlsext_status_ocsp_resp`), and the response status
/// (`d2i_OCSP_RESPONSE`, `OCSP_response_status`).
func ocspStatusLine(_ ssl: SSLPointer) -> String {
    guard let der = ssl.ocspResponse else { return "OCSP response: none stapled" }
    let status: String = der.withUnsafeBufferPointer { buffer in
        var p: UnsafePointer<UInt8>? = buffer.baseAddress
        guard let response = COpenSSL.d2i_OCSP_RESPONSE(nil, &p, buffer.count) else { return "not a valid OCSP response" }
        defer { COpenSSL.OCSP_RESPONSE_free(response) }
        let code = COpenSSL.OCSP_response_status(response)
        return String(cString: COpenSSL.OCSP_response_status_str(Int(code)))
    }
    return "OCSP response: \(der.count) bytes, status \(status)"
}

/// The PEM label OpenSSL uses for a session (`PEM_write_bio_SSL_SESSION`, `openssl sess_id`).
private let sessionLabel = "SSL SESSION PARAMETERS"

/// `--sess-out`: the session as PEM.
func writeSession(_ session: SSLSession, to path: String) throws {
    let base64 = Data(try session.der()).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
    let pem = "-----BEGIN \(sessionLabel)-----\n\(base64)\n-----END \(sessionLabel)-----\n"
    do { try pem.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw SSLCatFailure("--sess-out \(path): cannot write the file (\(error.localizedDescription))")
    }
}

/// `--sess-in`: a session written by --sess-out (or `openssl s_client -sess_out`).
func readSession(_ path: String) throws -> SSLSession {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard let begin = text.range(of: "-----BEGIN \(sessionLabel)-----"),
          let end = text.range(of: "-----END \(sessionLabel)-----", range: begin.upperBound..<text.endIndex),
          let der = Data(base64Encoded: String(text[begin.upperBound..<end.lowerBound]), options: .ignoreUnknownCharacters) else {
        throw SSLCatFailure("--sess-in \(path): not a PEM \(sessionLabel) file")
    }
    do { return try SSLSession(der: [UInt8](der)) } catch {
        throw SSLCatFailure("--sess-in \(path): not a TLS session (\(error))")
    }
}
