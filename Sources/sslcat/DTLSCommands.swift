import ArgumentParser
import Foundation
import OpenSSLFLI
import OpenSSLStreams

extension Serve {
    /// `serve --dtls`: a DTLS listener on the context the options made.
    func serveDTLS(_ ctx: SSLContextPointer) throws {
        let listener = try listenDTLS(port: port, host: host, sslCtx: .context(ctx))
        defer { listener.close() }
        printError("sslcat: DTLS, listening on \(listener.host.contains(":") ? "[\(listener.host)]" : listener.host):\(listener.port)")
        repeat {
            let socket: DTLSSocket
            do {
                socket = try listener.accept(handshakeTimeout: timeout)
            } catch {
                printError("sslcat: association refused: \(error)")
                if once { throw ExitCode(1) }
                continue
            }
            printError("sslcat: association with \(socket.peerAddress)")
            for line in handshakeSummary(ssl: socket.ssl) { printError("sslcat: " + line) }
            do {
                if echo {
                    var count = 0
                    while let datagram = try socket.receive() {
                        try socket.send(datagram)
                        count += 1
                    }
                    printError("sslcat: \(socket.peerAddress) closed; \(count) datagrams echoed")
                } else {
                    try relayDatagrams(socket, idleAfterInput: timeout)
                }
            } catch {
                printError("sslcat: \(socket.peerAddress): \(error)")
            }
            try? socket.close()
        } while !once
    }
}

/// Each line of `input` (with its newline) goes out as one datagram; each datagram received is written
/// to `output`. Returns when the peer sends close_notify, or `idleAfterInput` seconds after the input ended.
func relayDatagrams(_ socket: DTLSSocket, idleAfterInput: TimeInterval, input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws {
    var inputOpen = true
    var inputEndedAt: Date?
    var line: [UInt8] = []
    var byte: UInt8 = 0
    while true {
        if let ended = inputEndedAt, Date().timeIntervalSince(ended) > idleAfterInput { return }
        var fds = [pollfd(fd: socket.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        if inputOpen { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
        let r = poll(&fds, nfds_t(fds.count), 200)
        if r < 0 && errno != EINTR { throw SSLCatFailure("poll: \(String(cString: strerror(errno)))") }
        if r <= 0 { continue }
        if inputOpen, fds.count > 1, fds[1].revents != 0 {
            // One byte at a time up to the newline: lines stay lines, whatever stdin's buffering.
            if Glibc.read(input, &byte, 1) == 1 {
                line.append(byte)
                if byte == 10 || line.count >= socket.maximumDatagramSize {
                    try socket.send(line)
                    line.removeAll()
                }
            } else {
                if !line.isEmpty { try socket.send(line); line.removeAll() }
                inputOpen = false
                inputEndedAt = Date()
            }
        }
        if fds[0].revents != 0 {
            do {
                guard let datagram = try socket.receive(timeout: 0.5) else { return }  // close_notify
                var written = 0
                while written < datagram.count {
                    let w = datagram.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + written, datagram.count - written) }
                    if w <= 0 { throw SSLCatFailure("write to stdout: \(String(cString: strerror(errno)))") }
                    written += w
                }
            } catch let error as SocketError where error.errno == ETIMEDOUT {
                continue  // a retransmission or a record that carried no data
            }
        }
    }
}
