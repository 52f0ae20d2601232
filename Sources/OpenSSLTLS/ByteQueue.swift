import Foundation

/// A growable FIFO of bytes in one malloc'ed block: appended at the tail, consumed from the head.
///
/// The stream keeps four of these: the plaintext read and write buffers, and (while TLS is attached)
/// the ciphertext going each way between the socket and OpenSSL. Socket reads land straight in the free
/// space at the tail (``reserveTail(_:)`` + ``commit(_:)``), so ciphertext is copied once, into OpenSSL.
///
/// The block is allocated when bytes first arrive and given back by ``releaseIfEmpty()``, so an idle
/// stream holds no buffer memory.
///
/// Not thread-safe: its owner (a stream, an engine) serves one thread at a time, which is why its
/// position fields skip the runtime's exclusivity check (`@exclusivity(unchecked)`).
package final class ByteQueue {
    @exclusivity(unchecked) private var block: UnsafeMutableRawPointer?  // exclusivity(unchecked): one user at a time, never inout
    /// The size of the block, when allocated.
    @exclusivity(unchecked) package private(set) var capacity = 0  // exclusivity(unchecked): one user at a time, never inout
    /// The size allocated first.
    private let initialCapacity: Int
    @exclusivity(unchecked) private var head = 0  // exclusivity(unchecked): one user at a time, never inout
    @exclusivity(unchecked) private var tail = 0  // exclusivity(unchecked): one user at a time, never inout

    package init(capacity: Int) {
        initialCapacity = max(capacity, 64)
    }

    deinit { block?.deallocate() }

    private var storage: UnsafeMutableRawPointer {
        if let block { return block }
        let made = UnsafeMutableRawPointer.allocate(byteCount: initialCapacity, alignment: 16)
        block = made
        capacity = initialCapacity
        return made
    }

    /// Gives the block back when no bytes wait in it.
    package func releaseIfEmpty() {
        if head == tail, let b = block {
            b.deallocate()
            block = nil
            capacity = 0
            head = 0; tail = 0
        }
    }

    /// Bytes waiting to be consumed.
    package var count: Int { tail - head }
    package var isEmpty: Bool { tail == head }

    /// The bytes waiting, in place.
    package var readable: UnsafeRawBufferPointer {
        guard let block else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: block + head, count: tail - head)
    }

    /// Makes room for at least `n` more bytes at the tail (moving the waiting bytes to the front, or
    /// growing the block) and returns the free space, which may be larger than `n`.
    @discardableResult
    package func reserveTail(_ n: Int) -> UnsafeMutableRawBufferPointer {
        let storage = self.storage
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
                block = grown
                capacity = newCapacity
            }
        }
        return UnsafeMutableRawBufferPointer(start: block! + tail, count: capacity - tail)
    }

    /// Counts `n` bytes written into the space ``reserveTail(_:)`` returned as waiting.
    package func commit(_ n: Int) {
        precondition(n >= 0 && tail + n <= capacity, "ByteQueue.commit out of range")
        tail += n
    }

    /// Appends bytes.
    package func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let base = bytes.baseAddress else { return }
        let space = reserveTail(bytes.count)
        space.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
        tail += bytes.count
    }

    /// Drops `n` bytes from the head.
    package func consume(_ n: Int) {
        precondition(n >= 0 && n <= count, "ByteQueue.consume out of range")
        head += n
        if head == tail { head = 0; tail = 0 }
    }

    /// Copies up to `destination.count` bytes from the head into `destination` and consumes them.
    package func take(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(destination.count, count)
        if n > 0, let block {
            destination.baseAddress!.copyMemory(from: block + head, byteCount: n)
            consume(n)
        }
        return n
    }

    /// Moves every waiting byte of `other` to the tail of this queue.
    package func appendAll(from other: ByteQueue) {
        append(other.readable)
        other.removeAll()
    }

    package func removeAll() { head = 0; tail = 0 }

    /// The offset of the first `byte` among the waiting bytes, if any.
    package func firstIndex(of byte: UInt8, from start: Int = 0) -> Int? {
        guard start < count, let block else { return nil }
        let p = block + head + start
        guard let found = memchr(p, Int32(byte), count - start) else { return nil }
        return (block + head).distance(to: found)
    }
}
