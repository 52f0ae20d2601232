import COpenSSL

/// A typed, non-owning handle to an OpenSSL object (`SSL*`, `SSL_CTX*`, `X509*` …).
///
/// Handles are zero-cost wrappers around the C pointer: they own nothing and free nothing. Whoever made
/// the object (you, a stream, OpenSSL) frees it with the matching `*_free` call. A handle can be made
/// from a raw pointer obtained from a hand-written C call, and gives the raw pointer back with
/// ``rawValue``, so values mix freely with code that uses `COpenSSL` directly.
///
/// The concrete handle types (``SSLPointer``, ``SSLContextPointer``, …) are generated from the
/// handle table in `codegen/spec.txt`.
public protocol OpenSSLHandle: Hashable, Sendable, CustomStringConvertible {
    /// The C pointer this handle stands for.
    var rawValue: OpaquePointer { get }
    /// Wraps a C pointer. The pointer is not retained, copied or checked.
    init(_ rawValue: OpaquePointer)
}

extension OpenSSLHandle {
    /// Wraps a C pointer that may be NULL: `nil` for NULL.
    @inlinable
    public init?(_ rawValue: OpaquePointer?) {
        guard let rawValue else { return nil }
        self.init(rawValue)
    }

    /// Wraps an untyped C pointer that may be NULL: `nil` for NULL.
    @inlinable
    public init?(raw pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return nil }
        self.init(OpaquePointer(pointer))
    }

    /// The pointer as an untyped raw pointer (for `void *` arguments such as `SSL_ctrl`'s `parg`).
    @inlinable
    public var rawPointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(rawValue) }

    public var description: String {
        "\(Self.self)(\(UnsafeRawPointer(rawValue)))"
    }
}
