import Foundation
import OpenSSL
import OpenSSLFLI
import OpenSSLStreams
@testable import sslcat
import TestSupport
import XCTest

/// `sslcat connect --starttls P` as a process against the real servers from Debian's packages, each
/// started by the test on 127.0.0.1 and a free port with certificates made at run time (``TestPKI``):
/// Exim (smtp), Dovecot (imap, pop3), vsftpd (ftp), Prosody (xmpp), slapd (ldap), PostgreSQL (postgres).
/// Each test checks that TLS is up with that server (its certificate, verified, and a protocol answer
/// that only comes over TLS) and that a server configured without TLS gives the clear error. The
/// server side (``startTLSServer(_:protocol:hostName:timeout:plainLine:log:)``) is checked against
/// `openssl s_client -starttls P` and against `sslcat connect --starttls plain`.
final class StartTLSServerTests: XCTestCase {
    func sslcat(_ arguments: [String], stdin: Data, timeout: TimeInterval = 40) throws -> ProcessResult {
        try runProcess(SSLCatTests.sslcat, arguments, timeout: timeout, stdin: stdin)
    }

    /// `sslcat connect --starttls P 127.0.0.1:PORT`, verifying the server as "localhost" against the test CA.
    func connect(_ proto: String, port: Int, stdin: String, timeout: String = "3") throws -> ProcessResult {
        try connect(proto, port: port, stdin: Data(stdin.utf8), timeout: timeout)
    }

    func connect(_ proto: String, port: Int, stdin: Data, timeout: String = "3") throws -> ProcessResult {
        let pki = try TestPKI.shared
        return try sslcat(["connect", "127.0.0.1:\(port)", "--starttls", proto, "--cafile", pki.caCert,
                           "--servername", "localhost", "--timeout", timeout], stdin: stdin)
    }

    /// TLS is up with the test's server: its verified certificate is in the handshake summary.
    func assertTLSUp(_ result: ProcessResult, _ server: RealServer, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(result.stderr.contains("peer certificate 0: subject CN=localhost, issuer CN=swift-openssl-fli test CA"),
                      "\(result.stderr)\n\(server.name): \(server.output)", file: file, line: line)
        XCTAssertTrue(result.stderr.contains("verify result: 0 (ok)"), result.stderr, file: file, line: line)
    }

    /// The refusal: a non-zero exit and the one-line error, with no TLS attempted.
    func assertRefused(_ result: ProcessResult, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(result.status, 0, result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.contains("sslcat: error: " + expected), result.stderr, file: file, line: line)
        XCTAssertFalse(result.stderr.contains("peer certificate"), result.stderr, file: file, line: line)
    }

    /// Copies the test certificate and key into `dir` (for a server that reads them as its own user).
    func copyIdentity(to dir: String) throws -> (cert: String, key: String) {
        let pki = try TestPKI.shared
        let cert = dir + "/server.pem", key = dir + "/server.key"
        try FileManager.default.copyItem(atPath: pki.serverCert, toPath: cert)
        try FileManager.default.copyItem(atPath: pki.serverKey, toPath: key)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        return (cert, key)
    }

