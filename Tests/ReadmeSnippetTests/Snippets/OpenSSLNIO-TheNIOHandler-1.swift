// Generated from OpenSSLNIO.docc/TheNIOHandler.md, line 12, by SnippetFreshnessTests. Do not edit.
import NIOCore
import NIOPosix
import OpenSSLFLI
import OpenSSLNIO

func snippet_OpenSSLNIO_TheNIOHandler_1() async throws {

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let client: NIOAsyncChannel<ByteBuffer, ByteBuffer> =
        try await connectTLSChannel(host: "example.org", port: 443, group: group, handshakeTimeout: 10)
    try await client.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: "HEAD / HTTP/1.0\r\nHost: example.org\r\n\r\n"))
        for try await buffer in inbound { print(String(buffer: buffer), terminator: "") }
    }
}
