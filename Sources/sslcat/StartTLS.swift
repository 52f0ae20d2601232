import ArgumentParser
import Foundation
import OpenSSLStreams

/// The plaintext protocols that `sslcat connect --starttls P` (and `serve --starttls P`) speak before TLS
/// is attached to the same connection.
///
/// Each runs its dialogue on a plain ``SocketStream`` within one total deadline, then returns: the caller
/// then calls `attachSSL` (`side: .client` after ``startTLSClient(_:protocol:serverName:timeout:plainLine:input:output:log:)``,
/// `side: .server` after ``startTLSServer(_:protocol:hostName:timeout:plainLine:log:)``). Bytes that
/// arrive after the switch and are not read by the dialogue are taken by `attachSSL` as the peer's first
/// TLS bytes, never as plaintext, so a command injected into the plaintext phase (CVE-2011-0411 style)
/// fails the handshake instead of running inside TLS. Whatever the application protocol wants again
/// after TLS (SMTP's second EHLO, IMAP's second CAPABILITY, FTP's PBSZ/PROT, XMPP's new stream,
/// PostgreSQL's StartupMessage) is the user's to send over the TLS connection.
enum StartTLSProtocol: String, CaseIterable, ExpressibleByArgument {
    /// SMTP (RFC 3207). Client: read the greeting (`220`, possibly multi-line), send `EHLO sslcat`,
    /// read the `250` reply and require `STARTTLS` as an EHLO keyword (the first word of a reply line
    /// after the first, compared whole and case-insensitively: "250-X-NOSTARTTLS" or a greeting text
    /// that mentions STARTTLS does not count), send `STARTTLS`, require `220`. Server: greet with `220`,
    /// answer `EHLO` with `250-HOST` and `250 STARTTLS`, `HELO`/`NOOP`/`RSET` with `250`, `QUIT` with
    /// `221` (and stop), anything else with `530 5.7.0 Must issue a STARTTLS command first`, and
    /// `STARTTLS` with `220 2.0.0 Ready to start TLS`.
    case smtp
    /// IMAP (RFC 9051 / RFC 3501, section 6.2.1). Client: read the greeting (`* OK`; `* PREAUTH` and
    /// `* BYE` refuse), send `a1 CAPABILITY`, require `STARTTLS` among the atoms of the untagged
    /// `* CAPABILITY` line and a tagged `a1 OK`, send `a2 STARTTLS`, require `a2 OK`. Server: greet with
    /// `* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED]`, answer `CAPABILITY`, `NOOP`, `LOGOUT` (and
    /// stop), reject anything else with a tagged `BAD`, and answer `STARTTLS` with a tagged `OK`.
    case imap
    /// POP3 (RFC 2595, section 4; CAPA from RFC 2449). Client: read the `+OK` greeting, send `CAPA`,
    /// require `+OK` and a capability line `STLS` before the terminating `.`, send `STLS`, require `+OK`.
    /// Server: greet with `+OK`, answer `CAPA` with `STLS`, `NOOP`, `QUIT` (and stop), refuse anything
    /// else with `-ERR`, and answer `STLS` with `+OK Begin TLS negotiation`.
    case pop3
    /// FTP with explicit TLS (RFC 4217 `AUTH TLS`). Client: read the `220` greeting (multi-line replies
    /// end with the same code and a space), send `AUTH TLS`, require `234`. The data channel (`PBSZ 0`,
    /// `PROT P`) is the user's to set up after TLS. Server: greet with `220`, answer `FEAT` with
    /// ` AUTH TLS`, `NOOP`, `QUIT` (and stop), `AUTH TLS` / `AUTH SSL` with `234`, anything else with `530`.
    case ftp
    /// XMPP client-to-server (RFC 6120, section 5). Client: send the stream header
    /// `<stream:stream to='SERVERNAME' version='1.0' xmlns='jabber:client' …>`, read the server's stream
    /// header and `<stream:features>`, require `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>` among
    /// the features, send `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`, require `<proceed/>`
    /// (a `<failure/>` or a `<stream:error>` refuses). Server: read the client's stream header, answer
    /// with a header of its own and features that require STARTTLS, require the `<starttls/>` element,
    /// answer `<proceed/>`.
    case xmpp
    /// LDAP StartTLS (RFC 4511, sections 4.14 and 4.12). Client: send an ExtendedRequest (messageID 1)
    /// whose requestName is `1.3.6.1.4.1.1466.20037`, BER-encoded by hand; read the LDAPMessage that
    /// answers it and require an ExtendedResponse with resultCode 0 (success). Any other resultCode
    /// (`unavailable` (52) from a server without TLS, `operationsError` (1) …) refuses, with the server's
    /// diagnostic message; a Notice of Disconnection (messageID 0) ends the dialogue. Server: read one
    /// LDAPMessage, require that ExtendedRequest, answer resultCode 0 with the same messageID and the
    /// responseName.
    case ldap
    /// PostgreSQL (protocol 3, "SSL Session Encryption"). Client: send the 8-byte SSLRequest (length 8,
    /// code 80877103), read one byte: `S` goes on to TLS, `N` means the server does not do TLS, `E` (an
    /// ErrorResponse of a server that does not know the request) refuses. Server: read an 8-byte
    /// request; answer a GSSENCRequest (80877104) with `N` and read again; answer the SSLRequest with `S`.
    case postgres
    /// No protocol of its own. Client: copy plaintext both ways (stdin to the server, the server to
    /// stdout) until a line from stdin equals the switch line (`--starttls-line`, default `STARTTLS`),
    /// send it, read one line of answer (whatever it says), then TLS. Server: read lines from the client
    /// (logged) until one equals the switch line, answer `OK`, then TLS.
    case plain
}