    /// A fresh temporary directory with a copy of the test identity, the given subdirectories, and a
    /// free port for the server that will use them.
    func serverDirectory(_ prefix: String, subdirectories: [String] = []) throws -> (dir: String, cert: String, key: String, port: Int) {
        let dir = try RealServer.makeDirectory(prefix)
        let (cert, key) = try copyIdentity(to: dir)
        for sub in subdirectories {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        return (dir, cert, key, try RealServer.freePort())
    }

    // MARK: SMTP: Exim

    func startExim(tls: Bool, hostName: String) throws -> RealServer {
        let exim = try RealServer.require(["/usr/sbin/exim4", "/usr/sbin/exim"], package: "exim4-daemon-light")
        let (dir, cert, key, port) = try serverDirectory("fli-exim")
        // Exim writes its logs and reads the key as its own user.
        try RealServer.chown(dir, to: "Debian-exim")
        try """
        keep_environment =
        primary_hostname = \(hostName)
        spool_directory = \(dir)/spool
        log_file_path = \(dir)/%s.log
        local_interfaces = 127.0.0.1
        tls_advertise_hosts = \(tls ? "*" : "")
        tls_certificate = \(cert)
        tls_privatekey = \(key)
        acl_smtp_rcpt = refuse
        begin acl
        refuse:
          deny

        """.write(toFile: dir + "/exim.conf", atomically: true, encoding: .utf8)  // root's: Exim insists
        return try RealServer("exim", executable: exim, arguments: ["-C", dir + "/exim.conf", "-bdf", "-oX", "\(port)", "-oP", dir + "/exim.pid"],
                              port: port, afterStop: { try? FileManager.default.removeItem(atPath: dir) })
    }

    /// SMTP with Exim: EHLO, STARTTLS, then EHLO again over TLS, where Exim no longer offers STARTTLS.
    /// Without TLS configured, Exim's EHLO has no STARTTLS keyword, although its host name
    /// ("nostarttls.localhost", first line of the EHLO reply) contains the word: it must not count.
    func testSMTPAgainstExim() throws {
        let server = try startExim(tls: true, hostName: "localhost")
        defer { server.stop() }
        let result = try connect("smtp", port: server.port, stdin: "EHLO sslcat\r\nQUIT\r\n")
        XCTAssertEqual(result.status, 0, result.stderr + server.output)
        assertTLSUp(result, server)
        XCTAssertTrue(result.stderr.contains("< 250-STARTTLS"), result.stderr)
        XCTAssertTrue(result.stderr.contains("< 220 TLS go ahead"), result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("250-localhost Hello sslcat"), result.stdout)  // EHLO over TLS
        XCTAssertFalse(result.stdout.contains("STARTTLS"), result.stdout)
        XCTAssertTrue(result.stdout.contains("221 localhost closing connection"), result.stdout)

        let plain = try startExim(tls: false, hostName: "nostarttls.localhost")
        defer { plain.stop() }
        let refused = try connect("smtp", port: plain.port, stdin: "QUIT\r\n")
        XCTAssertTrue(refused.stderr.contains("< 250-nostarttls.localhost Hello sslcat"), refused.stderr)
        assertRefused(refused, "STARTTLS (smtp): the server does not offer STARTTLS (EHLO keywords: SIZE")
    }

    // MARK: IMAP and POP3: Dovecot

    func startDovecot(tls: Bool) throws -> (server: RealServer, imap: Int, pop3: Int) {
        let dovecot = try RealServer.require(["/usr/sbin/dovecot"], package: "dovecot-imapd and dovecot-pop3d")
        _ = try RealServer.require(["/usr/lib/dovecot/imap-login"], package: "dovecot-imapd")
        _ = try RealServer.require(["/usr/lib/dovecot/pop3-login"], package: "dovecot-pop3d")
        let (dir, cert, key, imap) = try serverDirectory("fli-dovecot")
        let pop3 = try RealServer.freePort()
        try """
        base_dir = \(dir)/run
        state_dir = \(dir)/state
        log_path = /dev/stderr
        protocols = imap pop3
        listen = 127.0.0.1
        ssl = \(tls ? "yes" : "no")
        ssl_cert = <\(cert)
        ssl_key = <\(key)
        disable_plaintext_auth = yes
        mail_location = maildir:\(dir)/mail
        passdb {
          driver = static
          args = nopassword=y
        }
        userdb {
          driver = static
          args = uid=nobody gid=nogroup home=\(dir)/home
        }
        service imap-login {
          inet_listener imap {
            address = 127.0.0.1
            port = \(imap)
          }
          inet_listener imaps {
            port = 0
          }
        }
        service pop3-login {
          inet_listener pop3 {
            address = 127.0.0.1
            port = \(pop3)
          }
          inet_listener pop3s {
            port = 0
          }
        }

        """.write(toFile: dir + "/dovecot.conf", atomically: true, encoding: .utf8)
        let server = try RealServer("dovecot", executable: dovecot, arguments: ["-F", "-c", dir + "/dovecot.conf"], port: imap,
                                    afterStop: { try? FileManager.default.removeItem(atPath: dir) })
        let end = Date().addingTimeInterval(10)
        while !RealServer.isListening(port: pop3) && Date() < end { usleep(20_000) }
        return (server, imap, pop3)
    }

    /// IMAP and POP3 with Dovecot. Over TLS, Dovecot's CAPABILITY offers AUTH=PLAIN (it refuses
    /// plaintext logins before TLS: LOGINDISABLED) and no longer STARTTLS; its CAPA no longer STLS.
    func testIMAPAndPOP3AgainstDovecot() throws {
        let (server, imap, pop3) = try startDovecot(tls: true)
        defer { server.stop() }
        let imapResult = try connect("imap", port: imap, stdin: "c1 CAPABILITY\r\nc2 LOGOUT\r\n")
        XCTAssertEqual(imapResult.status, 0, imapResult.stderr + server.output)
        assertTLSUp(imapResult, server)
        XCTAssertTrue(imapResult.stderr.contains("< a2 OK"), imapResult.stderr)
        let capability = imapResult.stdout.split(separator: "\r\n").first { $0.hasPrefix("* CAPABILITY") } ?? ""
        XCTAssertTrue(capability.contains("AUTH=PLAIN"), imapResult.stdout)
        XCTAssertFalse(capability.contains("STARTTLS") || capability.contains("LOGINDISABLED"), imapResult.stdout)
        XCTAssertTrue(imapResult.stdout.contains("c2 OK Logout completed"), imapResult.stdout)

        let pop3Result = try connect("pop3", port: pop3, stdin: "CAPA\r\nQUIT\r\n")
        XCTAssertEqual(pop3Result.status, 0, pop3Result.stderr + server.output)
        assertTLSUp(pop3Result, server)
        XCTAssertTrue(pop3Result.stderr.contains("< STLS"), pop3Result.stderr)
        XCTAssertTrue(pop3Result.stdout.hasPrefix("+OK\r\n"), pop3Result.stdout)
        XCTAssertFalse(pop3Result.stdout.contains("STLS"), pop3Result.stdout)
        XCTAssertTrue(pop3Result.stdout.contains("+OK Logging out"), pop3Result.stdout)
        XCTAssertTrue(server.process.waitFor("pop3-login: Info: Disconnected", timeout: 5), server.output)
        XCTAssertTrue(server.output.contains("rip=127.0.0.1, lip=127.0.0.1, TLS"), server.output)

        let (plain, plainIMAP, plainPOP3) = try startDovecot(tls: false)
        defer { plain.stop() }
        assertRefused(try connect("imap", port: plainIMAP, stdin: "c1 LOGOUT\r\n"),
                      "STARTTLS (imap): the server does not offer STARTTLS (CAPABILITY IMAP4REV1")
        assertRefused(try connect("pop3", port: plainPOP3, stdin: "QUIT\r\n"), "STARTTLS (pop3): the server does not offer STLS (CAPA:")
    }

    // MARK: FTP: vsftpd

    func startVsftpd(tls: Bool) throws -> RealServer {
        let vsftpd = try RealServer.require(["/usr/sbin/vsftpd"], package: "vsftpd")
        let (dir, cert, key, port) = try serverDirectory("fli-vsftpd", subdirectories: ["empty"])
        try """
        listen=YES
        listen_ipv6=NO
        listen_address=127.0.0.1
        listen_port=\(port)
        background=NO
        anonymous_enable=NO
        local_enable=YES
        ssl_enable=\(tls ? "YES" : "NO")
        rsa_cert_file=\(cert)
        rsa_private_key_file=\(key)
        secure_chroot_dir=\(dir)/empty
        vsftpd_log_file=\(dir)/vsftpd.log
        seccomp_sandbox=NO

        """.write(toFile: dir + "/vsftpd.conf", atomically: true, encoding: .utf8)
        return try RealServer("vsftpd", executable: vsftpd, arguments: [dir + "/vsftpd.conf"], port: port,
                              afterStop: { try? FileManager.default.removeItem(atPath: dir) })
    }

    /// FTP with vsftpd: AUTH TLS, then FEAT over TLS. Without ssl_enable, vsftpd answers AUTH TLS with 530.
    func testFTPAgainstVsftpd() throws {
        let server = try startVsftpd(tls: true)
        defer { server.stop() }
        let result = try connect("ftp", port: server.port, stdin: "FEAT\r\n", timeout: "2")
        XCTAssertEqual(result.status, 0, result.stderr + server.output)
        assertTLSUp(result, server)
        XCTAssertTrue(result.stderr.contains("< 234 Proceed with negotiation."), result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("211-Features:\r\n"), result.stdout)
        XCTAssertTrue(result.stdout.contains(" PROT\r\n") && result.stdout.hasSuffix("211 End\r\n"), result.stdout)

        let plain = try startVsftpd(tls: false)
        defer { plain.stop() }
        assertRefused(try connect("ftp", port: plain.port, stdin: "QUIT\r\n"), "STARTTLS (ftp): AUTH TLS refused: 530")
    }

    // MARK: XMPP: Prosody

    func startProsody(tls: Bool) throws -> RealServer {
        let prosody = try RealServer.require(["/usr/bin/prosody"], package: "prosody")
        let (dir, cert, key, port) = try serverDirectory("fli-prosody", subdirectories: ["data", "certs"])
        try """
        run_as_root = true
        pidfile = "\(dir)/prosody.pid"
        data_path = "\(dir)/data"
        certificates = "\(dir)/certs"
        log = { { levels = { min = "info" }, to = "console" } }
        interfaces = { "127.0.0.1" }
        c2s_ports = { \(port) }
        c2s_direct_tls_ports = {}
        s2s_ports = {}
        s2s_direct_tls_ports = {}
        component_ports = {}
        http_ports = {}
        https_ports = {}
        modules_enabled = { \(tls ? "\"tls\", " : "")"saslauth" }
        modules_disabled = { "s2s" }
        c2s_require_encryption = \(tls ? "true" : "false")
        authentication = "internal_plain"
        VirtualHost "localhost"
          ssl = { certificate = "\(cert)", key = "\(key)" }

        """.write(toFile: dir + "/prosody.cfg.lua", atomically: true, encoding: .utf8)
        return try RealServer("prosody", executable: prosody, arguments: ["-F", "--config", dir + "/prosody.cfg.lua"], port: port,
                              afterStop: { try? FileManager.default.removeItem(atPath: dir) })
    }

    /// XMPP with Prosody: stream, <starttls/>, <proceed/>, then a new stream over TLS, where Prosody offers
    /// SASL PLAIN (only over TLS) and no longer STARTTLS. Without mod_tls, the features have no <starttls>.
    func testXMPPAgainstProsody() throws {
        let server = try startProsody(tls: true)
        defer { server.stop() }
        let header = "<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        let result = try connect("xmpp", port: server.port, stdin: header, timeout: "2")
        XCTAssertEqual(result.status, 0, result.stderr + server.output)
        assertTLSUp(result, server)
        XCTAssertTrue(result.stderr.contains("< <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), result.stderr)
        XCTAssertTrue(result.stdout.contains("<mechanism>PLAIN</mechanism>"), result.stdout)
        XCTAssertFalse(result.stdout.contains("xmpp-tls"), result.stdout)
        XCTAssertTrue(server.process.waitFor("Stream encrypted (TLSv1.3", timeout: 5), server.output)

        let plain = try startProsody(tls: false)
        defer { plain.stop() }
        assertRefused(try connect("xmpp", port: plain.port, stdin: ""), "STARTTLS (xmpp): the server does not offer STARTTLS (features: mechanisms")
    }

    // MARK: LDAP: slapd

    func startSlapd(tls: Bool) throws -> RealServer {
        let slapd = try RealServer.require(["/usr/sbin/slapd"], package: "slapd")
        let (dir, cert, key, port) = try serverDirectory("fli-slapd", subdirectories: ["db"])
        try """
        include /etc/ldap/schema/core.schema
        pidfile \(dir)/slapd.pid
        \(tls ? "TLSCertificateFile \(cert)\nTLSCertificateKeyFile \(key)" : "")
        database ldif
        directory \(dir)/db
        suffix "dc=example,dc=org"

        """.write(toFile: dir + "/slapd.conf", atomically: true, encoding: .utf8)
        // -d: stay in the foreground, logging connections and operations (stats) to stderr.
        return try RealServer("slapd", executable: slapd, arguments: ["-d", "256", "-f", dir + "/slapd.conf", "-h", "ldap://127.0.0.1:\(port)/"],
                              port: port, afterStop: { try? FileManager.default.removeItem(atPath: dir) })
    }

    /// LDAP with slapd: the StartTLS extended operation, then a "Who am I?" extended operation
    /// (RFC 4532) over TLS, answered with resultCode 0. Without a TLS certificate slapd answers StartTLS
    /// with protocolError.
    func testLDAPAgainstSlapd() throws {
        let server = try startSlapd(tls: true)
        defer { server.stop() }
        let whoAmI = BER.sequence(BER.integer(2) + BER.element(0x77, BER.element(0x80, Array("1.3.6.1.4.1.4203.1.11.3".utf8))))
        let result = try connect("ldap", port: server.port, stdin: Data(whoAmI), timeout: "2")
        XCTAssertEqual(result.status, 0, result.stderr + server.output)
        assertTLSUp(result, server)
        XCTAssertTrue(result.stderr.contains("< ExtendedResponse messageID 1, resultCode 0 (success)"), result.stderr)
        let answer = Array(result.stdout.utf8)
        XCTAssertEqual(answer.first, 0x30, "\(answer)")
        let response = LDAPExtendedResponse(Array(answer.dropFirst(2)))
        XCTAssertEqual(response?.messageID, 2, "\(answer)")
        XCTAssertEqual(response?.resultCode, 0, "\(answer)")
        XCTAssertTrue(server.process.waitFor("TLS established", timeout: 5), server.output)

        let plain = try startSlapd(tls: false)
        defer { plain.stop() }
        assertRefused(try connect("ldap", port: plain.port, stdin: ""),
                      "STARTTLS (ldap): StartTLS refused: resultCode 2 (protocolError): unsupported extended operation")
    }

    // MARK: PostgreSQL

    /// A PostgreSQL cluster made by initdb in a temporary directory, run as the postgres user (the server
    /// refuses to run as root) with `ssl` on or off.
    func startPostgres(dir: String, ssl: Bool) throws -> RealServer {
        let port = try RealServer.freePort()
        let bin = try postgresBin()
        let postgres = dir + "/data/postmaster.pid"
        return try RealServer("postgres", executable: "/usr/sbin/runuser",
                              arguments: ["-u", "postgres", "--", bin + "/postgres", "-D", dir + "/data", "-c", "listen_addresses=127.0.0.1",
                                          "-p", "\(port)", "-c", "unix_socket_directories=\(dir)", "-c", "ssl=\(ssl ? "on" : "off")",
                                          "-c", "ssl_cert_file=\(dir)/server.pem", "-c", "ssl_key_file=\(dir)/server.key", "-c", "fsync=off"],
                              port: port, beforeStop: {
                                  // Fast shutdown (SIGINT) of the postmaster that runuser started, by its pid file.
                                  if let text = try? String(contentsOfFile: postgres, encoding: .utf8),
                                     let pid = Int32(text.split(separator: "\n").first ?? "") {
                                      kill(pid, SIGINT)
                                      let end = Date().addingTimeInterval(10)
                                      while kill(pid, 0) == 0 && Date() < end { usleep(20_000) }
                                  }
                              })
    }

    func postgresBin() throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        let candidates = versions.compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin/postgres" }
        let postgres = try RealServer.require(candidates.isEmpty ? ["/usr/lib/postgresql/15/bin/postgres"] : candidates, package: "postgresql")
        return (postgres as NSString).deletingLastPathComponent
    }

    /// PostgreSQL with `ssl=on`: SSLRequest, 'S', TLS, then a StartupMessage over TLS answered with
    /// AuthenticationOk ('R', 0: the cluster trusts local users). With `ssl=off` it answers 'N'.
    func testPostgresAgainstPostgreSQL() throws {
        let bin = try postgresBin()
        let dir = try RealServer.makeDirectory("fli-postgres")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try copyIdentity(to: dir)
        try RealServer.chown(dir, to: "postgres")
        let initdb = try runProcess("/usr/sbin/runuser", ["-u", "postgres", "--", bin + "/initdb", "-D", dir + "/data", "-A", "trust",
                                                           "-U", "postgres", "--no-sync"], timeout: 60)
        XCTAssertEqual(initdb.status, 0, initdb.stdout + initdb.stderr)

        let server = try startPostgres(dir: dir, ssl: true)
        let body = Array("user\0postgres\0database\0postgres\0\0".utf8)
        let startup = BER.bigEndian32(UInt32(8 + body.count)) + BER.bigEndian32(196608) + body  // protocol 3.0
        let result = try connect("postgres", port: server.port, stdin: Data(startup), timeout: "2")
        server.stop()
        XCTAssertEqual(result.status, 0, result.stderr + server.output)
        assertTLSUp(result, server)
        XCTAssertTrue(result.stderr.contains("< S"), result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("R\0\0\0\u{8}\0\0\0\0"), "\(Array(result.stdout.utf8.prefix(16)))")
        XCTAssertTrue(result.stdout.contains("server_version\0"), result.stdout)

        let plain = try startPostgres(dir: dir, ssl: false)
        defer { plain.stop() }
        assertRefused(try connect("postgres", port: plain.port, stdin: Data(startup)),
                      "STARTTLS (postgres): the server does not accept SSL connections (it answered 'N' to SSLRequest)")
    }

    // MARK: Server side

    /// Serves one connection: the STARTTLS dialogue of `proto`, TLS with the test certificate, then one
    /// line echoed back with "echo: ". The error the dialogue or the handshake threw is kept.
    func serveOnce(_ proto: StartTLSProtocol, _ listener: TCPListener, _ ctx: SSLContextPointer, log: LogLines) -> Background {
        Background("sslcat serve \(proto)") {
            let stream = try listener.accept(timeout: 20, readTimeout: 20, writeTimeout: 20)
            defer { try? stream.close() }
            try startTLSServer(stream, protocol: proto, hostName: "localhost", timeout: 20, log: log.append)
            try stream.attachSSL(ctx: .context(ctx), side: .server, handshakeTimeout: 20)
            try stream.handshake(timeout: 20)
            let line = try stream.readLine() ?? "(end of stream)"
            try stream.writeLine("echo: \(line)")
        }
    }

    func serverContext() throws -> SSLContextPointer {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        try useCertificateChainFile(ctx, file: pki.serverCert)
        try usePrivateKeyFile(ctx, file: pki.serverKey)
        return ctx
    }

    /// The server side of every protocol that `openssl s_client -starttls` speaks, against s_client:
    /// the dialogue, the verified handshake, and a line echoed over TLS.
    func testServerSideAgainstOpenSSLClient() throws {
        let pki = try TestPKI.shared
        let ctx = try serverContext()
        defer { destroySSLCtx(ctx) }
        for proto in [StartTLSProtocol.smtp, .imap, .pop3, .ftp, .xmpp, .ldap, .postgres] {
            let listener = try listen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            let log = LogLines()
            let server = serveOnce(proto, listener, ctx, log: log)
            let client = try BackgroundProcess("/usr/bin/openssl", ["s_client", "-starttls", proto.rawValue, "-connect", "127.0.0.1:\(listener.port)",
                                                                   "-name", "localhost", "-CAfile", pki.caCert, "-verify_return_error",
                                                                   "-verify_hostname", "localhost", "-quiet"])
            defer { client.terminate() }
            client.write("hello \(proto)\n")
            XCTAssertTrue(client.waitFor("echo: hello \(proto)", timeout: 20), "\(proto): \(client.output) \(client.errorOutput) \(log.text)")
            XCTAssertNoThrow(try server.join(timeout: 20), "\(proto): \(log.text)")
            // s_client goes on when the offer is missing ("didn't find starttls …, trying anyway"): it must not need to.
            XCTAssertFalse(client.errorOutput.contains("didn't find"), "\(proto): \(client.errorOutput)")
        }
    }

    /// The server side of every protocol against the strict client, `sslcat connect --starttls P`,
    /// which requires each offer (EHLO keyword, CAPABILITY, CAPA, stream feature …).
    func testServerSideAgainstSSLCatConnect() throws {
        let ctx = try serverContext()
        defer { destroySSLCtx(ctx) }
        for proto in [StartTLSProtocol.smtp, .imap, .pop3, .ftp, .xmpp, .ldap, .postgres] {
            let listener = try listen(port: 0, host: "127.0.0.1")
            defer { listener.close() }
            let log = LogLines()
            let server = serveOnce(proto, listener, ctx, log: log)
            let result = try connect(proto.rawValue, port: listener.port, stdin: "hello \(proto)\n", timeout: "1")
            XCTAssertNoThrow(try server.join(timeout: 20), "\(proto): \(log.text)")
            XCTAssertEqual(result.status, 0, "\(proto): \(result.stderr)")
            XCTAssertEqual(result.stdout, "echo: hello \(proto)\r\n", "\(proto): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("verify result: 0 (ok)"), "\(proto): \(result.stderr)")
        }
    }

    /// `sslcat serve --starttls P --echo` as a process, against `sslcat connect --starttls P` (a missing
    /// or wrong offer fails the strict client), for every protocol with a server side.
    func testServeCommandOffersStartTLS() throws {
        let pki = try TestPKI.shared
        for proto in [StartTLSProtocol.smtp, .imap, .pop3, .ftp, .xmpp, .ldap, .postgres] {
            let server = try BackgroundProcess(SSLCatTests.sslcat, ["serve", "--port", "0", "--once", "--echo", "--starttls", proto.rawValue,
                                                                    "--cert", pki.serverCert, "--key", pki.serverKey, "--timeout", "10"])
            defer { server.terminate() }
            let port = try SSLCatTests.listeningPort(server)
            let result = try connect(proto.rawValue, port: port, stdin: "hello \(proto)\n", timeout: "2")
            XCTAssertEqual(result.status, 0, "\(proto): \(result.stderr) / serve: \(server.errorOutput)")
            XCTAssertTrue(result.stdout.contains("hello \(proto)"), "\(proto): \(result.stdout) \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("verify result: 0 (ok)"), "\(proto): \(result.stderr)")
        }
    }

    /// `serve`'s plain side against `sslcat connect --starttls plain`: plaintext lines, the switch line,
    /// "OK", then TLS.
    func testServerSidePlainAgainstSSLCatConnect() throws {
        let ctx = try serverContext()
        defer { destroySSLCtx(ctx) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let log = LogLines()
        let server = serveOnce(.plain, listener, ctx, log: log)
        let result = try connect("plain", port: listener.port, stdin: "hello in plaintext\nSTARTTLS\nover TLS\n", timeout: "2")
        XCTAssertNoThrow(try server.join(timeout: 20), log.text)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("sslcat: < OK"), result.stderr)
        XCTAssertTrue(result.stderr.contains("verify result: 0 (ok)"), result.stderr)
        XCTAssertEqual(result.stdout, "echo: over TLS\r\n")
        XCTAssertEqual(log.lines, ["< hello in plaintext", "< STARTTLS", "> OK"])
    }

    /// A command pipelined after STARTTLS in the same segment is not obeyed: attachSSL takes it as TLS,
    /// and the handshake fails. A client that quits gets the typed `.closed` error.
    func testServerSideRefusesInjectionAndReportsQuit() throws {
        let ctx = try serverContext()
        defer { destroySSLCtx(ctx) }
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let server = serveOnce(.smtp, listener, ctx, log: LogLines())
        let client = try openTCPStream(host: "127.0.0.1", port: listener.port, readTimeout: 20)
        defer { try? client.close() }
        XCTAssertEqual(try client.readLine(), "220 localhost ESMTP sslcat")
        try client.write("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
        try client.flush()
        XCTAssertEqual(try client.readLine(), "220 2.0.0 Ready to start TLS")
        XCTAssertThrowsError(try server.join(timeout: 20)) { error in
            XCTAssertTrue(error is SSLError, "\(error)")
        }

        let quitting = serveOnce(.imap, listener, ctx, log: LogLines())
        let second = try openTCPStream(host: "127.0.0.1", port: listener.port, readTimeout: 20)
        defer { try? second.close() }
        _ = try second.readLine()
        try second.writeLine("q LOGOUT")
        XCTAssertEqual(try second.readLine(), "* BYE sslcat logging out")
        XCTAssertThrowsError(try quitting.join(timeout: 20)) { error in
            XCTAssertEqual((error as? StartTLSError)?.kind, .closed, "\(error)")
        }
    }
}

/// The lines a dialogue logged (from the server's thread).
final class LogLines: @unchecked Sendable {  // `stored` is only touched under `lock`
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ line: String) { lock.lock(); stored.append(line); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
    var text: String { lines.joined(separator: "\n") }
}
