import Foundation
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// The s_client-style flags of `connect`, and the sslcat table of docs/sslcat.md against every `--help`.
final class FlagTests: XCTestCase {
    override func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    func sslcat(_ arguments: [String], stdin: String = "", timeout: TimeInterval = 30) throws -> ProcessResult {
        try runProcess(SSLCatTests.sslcat, arguments, timeout: timeout, stdin: Data(stdin.utf8))
    }

    /// A `serve --echo` with the test PKI's certificate, its port and the fingerprint it printed.
    func startServer(_ extra: [String] = []) throws -> (BackgroundProcess, Int, String) {
        let pki = try TestPKI.shared
        let server = try BackgroundProcess(SSLCatTests.sslcat, ["serve", "--port", "0", "--echo", "--cert", pki.serverCert, "--key", pki.serverKey] + extra)
        let port = try SSLCatTests.listeningPort(server)
        let line = try XCTUnwrap(server.errorOutput.split(separator: "\n").first { $0.contains("SHA-256 ") })
        let fingerprint = String(try XCTUnwrap(line.components(separatedBy: "SHA-256 ").last))
        return (server, port, fingerprint)
    }

    /// --pin with the fingerprint `serve` printed connects (also with --insecure alone); another refuses.
    func testPinTakesTheFingerprintServePrints() throws {
        let pki = try TestPKI.shared
        let (server, port, fingerprint) = try startServer()
        defer { server.terminate() }
        let good = try sslcat(["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost",
                               "--pin", "sha256:" + fingerprint], stdin: "pinned\n")
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertEqual(good.stdout, "pinned\n")
        XCTAssertTrue(good.stderr.contains("pinned SHA-256 matches"), good.stderr)
        let bare = try sslcat(["connect", "127.0.0.1:\(port)", "--insecure", "--pin", "SHA256:" + fingerprint.filter { $0 != ":" }.lowercased()],
                              stdin: "bare\n")
        XCTAssertEqual(bare.status, 0, bare.stderr)
        let wrong = "sha256:" + String(repeating: "AB", count: 32)
        let refused = try sslcat(["connect", "127.0.0.1:\(port)", "--insecure", "--pin", wrong], stdin: "secret\n")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--pin: the server certificate's SHA-256 is \(fingerprint), not the pinned one"), refused.stderr)
        XCTAssertEqual(refused.stdout, "", "nothing is sent or shown before the pin is checked")
        let malformed = try sslcat(["connect", "127.0.0.1:\(port)", "--pin", "md5:00"])
        XCTAssertNotEqual(malformed.status, 0)
        XCTAssertTrue(malformed.stderr.contains("--pin takes sha256:HEX"), malformed.stderr)
    }

