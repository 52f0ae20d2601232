import COpenSSL
import Foundation

/// A password callback: gets the largest length OpenSSL accepts and whether the password is for
/// encrypting (true) or decrypting; returns the password, or nil to refuse. It may throw: the error is
/// kept and rethrown by the Swift call that made OpenSSL ask.
public typealias SSLPasswordCallback = (_ maxLength: Int, _ encrypting: Bool) throws -> String?

/// The Swift closures kept for one `SSL_CTX` (or `SSL`). It lives in the object's ex_data; OpenSSL's
/// free callback releases it when the object is freed, and replacing a closure releases the old one.
public final class CallbackRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var closures: [String: Any] = [:]
    private var pendingError: Error?

    init() {}

    /// The closure stored under `key`, if any.
    public func closure<T>(_ key: String, as type: T.Type = T.self) -> T? {
        lock.lock(); defer { lock.unlock() }
        return closures[key] as? T
    }

    /// Stores (or with nil removes) the closure under `key`; the old one is released.
    public func setClosure(_ key: String, _ closure: Any?) {
        lock.lock()
        let old = closures[key]
        closures[key] = closure
        lock.unlock()
        _ = old  // released here, outside the lock
    }

    /// Keeps an error thrown inside a callback, to be rethrown after the C call returns.
    public func storeError(_ error: Error) {
        lock.lock(); defer { lock.unlock() }
        if pendingError == nil { pendingError = error }
    }

    /// Takes the kept error, if any.
    public func takeError() -> Error? {
        lock.lock(); defer { lock.unlock() }
        let e = pendingError
        pendingError = nil
        return e
    }

    // The ex_data indexes, made once per process, with a free callback that releases the registry.
    static let contextIndex: Int32 = COpenSSL.CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, nil, nil, nil) { _, pointer, _, _, _, _ in
        if let pointer { Unmanaged<CallbackRegistry>.fromOpaque(pointer).release() }
    }
    static let sslIndex: Int32 = COpenSSL.CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nil, nil, nil) { _, pointer, _, _, _, _ in
        if let pointer { Unmanaged<CallbackRegistry>.fromOpaque(pointer).release() }
    }

    /// The registry of a context, made on first use.
    public static func of(_ ctx: SSLContextPointer) -> CallbackRegistry {
        if let existing = COpenSSL.SSL_CTX_get_ex_data(ctx.rawValue, contextIndex) {
            return Unmanaged<CallbackRegistry>.fromOpaque(existing).takeUnretainedValue()
        }
        let registry = CallbackRegistry()
        _ = COpenSSL.SSL_CTX_set_ex_data(ctx.rawValue, contextIndex, Unmanaged.passRetained(registry).toOpaque())
        return registry
    }

    /// The registry of a connection, made on first use.
    public static func of(_ ssl: SSLPointer) -> CallbackRegistry {
        if let existing = COpenSSL.SSL_get_ex_data(ssl.rawValue, sslIndex) {
            return Unmanaged<CallbackRegistry>.fromOpaque(existing).takeUnretainedValue()
        }
        let registry = CallbackRegistry()
        _ = COpenSSL.SSL_set_ex_data(ssl.rawValue, sslIndex, Unmanaged.passRetained(registry).toOpaque())
        return registry
    }

    /// Runs a C call that may call back into Swift, then rethrows the error a callback kept, if any.
    public func rethrowingCallbackErrors<T>(_ body: () throws -> T) throws -> T {
        _ = takeError()
        let result = try body()
        if let error = takeError() { throw error }
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
        guard bytes.count < Int(size) else {
            registry.storeError(SSLError.usage("the password is \(bytes.count) bytes, OpenSSL accepts at most \(size - 1)", call: call))
            return -1
        }
        bytes.withUnsafeBufferPointer { src in
            UnsafeMutableRawPointer(buffer).copyMemory(from: src.baseAddress!, byteCount: bytes.count)
        }
        return Int32(bytes.count)
    } catch {
        registry.storeError(error)
        return -1
    }
}