/// Why a STARTTLS dialogue did not reach TLS: which protocol, what went wrong, and the server's words.
struct StartTLSError: Error, CustomStringConvertible, Equatable {
    enum Kind: Equatable {
        /// The peer does not offer or accept the upgrade (no STARTTLS keyword, `N`, no `<starttls/>` feature).
        case notOffered
        /// The peer offers it but answered the request with a refusal (a non-success reply).
        case refused
        /// The peer closed the connection during the dialogue.
        case closed
        /// The peer sent something the protocol does not allow here.
        case malformed
        /// The dialogue did not finish within its total deadline.
        case timedOut
    }
    var proto: StartTLSProtocol
    var kind: Kind
    var message: String
    init(_ proto: StartTLSProtocol, _ kind: Kind, _ message: String) {
        self.proto = proto; self.kind = kind; self.message = message
    }
    var description: String { "STARTTLS (\(proto.rawValue)): \(message)" }
}

// MARK: - Client side

/// Runs the plaintext part of `proto` as the client on a connected stream without TLS, so that the
/// caller can then call `attachSSL(side: .client …)`. The protocols' dialogues are documented on
/// ``StartTLSProtocol``.
/// - Parameters:
///   - serverName: the server's name, sent as XMPP's stream `to`.
///   - timeout: the total deadline of the whole dialogue, in seconds (for `plain`: of the answer to the
///     switch line; the plaintext before it is the user's and has no deadline).
///   - plainLine: the switch line of `plain`.
///   - input, output: where `plain` reads the user's plaintext and writes the server's.
///   - log: gets each line received (`< …`) and sent (`> …`).
/// - Throws: ``StartTLSError`` when the server refuses, does not offer the upgrade, closes, times out or
///   breaks the protocol; the stream's own errors for a failing socket.
func startTLSClient(_ stream: SocketStream, protocol proto: StartTLSProtocol, serverName: String, timeout: TimeInterval,
                    plainLine: String = "STARTTLS", input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO,
                    log: @escaping (String) -> Void = { printError("sslcat: " + $0) }) throws {
    let saved = stream.readTimeout
    defer { stream.readTimeout = saved }
    let d = Dialogue(stream: stream, proto: proto, timeout: timeout, log: log)
    try d.mapTimeout {
        switch proto {
        case .smtp: try smtpClient(d)
        case .imap: try imapClient(d)
        case .pop3: try pop3Client(d)
        case .ftp: try ftpClient(d)
        case .xmpp: try xmppClient(d, serverName: serverName)
        case .ldap: try ldapClient(d)
        case .postgres: try postgresClient(d)
        case .plain: try plainClient(d, switchLine: plainLine, input: input, output: output)
        }
    }
}

/// SMTP client: greeting, EHLO, the STARTTLS keyword, STARTTLS, 220.
private func smtpClient(_ d: Dialogue) throws {
    let greeting = try d.reply()
    guard greeting.code == "220" else { throw d.error(.refused, "the server did not greet with 220: \(greeting.last)") }
    try d.send("EHLO sslcat")
    let ehlo = try d.reply()
    guard ehlo.code == "250" else { throw d.error(.refused, "EHLO refused: \(ehlo.last)") }
    // The first line is the server's name and greeting; each later line is one keyword and its parameters.
    let keywords = ehlo.lines.dropFirst().map { line in
        String(line.dropFirst(4).split(separator: " ", maxSplits: 1).first ?? "").uppercased()
    }
    guard keywords.contains("STARTTLS") else {
        throw d.error(.notOffered, "the server does not offer STARTTLS (EHLO keywords: \(keywords.joined(separator: " ")))")
    }
    try d.send("STARTTLS")
    let ready = try d.reply()
    guard ready.code == "220" else { throw d.error(.refused, "STARTTLS refused: \(ready.last)") }
}

