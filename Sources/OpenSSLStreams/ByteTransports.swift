import COpenSSL
import Foundation
import OpenSSLFLI
import OpenSSLTLS

/// Something bytes can be read from, blocking: a pipe, a file handle, a socket, an in-memory channel,
/// a TLS input port.
public protocol ByteReadable: AnyObject {
    /// Reads at least one byte into `buffer` (blocking until some arrive), or returns 0 at the end.
    func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Stops reading (closes the reading end).
    func closeReading() throws
    /// Waits until a read would not block, or `deadline` passes (false). Transports that cannot wait
    /// (the default) answer true at once, so only their own reads bound the time.
    func waitReadable(until deadline: Deadline) throws -> Bool
}

/// Something bytes can be written to, blocking.
public protocol ByteWritable: AnyObject {
    /// Writes all of `bytes` (blocking until they are taken).
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws
    /// Ends the writing side: the reader sees the end after what was written.
    func closeWriting() throws
}

extension ByteReadable {
    public func waitReadable(until deadline: Deadline) throws -> Bool { true }

    /// Reads everything up to the end (at most `limit` bytes).
    public func readAll(limit: Int = 1 << 30) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count < limit {
            let n = try chunk.withUnsafeMutableBytes { try readSome(into: $0) }
            if n == 0 { break }
            result += chunk.prefix(n)
        }
        return result
    }
}

extension ByteWritable {
    /// Writes all of `bytes`.
    public func writeAll(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try writeAll($0) } }
    /// Writes a string as UTF-8.
    public func writeAll(_ text: String) throws { try writeAll(Array(text.utf8)) }
}

/// `read(2)` / `write(2)` on a descriptor, retrying on EINTR.
enum DescriptorIO {
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw SocketError(call: "read", errno: errno, context: "descriptor \(fd)")
        }
    }

    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n >= 0 { offset += n; continue }
            if errno == ENOTSOCK {
                // Not a socket (a pipe or a file): plain write. SIGPIPE is the process's to handle.
                let w = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if w >= 0 { offset += w; continue }
            }
            if errno == EINTR { continue }
            throw SocketError(call: "write", errno: errno, context: "descriptor \(fd)")
        }
    }
}

/// A file descriptor as a byte transport (a socket, a pipe end, a terminal).
public final class FileDescriptorTransport: ByteReadable, ByteWritable, @unchecked Sendable {  // the descriptor is fixed; the close flags are under `lock`
    public let fileDescriptor: Int32
    /// Whether the transport owns the descriptor: closing a direction then shuts it down (sockets), and
    /// closing both (or deinitialising) closes the descriptor.
    public let closesDescriptor: Bool
    private let lock = NSLock()
    private var readingClosed = false, writingClosed = false, closed = false

    public init(fileDescriptor: Int32, closesDescriptor: Bool = false) {
        self.fileDescriptor = fileDescriptor; self.closesDescriptor = closesDescriptor
    }

    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try DescriptorIO.read(fileDescriptor, into: buffer) }
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try DescriptorIO.write(fileDescriptor, bytes) }
    public func waitReadable(until deadline: Deadline) throws -> Bool { try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline) }

    public func closeReading() throws {
        lock.lock(); let first = !readingClosed; readingClosed = true; lock.unlock()
        if first && closesDescriptor { _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RD)) }
        closeIfDone()
    }

    public func closeWriting() throws {
        lock.lock(); let first = !writingClosed; writingClosed = true; lock.unlock()
        if first && closesDescriptor { _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_WR)) }
        closeIfDone()
    }

    private func closeIfDone() {
        lock.lock(); defer { lock.unlock() }
        if readingClosed && writingClosed { closeLocked() }
    }

    private func closeLocked() {
        guard closesDescriptor, !closed else { return }
        closed = true
        _ = Glibc.close(fileDescriptor)
    }

    /// Closes the descriptor now (when it is ours).
    public func close() { lock.lock(); closeLocked(); lock.unlock() }

    deinit { closeLocked() }
}

extension FileHandle: ByteReadable, ByteWritable {
    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try DescriptorIO.read(fileDescriptor, into: buffer) }
    public func waitReadable(until deadline: Deadline) throws -> Bool { try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline) }
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try DescriptorIO.write(fileDescriptor, bytes) }
    public func closeReading() throws { try close() }
    public func closeWriting() throws { try close() }
}

extension Pipe: ByteReadable, ByteWritable {
    /// Reads from the pipe's reading end.
    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try fileHandleForReading.readSome(into: buffer) }
    public func waitReadable(until deadline: Deadline) throws -> Bool { try fileHandleForReading.waitReadable(until: deadline) }
    /// Writes to the pipe's writing end.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try fileHandleForWriting.writeAll(bytes) }
    public func closeReading() throws { try fileHandleForReading.close() }
    public func closeWriting() throws { try fileHandleForWriting.close() }
}

extension SocketStream: ByteReadable, ByteWritable {
    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try read(into: buffer) }
    public func waitReadable(until deadline: Deadline) throws -> Bool {
        hasBufferedInput || plainEOF ? true : try waitUntilReady(fileDescriptor, events: Int16(POLLIN), deadline: deadline)
    }
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try write(bytes); try flush() }
    public func closeReading() throws { try close() }
    public func closeWriting() throws { try close() }
}

/// An in-memory, thread-safe, one-way byte channel: what is written is read, in order; a reader waits
/// until bytes arrive or the writer closes. Two of them make a duplex link between threads.
public final class MemoryByteChannel: ByteReadable, ByteWritable, @unchecked Sendable {  // its state is only touched under `condition`
    private let condition = NSCondition()
    private var bytes: [UInt8] = []
    private var head = 0
    private var writerClosed = false
    private var readerClosed = false
    /// The most bytes held before a writer waits (back-pressure).
    public let capacity: Int

    public init(capacity: Int = 1 << 20) { self.capacity = max(capacity, 1) }

    /// Two channels, one each way: `(a, b)` where the first end reads `a` and writes `b`.
    public static func duplex(capacity: Int = 1 << 20) -> (MemoryByteChannel, MemoryByteChannel) {
        (MemoryByteChannel(capacity: capacity), MemoryByteChannel(capacity: capacity))
    }

    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        condition.lock(); defer { condition.unlock() }
        while head == bytes.count && !writerClosed && !readerClosed { condition.wait() }
        if readerClosed { throw StreamError(kind: .closed, call: "MemoryByteChannel.readSome", message: "the reading end is closed") }
        let n = min(buffer.count, bytes.count - head)
        if n == 0 { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + head, byteCount: n) }
        head += n
        if head == bytes.count { bytes.removeAll(keepingCapacity: true); head = 0 }
        condition.broadcast()
        return n
    }

    public func writeAll(_ data: UnsafeRawBufferPointer) throws {
        var offset = 0
        condition.lock(); defer { condition.unlock() }
        while offset < data.count {
            if writerClosed { throw StreamError(kind: .closed, call: "MemoryByteChannel.writeAll", message: "the writing end is closed") }
            if readerClosed { throw SocketError(call: "MemoryByteChannel.writeAll", errno: EPIPE, context: "nobody reads any more") }
            let room = capacity - (bytes.count - head)
            if room <= 0 { condition.wait(); continue }
            let n = min(room, data.count - offset)
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[offset..<(offset + n)]))
            offset += n
            condition.broadcast()
        }
    }

    public func closeReading() throws { condition.lock(); readerClosed = true; condition.broadcast(); condition.unlock() }
    public func closeWriting() throws { condition.lock(); writerClosed = true; condition.broadcast(); condition.unlock() }
}
