import Foundation
import XCTest
import OpenSSLFLI

/// `loadedOpenSSL` names the files the process really mapped, and `ensureSSL(libraryPath:)` refuses another.
final class LoadedLibraryTests: XCTestCase {
    func testLoadedLibrariesAreTheMappedFiles() throws {
        let loaded = loadedOpenSSL
        // Read to the end: procfs files report size 0, and a sized read stops after the first page.
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/maps"))
        defer { try? handle.close() }
        let maps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let mapped = Set(maps.split(separator: "\n").compactMap { line -> String? in
            guard let slash = line.firstIndex(of: "/") else { return nil }
            let path = String(line[slash...])
            guard let real = realpath(path, nil) else { return path }
            defer { free(real) }
            return String(cString: real)
        })
        XCTAssertTrue(loaded.libssl.contains("libssl"), loaded.libssl)
        XCTAssertTrue(loaded.libcrypto.contains("libcrypto"), loaded.libcrypto)
        XCTAssertTrue(mapped.contains(loaded.libssl), "\(loaded.libssl) is mapped")
        XCTAssertTrue(mapped.contains(loaded.libcrypto), "\(loaded.libcrypto) is mapped")
        XCTAssertEqual(loaded.version.text, openSSLVersion.text)
        XCTAssertTrue(loaded.headers.hasPrefix("OpenSSL 3."), loaded.headers)
    }

    func testEnsureSSLAcceptsTheLoadedLibraryAndRefusesAnother() throws {
        let loaded = loadedOpenSSL
        try ensureSSL(libraryPath: loaded.libssl)
        try ensureSSL(libraryPath: URL(fileURLWithPath: loaded.libcrypto).deletingLastPathComponent().path)
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("fli-other-\(getpid())")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: other) }
        XCTAssertThrowsError(try ensureSSL(libraryPath: other.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("is not the OpenSSL this process loaded"), text)
            XCTAssertTrue(text.contains(loaded.libssl), text)
            XCTAssertTrue(text.contains("PKG_CONFIG_PATH") && text.contains("LD_LIBRARY_PATH"), text)
        }
        XCTAssertThrowsError(try ensureSSL(libraryPath: other.path + "/missing/libssl.so.3")) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
    }
}
