import Foundation
import OpenSSLFLI
import OpenSSLTLS

/// Waits until `fd` is ready for `events` (`POLLIN` / `POLLOUT`). Returns false when the deadline
/// passed first; throws `StreamError` `.cancelled` when `cancel` was cancelled first. Errors and hang-ups
/// count as ready: the next `recv`/`send` reports them.
/// - Corresponds: `poll(2)`.
func waitUntilReady(_ fd: Int32, events: Int16, deadline: Deadline, cancel: CancelHandle? = nil, also other: CancelHandle? = nil,
                    call: String = "poll") throws -> Bool {
    // Up to three entries on the stack (a tuple is laid out like a C array): no allocation per wait.
    let first = cancel ?? other, second = cancel == nil ? nil : other
    var fds = (pollfd(fd: fd, events: events, revents: 0),
               pollfd(fd: first?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0),
               pollfd(fd: second?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0))
    let count = nfds_t(1 + (first == nil ? 0 : 1) + (second == nil ? 0 : 1))
    while true {
        if first?.isCancelled == true || second?.isCancelled == true { throw StreamError(kind: .cancelled, call: call, message: "cancelled") }
        let timeout = deadline.pollMilliseconds
        let r = withUnsafeMutableBytes(of: &fds) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), count, timeout) }
        if r > 0 {
            if fds.1.revents != 0 || fds.2.revents != 0 { throw StreamError(kind: .cancelled, call: call, message: "cancelled") }
            return true
        }
        if r == 0 {
            if deadline.hasPassed || timeout == 0 { return false }
            continue  // woke early (rounding): wait the rest
        }
        let e = errno
        if e == EINTR { continue }
        throw SocketError(call: "poll", errno: e)
    }
}

/// The text of a NUL-terminated C string in `buffer`.
func cString(_ buffer: [CChar]) -> String { buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }

/// "127.0.0.1:443" or "[::1]:443" for a socket address.
func describeAddress(_ address: UnsafePointer<sockaddr>, length: socklen_t) -> String? {
    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
    var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
    guard getnameinfo(address, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                      NI_NUMERICHOST | NI_NUMERICSERV) == 0 else { return nil }
    let h = cString(host), s = cString(service)
    return address.pointee.sa_family == sa_family_t(AF_INET6) ? "[\(h)]:\(s)" : "\(h):\(s)"
}

/// A socket address as the kernel gave it (`getpeername` / `getsockname`), formatted only when asked.
struct RawSocketAddress {
    var storage = sockaddr_storage()
    var length = socklen_t(0)

    init?(_ fd: Int32, peer: Bool) {
        length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                peer ? getpeername(fd, sa, &length) == 0 : getsockname(fd, sa, &length) == 0
            }
        }
        guard ok else { return nil }
    }

    /// The numeric host, the port, and "host:port" / "[host]:port".
    var formatted: (host: String, port: Int, text: String)? { formatSocketAddress(storage, length) }
}

/// The numeric host and the port of a socket's own (`getsockname`) or peer (`getpeername`) address.
func socketAddress(_ fd: Int32, peer: Bool) -> (host: String, port: Int, text: String)? {
    RawSocketAddress(fd, peer: peer)?.formatted
}

func formatSocketAddress(_ address: sockaddr_storage, _ length: socklen_t) -> (host: String, port: Int, text: String)? {
    var storage = address
    return withUnsafePointer(to: &storage) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> (String, Int, String)? in
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
            guard getnameinfo(sa, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                              NI_NUMERICHOST | NI_NUMERICSERV) == 0 else { return nil }
            let h = cString(host), port = Int(cString(service)) ?? 0
            let text = sa.pointee.sa_family == sa_family_t(AF_INET6) ? "[\(h)]:\(port)" : "\(h):\(port)"
            return (h, port, text)
        }
    }
}

/// Name resolution failed (`getaddrinfo`): the host, the port, and the resolver's reason.
public struct HostResolutionError: SocketErrorFamily, Hashable {
    public var call: String { "getaddrinfo" }
    public var host: String
    public var port: Int
    /// `getaddrinfo`'s `EAI_*` code.
    public var code: Int32
    /// `gai_strerror`'s text.
    public var message: String
    public var description: String { "getaddrinfo (\(host):\(port)) failed: \(message)" }
}

