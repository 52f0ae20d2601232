// swift-tools-version:6.0
// libFuzzer targets for swift-openssl-fli. Build and run with ./run.sh (swift build --sanitize=fuzzer).
import PackageDescription

let fuzzFlags: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "swift-openssl-fli-fuzz",
    dependencies: [.package(name: "swift-openssl-fli", path: ".."), .package(name: "fli-codegen", path: "../codegen")],
    targets: [
        // PEM and DER readers: certificates, keys, CRLs, sessions; ALPN wire-format parsing.
        .executableTarget(name: "FuzzPEM", dependencies: [.product(name: "OpenSSL", package: "swift-openssl-fli"),
                                                          .product(name: "OpenSSLFLI", package: "swift-openssl-fli")],
                          swiftSettings: fuzzFlags),
        // A TLS server engine (memory BIOs) fed arbitrary bytes as the client's.
        .executableTarget(name: "FuzzTLSServer", dependencies: [.product(name: "OpenSSL", package: "swift-openssl-fli"),
                                                                .product(name: "OpenSSLStreams", package: "swift-openssl-fli"),
                                                                .product(name: "OpenSSLFLI", package: "swift-openssl-fli")],
                          swiftSettings: fuzzFlags),
        // A TLS client engine fed arbitrary bytes as the server's answer to its ClientHello.
        .executableTarget(name: "FuzzTLSClient", dependencies: [.product(name: "OpenSSL", package: "swift-openssl-fli"),
                                                                .product(name: "OpenSSLStreams", package: "swift-openssl-fli"),
                                                                .product(name: "OpenSSLFLI", package: "swift-openssl-fli")],
                          swiftSettings: fuzzFlags),
        // The code generator's LispWorks-name resolver and its spec-line parser.
        .executableTarget(name: "FuzzLispNames", dependencies: [.product(name: "LispNames", package: "fli-codegen")],
                          swiftSettings: fuzzFlags),
    ],
    swiftLanguageModes: [.v5]
)
