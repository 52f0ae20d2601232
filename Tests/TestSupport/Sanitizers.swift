import Foundation

/// Which sanitizer runtime the test process runs under (`swift test --sanitize=…`), read from the symbols
/// the runtime exports.
public enum Sanitizers {
    /// True under AddressSanitizer. Its quarantine keeps freed blocks out of reuse (up to 256 MiB by
    /// default), so resident memory grows with every allocation there: a test that bounds resident growth
    /// leaves leaks to LeakSanitizer, which CI runs in that same pass.
    public static let address: Bool = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil
    /// True under ThreadSanitizer.
    public static let thread: Bool = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
}
