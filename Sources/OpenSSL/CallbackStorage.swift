import COpenSSL
import OpenSSLFLI
import Foundation
import Synchronization
// OpenSSLFLI declares these C names again (as COpenSSL does): the scoped imports pick its copy.
import var OpenSSLFLI.CRYPTO_EX_INDEX_SSL
import var OpenSSLFLI.CRYPTO_EX_INDEX_SSL_CTX

/// A password callback: gets the largest length OpenSSL accepts and whether the password is for
/// encrypting (true) or decrypting; returns the password, or nil to refuse. It may throw: the error is
/// kept and rethrown by the Swift call that made OpenSSL ask.
public typealias SSLPasswordCallback = @Sendable (_ maxLength: Int, _ encrypting: Bool) throws -> String?

/// The Swift closures kept for one `SSL_CTX` (or `SSL`). It lives in the object's ex_data; OpenSSL's
/// free callback releases it when the object is freed, and replacing a closure releases the old one.
///
/// An error thrown by a closure while OpenSSL runs it cannot cross C: the trampoline keeps it with
/// ``storeError(_:)`` and the Swift helper that made the C call rethrows it afterwards
/// (``rethrowingCallbackErrors(_:)``). Kept errors belong to the thread that made the C call (OpenSSL
/// runs callbacks on the calling thread), so one context shared by many threads does not mix them up.
///
/// `SSL_dup` gives the copy a registry of its own holding the same closures; the two are released
/// independently.
public final class CallbackRegistry: @unchecked Sendable {  // `closures` is only touched under `lock`, and holds Sendable values
    private let lock = NSLock()
    private var closures: [String: any Sendable] = [:]

    init() {}

    private static var currentThread: UInt { UInt(pthread_self()) }

    /// The closure (or value) stored under `key`, if any.
    public func closure<T: Sendable>(_ key: CallbackKey<T>) -> T? {
        lock.lock(); defer { lock.unlock() }
        return closures[key.name] as? T
    }

    /// Stores (or with nil removes) the closure (or value) under `key`; the old one is released.
    /// The value must be `Sendable`: one context serves connections on many threads, and OpenSSL runs
    /// the callbacks on whichever thread drives a connection.
    public func setClosure<T: Sendable>(_ key: CallbackKey<T>, _ closure: T?) {
        lock.lock()
        let old = closures[key.name]
        closures[key.name] = closure
        lock.unlock()
        _ = old  // released here, outside the lock (its deinit may run arbitrary code)
    }

    /// Keeps an error thrown inside a callback on this thread, to be rethrown after the C call returns.
    /// The first error wins when a C call runs several callbacks. Kept errors are per thread, not per
    /// registry: a handshake may run callbacks of the `SSL`, of its context and of a context an SNI
    /// callback switched to, and the call that drove it rethrows whichever came first.
    public func storeError(_ error: Error) { CallbackRegistry.storePendingError(error) }

    /// Takes the error kept on this thread, if any.
    public func takeError() -> Error? { CallbackRegistry.takePendingError() }

    /// Keeps an error thrown by a callback on this thread (the first one wins).
    public static func storePendingError(_ error: Error) {
        errorLock.lock(); defer { errorLock.unlock() }
        let thread = currentThread
        if pendingErrors[thread] == nil {
            pendingErrors[thread] = error
            pendingCount.add(1, ordering: .releasing)
        }
    }

    /// Takes the error a callback kept on this thread, if any. Code that drives OpenSSL I/O by hand
    /// (`SSL_do_handshake`, `SSL_read` …) calls this after each call and throws what it returns.
    /// Without a kept error anywhere (every call that went well) it takes no lock: the count of kept
    /// errors is read atomically, and an error this thread kept is always counted before it looks.
    public static func takePendingError() -> Error? {
        if pendingCount.load(ordering: .acquiring) == 0 { return nil }
        errorLock.lock(); defer { errorLock.unlock() }
        guard let error = pendingErrors.removeValue(forKey: currentThread) else { return nil }
        pendingCount.subtract(1, ordering: .releasing)
        return error
    }

    private static let errorLock = NSLock()
    nonisolated(unsafe) private static var pendingErrors: [UInt: Error] = [:]  // only touched under `errorLock`
    /// How many errors ``pendingErrors`` holds (changed under ``errorLock``).
    private static let pendingCount = Atomic<Int>(0)

    /// A registry holding the same closures (no kept errors), for `SSL_dup`.
    private func copy() -> CallbackRegistry {
        let other = CallbackRegistry()
        lock.lock(); defer { lock.unlock() }
        other.closures = closures
        return other
    }

