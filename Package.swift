// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-openssl-fli",
    products: [
        .library(name: "OpenSSLFLI", targets: ["OpenSSLFLI"]),
        .library(name: "OpenSSLTLS", targets: ["OpenSSLTLS"]),
        .library(name: "OpenSSLStreams", targets: ["OpenSSLStreams"]),
        .library(name: "OpenSSLNIO", targets: ["OpenSSLNIO"]),
        .executable(name: "sslcat", targets: ["sslcat"]),
        .executable(name: "fli-bench-c", targets: ["fli-bench-c"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Only for OpenSSLNIOTests' interop tests with swift-nio-ssl: no product links it, so building
        // sslcat never compiles BoringSSL. The swift-nio-ssl benchmark lives in Benchmarks/Package.swift.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // The system OpenSSL 3 (Debian: libssl-dev), found with pkg-config.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // Layer 1: generated direct calls, handles, ensureSSL, errors, contexts and helpers.
        .target(name: "OpenSSLFLI", dependencies: ["COpenSSL"]),
        // The TLS core under every transport: the engine (TLSMachine, TLSEngine), ownership (TLSObjects),
        // the configuration, peer identity and the deadline model, written once.
        .target(name: "OpenSSLTLS", dependencies: ["OpenSSLFLI", "COpenSSL"]),
        // Layer 2: blocking socket streams with attachSSL / detachSSL, openTCPStream, listeners.
        .target(name: "OpenSSLStreams", dependencies: ["OpenSSLTLS", "OpenSSLFLI", "COpenSSL"]),
        // Layer 3: event-driven TLS on SwiftNIO — a channel handler running OpenSSL over memory BIOs.
        .target(name: "OpenSSLNIO", dependencies: [
            "OpenSSLFLI", "OpenSSLTLS", "COpenSSL",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // The command-line tool: demo, connect, serve, bench. No NIO: `swift run sslcat` stays a light
        // build; bench runs the NIO layers through Benchmarks/Package.swift's fli-bench-nio.
        .executableTarget(
            name: "sslcat",
            dependencies: ["OpenSSLFLI", "OpenSSLStreams", "COpenSSL", "fli-bench-c",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The C reference of `sslcat bench`: OpenSSL used directly from C (built with the package, run by
        // sslcat as a child process).
        .executableTarget(name: "fli-bench-c", dependencies: ["COpenSSL"], path: "Benchmarks/CReference",
                          linkerSettings: [.linkedLibrary("pthread")]),
        // Test fixtures shared by the test targets: generated PKI, child processes (real peers).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "OpenSSLFLITests", dependencies: ["OpenSSLFLI", "TestSupport"]),
        .testTarget(name: "OpenSSLStreamsTests", dependencies: ["OpenSSLStreams", "OpenSSLFLI", "TestSupport"]),
        .testTarget(name: "OpenSSLNIOTests", dependencies: [
            "OpenSSLNIO", "OpenSSLStreams", "OpenSSLFLI", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The entry-point conformance matrix (issue 16): every client, server and deadline parameter
        // against the same hostile peers, certificates and deadline values; sslcat runs as a process.
        .testTarget(name: "ConformanceTests", dependencies: [
            "OpenSSLNIO", "OpenSSLStreams", "OpenSSLFLI", "TestSupport", "sslcat",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // Runs the sslcat and fli-bench-c executables as processes.
        .testTarget(name: "SSLCatTests", dependencies: ["sslcat", "fli-bench-c", "OpenSSLStreams", "OpenSSLFLI", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
