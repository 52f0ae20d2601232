// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-openssl-fli",
    products: [
        .library(name: "OpenSSLFLI", targets: ["OpenSSLFLI"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "OpenSSLFLI", dependencies: ["COpenSSL"]),
        .testTarget(name: "OpenSSLFLITests", dependencies: ["OpenSSLFLI"]),
    ],
    swiftLanguageModes: [.v5]
)
