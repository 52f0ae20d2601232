// swift-tools-version:6.0
// The code generator for swift-openssl-fli. Run from the repository root:
//     swift run --package-path codegen fli-codegen
// It reads codegen/spec.txt and the OpenSSL headers pkg-config names (through clang and
// swift-synthesize-interface) and rewrites Sources/OpenSSLFLI/Generated/.
import PackageDescription

let package = Package(
    name: "fli-codegen",
    products: [
        // The LispWorks-name resolver, also used by the fuzz targets in ../Fuzz.
        .library(name: "LispNames", targets: ["LispNames"]),
    ],
    targets: [
        .target(name: "LispNames"),
        .executableTarget(name: "fli-codegen", dependencies: ["LispNames"], path: "Sources/fli-codegen"),
        .testTarget(name: "LispNamesTests", dependencies: ["LispNames"]),
    ],
    swiftLanguageModes: [.v5]
)
