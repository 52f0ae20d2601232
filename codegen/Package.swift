// swift-tools-version:6.0
// The code generator for swift-openssl-fli. Run from the repository root:
//     swift run --package-path codegen fli-codegen
// It reads codegen/spec.txt and the installed OpenSSL headers (through clang and
// swift-synthesize-interface) and rewrites Sources/OpenSSLFLI/Generated/.
import PackageDescription

let package = Package(
    name: "fli-codegen",
    targets: [
        .executableTarget(name: "fli-codegen", path: "Sources/fli-codegen"),
    ],
    swiftLanguageModes: [.v5]
)
