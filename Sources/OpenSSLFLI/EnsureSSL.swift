import COpenSSL
import Foundation

/// The OpenSSL library this process runs with (not the headers it was built against).
public struct OpenSSLVersion: Sendable, CustomStringConvertible {
    /// `OpenSSL_version_num()`, e.g. 0x30000130 for 3.0.19 (packed as 0xMNN00PP0).
    public var number: UInt
    public var major: UInt32
    public var minor: UInt32
    public var patch: UInt32
    /// `OpenSSL_version(OPENSSL_VERSION)`, e.g. "OpenSSL 3.0.19 27 Jan 2026".
    public var text: String
    public var description: String { text }
}

/// The running library's version.
public var openSSLVersion: OpenSSLVersion {
    OpenSSLVersion(number: COpenSSL.OpenSSL_version_num(),
                   major: COpenSSL.OPENSSL_version_major(), minor: COpenSSL.OPENSSL_version_minor(),
                   patch: COpenSSL.OPENSSL_version_patch(),
                   text: COpenSSL.OpenSSL_version(OPENSSL_VERSION).map { String(cString: $0) } ?? "unknown")
}

private final class InitState: @unchecked Sendable {
    let lock = NSLock()
    var done = false
}
private let initState = InitState()

/// Initialises OpenSSL once per process: idempotent and thread-safe; every context-making call of this
/// package goes through it.
///
/// It runs `OPENSSL_init_ssl` with the error strings loaded, checks that the library in use is
/// OpenSSL 3.0 or later, and makes sure the random generator is seeded. Pass `alreadyDone: true` when
/// the application initialised OpenSSL itself (LispWorks' `already-done`): the version and RNG checks
/// still run, `OPENSSL_init_ssl` does not. A failure is thrown each time until a call succeeds.
public func ensureSSL(alreadyDone: Bool = false) throws {
    initState.lock.lock()
    defer { initState.lock.unlock() }
    if initState.done { return }
    let version = openSSLVersion
    guard version.major >= 3 else {
        throw SSLError.usage("OpenSSL 3.0 or later is required, this process runs \(version.text)", call: "OpenSSL_version_num")
    }
    if !alreadyDone {
        let flags = UInt64(OPENSSL_INIT_LOAD_SSL_STRINGS) | UInt64(OPENSSL_INIT_LOAD_CRYPTO_STRINGS)
        guard COpenSSL.OPENSSL_init_ssl(flags, nil) == 1 else {
            throw SSLError.fromQueue(call: "OPENSSL_init_ssl", message: "OpenSSL initialisation failed")
        }
    }
    try doRandSeed()
    initState.done = true
}

/// Makes sure the random generator is seeded (LispWorks' `do-rand-seed`): polls the system's entropy
/// source if `RAND_status` says it is not, and throws if it still is not.
public func doRandSeed() throws {
    if COpenSSL.RAND_status() == 1 { return }
    _ = COpenSSL.RAND_poll()
    guard COpenSSL.RAND_status() == 1 else {
        throw SSLError.fromQueue(call: "RAND_poll", message: "the random generator could not be seeded")
    }
}
