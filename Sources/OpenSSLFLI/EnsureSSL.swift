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
/// - Corresponds: `OPENSSL_version_major`, `OPENSSL_version_minor`, `OPENSSL_version_patch`.
public var openSSLVersion: OpenSSLVersion {
    OpenSSLVersion(number: COpenSSL.OpenSSL_version_num(),
                   major: COpenSSL.OPENSSL_version_major(), minor: COpenSSL.OPENSSL_version_minor(),
                   patch: COpenSSL.OPENSSL_version_patch(),
                   text: COpenSSL.OpenSSL_version(OPENSSL_VERSION).map { String(cString: $0) } ?? "unknown")
}

/// The libssl and libcrypto files this process loaded, found with `dladdr` on one function of each, and
/// the version they report.
public struct LoadedOpenSSL: Sendable, CustomStringConvertible {
    /// The shared object `SSL_new` is in, e.g. `/usr/lib/x86_64-linux-gnu/libssl.so.3`.
    public var libssl: String
    /// The shared object `OpenSSL_version_num` is in.
    public var libcrypto: String
    public var version: OpenSSLVersion
    /// The headers this package was compiled against (`OPENSSL_VERSION_TEXT`).
    public var headers: String
    public var description: String { "\(version.text): \(libssl), \(libcrypto) (built with the headers of \(headers))" }
}

/// The file of the shared object that holds `address` (`dladdr`), resolved to its real path.
func sharedObjectPath(of address: UnsafeRawPointer) -> String {
    // glibc declares dladdr and Dl_info only under _GNU_SOURCE, which Swift's Glibc module does not set:
    // the function is looked up once by name and given room for Dl_info (four pointers; dli_fname first).
    typealias DladdrFunction = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "dladdr") else { return "unknown" }
    let dladdr = unsafeBitCast(symbol, to: DladdrFunction.self)
    var info: (UnsafePointer<CChar>?, UnsafeRawPointer?, UnsafePointer<CChar>?, UnsafeRawPointer?) = (nil, nil, nil, nil)
    guard withUnsafeMutablePointer(to: &info, { dladdr(address, UnsafeMutableRawPointer($0)) }) != 0,
          let name = info.0 else { return "unknown" }
    let path = String(cString: name)
    guard let real = realpath(path, nil) else { return path }
    defer { free(real) }
    return String(cString: real)
}

/// Which libssl and libcrypto files this process runs with, and their version.
///
/// - Corresponds: `dladdr` on `SSL_new` and `OpenSSL_version_num`, `OpenSSL_version`.
public var loadedOpenSSL: LoadedOpenSSL {
    // The functions' addresses as the dynamic linker resolved them for this process (Swift 6 does not
    // form a C function pointer from an imported function's name).
    let process = dlopen(nil, RTLD_NOW)
    func path(of symbol: String) -> String {
        guard let process, let address = dlsym(process, symbol) else { return "unknown" }
        return sharedObjectPath(of: UnsafeRawPointer(address))
    }
    return LoadedOpenSSL(libssl: path(of: "SSL_new"), libcrypto: path(of: "OpenSSL_version_num"),
                         version: openSSLVersion, headers: OPENSSL_VERSION_TEXT)
}

/// Checks that `libraryPath` (a libssl/libcrypto file, or the directory holding them) is what this
/// process loaded (LispWorks' `set-ssl-library-path` / `ensure-ssl :library-path`, for a linked
/// package): the library cannot be switched at run time, so another one is refused with how to select it.
func checkLibraryPath(_ libraryPath: String) throws {
    let loaded = loadedOpenSSL
    let wanted = URL(fileURLWithPath: libraryPath).resolvingSymlinksInPath().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: wanted, isDirectory: &isDirectory) else {
        throw SSLError.usage("library path \(libraryPath) does not exist; this process runs \(loaded)", call: "ensureSSL")
    }
    let matches = isDirectory.boolValue
        ? [loaded.libssl, loaded.libcrypto].allSatisfy { URL(fileURLWithPath: $0).deletingLastPathComponent().path == wanted }
        : [loaded.libssl, loaded.libcrypto].contains(wanted)
    guard matches else {
        throw SSLError.usage("\(libraryPath) is not the OpenSSL this process loaded (\(loaded)). This package links the " +
                             "OpenSSL that pkg-config names at build time: build with PKG_CONFIG_PATH=<dir of that " +
                             "OpenSSL's openssl.pc>, and run with an rpath or LD_LIBRARY_PATH=<its lib dir> to load it",
                             call: "ensureSSL")
    }
}

private final class InitState: @unchecked Sendable {  // `done` is only touched under `lock`
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
///
/// `libraryPath` (LispWorks' `:library-path`): a libssl/libcrypto file or their directory that the caller
/// expects; when it is not what the process loaded (see ``loadedOpenSSL``) the call throws, saying how to
/// select another library (PKG_CONFIG_PATH at build time, an rpath or LD_LIBRARY_PATH at run time).
/// - Corresponds: `OPENSSL_init_ssl`.
public func ensureSSL(alreadyDone: Bool = false, libraryPath: String? = nil) throws {
    if let libraryPath { try checkLibraryPath(libraryPath) }
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
/// - Corresponds: `RAND_poll`, `RAND_status`.
public func doRandSeed() throws {
    if COpenSSL.RAND_status() == 1 { return }
    _ = COpenSSL.RAND_poll()
    guard COpenSSL.RAND_status() == 1 else {
        throw SSLError.fromQueue(call: "RAND_poll", message: "the random generator could not be seeded")
    }
}
