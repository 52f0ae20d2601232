import Foundation

/// A growable FIFO of bytes in one malloc'ed block: appended at the tail, consumed from the head.
///
/// The stream keeps three of these: the plaintext read and write buffers, and (while TLS is attached)
/// the ciphertext that goes between the socket and OpenSSL. Socket reads land straight in the free space
/// at the tail (``reserveTail(_:)`` + ``commit(_:)``), so ciphertext is copied once, into OpenSSL.
final class ByteQueue {
    private(set) var storage: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private var head = 0
    private var tail = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        storage = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Bytes waiting to be consumed.
    var count: Int { tail - head }
    var isEmpty: Bool { tail == head }

    /// The bytes waiting, in place.
    var readable: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage + head, count: tail - head) }

    /// Makes room for at least `n` more bytes at the tail (moving the waiting bytes to the front, or
    /// growing the block) and returns the free space, which may be larger than `n`.
    @discardableResult
    func reserveTail(_ n: Int) -> UnsafeMutableRawBufferPointer {
        if capacity - tail < n {
            if head > 0 {
                let waiting = tail - head
                if waiting > 0 { storage.copyMemory(from: storage + head, byteCount: waiting) }
                head = 0; tail = waiting
            }
            if capacity - tail < n {
                var newCapacity = capacity
                while newCapacity - tail < n { newCapacity *= 2 }
                let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
                if tail > 0 { grown.copyMemory(from: storage, byteCount: tail) }
                storage.deallocate()
                storage = grown
                capacity = newCapacity
            }
        }
        return UnsafeMutableRawBufferPointer(start: storage + tail, count: capacity - tail)
    }

    /// Counts `n` bytes written into the space ``reserveTail(_:)`` returned as waiting.
    func commit(_ n: Int) {
        precondition(n >= 0 && tail + n <= capacity, "ByteQueue.commit out of range")
        tail += n
    }

    /// Appends bytes.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let base = bytes.baseAddress else { return }
        let space = reserveTail(bytes.count)
        space.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
        tail += bytes.count
    }

    /// Drops `n` bytes from the head.
    func consume(_ n: Int) {
        precondition(n >= 0 && n <= count, "ByteQueue.consume out of range")
        head += n
        if head == tail { head = 0; tail = 0 }
    }

    /// Copies up to `destination.count` bytes from the head into `destination` and consumes them.
    func take(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(destination.count, count)
        if n > 0 {
            destination.baseAddress!.copyMemory(from: storage + head, byteCount: n)
            consume(n)
        }
        return n
    }

    /// Moves every waiting byte of `other` to the tail of this queue.
    func appendAll(from other: ByteQueue) {
        append(other.readable)
        other.removeAll()
    }

    func removeAll() { head = 0; tail = 0 }

    /// The offset of the first `byte` among the waiting bytes, if any.
    func firstIndex(of byte: UInt8, from start: Int = 0) -> Int? {
        guard start < count else { return nil }
        let p = storage + head + start
        guard let found = memchr(p, Int32(byte), count - start) else { return nil }
        return (storage + head).distance(to: found)
    }
}
