// Generated from OpenSSLNIO.docc/TheNIOHandler.md, line 32, by SnippetFreshnessTests. Do not edit.
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO

func snippet_OpenSSLNIO_TheNIOHandler_2() async throws {

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let ctx = try SSLContext(side: .server)
    try useCertificateChainFile(ctx.pointer, file: "server.pem")
    try usePrivateKeyFile(ctx.pointer, file: "server.key")
    let server = try await acceptTLSChannels(host: "127.0.0.1", port: 8443, group: group, ctx: .context(ctx),
                                             handshakeTimeout: 10)
    try await server.executeThenClose { connections in
        for try await connection in connections {          // each after its handshake: echo what it sends
            try await connection.executeThenClose { inbound, outbound in
                for try await buffer in inbound { try await outbound.write(buffer) }
            }
        }
    }
}
