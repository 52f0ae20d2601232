import COpenSSL
import NIOCore
import OpenSSLTLS

/// The ciphertext between a channel and OpenSSL while an ``OpenSSLHandler`` runs: an in-memory BIO whose
/// storage is NIO's own `ByteBuffer`s.
///
/// What the channel reads is handed over as it is (no copy into a queue of our own): OpenSSL reads
/// records straight out of the received buffer, which is let go of as soon as it is consumed (so that
/// NIO can reuse it for the next read). What OpenSSL writes is appended to one outbound buffer that the
/// handler passes down the pipeline as a whole. The BIO never blocks: reading an empty inbound answers
/// "retry", writing always takes everything.
final class CipherBuffers: CiphertextInput {
    /// No ciphertext waits and the peer closed the connection.
    var isExhausted: Bool { inboundEOF && inboundCount == 0 }
    /// Ciphertext received from the peer that OpenSSL has not read yet: ``inboundBuffer``'s unread
    /// bytes, from ``inboundCursor``. The buffer is kept (not mutated) while OpenSSL reads through the
    /// cursor, so the BIO's read is a bounds check and a copy.
    @exclusivity(unchecked) private var inboundBuffer: ByteBuffer  // exclusivity(unchecked): its handler's event loop only, never inout
    @exclusivity(unchecked) private var inboundCursor: UnsafeRawPointer?  // exclusivity(unchecked): its handler's event loop only, never inout
    @exclusivity(unchecked) private(set) var inboundCount = 0  // exclusivity(unchecked): its handler's event loop only, never inout
    /// Ciphertext OpenSSL has written that is not passed to the channel yet.
    @exclusivity(unchecked) var outbound: ByteBuffer  // exclusivity(unchecked): its handler's event loop only, never inout
    /// The transport's input ended (the peer half-closed or closed the TCP connection).
    @exclusivity(unchecked) var inboundEOF = false  // exclusivity(unchecked): its handler's event loop only, never inout
    /// An empty buffer, to let go of a consumed buffer without allocating.
    let empty: ByteBuffer
    let allocator: ByteBufferAllocator

    init(allocator: ByteBufferAllocator) {
        self.allocator = allocator
        empty = allocator.buffer(capacity: 0)
        inboundBuffer = empty
        outbound = empty
    }

    /// Adds ciphertext received from the channel (kept as it is when nothing is left of the last).
    func receive(_ buffer: ByteBuffer) {
        if inboundCount == 0 {
            inboundBuffer = buffer
        } else {
            var rest = takeInbound()
            var buffer = buffer
            rest.writeBuffer(&buffer)
            inboundBuffer = rest
        }
        inboundCount = inboundBuffer.readableBytes
        inboundCursor = inboundCount == 0 ? nil : inboundBuffer.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    /// Copies up to `count` received bytes to `destination`; how many.
    @inline(__always)
    func read(into destination: UnsafeMutableRawPointer, count: Int) -> Int {
        let n = min(count, inboundCount)
        guard n > 0, let cursor = inboundCursor else { return 0 }
        destination.copyMemory(from: cursor, byteCount: n)
        inboundCursor = cursor + n
        inboundCount -= n
        return n
    }

    /// The received bytes OpenSSL has not read, taken out (what follows a close_notify on detach).
    func takeInbound() -> ByteBuffer {
        var rest = inboundBuffer
        rest.moveReaderIndex(forwardBy: rest.readableBytes - inboundCount)
        inboundBuffer = empty
        inboundCursor = nil
        inboundCount = 0
        return rest
    }

    /// Drops whatever was received and not read.
    func discardInbound() {
        inboundBuffer = empty
        inboundCursor = nil
        inboundCount = 0
    }

    /// Lets go of a consumed inbound buffer (NIO reuses receive buffers nobody else holds).
    @inline(__always)
    func releaseConsumedInbound() {
        if inboundCount == 0 && inboundBuffer.capacity > 0 { discardInbound() }
    }

    /// Takes what OpenSSL wrote (nil when nothing).
    @inline(__always)
    func takeOutbound() -> ByteBuffer? {
        guard outbound.readableBytes > 0 else { return nil }
        let taken = outbound
        outbound = empty
        return taken
    }

    /// Makes room for about `bytes` of ciphertext in one allocation.
    func reserveOutbound(_ bytes: Int) {
        if outbound.capacity == 0 {
            outbound = allocator.buffer(capacity: bytes)
        } else if outbound.writableBytes < bytes {
            outbound.reserveCapacity(minimumWritableBytes: bytes)
        }
    }
}

/// The BIO method over ``CipherBuffers``.
enum ByteBufferBIO {
    @inline(__always)
    private static func withBuffers<T>(_ bio: OpaquePointer?, _ none: T, _ body: (CipherBuffers) -> T) -> T {
        BIOSupport.withObject(of: bio, as: CipherBuffers.self, orElse: none, body)
    }

