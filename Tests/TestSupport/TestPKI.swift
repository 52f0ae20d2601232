import Foundation

/// Certificates and keys made at run time with the `openssl` CLI, once per test process, in a fresh
/// temporary directory: a CA, a server leaf for localhost / 127.0.0.1 / ::1 signed by it, an unrelated
/// key, an encrypted copy of the server key, DER copies, a garbage PEM and DH parameters; a client
/// certificate; and the bad server certificates (expired, self-signed, wrong host, signed by an
/// untrusted CA), each with its key. Every file is generated; none is committed.
public final class TestPKI: Sendable {
    public let dir: String
    public var caCert: String { dir + "/ca.pem" }
    public var caKey: String { dir + "/ca.key" }
    public var serverCert: String { dir + "/server.pem" }
    public var serverKey: String { dir + "/server.key" }
    public var otherKey: String { dir + "/other.key" }
    public var encryptedKey: String { dir + "/server-encrypted.key" }
    public let encryptedKeyPassword = "secret"
    public var certDER: String { dir + "/server.der" }
    public var keyDER: String { dir + "/server-key.der" }
    public var garbagePEM: String { dir + "/garbage.pem" }
    public var dhParams: String { dir + "/dh.pem" }
    public var missing: String { dir + "/does-not-exist.pem" }
    /// A client certificate (CN "test client", clientAuth) signed by the CA, and its key.
    public var clientCert: String { dir + "/client.pem" }
    public var clientKey: String { dir + "/client.key" }
    /// A server certificate for localhost / 127.0.0.1 / ::1 that expired in 2020 (key: ``serverKey``).
    public var expiredCert: String { dir + "/expired.pem" }
    /// A self-signed certificate for localhost / 127.0.0.1 / ::1 (key: ``serverKey``).
    public var selfSignedCert: String { dir + "/self-signed.pem" }
    /// A certificate signed by the CA for another host only (DNS:other.example; key: ``serverKey``).
    public var wrongHostCert: String { dir + "/wrong-host.pem" }
    /// A second CA that nobody trusts, and a localhost certificate it signed (key: ``serverKey``).
    public var untrustedCACert: String { dir + "/untrusted-ca.pem" }
    public var untrustedCAKey: String { dir + "/untrusted-ca.key" }
    public var untrustedLeafCert: String { dir + "/untrusted-leaf.pem" }
    /// A server certificate for localhost / 127.0.0.1 / ::1, signed by the CA, valid only from 2099
    /// (key: ``serverKey``).
    public var notYetValidCert: String { dir + "/not-yet-valid.pem" }
    /// A certificate signed by the CA for the addresses 127.0.0.2 and ::2 only (no DNS name; key:
    /// ``serverKey``): served on 127.0.0.1 / ::1 it is a valid certificate for another address.
    public var otherAddressCert: String { dir + "/other-address.pem" }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: Result<TestPKI, Error>?  // only touched under `lock`

    /// The shared fixture (made on first use).
    public static var shared: TestPKI {
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
            if FileManager.default.fileExists(atPath: dir + "/garbage.pem")
                && FileManager.default.fileExists(atPath: dir + "/other-address.pem") { return }  // written last
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
        // Client certificate.
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", clientKey])
        try openssl(["req", "-new", "-key", clientKey, "-out", dir + "/client.csr", "-subj", "/CN=test client"])
        try "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", dir + "/client.csr", "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
                     "-out", clientCert, "-days", "2", "-extfile", dir + "/client.ext"])
        // Wrong host: signed by the CA, valid, for other.example only.
        try "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:other.example\n".write(toFile: dir + "/other.ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-new", "-key", serverKey, "-out", dir + "/other.csr", "-subj", "/CN=other.example"])
        try openssl(["x509", "-req", "-in", dir + "/other.csr", "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
                     "-out", wrongHostCert, "-days", "2", "-extfile", dir + "/other.ext"])
        // Self-signed, for the right names.
        try openssl(["req", "-x509", "-key", serverKey, "-out", selfSignedCert, "-days", "2", "-subj", "/CN=localhost",
                     "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"])
        // Untrusted CA and its localhost leaf.
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", untrustedCAKey,
                     "-out", untrustedCACert, "-days", "2", "-subj", "/CN=untrusted test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try openssl(["x509", "-req", "-in", dir + "/server.csr", "-CA", untrustedCACert, "-CAkey", untrustedCAKey, "-CAcreateserial",
                     "-out", untrustedLeafCert, "-days", "2", "-extfile", ext])
        // Expired: `openssl ca` is the CLI that takes explicit dates.
        try "".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: dir + "/serial", atomically: true, encoding: .utf8)
        try """
        [ca]
        default_ca = test
        [test]
        database = \(dir)/index.txt
        new_certs_dir = \(dir)
        serial = \(dir)/serial
        default_md = sha256
        policy = anything
        copy_extensions = none
        [anything]
        commonName = supplied
        [leaf]
        basicConstraints = CA:FALSE
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1

        """.write(toFile: dir + "/ca.cnf", atomically: true, encoding: .utf8)
        try openssl(["ca", "-batch", "-config", dir + "/ca.cnf", "-cert", caCert, "-keyfile", caKey, "-in", dir + "/server.csr",
                     "-out", expiredCert, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                     "-extensions", "leaf", "-notext"])
        // Not yet valid: the same `openssl ca` run with dates in the future (a second certificate for
        // the same subject, which the database refuses unless told).
        try "unique_subject = no\n".write(toFile: dir + "/index.txt.attr", atomically: true, encoding: .utf8)
        try openssl(["ca", "-batch", "-config", dir + "/ca.cnf", "-cert", caCert, "-keyfile", caKey, "-in", dir + "/server.csr",
                     "-out", notYetValidCert, "-startdate", "20990101000000Z", "-enddate", "20991231000000Z",
                     "-extensions", "leaf", "-notext"])
        // Another address: valid, signed by the CA, for IP 127.0.0.2 and ::2 only.
        try "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.2,IP:::2\n"
            .write(toFile: dir + "/other-address.ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-new", "-key", serverKey, "-out", dir + "/other-address.csr", "-subj", "/CN=127.0.0.2"])
        try openssl(["x509", "-req", "-in", dir + "/other-address.csr", "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
                     "-out", otherAddressCert, "-days", "2", "-extfile", dir + "/other-address.ext"])
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
