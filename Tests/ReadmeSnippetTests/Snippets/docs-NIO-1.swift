// Generated from docs/NIO.md, line 8, by SnippetFreshnessTests. Do not edit.
import NIOCore
import NIOPosix
import OpenSSL
import OpenSSLFLI
import OpenSSLNIO

func snippet_docs_NIO_1() async throws {

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    // A client for async code: connect, attach TLS, wait for the handshake (verifies "example.org").
    let client = try await connectTLSChannel(host: "example.org", port: 443, group: group, handshakeTimeout: 10)
    try await client.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: "GET / HTTP/1.0\r\nHost: example.org\r\n\r\n"))
        for try await buffer in inbound { print(String(buffer: buffer), terminator: "") }   // ends at close_notify
    }

    // STARTTLS on a live plaintext channel, and back.
    let channel = try await ClientBootstrap(group: group).connect(host: "mail.example.org", port: 587).get()
    let attached = try await channel.attachSSL(ctx: .default, side: .client, handshakeTimeout: 10, hostName: "mail.example.org")
    print(attached.ssl, attached.ctx, attached.side)          // async-io-state-ssl / -ctx / -ssl-side
    try await channel.detachSSL()                             // close_notify both ways; plaintext again

    // A server: one SSL_CTX for every connection; handshake failures go to the error callback.
    let ctx = try makeSSLCtx(side: .server)
    try useCertificateChainFile(ctx, file: "server.pem"); try usePrivateKeyFile(ctx, file: "server.key")
    let server = try await acceptTLSChannels(host: "0.0.0.0", port: 8443, group: group, ctx: .context(ctx),
                                             handshakeTimeout: 10, sslErrorCallback: { channel, error in print(error) })
    try await server.executeThenClose { connections in
        for try await connection in connections {          // each after its handshake: echo what it sends
            try await connection.executeThenClose { inbound, outbound in
                for try await buffer in inbound { try await outbound.write(buffer) }
            }
        }
    }
}
