import COpenSSL
import Foundation
import XCTest
import TestSupport
import OpenSSL
import OpenSSLFLI

/// The ex_data registry that keeps Swift closures for OpenSSL objects, and the way callback errors
/// come back to Swift.
/// How many ``ReleaseToken``s were released (deinit may run on any thread).
final class ReleaseCount: @unchecked Sendable {  // `count` is only touched under `lock`
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// Counts its own deinit in a ``ReleaseCount``, to see when a closure capturing it is released.
final class ReleaseToken: Sendable {
    let count: ReleaseCount
    init(_ count: ReleaseCount) { self.count = count }
    deinit { count.add() }
}

final class CallbackStorageTests: XCTestCase {
    /// Counts its own deinit, to see when a closure capturing it is released.
    typealias Token = ReleaseToken

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
        final class Box: @unchecked Sendable { var error: Error?; var ran = false }  // written before `done.signal()`, read after the wait
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
            final class Seen: @unchecked Sendable {  // `ids` is only touched under `lock`
                let lock = NSLock()
                var ids = Set<ObjectIdentifier>()
            }
            let seen = Seen()
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                let id = ObjectIdentifier(CallbackRegistry.of(ctx))
                seen.lock.lock(); seen.ids.insert(id); seen.lock.unlock()
            }
            XCTAssertEqual(seen.ids.count, 1)
            destroySSLCtx(ctx)
        }
    }

    /// Closures kept for an `SSL` are released when it is freed, and `SSL_dup` (which copies ex_data)
    /// gives the copy its own registry instead of a second owner of the same one.
    func testSSLRegistryIsReleasedAndSurvivesSSLDup() throws {
        let released = ReleaseCount()
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let ssl = try sslNew(ctx)
        do {
            let token = Token(released)
            CallbackRegistry.of(ssl).setClosure(CallbackKey<@Sendable () -> Void>("test"), { _ = token })
        }
        let copy = try XCTUnwrap(SSLPointer(COpenSSL.SSL_dup(ssl.rawValue)))
        XCTAssertNotEqual(copy, ssl, "a fresh SSL is copied, not up-referenced")
        XCTAssertFalse(CallbackRegistry.of(copy) === CallbackRegistry.of(ssl))
        XCTAssertNotNil(CallbackRegistry.of(copy).closure(CallbackKey<@Sendable () -> Void>("test")))
        destroySSL(ssl)
        XCTAssertEqual(released.value, 0, "the copy still holds the closure")
        destroySSL(copy)
        XCTAssertEqual(released.value, 1)
    }

    /// Replacing a closure in the registry releases the old one at once; removing it too.
    func testReplacingAndRemovingReleases() throws {
        let released = ReleaseCount()
        let ctx = try makeSSLCtx()
        defer { destroySSLCtx(ctx) }
        let registry = CallbackRegistry.of(ctx)
        for _ in 0..<3 {
            let token = Token(released)
            registry.setClosure(CallbackKey<@Sendable () -> Void>("k"), { _ = token })
        }
        XCTAssertEqual(released.value, 2)
        registry.setClosure(CallbackKey<@Sendable () -> Void>("k"), nil)
        XCTAssertEqual(released.value, 3)
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
