import OpenSSLFLI
#if canImport(Glibc)
import Glibc
#endif

/// A socket call failed with `errno`.
public struct SocketError: SocketErrorFamily, Hashable {
    public var call: String
    public var errno: Int32
    /// What was being done (an address, a path), if known.
    public var context: String?

    public init(call: String, errno: Int32, context: String? = nil) {
        self.call = call; self.errno = errno; self.context = context
    }

    public var message: String { String(cString: strerror(errno)) }

    public var description: String {
        "\(call)\(context.map { " (\($0))" } ?? "") failed: \(message) (errno \(errno))"
    }
}
