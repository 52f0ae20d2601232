// Generated from OpenSSL.docc/OpenSSL.md, line 30, by SnippetFreshnessTests. Do not edit.
import OpenSSL

func snippet_OpenSSL_OpenSSL_1() async throws {

    let key = try PrivateKey.generateEC()
    let certificate = try makeCertificate(.server(hosts: ["localhost"]), key: key)
    let context = try SSLContext(side: .server)
    try useIdentity(context.pointer, certificate: certificate, key: key)
    try context.pointer.setProtocolVersions(minimum: .tls1_2)
    print(certificate.subject, certificate.fingerprintSHA256)
}
