import Foundation
import OpenSSLFLI

// fli-bench-nio CA CERT KEY bulk WRITE_SIZE TOTAL ENGINE   → "bulk WRITE_SIZE SECONDS MB/s"
// fli-bench-nio CA CERT KEY handshake COUNT ENGINE         → "handshake COUNT SECONDS REUSED"
// ENGINE: nio (OpenSSLHandler) or nio-ssl (swift-nio-ssl's NIOSSLHandler). One measurement per process,
// run by `sslcat bench` between the C reference's rounds; the same argument order as fli-bench-c.

/// A failure of a measurement, printed on stderr (exit 1).
struct SSLCatFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data(("fli-bench-nio: " + text + "\n").utf8))
    exit(1)
}

let args = CommandLine.arguments
let usage = "usage: fli-bench-nio CA CERT KEY (bulk WRITE_SIZE TOTAL | handshake COUNT) nio|nio-ssl"
guard args.count >= 7, let engine = NIOBench.Engine(rawValue: args.last!) else { fail(usage) }
do {
    let bench = try NIOBench(caFile: args[1], certFile: args[2], keyFile: args[3])
    defer { bench.shutdown() }
    switch args[4] {
    case "bulk":
        guard args.count == 8, let size = Int(args[5]), let total = Int(args[6]), size > 0, total > 0 else { fail(usage) }
        let seconds = try bench.bulk(engine, writeSize: size, total: total)
        print("bulk \(size) \(seconds) \(Double(total) / 1e6 / seconds)")
    case "handshake":
        guard args.count == 7, let count = Int(args[5]), count > 0 else { fail(usage) }
        let r = try bench.handshakes(engine, count: count)
        print("handshake \(count) \(r.seconds) \(r.reused)")
    default:
        fail(usage)
    }
} catch {
    fail("\(error)")
}