/// IMAP client: greeting, CAPABILITY with STARTTLS, STARTTLS, tagged OK.
private func imapClient(_ d: Dialogue) throws {
    let greeting = try d.line()
    let greetingWords = greeting.split(separator: " ").map { $0.uppercased() }
    guard greetingWords.count >= 2, greetingWords[0] == "*" else { throw d.error(.malformed, "not an IMAP greeting: \(greeting)") }
    switch greetingWords[1] {
    case "OK": break
    case "PREAUTH": throw d.error(.refused, "the server pre-authenticated the connection, where STARTTLS is not allowed: \(greeting)")
    default: throw d.error(.refused, "the server refused the connection: \(greeting)")
    }
    try d.send("a1 CAPABILITY")
    var capabilities: [String] = []
    let capabilityDone = try d.imapTagged("a1") { line in
        let words = line.split(separator: " ").map { $0.uppercased() }
        if words.count >= 2, words[0] == "*", words[1] == "CAPABILITY" { capabilities += words.dropFirst(2) }
    }
    guard capabilityDone.status == "OK" else { throw d.error(.refused, "CAPABILITY failed: \(capabilityDone.line)") }
    guard capabilities.contains("STARTTLS") else {
        throw d.error(.notOffered, "the server does not offer STARTTLS (CAPABILITY \(capabilities.joined(separator: " ")))")
    }
    try d.send("a2 STARTTLS")
    let done = try d.imapTagged("a2") { _ in }
    guard done.status == "OK" else { throw d.error(.refused, "STARTTLS refused: \(done.line)") }
}

/// POP3 client: greeting, CAPA with STLS, STLS, +OK.
private func pop3Client(_ d: Dialogue) throws {
    let greeting = try d.line()
    guard greeting.hasPrefix("+OK") else { throw d.error(.refused, "the server did not greet with +OK: \(greeting)") }
    try d.send("CAPA")
    let capa = try d.line()
    guard capa.hasPrefix("+OK") else { throw d.error(.notOffered, "the server has no CAPA, so no STLS: \(capa)") }
    var capabilities: [String] = []
    for _ in 0..<Dialogue.maxLines {
        let line = try d.line()
        if line == "." { break }
        capabilities.append(String(line.split(separator: " ").first ?? "").uppercased())
    }
    guard capabilities.contains("STLS") else {
        throw d.error(.notOffered, "the server does not offer STLS (CAPA: \(capabilities.joined(separator: " ")))")
    }
    try d.send("STLS")
    let answer = try d.line()
    guard answer.hasPrefix("+OK") else { throw d.error(.refused, "STLS refused: \(answer)") }
}

/// FTP client: greeting, AUTH TLS, 234.
private func ftpClient(_ d: Dialogue) throws {
    let greeting = try d.reply()
    guard greeting.code == "220" else { throw d.error(.refused, "the server did not greet with 220: \(greeting.last)") }
    try d.send("AUTH TLS")
    let answer = try d.reply()
    guard answer.code == "234" else {
        throw d.error(answer.code == "500" || answer.code == "502" || answer.code == "504" ? .notOffered : .refused,
                      "AUTH TLS refused: \(answer.last)")
    }
}

/// The namespace of XMPP's STARTTLS elements.
private let xmppTLSNamespace = "urn:ietf:params:xml:ns:xmpp-tls"

