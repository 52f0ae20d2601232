import COpenSSL
import Foundation
import XCTest
import TestSupport
import OpenSSL
import OpenSSLFLI

/// The ex_data registry that keeps Swift closures for OpenSSL objects, and the way callback errors
/// come back to Swift.
final class CallbackStorageTests: XCTestCase {
    /// Counts its own deinit, to see when a closure capturing it is released.
    final class Token {
        let onDeinit: () -> Void
        init(_ onDeinit: @escaping () -> Void) { self.onDeinit = onDeinit }
        deinit { onDeinit() }
    }

    struct Refused: Error, Equatable {}

    override func tearDown() {
        XCTAssertEqual(COpenSSL.ERR_peek_error(), 0, "the error queue should be empty after each test")
        clearOpenSSLErrors()
    }

    /// When a helper rethrows a callback's error, OpenSSL's own complaints about the refused callback
    /// ("bad password read" …) are not left behind on the queue.
    func testRethrownCallbackErrorLeavesTheQueueEmpty() throws {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        try setSSLCtxPasswordCallback(ctx, callback: { _, _ in throw Refused() })
        XCTAssertThrowsError(try usePrivateKeyFile(ctx, file: pki.encryptedKey)) { error in
            XCTAssertEqual(error as? Refused, Refused())
        }
        XCTAssertEqual(COpenSSL.ERR_peek_error(), 0)
        try setSSLCtxPasswordCallback(ctx, password: String(repeating: "x", count: 5000))
        XCTAssertThrowsError(try usePrivateKeyFile(ctx, file: pki.encryptedKey)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.kind, .error)
            XCTAssertTrue(e?.message.contains("at most") ?? false, "\(error)")
        }
        XCTAssertEqual(COpenSSL.ERR_peek_error(), 0)
    }

    /// An empty password is an answer like any other: OpenSSL refuses it, nothing traps.
    func testEmptyPasswordIsRefusedByOpenSSLNotACrash() throws {
        let pki = try TestPKI.shared
        let ctx = try makeSSLCtx(side: .server)
        defer { destroySSLCtx(ctx) }
        try setSSLCtxPasswordCallback(ctx, password: "")
        XCTAssertThrowsError(try usePrivateKeyFile(ctx, file: pki.encryptedKey)) { error in
            let e = error as? SSLError
            XCTAssertEqual(e?.call, "SSL_CTX_use_PrivateKey_file")
            XCTAssertEqual(e?.file, pki.encryptedKey)
        }
        XCTAssertThrowsError(try pemRead(.privateKey, file: pki.encryptedKey, passPhrase: ""))
    }

    /// A kept error belongs to the thread whose C call ran the callback: another thread sharing the
    /// context neither sees nor swallows it.
    func testKeptErrorsArePerThread() throws {
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let registry = CallbackRegistry.of(ctx)
        registry.storeError(Refused())
        // A separate thread (DispatchQueue.sync may run its block on the calling thread).
        final class Box: @unchecked Sendable { var error: Error?; var ran = false }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { box.error = registry.takeError(); box.ran = true; done.signal() }
        thread.start()
        done.wait()
        XCTAssertTrue(box.ran)
        XCTAssertNil(box.error)
        XCTAssertEqual(registry.takeError() as? Refused, Refused())
        XCTAssertNil(registry.takeError())
    }

    /// Many threads asking for the registry of a fresh context get the same one.
    func testRegistryCreationIsThreadSafe() throws {
        for _ in 0..<20 {
            let ctx = try makeSSLCtx()
            let lock = NSLock()
            var seen = Set<ObjectIdentifier>()
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                let id = ObjectIdentifier(CallbackRegistry.of(ctx))
                lock.lock(); seen.insert(id); lock.unlock()
            }
            XCTAssertEqual(seen.count, 1)
            destroySSLCtx(ctx)
        }
    }

    /// Closures kept for an `SSL` are released when it is freed, and `SSL_dup` (which copies ex_data)
    /// gives the copy its own registry instead of a second owner of the same one.
    func testSSLRegistryIsReleasedAndSurvivesSSLDup() throws {
        var released = 0
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        do {
            let token = Token { released += 1 }
            CallbackRegistry.of(ssl).setClosure(CallbackKey<() -> Void>("test"), { _ = token })
        }
        let copy = try XCTUnwrap(SSLPointer(COpenSSL.SSL_dup(ssl.rawValue)))
        XCTAssertNotEqual(copy, ssl, "a fresh SSL is copied, not up-referenced")
        XCTAssertFalse(CallbackRegistry.of(copy) === CallbackRegistry.of(ssl))
        XCTAssertNotNil(CallbackRegistry.of(copy).closure(CallbackKey<() -> Void>("test")))
        destroySSL(ssl)
        XCTAssertEqual(released, 0, "the copy still holds the closure")
        destroySSL(copy)
        XCTAssertEqual(released, 1)
    }

    /// Replacing a closure in the registry releases the old one at once; removing it too.
    func testReplacingAndRemovingReleases() throws {
        var released = 0
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let registry = CallbackRegistry.of(ctx)
        for _ in 0..<3 {
            let token = Token { released += 1 }
            registry.setClosure(CallbackKey<() -> Void>("k"), { _ = token })
        }
        XCTAssertEqual(released, 2)
        registry.setClosure(CallbackKey<() -> Void>("k"), nil)
        XCTAssertEqual(released, 3)
    }

    /// `rethrowingCallbackErrors` hands back exactly the error the callback threw, and only once.
    func testRethrowingCallbackErrorsRethrowsExactlyOnce() throws {
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let registry = CallbackRegistry.of(ctx)
        XCTAssertThrowsError(try registry.rethrowingCallbackErrors { registry.storeError(Refused()) }) { error in
            XCTAssertEqual(error as? Refused, Refused())
        }
        XCTAssertEqual(try registry.rethrowingCallbackErrors { 42 }, 42)
    }
}
