import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

extension XCTestCase {
    /// A TCP connection to 127.0.0.1:port with 10-second send and receive timeouts.
    func connectLoopback(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw LoopbackConnectFailure(port: port, errno: code)
        }
        return fd
    }
}

/// The peer the test started did not accept on loopback: a failure of the test, never a skip.
struct LoopbackConnectFailure: Error, CustomStringConvertible {
    var port: Int
    var errno: Int32
    var description: String { "connect to 127.0.0.1:\(port) failed: \(String(cString: strerror(errno)))" }
}
