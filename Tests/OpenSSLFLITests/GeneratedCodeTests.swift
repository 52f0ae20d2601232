import Foundation
import XCTest
import TestSupport

/// The generated layer is checked against the installed headers (the C file the generator emits) and
/// against a fresh run of the generator.
final class GeneratedCodeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func findExecutable(_ names: [String]) -> String? {
        var dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        dirs += ["/opt/swift/usr/bin", "/usr/bin", "/usr/local/bin"]
        for name in names {
            for dir in dirs where FileManager.default.isExecutableFile(atPath: dir + "/" + name) { return dir + "/" + name }
        }
        return nil
    }

    /// The C flags pkg-config gives for openssl: the headers COpenSSL binds (PKG_CONFIG_PATH selects another).
    static func opensslCFlags() throws -> [String] {
        guard let pkgConfig = findExecutable(["pkg-config"]) else {
            throw XCTSkip("pkg-config is not installed: cannot find the headers COpenSSL binds")
        }
        let result = try runProcess(pkgConfig, ["--cflags", "openssl"], timeout: 30)
        guard result.status == 0 else { XCTFail("pkg-config --cflags openssl: \(result.stderr)"); return [] }
        return result.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    /// Compiles Tests/HeaderCheck/header_check.c: every wrapped prototype, macro and constant must match
    /// the installed headers. A mismatch is a compile error naming the call.
    func testHeaderCheckCompilesAgainstInstalledHeaders() throws {
        guard let cc = Self.findExecutable(["clang", "cc", "gcc"]) else {
            throw XCTSkip("no C compiler (clang, cc or gcc) on PATH: cannot compile the header check")
        }
        let result = try runProcess(cc, try Self.opensslCFlags() + ["-fsyntax-only", "-Wno-deprecated-declarations", "-I", Self.root + "/Sources/COpenSSL",
                                         Self.root + "/Tests/HeaderCheck/header_check.c"], timeout: 120)
        XCTAssertEqual(result.status, 0, "header check failed to compile:\n\(result.stderr.prefix(4000))")
    }

    /// The header check really fails when a prototype differs: one assertion altered must not compile.
    func testHeaderCheckDetectsAMismatch() throws {
        guard let cc = Self.findExecutable(["clang", "cc", "gcc"]) else {
            throw XCTSkip("no C compiler (clang, cc or gcc) on PATH: cannot compile the header check")
        }
        let original = try String(contentsOfFile: Self.root + "/Tests/HeaderCheck/header_check.c", encoding: .utf8)
        let needle = "__typeof__(SSL_CIPHER_get_bits), int (const SSL_CIPHER *, int *)"
        XCTAssertTrue(original.contains(needle), "the header check should assert SSL_CIPHER_get_bits' prototype")
        let altered = original.replacingOccurrences(of: needle, with: "__typeof__(SSL_CIPHER_get_bits), int (const SSL_CIPHER *, long *)")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fli-hc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("altered.c").path
        try altered.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try runProcess(cc, try Self.opensslCFlags() + ["-fsyntax-only", "-Wno-deprecated-declarations", "-I", Self.root + "/Sources/COpenSSL", file], timeout: 120)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("SSL_CIPHER_get_bits"), result.stderr)
    }

    /// `Generated/` must be what the generator makes from the spec and the installed headers today.
    func testGeneratedFilesAreFresh() throws {
        guard Self.findExecutable(["clang"]) != nil else {
            throw XCTSkip("clang is not installed: cannot rerun the generator to check Generated/ is fresh")
        }
        guard let swift = Self.findExecutable(["swift"]) else { throw XCTSkip("the swift driver is not on PATH") }
        let result = try runProcess(swift, ["run", "--package-path", Self.root + "/codegen", "fli-codegen", "--check", "--quiet"],
                                    timeout: 600, directory: Self.root)
        XCTAssertEqual(result.status, 0, "Generated/ is stale or the generator failed:\n\(result.stdout.suffix(3000))\n\(result.stderr.suffix(3000))")
    }
}
