import ArgumentParser
import Foundation
import OpenSSLFLI
import OpenSSLStreams

extension Serve {
    /// `serve --dtls`: a DTLS listener on the context the options made. The accept loop runs the cookie
    /// exchange (stateless, so a silent or spoofed peer costs nothing) and the handshake, within
    /// `--timeout`; each association then runs in a thread of its own, closed after `--idle-timeout`
    /// without a datagram, so a peer that vanished without close_notify is forgotten then.
    func serveDTLS(_ ctx: SSLContextPointer, slots: ConnectionSlots) throws {
        let listener = try listenDTLS(port: port, host: host, sslCtx: .context(ctx))
        defer { listener.close() }
        printError("sslcat: DTLS, listening on \(listener.host.contains(":") ? "[\(listener.host)]" : listener.host):\(listener.port)")
        while true {
            let socket: DTLSSocket
            do {
                socket = try listener.accept(handshakeTimeout: timeout)
            } catch {
                printError("sslcat: association refused: \(error)")
                if once { throw ExitCode(1) }
                continue
            }
            if once { return serveAssociation(socket) }
            guard slots.take() else {
                try? socket.close()
                continue
            }
            startThread(stackSize: connectionStackSize) {  // the socket is the new thread's from here
                serveAssociation(socket)
                slots.release()
            }
        }
    }

    /// One association: echo, or the relay to stdin/stdout (one association at a time).
    func serveAssociation(_ socket: DTLSSocket) {
        printError("sslcat: association with \(socket.peerAddress)")
        for line in handshakeSummary(ssl: socket.ssl) { printError("sslcat: " + line) }
        socket.readTimeout = idleTimeout
        do {
            if echo {
                var count = 0
                while let datagram = try socket.receive() {
                    try socket.send(datagram)
                    count += 1
                }
                printError("sslcat: \(socket.peerAddress) closed; \(count) datagrams echoed")
            } else if RelayClaim.shared.claim() {
                defer { RelayClaim.shared.release() }
                try relayDatagrams(socket, idleAfterInput: idleTimeout)
            } else {
                printError("sslcat: \(socket.peerAddress): stdin is relayed to another association; closing (use --echo to serve many)")
            }
        } catch {
            reportConnectionError(error, peer: socket.peerAddress, idleTimeout: idleTimeout)
        }
        try? socket.close()
    }
}

/// Each line of `input` (with its newline) goes out as one datagram; each datagram received is written
/// to `output`. Returns when the peer sends close_notify, or after the input ended: once the peer has
/// answered (a datagram since the last one sent) and been quiet for `quietAfterAnswer`, or after
/// `idleAfterInput` seconds without an answer.
func relayDatagrams(_ socket: DTLSSocket, idleAfterInput: TimeInterval, quietAfterAnswer: TimeInterval = 0.3,
                    input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws {
    var inputOpen = true
    var inputEndedAt = 0.0
    var answeredAt: Double?
    var line: [UInt8] = []
    var byte: UInt8 = 0
    while true {
        var waitMilliseconds: Int32 = -1
        if !inputOpen {
            let end = answeredAt.map { max($0, inputEndedAt) + quietAfterAnswer } ?? inputEndedAt + idleAfterInput
            let left = end - now()
            if left <= 0 { return }
            waitMilliseconds = Int32(min(left * 1000, 60_000).rounded(.up))
        }
        var fds = [pollfd(fd: socket.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        if inputOpen { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
        let r = poll(&fds, nfds_t(fds.count), waitMilliseconds)
        if r < 0 && errno != EINTR { throw SSLCatFailure("poll: \(String(cString: strerror(errno)))") }
        if r <= 0 { continue }
        if inputOpen, fds[1].revents != 0 {
            // One byte at a time up to the newline: lines stay lines, whatever stdin's buffering.
            if Glibc.read(input, &byte, 1) == 1 {
                line.append(byte)
                if byte == 10 || line.count >= socket.maximumDatagramSize {
                    try socket.send(line)
                    line.removeAll()
                    answeredAt = nil
                }
            } else {
                if !line.isEmpty { try socket.send(line); line.removeAll(); answeredAt = nil }
                inputOpen = false
                inputEndedAt = now()
            }
        }
        if fds[0].revents != 0 {
            do {
                guard let datagram = try socket.receive(timeout: 0) else { return }  // close_notify
                try writeAll(output, datagram[...])
                answeredAt = now()
            } catch let error as SocketError where error.errno == ETIMEDOUT {
                continue  // a retransmission or a record that carried no data
            }
        }
    }
}