    // The ex_data free callback: releases the registry when its object is freed.
    private static let releaseRegistry: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                                         UnsafeMutablePointer<CRYPTO_EX_DATA>?, Int32, Int,
                                                         UnsafeMutableRawPointer?) -> Void = { _, pointer, _, _, _, _ in
        if let pointer { Unmanaged<CallbackRegistry>.fromOpaque(pointer).release() }
    }

    // The ex_data dup callback (`SSL_dup` copies ex_data pointers as they are): without it both objects
    // would release one registry. The copy gets its own, retained, registry.
    private static let duplicateRegistry: @convention(c) (UnsafeMutablePointer<CRYPTO_EX_DATA>?, UnsafePointer<CRYPTO_EX_DATA>?,
                                                           UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32, Int,
                                                           UnsafeMutableRawPointer?) -> Int32 = { _, _, fromData, _, _, _ in
        guard let fromData, let pointer = fromData.pointee else { return 1 }
        let original = Unmanaged<CallbackRegistry>.fromOpaque(pointer).takeUnretainedValue()
        fromData.pointee = Unmanaged.passRetained(original.copy()).toOpaque()
        return 1
    }

    private static func makeIndex(_ classIndex: Int32) -> Int32 {
        let index = COpenSSL.CRYPTO_get_ex_new_index(classIndex, 0, nil, nil, duplicateRegistry, releaseRegistry)
        precondition(index >= 0, "CRYPTO_get_ex_new_index failed: no ex_data index for Swift callbacks")
        return index
    }

    // The ex_data indexes, made once per process.
    static let contextIndex: Int32 = makeIndex(CRYPTO_EX_INDEX_SSL_CTX)
    static let sslIndex: Int32 = makeIndex(CRYPTO_EX_INDEX_SSL)

    /// Serialises the first-use creation of registries.
    private static let creationLock = NSLock()

    private static func registry(get: () -> UnsafeMutableRawPointer?, set: (UnsafeMutableRawPointer) -> Int32) -> CallbackRegistry {
        if let existing = get() { return Unmanaged<CallbackRegistry>.fromOpaque(existing).takeUnretainedValue() }
        creationLock.lock(); defer { creationLock.unlock() }
        if let existing = get() { return Unmanaged<CallbackRegistry>.fromOpaque(existing).takeUnretainedValue() }
        let registry = CallbackRegistry()
        let retained = Unmanaged.passRetained(registry)
        if set(retained.toOpaque()) != 1 {
            // OpenSSL could not store it (out of memory): nothing would release it, so do not keep it.
            retained.release()
        }
        return registry
    }

    /// The registry of a context, made on first use.
    /// - Corresponds: `SSL_CTX_get_ex_data`, `SSL_CTX_set_ex_data`.
    public static func of(_ ctx: SSLContextPointer) -> CallbackRegistry {
        registry(get: { COpenSSL.SSL_CTX_get_ex_data(ctx.rawValue, contextIndex) },
                 set: { COpenSSL.SSL_CTX_set_ex_data(ctx.rawValue, contextIndex, $0) })
    }

    /// The registry of a connection, made on first use.
    /// - Corresponds: `SSL_get_ex_data`, `SSL_set_ex_data`.
    public static func of(_ ssl: SSLPointer) -> CallbackRegistry {
        registry(get: { COpenSSL.SSL_get_ex_data(ssl.rawValue, sslIndex) },
                 set: { COpenSSL.SSL_set_ex_data(ssl.rawValue, sslIndex, $0) })
    }

    /// The registry of a context if it has one (none is made).
    /// - Corresponds: `SSL_CTX_get_ex_data`.
    public static func existing(_ ctx: SSLContextPointer) -> CallbackRegistry? {
        COpenSSL.SSL_CTX_get_ex_data(ctx.rawValue, contextIndex).map { Unmanaged<CallbackRegistry>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The registry of a connection if it has one (none is made).
    /// - Corresponds: `SSL_get_ex_data`.
    public static func existing(_ ssl: SSLPointer) -> CallbackRegistry? {
        COpenSSL.SSL_get_ex_data(ssl.rawValue, sslIndex).map { Unmanaged<CallbackRegistry>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The closure a callback of `ssl` should run: the one set on the connection, else on its current
    /// context, else on the context it was made with (when an SNI callback switched contexts).
    /// - Corresponds: `SSL_get_SSL_CTX`.
    public static func lookup<T: Sendable>(_ key: CallbackKey<T>, for ssl: SSLPointer) -> T? {
        if let own = existing(ssl) {
            if let closure: T = own.closure(key) { return closure }
            if let context = COpenSSL.SSL_get_SSL_CTX(ssl.rawValue), let registry = existing(SSLContextPointer(context)),
               let closure: T = registry.closure(key) { return closure }
            if let origin = own.closure(.originContext) { return origin.closure(key) }
            return nil
        }
        guard let context = COpenSSL.SSL_get_SSL_CTX(ssl.rawValue) else { return nil }
        return existing(SSLContextPointer(context))?.closure(key)
    }


    /// Runs a C call that may call back into Swift, then rethrows the error a callback kept on this
    /// thread, if any. When it rethrows, the OpenSSL error queue (which then only holds OpenSSL's
    /// consequences of the refused callback) is cleared.
    /// - Corresponds: `ERR_clear_error`.
    public func rethrowingCallbackErrors<T>(_ body: () throws -> T) throws -> T {
        _ = takeError()
        let result = try body()
        if let error = takeError() {
            COpenSSL.ERR_clear_error()
            throw error
        }
        return result
    }
}

/// Copies a password into OpenSSL's buffer; used by every password callback of the package.
/// Returns the length, or -1 (after keeping an error in `registry`) when there is none or it does not fit.
func deliverPassword(_ callback: SSLPasswordCallback, buffer: UnsafeMutablePointer<CChar>?, size: Int32,
                     encrypting: Bool, registry: CallbackRegistry, call: String) -> Int32 {
    guard let buffer, size > 0 else { return -1 }
    do {
        guard let password = try callback(Int(size) - 1, encrypting) else { return -1 }
        let bytes = Array(password.utf8)
        guard !bytes.contains(0) else {
            registry.storeError(SSLError.usage("the password contains a NUL byte", call: call))
            return -1
        }
        guard bytes.count < Int(size) else {
            registry.storeError(SSLError.usage("the password is \(bytes.count) bytes, OpenSSL accepts at most \(size - 1)", call: call))
            return -1
        }
        // An empty password is a valid answer (an empty array may have no base address).
        if !bytes.isEmpty {
            bytes.withUnsafeBufferPointer { src in
                UnsafeMutableRawPointer(buffer).copyMemory(from: src.baseAddress!, byteCount: bytes.count)
            }
        }
        return Int32(bytes.count)
    } catch {
        registry.storeError(error)
        return -1
    }
}
