import COpenSSL
import Foundation

/// The ciphertext between a socket and OpenSSL while TLS is attached to a stream.
///
/// OpenSSL reads and writes it through a custom BIO (``TransportBIO``) that never touches the socket:
/// reading an empty ``input`` answers "retry", writing appends to ``output``. The stream moves bytes
/// between the socket and these queues itself, with large `recv` calls (many records per system call)
/// and its own timeouts — and when TLS is detached, whatever the peer sent after its close_notify is
/// still in ``input``, so no plaintext that follows is lost.
package final class TransportBuffers: CiphertextInput {
    package init() {}
    /// No ciphertext waits and the peer closed the transport.
    package var isExhausted: Bool { inputEOF && input.isEmpty }
    /// Ciphertext received from the peer that OpenSSL has not read yet.
    package let input = ByteQueue(capacity: TransportBuffers.smallestReceive)
    /// Ciphertext OpenSSL has written that is not sent yet.
    package let output = ByteQueue(capacity: 8 * 1024)
    /// How much one `recv` asks for: a full record at first, more while the socket keeps filling it
    /// (bulk transfers: many records per system call), back down when it does not.
    @exclusivity(unchecked) package var receiveSize = TransportBuffers.smallestReceive  // exclusivity(unchecked): one user at a time (SocketStream.exclusive, the engine's caller)
    /// One maximal TLS record (16 KiB of data + header, padding and tag), rounded up.
    package static let smallestReceive = 17 * 1024
    package static let largestReceive = 256 * 1024
    /// The peer closed its side of the transport (recv returned 0).
    @exclusivity(unchecked) package var inputEOF = false  // exclusivity(unchecked): one user at a time (SocketStream.exclusive, the engine's caller)
    /// The socket, for sending large records straight from OpenSSL's buffer (-1: never).
    @exclusivity(unchecked) package var fileDescriptor: Int32 = -1  // exclusivity(unchecked): one user at a time (SocketStream.exclusive, the engine's caller)
    /// Bytes sent that way since the stream last counted them.
    @exclusivity(unchecked) package var directlySent = 0  // exclusivity(unchecked): one user at a time (SocketStream.exclusive, the engine's caller)

    /// Records at least this large go to the socket at once when nothing is queued before them (saving a
    /// copy); smaller writes (handshake messages, alerts, small records) are queued and sent together.
    package static let directSendThreshold = 4096
}

/// What the package's two source/sink BIOs share (the stream's ``TransportBIO`` and the NIO handler's
/// `ByteBufferBIO`): the retry flags their read and write set, and the way their callbacks reach the
/// Swift object that `BIO_get_data` holds.
package enum BIOSupport {
    // BIO_FLAGS_* (bio.h): READ 0x01, WRITE 0x02, IO_SPECIAL 0x04, RWS = all three, SHOULD_RETRY 0x08.
    package static let flagsRWS: Int32 = 0x07
    package static let flagsRead: Int32 = 0x01
    package static let flagsShouldRetry: Int32 = 0x08

    /// Runs `body` on the object the BIO's data holds, without retaining it (the BIO keeps a reference
    /// for as long as it lives): OpenSSL calls the callbacks several times a record, and a
    /// retain/release pair each time showed in the profile. `none` when the BIO holds nothing.
    /// - Corresponds: `BIO_get_data`.
    @inlinable @inline(__always)
    package static func withObject<Object: AnyObject, Result>(of bio: OpaquePointer?, as type: Object.Type, orElse none: Result,
                                                            _ body: (Object) -> Result) -> Result {
        guard let data = BIO_get_data(bio) else { return none }
        return Unmanaged<Object>.fromOpaque(data)._withUnsafeGuaranteedRef(body)
    }
}