    /// The BIO_METHOD, made once per process.
    // nonisolated(unsafe): the pointer is set once (a static's lazy initialisation is thread-safe) and the
    // method is never changed after it; OpenSSL only reads a BIO_METHOD, from any thread.
    nonisolated(unsafe) static let method: OpaquePointer = {
        let type = COpenSSL.BIO_get_new_index() | COpenSSL.BIO_TYPE_SOURCE_SINK
        guard let m = COpenSSL.BIO_meth_new(type, "swift-openssl-fli NIO ByteBuffer") else {
            fatalError("BIO_meth_new failed: out of memory while making the NIO BIO method")
        }
        COpenSSL.BIO_meth_set_write(m) { bio, data, length in
            guard let data, length > 0 else { return 0 }
            return ByteBufferBIO.withBuffers(bio, 0) { buffers in
                COpenSSL.BIO_clear_flags(bio, BIOSupport.flagsRWS | BIOSupport.flagsShouldRetry)
                let bytes = UnsafeRawBufferPointer(start: data, count: Int(length))
                if buffers.outbound.capacity == 0 {
                    // Handshake messages, alerts, small records: one buffer with room for a few more.
                    buffers.outbound = buffers.allocator.buffer(capacity: max(Int(length), 4096))
                }
                buffers.outbound.writeBytes(bytes)
                return length
            }
        }
        COpenSSL.BIO_meth_set_read(m) { bio, data, length in
            guard let data, length > 0 else { return 0 }
            return ByteBufferBIO.withBuffers(bio, 0) { buffers in
                COpenSSL.BIO_clear_flags(bio, BIOSupport.flagsRWS | BIOSupport.flagsShouldRetry)
                let n = buffers.read(into: data, count: Int(length))
                if n == 0 {
                    if buffers.inboundEOF { return 0 }
                    COpenSSL.BIO_set_flags(bio, BIOSupport.flagsRead | BIOSupport.flagsShouldRetry)
                    return -1
                }
                return Int32(n)
            }
        }
        COpenSSL.BIO_meth_set_ctrl(m) { bio, command, _, _ in
            // OpenSSL asks ~13 questions a record (kTLS, flush …): answer those that need no buffers first.
            switch command {
            case COpenSSL.BIO_CTRL_FLUSH: return 1
            case COpenSSL.BIO_CTRL_EOF:
                return ByteBufferBIO.withBuffers(bio, 1) { $0.inboundEOF && $0.inboundCount == 0 ? 1 : 0 }
            case COpenSSL.BIO_CTRL_PENDING: return ByteBufferBIO.withBuffers(bio, 0) { $0.inboundCount }
            case COpenSSL.BIO_CTRL_WPENDING: return ByteBufferBIO.withBuffers(bio, 0) { $0.outbound.readableBytes }
            default: return 0
            }
        }
        COpenSSL.BIO_meth_set_create(m) { bio in
            COpenSSL.BIO_set_data(bio, nil)
            COpenSSL.BIO_set_init(bio, 1)
            return 1
        }
        COpenSSL.BIO_meth_set_destroy(m) { bio in
            if let data = COpenSSL.BIO_get_data(bio) { Unmanaged<CipherBuffers>.fromOpaque(data).release() }
            COpenSSL.BIO_set_data(bio, nil)
            COpenSSL.BIO_set_init(bio, 0)
            return 1
        }
        return m
    }()

    /// A new BIO over `buffers` (retained until the BIO is freed), or nil when OpenSSL is out of memory.
    static func make(_ buffers: CipherBuffers) -> OpaquePointer? {
        guard let bio = COpenSSL.BIO_new(method) else { return nil }
        COpenSSL.BIO_set_data(bio, Unmanaged.passRetained(buffers).toOpaque())
        return bio
    }

    /// Puts a new BIO over `buffers` on `ssl` for reading and writing (the `SSL` takes it; the BIO it
    /// had is freed). False when OpenSSL is out of memory.
    static func install(_ buffers: CipherBuffers, on ssl: OpaquePointer) -> Bool {
        guard let bio = make(buffers) else { return false }
        COpenSSL.SSL_set_bio(ssl, bio, bio)
        return true
    }
}
