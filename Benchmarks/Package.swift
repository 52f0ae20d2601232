// swift-tools-version:6.0
import PackageDescription

// The benchmarks that need more than the main package: the SwiftNIO harness of `sslcat bench --layers
// nio,nio-ssl`, which runs this package's OpenSSLHandler and swift-nio-ssl's NIOSSLHandler (BoringSSL).
// A package of its own so that building the main package (`swift run sslcat demo`) never compiles
// BoringSSL. Build it with `swift build -c release --package-path Benchmarks`; `sslcat bench` runs its
// `fli-bench-nio` as a child process, as it runs the C reference.
let package = Package(
    name: "swift-openssl-fli-benchmarks",
    dependencies: [
        .package(name: "swift-openssl-fli", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .executableTarget(
            name: "fli-bench-nio",
            dependencies: [
                .product(name: "OpenSSLFLI", package: "swift-openssl-fli"),
                .product(name: "OpenSSL", package: "swift-openssl-fli"),
                .product(name: "OpenSSLNIO", package: "swift-openssl-fli"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "NIO"
        ),
    ],
    swiftLanguageModes: [.v5]
)
