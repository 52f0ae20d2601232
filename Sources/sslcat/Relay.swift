import Foundation
import OpenSSLFLI
import OpenSSLStreams

/// How ``relay(_:_:input:output:)`` ended.
enum RelayEnd: Equatable {
    /// The peer sent close_notify (or, without TLS, closed).
    case peerClosed
    /// The peer closed the connection without close_notify: what came may be truncated.
    case truncated
    /// The input ended and the peer answered, then stayed quiet for ``RelayOptions/quietAfterAnswer``.
    case answered
    /// The input ended and the peer said nothing for ``RelayOptions/waitAfterInput`` seconds.
    case noAnswer
}

/// What ``relay(_:_:input:output:)`` does when the input ends, and with the lines it sends.
struct RelayOptions {
    /// Seconds to wait for an answer after the input ended, when none came since the last write.
    var waitAfterInput: TimeInterval = 10
    /// Seconds of silence after the peer's answer that end the relay once the input ended.
    var quietAfterAnswer: TimeInterval = 0.3
    /// Keep reading after the input ended until the peer closes (`s_client -ign_eof`).
    var ignoreEOF = false
    /// Send each LF of the input as CR LF.
    var crlf = false
}

/// Copies `input` to the stream and the stream to `output`, both at once: one `poll` waits on the
/// socket and the input, and the stream is read without waiting (``SocketStream/readTimeout`` 0, so a
/// read that decrypts no application data, such as a TLS 1.3 session ticket, a KeyUpdate or a
/// renegotiation, returns to the poll instead of blocking while the input has lines to send).
///
/// Ends when the peer closes, or after the input ended: once the peer has answered (sent bytes since the
/// last write) and then been quiet for `quietAfterAnswer`, or after `waitAfterInput` without an answer;
/// with `ignoreEOF` only when the peer closes.
func relay(_ stream: SocketStream, _ options: RelayOptions, input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws -> RelayEnd {
    let savedTimeout = stream.readTimeout
    stream.readTimeout = 0  // reads return what is there, or ETIMEDOUT at once: never wait in a read
    defer { stream.readTimeout = savedTimeout }
    var inputOpen = true
    var inputEndedAt = 0.0
    var answeredAt: Double?  // the last bytes from the peer since our last write
    var wouldBlock = false   // the last read found no application data: wait for the socket
    var lastInputByte: UInt8 = 0
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        // How long the poll may wait.
        var waitMilliseconds: Int32 = -1
        if !wouldBlock && stream.hasBufferedInput {
            waitMilliseconds = 0
        } else if !inputOpen && !options.ignoreEOF {
            let end = answeredAt.map { max($0, inputEndedAt) + options.quietAfterAnswer } ?? inputEndedAt + options.waitAfterInput
            let left = end - now()
            if left <= 0 { return answeredAt == nil ? .noAnswer : .answered }
            waitMilliseconds = Int32(min(left * 1000, 60_000).rounded(.up))
        }
        var fds = [pollfd(fd: stream.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        if inputOpen { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
        let r = poll(&fds, nfds_t(fds.count), waitMilliseconds)
        if r < 0 {
            if errno == EINTR { continue }
            throw SSLCatFailure("poll: \(String(cString: strerror(errno)))")
        }
        if inputOpen && fds[1].revents != 0 {
            let n = Glibc.read(input, &buffer, buffer.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 {
                inputOpen = false
                inputEndedAt = now()
            } else {
                let bytes = options.crlf ? withCRLF(buffer[0..<n], previous: &lastInputByte) : Array(buffer[0..<n])
                try stream.write(bytes)
                try stream.flush()
                answeredAt = nil
            }
        }
        guard fds[0].revents != 0 || (!wouldBlock && stream.hasBufferedInput) else { continue }
        wouldBlock = false
        let n: Int
        do {
            n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
        } catch let error as SocketError where error.errno == ETIMEDOUT {
            wouldBlock = true  // only records without application data, or part of a record
            continue
        } catch let error as SSLError where error.isUnexpectedEOF {
            return .truncated
        }
        if n == 0 { return stream.isSSLAttached ? .peerClosed : .truncated }
        try writeAll(output, buffer[0..<n])
        answeredAt = now()
    }
}

/// The bytes with each LF not already after a CR turned into CR LF; `previous` is the byte before
/// them (the last of the previous chunk), and is updated.
func withCRLF(_ bytes: ArraySlice<UInt8>, previous: inout UInt8) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + bytes.count / 8)
    for byte in bytes {
        if byte == 10 && previous != 13 { out.append(13) }
        out.append(byte)
        previous = byte
    }
    return out
}

/// Writes all of `bytes` to a descriptor (stdout).
func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) throws {
    try bytes.withUnsafeBytes { raw in
        var written = 0
        while written < raw.count {
            let w = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
            if w < 0 && errno == EINTR { continue }
            if w <= 0 { throw SSLCatFailure("write to \(fd == STDOUT_FILENO ? "stdout" : "fd \(fd)"): \(String(cString: strerror(errno)))") }
            written += w
        }
    }
}
