import Foundation
import OpenSSLFLI

// fli-bench-nio CA CERT KEY bulk WRITE_SIZE TOTAL each|batch ENGINE    → "bulk WRITE_SIZE SECONDS MB/s WIRE_BYTES"
// fli-bench-nio CA CERT KEY handshake COUNT RESUME(0|1) ENGINE        → "handshake COUNT SECONDS REUSED"
// fli-bench-nio CA CERT KEY memory CONNECTIONS ENGINE                 → "memory CONNECTIONS BYTES_PER_CONNECTION"
// fli-bench-nio CA CERT KEY concurrent CONNECTIONS WRITE_SIZE TOTAL ENGINE → "concurrent CONNECTIONS SECONDS BYTES"
// fli-bench-nio CA CERT KEY requests COUNT CONNECTIONS ENGINE        → "requests COUNT CONNECTIONS SECONDS"
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
let usage = "usage: fli-bench-nio CA CERT KEY (bulk WRITE_SIZE TOTAL each|batch | handshake COUNT RESUME | memory CONNECTIONS | concurrent CONNECTIONS WRITE_SIZE TOTAL | requests COUNT CONNECTIONS) nio|nio-ssl"
guard args.count >= 7, let engine = NIOBench.Engine(rawValue: args.last!) else { fail(usage) }
do {
    let bench = try NIOBench(caFile: args[1], certFile: args[2], keyFile: args[3])
    defer { bench.shutdown() }
    switch args[4] {
    case "bulk":
        guard args.count == 9, let size = Int(args[5]), let total = Int(args[6]), size > 0, total > 0,
              ["each", "batch"].contains(args[7]) else { fail(usage) }
        let r = try bench.bulk(engine, writeSize: size, total: total, flushEach: args[7] == "each")
        print("bulk \(size) \(r.seconds) \(Double(total) / 1e6 / r.seconds) \(r.wire)")
    case "handshake":
        guard args.count == 8, let count = Int(args[5]), count > 0, ["0", "1"].contains(args[6]) else { fail(usage) }
        let r = try bench.handshakes(engine, count: count, resume: args[6] == "1")
        print("handshake \(count) \(r.seconds) \(r.reused)")
    case "memory":
        guard args.count == 7, let count = Int(args[5]), count > 0 else { fail(usage) }
        print("memory \(count) \(try bench.memoryPerConnection(engine, count: count))")
    case "concurrent":
        guard args.count == 9, let count = Int(args[5]), let size = Int(args[6]), let total = Int(args[7]),
              count > 0, size > 0, total >= count else { fail(usage) }
        let seconds = try bench.concurrent(engine, connections: count, writeSize: size, total: total)
        print("concurrent \(count) \(seconds) \(total / count * count)")
    case "requests":
        guard args.count == 8, let count = Int(args[5]), let connections = Int(args[6]), count > 0, connections > 0 else { fail(usage) }
        print("requests \(count) \(connections) \(try bench.requests(engine, count: count, connections: connections))")
    default:
        fail(usage)
    }
} catch {
    fail("\(error)")
}