/// A source/sink BIO over ``TransportBuffers``.
package enum TransportBIO {
    @inline(__always)
    private static func withBuffers<T>(_ bio: OpaquePointer?, _ none: T, _ body: (TransportBuffers) -> T) -> T {
        BIOSupport.withObject(of: bio, as: TransportBuffers.self, orElse: none, body)
    }

    /// The BIO_METHOD, made once per process.
    // nonisolated(unsafe): the pointer is set once (a static's lazy initialisation is thread-safe) and the
    // method is never changed after it; OpenSSL only reads a BIO_METHOD, from any thread.
    nonisolated(unsafe) static let method: OpaquePointer = {
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        guard let m = BIO_meth_new(type, "swift-openssl-fli socket stream") else {
            fatalError("BIO_meth_new failed: out of memory while making the stream BIO method")
        }
        BIO_meth_set_write(m) { bio, data, length in
            guard let data, length > 0 else { return 0 }
            return TransportBIO.withBuffers(bio, 0) { buffers in
                BIO_clear_flags(bio, BIOSupport.flagsRWS | BIOSupport.flagsShouldRetry)
                var offset = 0
                if buffers.output.isEmpty && Int(length) >= TransportBuffers.directSendThreshold && buffers.fileDescriptor >= 0 {
                    // What the socket takes now skips the queue; the rest (or a failure, which the stream's
                    // own send then reports with its errno) stays queued.
                    let n = send(buffers.fileDescriptor, data, Int(length), Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    if n > 0 { offset = n; buffers.directlySent += n }
                }
                if offset < Int(length) {
                    buffers.output.append(UnsafeRawBufferPointer(start: data + offset, count: Int(length) - offset))
                }
                return length
            }
        }
        BIO_meth_set_read(m) { bio, data, length in
            guard let data, length > 0 else { return 0 }
            return TransportBIO.withBuffers(bio, 0) { buffers in
                BIO_clear_flags(bio, BIOSupport.flagsRWS | BIOSupport.flagsShouldRetry)
                if buffers.input.isEmpty {
                    if buffers.inputEOF { return 0 }
                    BIO_set_flags(bio, BIOSupport.flagsRead | BIOSupport.flagsShouldRetry)
                    return -1
                }
                return Int32(buffers.input.take(into: UnsafeMutableRawBufferPointer(start: data, count: Int(length))))
            }
        }
        BIO_meth_set_ctrl(m) { bio, command, _, _ in
            // OpenSSL asks ~13 questions a record (kTLS, flush …): answer those that need no buffers first.
            switch command {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_EOF: return TransportBIO.withBuffers(bio, 1) { $0.inputEOF && $0.input.isEmpty ? 1 : 0 }
            case BIO_CTRL_PENDING: return TransportBIO.withBuffers(bio, 0) { $0.input.count }
            case BIO_CTRL_WPENDING: return TransportBIO.withBuffers(bio, 0) { $0.output.count }
            default: return 0
            }
        }
        BIO_meth_set_create(m) { bio in
            BIO_set_data(bio, nil)
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(m) { bio in
            if let data = BIO_get_data(bio) { Unmanaged<TransportBuffers>.fromOpaque(data).release() }
            BIO_set_data(bio, nil)
            BIO_set_init(bio, 0)
            return 1
        }
        return m
    }()

    /// A new BIO over `buffers` (retained until the BIO is freed), or nil when OpenSSL is out of memory.
    package static func make(_ buffers: TransportBuffers) -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        BIO_set_data(bio, Unmanaged.passRetained(buffers).toOpaque())
        return bio
    }
}

/// How many `SSL` and `SSL_CTX` objects made by streams are alive: observed in OpenSSL's own free
/// path (an ex_data free callback), so a count that returns to where it was proves they were freed.
/// Objects the caller passed in are not counted.
public enum SSLStreamCensus {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var connections = 0  // only touched under `lock`
    nonisolated(unsafe) private static var contexts = 0  // only touched under `lock`

    /// `SSL` objects made by `SocketStream.attachSSL(ctx:side:ctxConfigure:sslConfigure:handshakeTimeout:hostName:security:)` not yet freed.
    public static var liveConnections: Int { lock.lock(); defer { lock.unlock() }; return connections }
    /// `SSL_CTX` objects made by streams not yet freed.
    public static var liveContexts: Int { lock.lock(); defer { lock.unlock() }; return contexts }

    private static let freed: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                              UnsafeMutablePointer<CRYPTO_EX_DATA>?, Int32, Int,
                                              UnsafeMutableRawPointer?) -> Void = { _, pointer, _, _, argl, _ in
        guard pointer != nil else { return }
        SSLStreamCensus.lock.lock()
        if argl == 1 { SSLStreamCensus.connections -= 1 } else { SSLStreamCensus.contexts -= 1 }
        SSLStreamCensus.lock.unlock()
    }
    private static let sslIndex = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 1, nil, nil, nil, freed)
    private static let ctxIndex = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 2, nil, nil, nil, freed)
    /// The ex_data value that marks a counted object (never dereferenced).
    private static var marker: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: 0x1) }

    package static func track(_ ssl: OpaquePointer) {
        guard SSL_set_ex_data(ssl, sslIndex, marker) == 1 else { return }
        lock.lock(); connections += 1; lock.unlock()
    }

    package static func track(context ctx: OpaquePointer) {
        guard SSL_CTX_set_ex_data(ctx, ctxIndex, marker) == 1 else { return }
        lock.lock(); contexts += 1; lock.unlock()
    }
}
