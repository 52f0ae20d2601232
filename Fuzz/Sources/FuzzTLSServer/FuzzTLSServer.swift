import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

/// One server context (self-signed, in memory), made once.
let serverContext: SSLContextPointer = {
    let key = try! PrivateKey.generateEC()
    let certificate = try! makeCertificate(.server(hosts: ["localhost"]), key: key)
    let ctx = try! makeSSLCtx(protocol: .default, side: .server)
    try! useIdentity(ctx, certificate: certificate, key: key)
    ctx.setALPNServerProtocols(["h2", "http/1.1"])
    ctx.setServerNameCallback { _, _ in nil }
    return ctx
}()

/// Arbitrary bytes as a client's first flight to a TLS server engine, fed in pieces (the first byte
/// picks the piece size): the engine must answer, ask for more, or throw — never crash or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTLSServer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let piece = Int(bytes[0]) + 1
    guard let engine = try? TLSEngine(ctx: .context(serverContext), side: .server) else { return 0 }
    var offset = 1
    while offset < size {
        let n = min(piece, size - offset)
        guard (try? engine.feed(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[offset..<(offset + n)]))) != nil else { return 0 }
        offset += n
        do { _ = try engine.handshake() } catch { break }
        _ = engine.takeOutgoing()
    }
    engine.feedEOF()
    _ = try? engine.handshake()
    clearOpenSSLErrors()
    return 0
}
