import ArgumentParser
import Foundation
import OpenSSLFLI

/// `sslcat bench`: measurements that compare this package with the C API in the same run, as ratios.
/// Build with `-c release`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each a ratio against the raw C call measured in the same run (use a release build).")

    @Option(help: "Which benchmark: direct_call or all.")
    var only: String = "all"

    @Option(help: "Calls per timed batch.")
    var iterations: Int = 20_000_000

    @Option(help: "Timed batches per variant (the fastest batch counts).")
    var rounds: Int = 7

    func run() throws {
        #if DEBUG
        print("warning: this is a debug build; run `swift run -c release sslcat bench` for meaningful figures")
        #endif
        guard ["all", "direct_call"].contains(only) else { throw ValidationError("unknown benchmark \(only)") }
        try DirectCallBench(iterations: iterations, rounds: rounds).run()
    }
}

/// The cost of a generated direct call against the same call through the raw C import.
struct DirectCallBench {
    let iterations: Int
    let rounds: Int

    func run() throws {
        guard let ctx = SSL_CTX_new(TLS_method()) else { throw ValidationError("SSL_CTX_new failed") }
        defer { SSL_CTX_free(ctx) }
        guard let ssl = SSL_new(ctx) else { throw ValidationError("SSL_new failed") }
        defer { SSL_free(ssl) }
        let raw = ctx.rawValue, rawSSL = ssl.rawValue
        print("direct_call: \(iterations) calls per batch, best of \(rounds) batches, interleaved")
        print("call".padding(toLength: 40, withPad: " ", startingAt: 0) + "wrapper ns    raw C ns     ratio")
        var worst = 0.0
        let cases: [(String, () -> UInt64, () -> UInt64)] = [
            ("SSL_CTX_get_options (function)", { wrapperGetOptions(ctx, iterations) }, { rawGetOptions(raw, iterations) }),
            ("SSL_CTX_get_mode (ctrl macro)", { wrapperGetMode(ctx, iterations) }, { rawGetMode(raw, iterations) }),
            ("SSL_get_current_cipher (handle result)", { wrapperCurrentCipher(ssl, iterations) }, { rawCurrentCipher(rawSSL, iterations) }),
        ]
        for (name, wrapped, direct) in cases {
            var best = (wrapper: Double.infinity, raw: Double.infinity)
            for _ in 0..<rounds {
                best.wrapper = min(best.wrapper, time(wrapped))
                best.raw = min(best.raw, time(direct))
            }
            let ratio = best.wrapper / best.raw
            worst = max(worst, ratio)
            print(name.padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%10.3f  %10.3f  %8.3f",
                         best.wrapper / Double(iterations) * 1e9, best.raw / Double(iterations) * 1e9, ratio))
        }
        print(String(format: "direct_call: worst ratio wrapper/raw = %.3f (target <= 1.02)", worst))
    }

    func time(_ body: () -> UInt64) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        let sink = body()
        let end = DispatchTime.now().uptimeNanoseconds
        if sink == 42 { print("") }  // keeps the result alive
        return Double(end - start) / 1e9
    }
}

@inline(never) func wrapperGetOptions(_ ctx: SSLContextPointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= SSL_CTX_get_options(ctx) }
    return acc
}

@inline(never) func wrapperGetMode(_ ctx: SSLContextPointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= UInt64(bitPattern: Int64(SSL_CTX_get_mode(ctx))) }
    return acc
}

@inline(never) func wrapperCurrentCipher(_ ssl: SSLPointer, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= SSL_get_current_cipher(ssl) == nil ? 1 : 2 }
    return acc
}
