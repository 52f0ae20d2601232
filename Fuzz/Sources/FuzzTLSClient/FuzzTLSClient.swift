import OpenSSL
import OpenSSLFLI
import OpenSSLStreams

let clientContext: SSLContextPointer = {
    let ctx = try! makeSSLCtx(protocol: .default, side: .client)
    try! ctx.setALPNProtocols(["h2"])
    return ctx
}()

/// Arbitrary bytes as the server's answer to a client engine's ClientHello, fed in pieces; then a read.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTLSClient(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let piece = Int(bytes[0]) * 16 + 1
    guard let engine = try? TLSEngine(ctx: .context(clientContext), side: .client, hostName: "localhost", security: .insecure) else { return 0 }
    guard (try? engine.handshake()) != nil else { return 0 }
    _ = engine.takeOutgoing()  // the ClientHello
    var offset = 1
    var failed = false
    while offset < size && !failed {
        let n = min(piece, size - offset)
        guard (try? engine.feed(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[offset..<(offset + n)]))) != nil else { return 0 }
        offset += n
        do {
            if try engine.handshake() {
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = try buffer.withUnsafeMutableBytes { try engine.read(into: $0) }
            }
        } catch { failed = true }
        _ = engine.takeOutgoing()
    }
    clearOpenSSLErrors()
    return 0
}