/// A stream-level condition that is neither a system call's errno nor OpenSSL's: the stream ended
/// before the bytes asked for, a line was longer than allowed, a misuse.
public struct StreamError: SocketErrorFamily, Hashable {
    public enum Kind: Sendable, Hashable {
        /// The stream ended (EOF, or TLS close_notify) before the bytes asked for arrived.
        case endOfStream
        /// A line longer than the limit arrived.
        case lineTooLong
        /// The stream was already closed (or was closed by another thread during the call).
        case closed
        /// A `CancelHandle` ended the call.
        case cancelled
    }
    public var kind: Kind
    public var call: String
    public var message: String
    public init(kind: Kind, call: String, message: String) {
        self.kind = kind; self.call = call; self.message = message
    }
    public var description: String { "\(call): \(message)" }
}

/// Sets an `int` socket option; failures are reported with the option's name.
func setSocketOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ label: String) throws {
    var v = value
    if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
        throw SocketError(call: "setsockopt", errno: errno, context: label)
    }
}

/// Resolves `host:port` for a TCP connection (IPv4 and IPv6, names and numeric addresses).
func resolveTCP(host: String, port: Int, passive: Bool = false) throws -> [(family: Int32, address: [UInt8], text: String)] {
    guard (0...65535).contains(port) else {
        throw HostResolutionError(host: host, port: port, code: EAI_SERVICE, message: "port \(port) is out of range 0…65535")
    }
    guard !host.utf8.contains(0) else {
        throw HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "the host name contains a NUL byte")
    }
    guard !host.isEmpty else {
        throw HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "the host name is empty")
    }
    // A name with a colon can only be an IPv6 literal (bracketed as in a URL, or not): it is parsed, never
    // looked up, so a malformed one fails at once instead of going to DNS.
    let name = unbracketedHost(host)
    let literal = name.contains(":")
    if name.hasPrefix("[") || name.hasSuffix("]") || (name != host && !literal) {
        throw HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "brackets are only for an IPv6 address, as [::1]")
    }
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_protocol = Int32(IPPROTO_TCP)
    hints.ai_flags = (passive ? AI_PASSIVE : 0) | (literal ? AI_NUMERICHOST : 0)
    var list: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(name, String(port), &hints, &list)
    guard rc == 0 else {
        if literal && rc == EAI_NONAME {
            throw HostResolutionError(host: host, port: port, code: rc, message: "not a valid IPv6 address")
        }
        let text = rc == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(rc))
        throw HostResolutionError(host: host, port: port, code: rc, message: text)
    }
    defer { freeaddrinfo(list) }
    var results: [(Int32, [UInt8], String)] = []
    var cursor = list
    while let entry = cursor {
        if let sa = entry.pointee.ai_addr {
            let bytes = [UInt8](UnsafeRawBufferPointer(start: sa, count: Int(entry.pointee.ai_addrlen)))
            results.append((entry.pointee.ai_family, bytes, describeAddress(sa, length: entry.pointee.ai_addrlen) ?? host))
        }
        cursor = entry.pointee.ai_next
    }
    return results
}

