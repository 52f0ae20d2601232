import Foundation

/// Certificates and keys made at run time with the `openssl` CLI, once per test process, in a fresh
/// temporary directory: a CA, a server leaf for localhost / 127.0.0.1 / ::1 signed by it, an unrelated
/// key, an encrypted copy of the server key, DER copies, a garbage PEM and DH parameters.
final class TestPKI: @unchecked Sendable {
    let dir: String
    var caCert: String { dir + "/ca.pem" }
    var caKey: String { dir + "/ca.key" }
    var serverCert: String { dir + "/server.pem" }
    var serverKey: String { dir + "/server.key" }
    var otherKey: String { dir + "/other.key" }
    var encryptedKey: String { dir + "/server-encrypted.key" }
    let encryptedKeyPassword = "secret"
    var certDER: String { dir + "/server.der" }
    var keyDER: String { dir + "/server-key.der" }
    var garbagePEM: String { dir + "/garbage.pem" }
    var dhParams: String { dir + "/dh.pem" }
    var missing: String { dir + "/does-not-exist.pem" }

    private static let lock = NSLock()
    private static var made: Result<TestPKI, Error>?

    /// The shared fixture (made on first use).
    static var shared: TestPKI {
        get throws {
            lock.lock(); defer { lock.unlock() }
            if made == nil { made = Result { try TestPKI() } }
            return try made!.get()
        }
    }

    /// Set `FLI_TEST_PKI_DIR` to keep the files in that directory and reuse them in later runs (needed
    /// under valgrind, where `Process` cannot start the `openssl` CLI).
    private static let keptDirectory = ProcessInfo.processInfo.environment["FLI_TEST_PKI_DIR"]

    private init() throws {
        if let kept = TestPKI.keptDirectory {
            dir = kept
            if FileManager.default.fileExists(atPath: dir + "/garbage.pem") { return }  // written last
        } else {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("fli-pki-\(getpid())-\(UUID().uuidString.prefix(8))").path
            atexit { if let pki = try? TestPKI.made?.get() { try? FileManager.default.removeItem(atPath: pki.dir) } }
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ext = dir + "/leaf.ext"
        try "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
            .write(toFile: ext, atomically: true, encoding: .utf8)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey,
                     "-out", caCert, "-days", "2", "-subj", "/CN=swift-openssl-fli test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", serverKey])
        try openssl(["req", "-new", "-key", serverKey, "-out", dir + "/server.csr", "-subj", "/CN=localhost"])
        try openssl(["x509", "-req", "-in", dir + "/server.csr", "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
                     "-out", serverCert, "-days", "2", "-extfile", ext])
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", otherKey])
        try openssl(["pkey", "-in", serverKey, "-out", encryptedKey, "-aes256", "-passout", "pass:" + encryptedKeyPassword])
        try openssl(["x509", "-in", serverCert, "-outform", "DER", "-out", certDER])
        try openssl(["pkey", "-in", serverKey, "-outform", "DER", "-out", keyDER])
        try openssl(["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", dhParams])
        try "-----BEGIN CERTIFICATE-----\nThis is not base64 at all!!\n@@@@\n-----END CERTIFICATE-----\n"
            .write(toFile: garbagePEM, atomically: true, encoding: .utf8)
    }

    private func openssl(_ args: [String]) throws {
        let result = try runProcess("/usr/bin/openssl", args, timeout: 60)
        guard result.status == 0 else {
            throw NSError(domain: "TestPKI", code: Int(result.status),
                          userInfo: [NSLocalizedDescriptionKey: "openssl \(args.joined(separator: " ")): \(result.stderr)"])
        }
    }
}
