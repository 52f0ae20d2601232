import COpenSSL
import Foundation
import OpenSSLFLI
import OpenSSLStreams
import TestSupport
import XCTest

/// 64 MiB each way through TLS over loopback, written with odd sizes from 1 byte to 1 MiB, read with
/// odd sizes too, checked with SHA-256 on both ends.
final class DataIntegrityTests: XCTestCase {
    /// Incremental SHA-256 (EVP).
    final class Digest {
        private let ctx = COpenSSL.EVP_MD_CTX_new()
        init() { COpenSSL.EVP_DigestInit_ex(ctx, COpenSSL.EVP_sha256(), nil) }
        deinit { COpenSSL.EVP_MD_CTX_free(ctx) }
        func update(_ bytes: UnsafeRawBufferPointer) { COpenSSL.EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) }
        func finish() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            var length: UInt32 = 0
            COpenSSL.EVP_DigestFinal_ex(ctx, &out, &length)
            return out
        }
    }

    static let total = 64 * 1024 * 1024
    static let writeSizes = [1, 7, 100, 1000, 4095, 16 * 1024, 16 * 1024 + 1, 65 * 1024 + 3, 1 << 20, 333_333, 2, 17_000]
    static let readSizes = [1, 5000, 16 * 1024, 100_000, 1 << 20, 3]

    /// A pseudo-random pattern, 1 MiB + 13 bytes, so slices do not line up with the write sizes.
    static let pattern: [UInt8] = {
        var bytes = [UInt8](repeating: 0, count: (1 << 20) + 13)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in bytes.indices { x ^= x << 13; x ^= x >> 7; x ^= x << 17; bytes[i] = UInt8(truncatingIfNeeded: x) }
        return bytes
    }()

    /// Sends `total` bytes with the odd write sizes; returns their digest.
    static func send(_ stream: SocketStream) throws -> [UInt8] {
        let digest = Digest()
        var sent = 0, offset = 0, turn = 0
        try pattern.withUnsafeBytes { all in
            while sent < total {
                var n = min(writeSizes[turn % writeSizes.count], total - sent)
                n = min(n, all.count - offset)
                let slice = UnsafeRawBufferPointer(rebasing: all[offset..<offset + n])
                try stream.write(slice)
                digest.update(slice)
                sent += n; offset = (offset + n) % all.count; turn += 1
            }
        }
        try stream.flush()
        return digest.finish()
    }

    /// Receives `total` bytes with odd read sizes; returns their digest.
    static func receive(_ stream: SocketStream) throws -> [UInt8] {
        let digest = Digest()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var received = 0, turn = 0
        try buffer.withUnsafeMutableBytes { raw in
            while received < total {
                let want = min(readSizes[turn % readSizes.count], total - received)
                let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<want]))
                if n == 0 { throw StreamTestFailure("the stream ended after \(received) bytes") }
                digest.update(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                received += n; turn += 1
            }
        }
        return digest.finish()
    }

    func testSixtyFourMebibytesEachWayWithOddSizes() throws {
        let pki = try Fixtures.pki
        let listener = try Fixtures.loopbackListener()
        defer { listener.close() }
        final class Results: @unchecked Sendable { var serverReceived: [UInt8] = []; var serverSent: [UInt8] = [] }  // written by the background thread, read after it was joined
        let results = Results()
        let server = Background("bulk server") {
            let s = try listener.accept(sslCtx: .context(try Fixtures.serverContextShared), handshakeTimeout: 10,
                                        timeout: 10, readTimeout: 60, writeTimeout: 60)
            results.serverReceived = try DataIntegrityTests.receive(s)
            results.serverSent = try DataIntegrityTests.send(s)
            XCTAssertEqual(try s.readLine(), "done")
            try s.close()
        }
        let client = try openTCPStream(host: "localhost", port: listener.port, sslCtx: .default, handshakeTimeout: 10,
                                       security: .trusting(caFile: pki.caCert), readTimeout: 60, writeTimeout: 60)
        let clientSent = try Self.send(client)
        let clientReceived = try Self.receive(client)
        try client.writeLine("done")
        XCTAssertNil(try client.readLine(), "nothing after the data but close_notify")
        try client.close()
        try server.join(timeout: 120)
        XCTAssertEqual(results.serverReceived, clientSent, "client → server digest")
        XCTAssertEqual(clientReceived, results.serverSent, "server → client digest")
        XCTAssertEqual(clientSent, results.serverSent, "both ends sent the same pattern")
    }
}
