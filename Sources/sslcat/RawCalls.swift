// The raw C side of `sslcat bench direct_call`: the same calls through the plain C import. This file
// imports COpenSSL and not OpenSSLFLI, so each name here is the C function itself.
import COpenSSL

@inline(never) func rawGetOptions(_ ctx: OpaquePointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= SSL_CTX_get_options(ctx) }
    return acc
}

@inline(never) func rawGetMode(_ ctx: OpaquePointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= UInt64(bitPattern: Int64(SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, 0, nil))) }
    return acc
}

@inline(never) func rawCurrentCipher(_ ssl: OpaquePointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= SSL_get_current_cipher(ssl) == nil ? 1 : 2 }
    return acc
}

/// `OBJ_sn2nid("SHA256")` as C writes it: the address of a static NUL-terminated string.
@inline(never) func rawSn2nid(_ name: UnsafePointer<CChar>, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= UInt64(bitPattern: Int64(OBJ_sn2nid(name))) }
    return acc
}