/// Connects a TCP socket to `host:port`, trying each resolved address in turn, each within
/// `timeout` (nil: the system's own). Returns the connected, blocking, close-on-exec descriptor.
package func connectTCP(host: String, port: Int, timeout: TimeInterval?, cancel: CancelHandle? = nil) throws -> Int32 {
    let addresses = try resolveTCP(host: host, port: port)
    var lastError: Error = HostResolutionError(host: host, port: port, code: EAI_NONAME, message: "no address")
    for candidate in addresses {
        let fd = socket(candidate.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { lastError = SocketError(call: "socket", errno: errno, context: candidate.text); continue }
        // With a timeout or a cancel handle the connect is non-blocking and polled; without either it is a
        // plain blocking call.
        let polled = timeout != nil || cancel != nil
        let flags = fcntl(fd, F_GETFL)
        if polled { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        var rc: Int32
        repeat {
            rc = candidate.address.withUnsafeBytes { raw in
                Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        } while rc != 0 && errno == EINTR && !polled
        var failure: Int32 = rc == 0 ? 0 : errno
        if rc != 0 && failure == EINPROGRESS {
            do {
                if try waitUntilReady(fd, events: Int16(POLLOUT), deadline: .after(timeout), cancel: cancel, call: "connect") {
                    var soError: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
                    failure = soError
                } else {
                    failure = ETIMEDOUT
                }
            } catch let error as StreamError {
                Glibc.close(fd)
                throw error  // cancelled
            } catch {
                failure = (error as? SocketError)?.errno ?? EIO
            }
        }
        if failure == 0 {
            if polled { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        Glibc.close(fd)
        let context = "\(host):\(port) at \(candidate.text)" + (failure == ETIMEDOUT && timeout != nil ? ", connect timeout \(describeSeconds(timeout))" : "")
        lastError = SocketError(call: "connect", errno: failure, context: context)
    }
    throw lastError
}

/// Closes sockets the way `openssl s_server` does after a fatal alert, so that the peer reads the alert:
/// the write side is shut at once (a FIN right behind the alert), then what the peer still sends is read
/// and dropped until it closes or ``TLSTimeouts/alertLinger`` passes (at most 256 KiB), and only then is
/// the descriptor closed. Closing at once instead would answer the peer's next record with a TCP reset,
/// which destroys the alert in the peer's receive queue.
///
/// The draining runs on one background thread for all sockets, on a duplicate of the descriptor, so the
/// call that failed returns at once and closes its own descriptor as it always did (no descriptor number
/// outlives its owner); at most 256 sockets linger together (more are not drained).
/// - Corresponds: `shutdown(2)`, `poll(2)`, `recv(2)`, `close(2)`.
package final class AlertLinger: @unchecked Sendable {  // `waiting` is only touched under `lock`
    package static let shared = AlertLinger()
    private let lock = NSCondition()
    private var waiting: [(fd: Int32, deadline: Deadline, drained: Int)] = []
    private var started = false

    /// Shuts `fd`'s socket for writing now and drains it on a duplicate; the caller then closes `fd`.
    package func linger(_ fd: Int32) {
        guard Glibc.shutdown(fd, Int32(SHUT_WR)) == 0 else { return }
        lock.lock()
        if waiting.count >= 256 { lock.unlock(); return }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { lock.unlock(); return }
        waiting.append((copy, Deadline.after(TLSTimeouts.alertLinger), 0))
        if !started {
            started = true
            Thread.detachNewThread { AlertLinger.shared.run() }
        }
        lock.signal()
        lock.unlock()
    }

    private func run() {
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            lock.lock()
            while waiting.isEmpty { lock.wait() }
            var fds = waiting.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            lock.unlock()
            // Short polls: sockets handed over meanwhile join at the next round.
            _ = poll(&fds, nfds_t(fds.count), 50)
            lock.lock()
            var kept: [(fd: Int32, deadline: Deadline, drained: Int)] = []
            for var entry in waiting {
                var done = entry.deadline.hasPassed || entry.drained >= 256 * 1024
                if !done, let ready = fds.first(where: { $0.fd == entry.fd }), ready.revents != 0 {
                    let n = scratch.withUnsafeMutableBytes { recv(entry.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if n > 0 { entry.drained += n } else if n == 0 || (errno != EINTR && errno != EAGAIN) { done = true }
                }
                if done { Glibc.close(entry.fd) } else { kept.append(entry) }
            }
            waiting = kept
            lock.unlock()
        }
    }
}

/// A listening descriptor that another thread may close while an accept waits on it (TCP and DTLS
/// listeners): ``close(wake:)`` marks it closed and wakes the waiting accepts, and the descriptor is
/// closed by the last accept to leave, so no accept ever uses a number that was closed under it.
/// - Corresponds: `close(2)`.
final class ListenerGate: @unchecked Sendable {  // state under `lock`
    let fileDescriptor: Int32
    private let lock = NSLock()
    private var closed = false
    private var accepting = 0

    init(_ fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    var isClosed: Bool { lock.lock(); defer { lock.unlock() }; return closed }

    /// An accept starts; false when the listener is closed already.
    func enter() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if closed { return false }
        accepting += 1
        return true
    }

    /// An accept ends; the last one out closes a listener that was closed meanwhile.
    func leave() {
        lock.lock(); defer { lock.unlock() }
        accepting -= 1
        if closed && accepting == 0 { Glibc.close(fileDescriptor) }
    }

    /// Closes the listener: at once when no accept waits, else `wake` ends the waits and the last
    /// accept closes the descriptor. Closing twice does nothing.
    func close(wake: () -> Void) {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        if accepting > 0 { wake() } else { Glibc.close(fileDescriptor) }
    }
}