    /// --sess-out writes a session `openssl sess_id` reads; --sess-in resumes it; --reconnect resumes 5 times.
    func testSessionsAndReconnect() throws {
        let pki = try TestPKI.shared
        let (server, port, _) = try startServer()
        defer { server.terminate() }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sslcat-sess-\(UUID().uuidString).pem").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let common = ["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost"]
        let first = try sslcat(common + ["--sess-out", file, "--reconnect"], stdin: "one\n")
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stderr.contains("5 of 5 reconnects resumed the session"), first.stderr)
        let parsed = try runProcess(SSLCatTests.openssl, ["sess_id", "-in", file, "-noout", "-text"], timeout: 20)
        XCTAssertEqual(parsed.status, 0, parsed.stderr)
        XCTAssertTrue(parsed.stdout.contains("Protocol  : TLSv1.3"), parsed.stdout)
        let second = try sslcat(common + ["--sess-in", file], stdin: "two\n")
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("session resumed"), second.stderr)
        try "not a session".write(toFile: file, atomically: true, encoding: .utf8)
        let bad = try sslcat(common + ["--sess-in", file], stdin: "three\n")
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("not a PEM SSL SESSION PARAMETERS file"), bad.stderr)
    }

    /// --showcerts prints the chain as PEM; --status says what was stapled; --brief is one line; --quiet
    /// prints nothing; --crlf sends CR LF.
    func testShowcertsStatusBriefQuietCRLF() throws {
        let pki = try TestPKI.shared
        let (server, port, _) = try startServer()
        defer { server.terminate() }
        let common = ["connect", "127.0.0.1:\(port)", "--cafile", pki.caCert, "--servername", "localhost"]
        let shown = try sslcat(common + ["--showcerts", "--status"], stdin: "x\n")
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let serverPEM = try String(contentsOfFile: pki.serverCert, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(shown.stderr.contains(serverPEM), shown.stderr)
        XCTAssertTrue(shown.stderr.contains("OCSP response: none stapled"), shown.stderr)
        let brief = try sslcat(common + ["--brief", "--crlf"], stdin: "a\nb\r\n")
        XCTAssertEqual(brief.status, 0, brief.stderr)
        XCTAssertEqual(brief.stdout, "a\r\nb\r\n")
        XCTAssertEqual(brief.stderr.split(separator: "\n").count, 1, brief.stderr)
        XCTAssertTrue(brief.stderr.hasPrefix("sslcat: TLSv1.3, "), brief.stderr)
        // --quiet waits for the server to close: an echo server with a short idle timeout closes.
        let (quietServer, quietPort, _) = try startServer(["--idle-timeout", "1"])
        defer { quietServer.terminate() }
        let quiet = try sslcat(["connect", "127.0.0.1:\(quietPort)", "--cafile", pki.caCert, "--servername", "localhost", "-q"], stdin: "q\n")
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertEqual(quiet.stdout, "q\n")
        XCTAssertEqual(quiet.stderr, "")
    }

    /// The SMTP STARTTLS check takes the EHLO keyword, not text anywhere in a line.
    func testSMTPStartTLSMustBeAnEHLOKeyword() throws {
        let listener = try listen(port: 0, host: "127.0.0.1")
        defer { listener.close() }
        let server = Background("smtp") {
            let s = try listener.accept(timeout: 20, readTimeout: 20)
            defer { try? s.close() }
            try s.writeLine("220 test ESMTP")
            _ = try s.readLine()
            try s.writeLine("250-localhost says STARTTLS is not here"); try s.writeLine("250 XSTARTTLS")
            _ = try s.readLine()
        }
        let result = try sslcat(["connect", "127.0.0.1:\(listener.port)", "--starttls", "smtp", "--insecure", "--timeout", "5"])
        try server.join(timeout: 20)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("does not offer STARTTLS"), result.stderr)
    }

    func testVersion() throws {
        let result = try sslcat(["--version"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout.contains("running \(openSSLVersion.text)"), result.stdout)
    }

    /// The long flags of one `--help` text (option lines start with two spaces and a dash).
    static func helpFlags(_ help: String) -> Set<String> {
        var flags = Set<String>()
        for line in help.split(separator: "\n") where line.hasPrefix("  -") {
            for word in line.split(separator: " ") where word.hasPrefix("--") {
                flags.insert(String(word.trimmingCharacters(in: CharacterSet(charactersIn: ","))))
                break
            }
            if line.hasPrefix("  -"), let short = line.split(separator: " ").first, short.count == 3, short.hasSuffix(",") {
                flags.insert(String(short.dropLast()))
            }
        }
        return flags.subtracting(["--help", "--version", "-h"])
    }

    /// The sslcat table of docs/sslcat.md: command → the flags in its rows' second column.
    static func readmeFlags() throws -> [String: Set<String>] {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("README.md").path) { dir.deleteLastPathComponent() }
        let text = try String(contentsOf: dir.appendingPathComponent("docs/sslcat.md"), encoding: .utf8)
        let section = try XCTUnwrap(text.components(separatedBy: "# sslcat\n").dropFirst().first?.components(separatedBy: "\n## ").first)
        var table: [String: Set<String>] = [:]
        var command = ""
        for line in section.split(separator: "\n") where line.hasPrefix("| ") && !line.hasPrefix("|---") {
            let cells = line.replacingOccurrences(of: "\\|", with: "/").split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4 else { continue }
            if cells[1].hasPrefix("`sslcat") {
                let words = cells[1].dropFirst().split(separator: " ")
                command = words.count > 1 ? String(words[1].filter { $0 != "`" }) : ""
                if table[command] == nil { table[command] = [] }  // a command with no flag is listed too
            }
            for word in cells[2].split(separator: " ") {
                let cleaned = word.trimmingCharacters(in: CharacterSet(charactersIn: "`,"))
                if cleaned.hasPrefix("-") && cleaned.count > 1 { table[command, default: []].insert(cleaned) }
            }
        }
        return table
    }

    /// Every flag of `sslcat --help` and of each subcommand's `--help` is in docs/sslcat.md's table, and the
    /// table lists no flag the tool lacks.
    func testReadmeTableMatchesEveryHelp() throws {
        let readme = try Self.readmeFlags()
        let root = try sslcat(["--help"])
        XCTAssertTrue(root.stdout.contains("--version"), root.stdout)
        XCTAssertEqual(readme[""], ["--version"], "the `sslcat` row")
        let subcommands = root.stdout.components(separatedBy: "SUBCOMMANDS:").last!.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.contains("See '") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
        XCTAssertGreaterThanOrEqual(subcommands.count, 5, root.stdout)
        for name in subcommands {
            let help = try sslcat([name, "--help"])
            XCTAssertEqual(help.status, 0, help.stderr)
            let inHelp = Self.helpFlags(help.stdout), inReadme = readme[name] ?? []
            XCTAssertEqual(inHelp.subtracting(inReadme).sorted(), [], "sslcat \(name): flags of --help missing from docs/sslcat.md's table")
            XCTAssertEqual(inReadme.subtracting(inHelp).sorted(), [], "sslcat \(name): flags in docs/sslcat.md's table that --help lacks")
        }
        XCTAssertEqual(Set(readme.keys), Set(subcommands + [""]), "docs/sslcat.md lists the commands the tool has")
    }
}