/// XMPP client: stream header, features with starttls, starttls, proceed.
private func xmppClient(_ d: Dialogue, serverName: String) throws {
    try d.sendRaw("<?xml version='1.0'?><stream:stream to='\(xmlEscaped(serverName))' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    var sawStream = false
    var features: [XMLTag] = []
    var inFeatures = false
    for _ in 0..<Dialogue.maxLines {
        let tag = try d.xmlTag()
        if tag.isDeclaration { continue }
        if !sawStream {
            guard tag.localName == "stream", !tag.isClosing else { throw d.error(.malformed, "expected the server's stream header, got \(tag.text)") }
            sawStream = true
            continue
        }
        if tag.localName == "error" && !inFeatures { throw d.error(.refused, "the server sent a stream error: \(try d.xmlUntilClose("error", first: tag))") }
        if tag.localName == "features" {
            if tag.isClosing || tag.isEmpty { break }
            inFeatures = true
            continue
        }
        guard inFeatures else { throw d.error(.malformed, "expected <stream:features>, got \(tag.text)") }
        features.append(tag)
    }
    guard features.contains(where: { $0.localName == "starttls" && !$0.isClosing && $0.attribute("xmlns") == xmppTLSNamespace }) else {
        let names = features.filter { !$0.isClosing }.map(\.localName)
        throw d.error(.notOffered, "the server does not offer STARTTLS (features: \(names.joined(separator: " ")))")
    }
    try d.sendRaw("<starttls xmlns='\(xmppTLSNamespace)'/>")
    let answer = try d.xmlTag()
    if answer.localName == "proceed" && answer.attribute("xmlns") == xmppTLSNamespace {
        if !answer.isEmpty {
            let close = try d.xmlTag()
            guard close.isClosing && close.localName == "proceed" else { throw d.error(.malformed, "expected </proceed>, got \(close.text)") }
        }
        return
    }
    if answer.localName == "failure" { throw d.error(.refused, "the server answered STARTTLS with \(answer.text)") }
    if answer.localName == "error" { throw d.error(.refused, "the server sent a stream error: \(try d.xmlUntilClose("error", first: answer))") }
    throw d.error(.malformed, "expected <proceed/>, got \(answer.text)")
}

/// The StartTLS extended operation's OID (RFC 4511, section 4.14.1).
private let ldapStartTLSOID = "1.3.6.1.4.1.1466.20037"
/// The Notice of Disconnection's OID (RFC 4511, section 4.4.1).
private let ldapNoticeOfDisconnectionOID = "1.3.6.1.4.1.1466.20036"

/// LDAP client: ExtendedRequest StartTLS, ExtendedResponse resultCode 0.
private func ldapClient(_ d: Dialogue) throws {
    // LDAPMessage ::= SEQUENCE { messageID 1, [APPLICATION 23] ExtendedRequest { [0] requestName } }
    let request = BER.sequence(BER.integer(1) + BER.element(0x77, BER.element(0x80, Array(ldapStartTLSOID.utf8))))
    d.log("> ExtendedRequest \(ldapStartTLSOID) (messageID 1)")
    try d.stream.write(request)
    try d.stream.flush()
    let message = try d.ldapMessage()
    guard let response = LDAPExtendedResponse(message) else {
        throw d.error(.malformed, "the answer is not an LDAP ExtendedResponse (\(message.prefix(16).map { String(format: "%02x", $0) }.joined()))")
    }
    d.log("< ExtendedResponse messageID \(response.messageID), resultCode \(response.resultCode) (\(ldapResultName(response.resultCode)))"
          + (response.diagnosticMessage.isEmpty ? "" : ": \(response.diagnosticMessage)"))
    if response.messageID == 0 {
        throw d.error(.closed, "the server sent a Notice of Disconnection: resultCode \(response.resultCode) (\(ldapResultName(response.resultCode))) \(response.diagnosticMessage)")
    }
    guard response.messageID == 1 else { throw d.error(.malformed, "the answer has messageID \(response.messageID), not 1") }
    guard response.resultCode == 0 else {
        throw d.error(response.resultCode == 2 || response.resultCode == 52 || response.resultCode == 53 ? .notOffered : .refused,
                      "StartTLS refused: resultCode \(response.resultCode) (\(ldapResultName(response.resultCode)))"
                        + (response.diagnosticMessage.isEmpty ? "" : ": \(response.diagnosticMessage)"))
    }
}

/// PostgreSQL's SSLRequest code (1234 << 16 | 5679) and GSSENCRequest code (1234 << 16 | 5680).
private let postgresSSLRequestCode: UInt32 = 80877103
private let postgresGSSENCRequestCode: UInt32 = 80877104

/// PostgreSQL client: SSLRequest, `S`.
private func postgresClient(_ d: Dialogue) throws {
    d.log("> SSLRequest")
    try d.stream.write(BER.bigEndian32(8) + BER.bigEndian32(postgresSSLRequestCode))
    try d.stream.flush()
    let answer = try d.bytes(1)[0]
    d.log("< \(Character(Unicode.Scalar(answer)))")
    switch answer {
    case UInt8(ascii: "S"): return
    case UInt8(ascii: "N"): throw d.error(.notOffered, "the server does not accept SSL connections (it answered 'N' to SSLRequest)")
    case UInt8(ascii: "E"): throw d.error(.refused, "the server answered SSLRequest with an ErrorResponse")
    default: throw d.error(.malformed, "the server answered SSLRequest with byte 0x\(String(format: "%02x", answer)), not 'S' or 'N'")
    }
}

/// Plain client: plaintext both ways until stdin gives the switch line, send it, read one line back.
private func plainClient(_ d: Dialogue, switchLine: String, input: Int32, output: Int32) throws {
    let stream = d.stream
    stream.readTimeout = nil
    var pending = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let socketReady = try pollReadable(stream.fileDescriptor)
        if stream.hasBufferedInput || socketReady {
            let n = try chunk.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { throw d.error(.closed, "the server closed the connection before TLS") }
            _ = chunk.withUnsafeBytes { Glibc.write(output, $0.baseAddress, n) }
        }
        if try pollReadable(input) {
            var byte: UInt8 = 0
            guard Glibc.read(input, &byte, 1) == 1 else { throw d.error(.closed, "stdin ended before the \(switchLine) line") }
            pending.append(byte)
            if byte == UInt8(ascii: "\n") {
                let line = String(decoding: pending, as: UTF8.self).trimmingCharacters(in: .newlines)
                try stream.write(pending); try stream.flush()
                pending.removeAll()
                if line == switchLine {
                    d.restartDeadline()
                    _ = try d.line()
                    return
                }
            }
        }
    }
}

/// Waits up to 50 ms for `fd` to be readable.
private func pollReadable(_ fd: Int32) throws -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let r = poll(&p, 1, 50)
    if r < 0 && errno != EINTR { throw SSLCatFailure("poll: \(String(cString: strerror(errno)))") }
    return r > 0
}

// MARK: - Server side

