import OpenSSL
import OpenSSLFLI

/// Arbitrary bytes into every reader of the FLI layer: each must return a value or throw, never crash,
/// and leave the OpenSSL error queue empty.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPEM(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? Certificate(pem: text)
    _ = try? Certificate(der: bytes)
    _ = try? Certificate.all(pem: text)
    _ = try? PrivateKey(pem: text)
    _ = try? PrivateKey(pem: text, passphrase: "fuzz")
    _ = try? PrivateKey(der: bytes)
    _ = try? CertificateRevocationList(pem: text)
    _ = try? SSLSession(der: bytes)
    if let certificate = try? Certificate(der: bytes) {
        // Accessors of whatever parsed must not crash either.
        _ = certificate.subject; _ = certificate.issuer; _ = certificate.subjectAlternativeNames
        _ = certificate.notBefore; _ = certificate.notAfter; _ = certificate.serialNumber
        _ = certificate.fingerprintSHA256; _ = certificate.isValid(forHost: "localhost")
        _ = try? certificate.der(); _ = try? certificate.pem()
    }
    _ = try? alpnWireFormat(text.split(separator: ",").map(String.init))
    let leftover = drainOpenSSLErrors()
    if !leftover.isEmpty { fatalError("the error queue was left with \(leftover)") }
    return 0
}
