import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI

/// `sslcat gen-cert --out DIR`: a CA, a server and a client certificate, made in memory, written as PEM.
struct GenCert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-cert",
        abstract: "Write ca.pem, ca.key, server.pem, server.key, client.pem, client.key (EC P-256, signed by the CA) for trying things out.")

    @Option(help: "The directory to write to (made if missing).")
    var out: String

    @Option(name: .customLong("host"), help: "A host name or IP address for the server certificate (repeatable; default localhost and 127.0.0.1).")
    var hosts: [String] = []

    @Option(help: "Days the certificates are valid.")
    var days = 30

    func validate() throws {
        guard days > 0 && days <= 3650 else { throw ValidationError("--days must be 1…3650") }
        for host in hosts where host.isEmpty || host.contains(where: { $0 == " " || $0 == "," }) {
            throw ValidationError("--host '\(host)' is not a host name or an IP address")
        }
    }

    func run() throws {
        let names = hosts.isEmpty ? ["localhost", "127.0.0.1"] : hosts
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw SSLCatFailure("cannot make the directory \(out): \(error.localizedDescription)")
        }
        let validity = days * 86_400
        let caKey = try PrivateKey.generateEC()
        var caProfile = CertificateProfile.authority("sslcat test CA")
        caProfile.validity = validity
        let ca = try makeCertificate(caProfile, key: caKey)
        let serverKey = try PrivateKey.generateEC()
        var serverProfile = CertificateProfile.server(hosts: names)
        serverProfile.validity = validity
        let server = try makeCertificate(serverProfile, key: serverKey, issuer: (ca, caKey))
        let clientKey = try PrivateKey.generateEC()
        var clientProfile = CertificateProfile.client("sslcat client")
        clientProfile.validity = validity
        let client = try makeCertificate(clientProfile, key: clientKey, issuer: (ca, caKey))
        let files: [(String, String, Bool)] = [
            ("ca.pem", try ca.pem(), false), ("ca.key", try caKey.pem(), true),
            ("server.pem", try server.pem(), false), ("server.key", try serverKey.pem(), true),
            ("client.pem", try client.pem(), false), ("client.key", try clientKey.pem(), true),
        ]
        for (name, text, secret) in files {
            let path = (out as NSString).appendingPathComponent(name)
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8),
                                                 attributes: [.posixPermissions: secret ? 0o600 : 0o644]) else {
                throw SSLCatFailure("cannot write \(path)")
            }
            print(path)
        }
        printError("sslcat: server certificate for \(names.joined(separator: ", ")), SHA-256 \(server.fingerprintSHA256)")
    }
}