/// Runs the plaintext part of `proto` as the server on an accepted stream without TLS, so that the
/// caller can then call `attachSSL(side: .server …)`. The dialogues are documented on
/// ``StartTLSProtocol``; at most ``Dialogue/maxLines`` commands are answered before the upgrade.
/// - Parameters:
///   - hostName: the name the greetings give.
///   - timeout: the total deadline of the dialogue, in seconds.
///   - plainLine: the switch line of `plain`.
///   - log: gets each line received (`< …`) and sent (`> …`).
/// - Throws: ``StartTLSError`` when the client leaves (`QUIT`, `LOGOUT`: kind `.closed`), never asks
///   for TLS, times out or breaks the protocol; the stream's own errors for a failing socket.
func startTLSServer(_ stream: SocketStream, protocol proto: StartTLSProtocol, hostName: String, timeout: TimeInterval,
                    plainLine: String = "STARTTLS", log: @escaping (String) -> Void = { printError("sslcat: " + $0) }) throws {
    let saved = stream.readTimeout
    defer { stream.readTimeout = saved }
    let d = Dialogue(stream: stream, proto: proto, timeout: timeout, log: log)
    try d.mapTimeout {
        switch proto {
        case .smtp: try smtpServer(d, hostName: hostName)
        case .imap: try imapServer(d)
        case .pop3: try pop3Server(d)
        case .ftp: try ftpServer(d)
        case .xmpp: try xmppServer(d, hostName: hostName)
        case .ldap: try ldapServer(d)
        case .postgres: try postgresServer(d)
        case .plain: try plainServer(d, switchLine: plainLine)
        }
    }
}

/// The command word of a line, upper-cased, and the rest.
private func command(_ line: String) -> (verb: String, rest: String) {
    let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
    return (String(parts.first ?? "").uppercased(), parts.count > 1 ? String(parts[1]) : "")
}

/// Reads commands and gives each to `answer` until it returns true (the client asked for the upgrade),
/// at most ``Dialogue/maxLines`` of them.
private func answerCommands(_ d: Dialogue, until upgrade: String, _ answer: (String) throws -> Bool) throws {
    for _ in 0..<Dialogue.maxLines where try answer(try d.line()) { return }
    throw d.error(.malformed, "the client sent \(Dialogue.maxLines) commands without \(upgrade)")
}

private func smtpServer(_ d: Dialogue, hostName: String) throws {
    try d.send("220 \(hostName) ESMTP sslcat")
    try answerCommands(d, until: "STARTTLS") { line in
        let (verb, _) = command(line)
        switch verb {
        case "EHLO": try d.send("250-\(hostName)"); try d.send("250 STARTTLS")
        case "HELO", "NOOP", "RSET": try d.send("250 OK")
        case "QUIT": try d.send("221 2.0.0 Bye"); throw d.error(.closed, "the client quit before STARTTLS")
        case "STARTTLS": try d.send("220 2.0.0 Ready to start TLS"); return true
        default: try d.send("530 5.7.0 Must issue a STARTTLS command first")
        }
        return false
    }
}

private func imapServer(_ d: Dialogue) throws {
    let capability = "IMAP4rev1 STARTTLS LOGINDISABLED"
    try d.send("* OK [CAPABILITY \(capability)] sslcat ready")
    try answerCommands(d, until: "STARTTLS") { line in
        let (tag, rest) = command(line)
        guard !tag.isEmpty, tag != "*" else { try d.send("* BAD no tag"); return false }
        let originalTag = String(line.prefix(tag.count))
        switch command(rest).verb {
        case "CAPABILITY": try d.send("* CAPABILITY \(capability)"); try d.send("\(originalTag) OK CAPABILITY completed")
        case "NOOP": try d.send("\(originalTag) OK NOOP completed")
        case "LOGOUT":
            try d.send("* BYE sslcat logging out"); try d.send("\(originalTag) OK LOGOUT completed")
            throw d.error(.closed, "the client logged out before STARTTLS")
        case "STARTTLS": try d.send("\(originalTag) OK Begin TLS negotiation now"); return true
        default: try d.send("\(originalTag) BAD only CAPABILITY, NOOP, LOGOUT and STARTTLS before TLS")
        }
        return false
    }
}

private func pop3Server(_ d: Dialogue) throws {
    try d.send("+OK sslcat POP3 ready")
    try answerCommands(d, until: "STLS") { line in
        switch command(line).verb {
        case "CAPA": try d.send("+OK Capability list follows"); try d.send("STLS"); try d.send(".")
        case "NOOP": try d.send("+OK")
        case "QUIT": try d.send("+OK bye"); throw d.error(.closed, "the client quit before STLS")
        case "STLS": try d.send("+OK Begin TLS negotiation"); return true
        default: try d.send("-ERR only CAPA, NOOP, QUIT and STLS before TLS")
        }
        return false
    }
}

private func ftpServer(_ d: Dialogue) throws {
    try d.send("220 sslcat FTP ready")
    try answerCommands(d, until: "AUTH TLS") { line in
        let (verb, rest) = command(line)
        switch verb {
        case "FEAT": try d.send("211-Features:"); try d.send(" AUTH TLS"); try d.send("211 End")
        case "NOOP": try d.send("200 OK")
        case "QUIT": try d.send("221 Goodbye"); throw d.error(.closed, "the client quit before AUTH TLS")
        case "AUTH" where ["TLS", "SSL", "TLS-C"].contains(rest.uppercased()): try d.send("234 Proceed with negotiation"); return true
        case "AUTH": try d.send("504 only AUTH TLS")
        default: try d.send("530 Please use AUTH TLS first")
        }
        return false
    }
}

