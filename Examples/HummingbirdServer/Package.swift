// swift-tools-version:6.2
import PackageDescription

// Hummingbird 2 serving HTTPS with the system OpenSSL: OpenSSLHandler (the main package's SwiftNIO layer)
// in place of NIOSSL, HTTP/1.1 and HTTP/2 chosen by ALPN. A package of its own so that the main package
// never depends on Hummingbird. `HummingbirdOpenSSL` is the adapter users depend on; `hummingbird-openssl`
// is the example server (and, with `--tls niossl`, the same server on Hummingbird's own NIOSSL TLS, for
// bench.sh).
let package = Package(
    name: "swift-openssl-fli-hummingbird",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "HummingbirdOpenSSL", targets: ["HummingbirdOpenSSL"]),
        .executable(name: "hummingbird-openssl", targets: ["HummingbirdOpenSSLServer"]),
    ],
    dependencies: [
        .package(name: "swift-openssl-fli", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // The adapter: a Hummingbird server child channel whose TLS is OpenSSLHandler, with HTTP/1.1 or
        // HTTP/2 by ALPN, and the TLS facts of a request's connection.
        .target(name: "HummingbirdOpenSSL", dependencies: [
            .product(name: "OpenSSLNIO", package: "swift-openssl-fli"),
            .product(name: "OpenSSLTLS", package: "swift-openssl-fli"),
            .product(name: "OpenSSLFLI", package: "swift-openssl-fli"),
            .product(name: "OpenSSL", package: "swift-openssl-fli"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdHTTP2", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        ]),
        // The example server (also the NIOSSL variant for the benchmark).
        .executableTarget(name: "HummingbirdOpenSSLServer", dependencies: [
            "HummingbirdOpenSSL",
            .product(name: "OpenSSLFLI", package: "swift-openssl-fli"),
            .product(name: "OpenSSL", package: "swift-openssl-fli"),
            .product(name: "OpenSSLTLS", package: "swift-openssl-fli"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdHTTP2", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Real clients (curl, openssl s_client, h2load, wrk) against the server, run as a process.
        .testTarget(name: "HummingbirdOpenSSLTests", dependencies: ["HummingbirdOpenSSLServer"]),
    ],
    swiftLanguageModes: [.v5]
)