private func xmppServer(_ d: Dialogue, hostName: String) throws {
    var header: XMLTag
    repeat { header = try d.xmlTag() } while header.isDeclaration
    guard header.localName == "stream", !header.isClosing, !header.isEmpty else {
        throw d.error(.malformed, "expected a stream header, got \(header.text)")
    }
    try d.sendRaw("<?xml version='1.0'?><stream:stream from='\(xmlEscaped(header.attribute("to") ?? hostName))' id='\(UUID().uuidString)' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                  + "<stream:features><starttls xmlns='\(xmppTLSNamespace)'><required/></starttls></stream:features>")
    let request = try d.xmlTag()
    guard request.localName == "starttls", request.attribute("xmlns") == xmppTLSNamespace, !request.isClosing else {
        try d.sendRaw("<failure xmlns='\(xmppTLSNamespace)'/></stream:stream>")
        throw d.error(.malformed, "expected <starttls/>, got \(request.text)")
    }
    if !request.isEmpty {
        let close = try d.xmlTag()
        guard close.isClosing && close.localName == "starttls" else { throw d.error(.malformed, "expected </starttls>, got \(close.text)") }
    }
    try d.sendRaw("<proceed xmlns='\(xmppTLSNamespace)'/>")
}

private func ldapServer(_ d: Dialogue) throws {
    let message = try d.ldapMessage()
    var reader = BER.Reader(message)
    guard let messageID = reader.integer(), let op = reader.next(), op.tag == 0x77 else {
        throw d.error(.malformed, "the first LDAP message is not an ExtendedRequest")
    }
    var fields = BER.Reader(op.value)
    guard let name = fields.next(), name.tag == 0x80, String(decoding: name.value, as: UTF8.self) == ldapStartTLSOID else {
        throw d.error(.malformed, "the ExtendedRequest is not StartTLS (\(ldapStartTLSOID))")
    }
    d.log("< ExtendedRequest \(ldapStartTLSOID) (messageID \(messageID))")
    // ExtendedResponse: resultCode success, matchedDN "", diagnosticMessage "", responseName [10].
    let body = BER.element(0x0a, [0]) + BER.element(0x04, []) + BER.element(0x04, []) + BER.element(0x8a, Array(ldapStartTLSOID.utf8))
    try d.stream.write(BER.sequence(BER.integer(messageID) + BER.element(0x78, body)))
    try d.stream.flush()
    d.log("> ExtendedResponse resultCode 0 (success)")
}

private func postgresServer(_ d: Dialogue) throws {
    for _ in 0..<2 {
        let request = try d.bytes(8)
        let length = BER.readBigEndian32(request, at: 0), code = BER.readBigEndian32(request, at: 4)
        guard length == 8 else { throw d.error(.malformed, "expected an 8-byte SSLRequest, got a message of length \(length)") }
        switch code {
        case postgresGSSENCRequestCode: d.log("< GSSENCRequest"); try d.stream.write([UInt8(ascii: "N")]); try d.stream.flush(); d.log("> N")
        case postgresSSLRequestCode: d.log("< SSLRequest"); try d.stream.write([UInt8(ascii: "S")]); try d.stream.flush(); d.log("> S"); return
        default: throw d.error(.malformed, "expected SSLRequest (code \(postgresSSLRequestCode)), got code \(code)")
        }
    }
    throw d.error(.malformed, "the client did not send SSLRequest")
}

private func plainServer(_ d: Dialogue, switchLine: String) throws {
    try answerCommands(d, until: switchLine) { line in
        if line == switchLine {
            try d.send("OK")
            return true
        }
        return false
    }
}

// MARK: - The dialogue's reading and writing

/// One STARTTLS dialogue on a stream: reads bounded by one total deadline, lines logged.
final class Dialogue {
    /// The most lines (commands, reply lines, XML tags) a dialogue takes before giving up.
    static let maxLines = 200
    /// The longest line or XML tag accepted.
    static let maxLineLength = 8192
    let stream: SocketStream
    let proto: StartTLSProtocol
    let timeout: TimeInterval
    private(set) var deadline: Date
    let log: (String) -> Void

    init(stream: SocketStream, proto: StartTLSProtocol, timeout: TimeInterval, log: @escaping (String) -> Void) {
        self.stream = stream; self.proto = proto; self.timeout = timeout; self.log = log
        deadline = Date().addingTimeInterval(timeout)
    }

    func error(_ kind: StartTLSError.Kind, _ message: String) -> StartTLSError { StartTLSError(proto, kind, message) }

    /// Starts the total deadline again (`plain`, once the user's plaintext part is over).
    func restartDeadline() { deadline = Date().addingTimeInterval(timeout) }

    /// Runs `body`; a failure after the deadline passed becomes a `.timedOut` ``StartTLSError``.
    func mapTimeout(_ body: () throws -> Void) throws {
        do { try body() } catch let error as StartTLSError { throw error } catch {
            if Date() >= deadline { throw self.error(.timedOut, "no answer within \(timeout) s (\(error))") }
            throw error
        }
    }

    /// Gives the next read what is left of the deadline.
    private func arm() throws {
        let left = deadline.timeIntervalSinceNow
        guard left > 0 else { throw error(.timedOut, "no answer within \(timeout) s") }
        stream.readTimeout = left
    }

    /// One line (logged); the peer closing is an error.
    func line() throws -> String {
        try arm()
        guard let line = try stream.readLine(maxLength: Dialogue.maxLineLength) else {
            throw error(.closed, "the peer closed the connection")
        }
        log("< \(line)")
        return line
    }

    /// Exactly `count` bytes; the peer closing first is an error.
    func bytes(_ count: Int) throws -> [UInt8] {
        try arm()
        do { return try stream.readExactly(count) } catch let e as StreamError where e.kind == .endOfStream {
            throw error(.closed, "the peer closed the connection")
        }
    }

    /// Sends a line with CR LF (logged).
    func send(_ line: String) throws {
        log("> \(line)")
        try stream.writeLine(line)
    }

    /// Sends text as it is (logged).
    func sendRaw(_ text: String) throws {
        log("> \(text)")
        try stream.write(text)
        try stream.flush()
    }

    /// An SMTP or FTP reply: lines `CODE-text` up to the line `CODE text` (RFC 5321 4.2.1, RFC 959 4.2).
    func reply() throws -> (code: String, lines: [String], last: String) {
        let first = try line()
        let code = String(first.prefix(3))
        guard code.count == 3, code.allSatisfy(\.isNumber) else { throw error(.malformed, "not a reply: \(first)") }
        var lines = [first]
        var last = first
        // Multi-line when the fourth character is '-'; it ends with a line "CODE text" (or just "CODE").
        if first.dropFirst(3).first == "-" {
            repeat {
                guard lines.count < Dialogue.maxLines else { throw error(.malformed, "a reply of more than \(Dialogue.maxLines) lines") }
                last = try line()
                lines.append(last)
            } while !(last.hasPrefix(code) && (last.count == 3 || last.dropFirst(3).first == " "))
        }
        return (code, lines, last)
    }

    /// IMAP: lines up to the one tagged `tag`, each untagged line given to `untagged`.
    func imapTagged(_ tag: String, _ untagged: (String) -> Void) throws -> (status: String, line: String) {
        for _ in 0..<Dialogue.maxLines {
            let line = try self.line()
            if line.hasPrefix(tag + " ") {
                return (String(line.dropFirst(tag.count + 1).split(separator: " ").first ?? "").uppercased(), line)
            }
            if line.hasPrefix("* BYE") { throw error(.closed, "the server is closing the connection: \(line)") }
            untagged(line)
        }
        throw error(.malformed, "no tagged answer to \(tag) in \(Dialogue.maxLines) lines")
    }

    /// XMPP: the next tag (`<…>`), text between tags skipped. Reads byte by byte from the stream's buffer,
    /// so nothing after the tag is taken from what `attachSSL` will read.
    func xmlTag() throws -> XMLTag {
        var bytes: [UInt8] = []
        var inTag = false
        var quote: UInt8 = 0
        while true {
            let byte = try self.bytes(1)[0]
            if !inTag {
                if byte == UInt8(ascii: "<") { inTag = true; bytes = [byte] }
                continue
            }
            bytes.append(byte)
            guard bytes.count <= Dialogue.maxLineLength else { throw error(.malformed, "an XML tag longer than \(Dialogue.maxLineLength) bytes") }
            if quote != 0 {
                if byte == quote { quote = 0 }
            } else if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") {
                quote = byte
            } else if byte == UInt8(ascii: ">") {
                let tag = XMLTag(String(decoding: bytes, as: UTF8.self))
                log("< \(tag.text)")
                return tag
            }
        }
    }

    /// XMPP: the tags from `first` up to its closing tag, as text (for an error message).
    func xmlUntilClose(_ localName: String, first: XMLTag) throws -> String {
        var text = first.text
        if first.isEmpty { return text }
        for _ in 0..<Dialogue.maxLines {
            let tag = try xmlTag()
            text += tag.text
            if tag.isClosing && tag.localName == localName { break }
        }
        return text
    }

    /// LDAP: one LDAPMessage's contents (the bytes inside its outer SEQUENCE).
    func ldapMessage() throws -> [UInt8] {
        let tag = try bytes(1)[0]
        guard tag == 0x30 else { throw error(.malformed, "the answer is not an LDAPMessage (tag 0x\(String(format: "%02x", tag)))") }
        let first = try bytes(1)[0]
        var length = Int(first)
        if first & 0x80 != 0 {
            let count = Int(first & 0x7f)
            guard (1...3).contains(count) else { throw error(.malformed, "an LDAPMessage with a length of \(count) bytes") }
            length = try bytes(count).reduce(0) { $0 << 8 | Int($1) }
        }
        guard length <= 64 * 1024 else { throw error(.malformed, "an LDAPMessage of \(length) bytes") }
        return try bytes(length)
    }
}

/// One XML tag as read by ``Dialogue/xmlTag()``: enough of XML for XMPP's stream header and features.
struct XMLTag {
    let text: String
    init(_ text: String) { self.text = text }
    /// `<?…?>`.
    var isDeclaration: Bool { text.hasPrefix("<?") }
    /// `</…>`.
    var isClosing: Bool { text.hasPrefix("</") }
    /// `<…/>`.
    var isEmpty: Bool { text.hasSuffix("/>") }
    /// The name without its prefix: "features" for `<stream:features>`.
    var localName: String {
        let name = text.dropFirst(isClosing ? 2 : 1).prefix { !" \t\r\n/>".contains($0) }
        return String(name.split(separator: ":").last ?? "")
    }
    /// The value of an attribute, quoted with ' or ".
    func attribute(_ name: String) -> String? {
        for quote in ["'", "\""] {
            for separator in [" ", "\t", "\n", "\r"] {
                if let start = text.range(of: "\(separator)\(name)=\(quote)") {
                    let rest = text[start.upperBound...]
                    if let end = rest.firstIndex(of: Character(quote)) { return String(rest[..<end]) }
                }
            }
        }
        return nil
    }
}

/// Escapes text for an XML attribute quoted with '.
private func xmlEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "'", with: "&apos;")
        .replacingOccurrences(of: "<", with: "&lt;")
}

// MARK: - BER, as much as LDAP's StartTLS needs

/// BER (X.690) encoding and decoding by hand, for the LDAP StartTLS request and response.
enum BER {
    /// A definite length: short form below 128, else long form.
    static func length(_ count: Int) -> [UInt8] {
        if count < 0x80 { return [UInt8(count)] }
        var bytes: [UInt8] = []
        var n = count
        while n > 0 { bytes.insert(UInt8(n & 0xff), at: 0); n >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
    /// Tag, length, value.
    static func element(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] { [tag] + length(value.count) + value }
    static func sequence(_ value: [UInt8]) -> [UInt8] { element(0x30, value) }
    /// An INTEGER (non-negative, minimal two's complement).
    static func integer(_ value: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var n = value
        repeat { bytes.insert(UInt8(n & 0xff), at: 0); n >>= 8 } while n > 0
        if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
        return element(0x02, bytes)
    }
    static func bigEndian32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    static func readBigEndian32(_ bytes: [UInt8], at i: Int) -> UInt32 {
        UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
    }

    /// Reads tag-length-value elements one after the other; nil at the end or on malformed input.
    struct Reader {
        private let bytes: [UInt8]
        private var index = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        mutating func next() -> (tag: UInt8, value: [UInt8])? {
            guard index + 2 <= bytes.count else { return nil }
            let tag = bytes[index]
            guard tag & 0x1f != 0x1f else { return nil }  // high tag numbers: not in LDAP
            var length = Int(bytes[index + 1])
            var at = index + 2
            if length & 0x80 != 0 {
                let count = length & 0x7f
                guard (1...3).contains(count), at + count <= bytes.count else { return nil }
                length = bytes[at..<at + count].reduce(0) { $0 << 8 | Int($1) }
                at += count
            }
            guard at + length <= bytes.count else { return nil }
            index = at + length
            return (tag, Array(bytes[at..<at + length]))
        }
        /// An INTEGER or ENUMERATED of at most 4 bytes, non-negative.
        mutating func integer(tag: UInt8 = 0x02) -> Int? {
            guard let element = next(), element.tag == tag, (1...4).contains(element.value.count), element.value[0] & 0x80 == 0 else { return nil }
            return element.value.reduce(0) { $0 << 8 | Int($1) }
        }
    }
}

/// An LDAP ExtendedResponse (RFC 4511, section 4.12), from an LDAPMessage's contents.
struct LDAPExtendedResponse {
    var messageID: Int
    var resultCode: Int
    var diagnosticMessage: String
    init?(_ message: [UInt8]) {
        var reader = BER.Reader(message)
        guard let id = reader.integer(), let op = reader.next(), op.tag == 0x78 else { return nil }
        var fields = BER.Reader(op.value)
        guard let code = fields.integer(tag: 0x0a), let matched = fields.next(), matched.tag == 0x04,
              let diagnostic = fields.next(), diagnostic.tag == 0x04 else { return nil }
        messageID = id; resultCode = code
        diagnosticMessage = String(decoding: diagnostic.value, as: UTF8.self)
    }
}

/// The names of the LDAP result codes a StartTLS answer has (RFC 4511, appendix A).
func ldapResultName(_ code: Int) -> String {
    switch code {
    case 0: "success"
    case 1: "operationsError"
    case 2: "protocolError"
    case 12: "unavailableCriticalExtension"
    case 13: "confidentialityRequired"
    case 48: "inappropriateAuthentication"
    case 50: "insufficientAccessRights"
    case 51: "busy"
    case 52: "unavailable"
    case 53: "unwillingToPerform"
    case 80: "other"
    default: "resultCode \(code)"
    }
}
