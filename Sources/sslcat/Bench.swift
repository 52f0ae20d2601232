import ArgumentParser
import Foundation
import OpenSSL
import OpenSSLFLI

/// `sslcat bench`: the C reference (`fli-bench-c`, OpenSSL used directly from C, run as a child process)
/// and this package's layers on the same workloads, in one run, with each figure's ratio to C.
/// Build with `-c release`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks against the C reference in the same run, printed as ratios (use a release build).")

    @Flag(help: "Smaller workloads, one round each (under a minute).")
    var quick = false

    @Flag(help: "Print the results as JSON: {\"results\": [{\"name\", \"layer\", \"value\", \"unit\", \"ratio_to_c\"}, …]}.")
    var json = false

    @Option(help: "Also write the results as CSV to this file.")
    var csv: String?

    @Option(help: "Only these benchmarks (comma-separated): bulk_16k, bulk_1k (one TLS record per flushed 1 KiB write, as C), bulk_1k_coalesced (1 KiB writes flushed every 64 KiB, coalesced into full records by the Swift layers; C as bulk_1k), handshake_full, handshake_resumed, direct_call, memory_per_conn, concurrent_100 (100 connections at once, 16 KiB writes).")
    var only: String?

    @Option(help: "Rounds per benchmark and layer, interleaved; medians count (default 5, quick 1).")
    var rounds: Int?

    @Option(help: "Swift layers to measure against C (comma-separated, or all): streams, nio (OpenSSLHandler), nio-ssl (swift-nio-ssl's NIOSSLHandler, same NIO harness). nio and nio-ssl run the bulk benchmarks, handshake_full and memory_per_conn (nio also handshake_resumed and concurrent_100), in the benchmarks package (swift build -c release --package-path Benchmarks). Default: streams.")
    var layers: String?

    @Option(help: "The NIO harness for --layers nio,nio-ssl (default: Benchmarks/.build/release/fli-bench-nio, then next to sslcat).")
    var nioBench: String?

    static let allNames = ["bulk_16k", "bulk_1k", "bulk_1k_coalesced", "handshake_full", "handshake_resumed", "direct_call",
                           "memory_per_conn", "concurrent_100"]
    static let allLayers = ["streams", "nio", "nio-ssl"]
    /// The benchmarks each NIO layer runs (swift-nio-ssl's client keeps no sessions to resume; the
    /// concurrent run compares this package's layers with C).
    static let nioNames: [String: Set<String>] = [
        "nio": ["bulk_16k", "bulk_1k", "bulk_1k_coalesced", "handshake_full", "handshake_resumed", "memory_per_conn", "concurrent_100"],
        "nio-ssl": ["bulk_16k", "bulk_1k", "bulk_1k_coalesced", "handshake_full", "memory_per_conn"],
    ]
    /// Bytes a TLS 1.3 AES-GCM record adds to its plaintext: a 5-byte header, the content type, a 16-byte tag.
    static let recordOverhead = 22

    /// Checks, from the bytes the server read from its socket, how many TLS records carried `total`
    /// bytes sent in `writeSize` writes: `oneRecordPerWrite` asks for exactly one record per write (the
    /// equal-work rule: as many as C sends), else for fewer than half as many (coalesced). Up to 8 KiB of
    /// the overhead may be the client's handshake. Returns the record count (the overhead / 22).
    static func checkRecords(_ who: String, _ name: String, writeSize: Int, total: Int, wire: Int, oneRecordPerWrite: Bool?) throws -> Int {
        let writes = (total + writeSize - 1) / writeSize
        let overhead = wire - total
        let records = overhead / recordOverhead
        switch oneRecordPerWrite {
        case true?:
            guard overhead >= recordOverhead * writes && overhead <= recordOverhead * writes + 8192 else {
                throw SSLCatFailure("\(name) \(who): \(wire) bytes on the wire for \(total) bytes in \(writes) writes: about \(records) records, not one per write (equal work)")
            }
        case false?:
            guard overhead < recordOverhead * writes / 2 else {
                throw SSLCatFailure("\(name) \(who): \(wire) bytes on the wire for \(total) bytes in \(writes) writes: about \(records) records, the writes were not coalesced")
            }
        case nil: break
        }
        return records
    }

    /// The layers asked for, in the order of ``allLayers``.
    var selectedLayers: [String] {
        guard let layers else { return ["streams"] }
        let asked = layers.split(separator: ",").map(String.init)
        return asked.contains("all") ? Self.allLayers : Self.allLayers.filter(asked.contains)
    }

    func validate() throws {
        if let only {
            for name in only.split(separator: ",") where !Self.allNames.contains(String(name)) {
                throw ValidationError("unknown benchmark '\(name)' (known: \(Self.allNames.joined(separator: ", ")))")
            }
        }
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if let layers {
            for layer in layers.split(separator: ",") where layer != "all" && !Self.allLayers.contains(String(layer)) {
                throw ValidationError("unknown layer '\(layer)' (known: \(Self.allLayers.joined(separator: ", ")), all)")
            }
            if selectedLayers.isEmpty { throw ValidationError("--layers names no layer") }
        }
    }

    struct Result: Codable {
        var name: String
        var layer: String
        var value: Double
        var unit: String
        var ratio_to_c: Double
    }

    func progress(_ text: String) { printError("bench: " + text) }

    func run() throws {
        #if DEBUG
        progress("warning: this is a debug build; run `swift run -c release sslcat bench` for meaningful figures")
        #endif
        let selected = only.map { $0.split(separator: ",").map(String.init) } ?? Self.allNames
        let rounds = self.rounds ?? (quick ? 1 : 5)
        let mib = 1 << 20
        let bulk16Total = quick ? 64 * mib : 256 * mib
        let bulk1Total = quick ? 16 * mib : 64 * mib
        let handshakeCount = quick ? 200 : 1000
        let connections = quick ? 300 : 1000
        let concurrentTotal = quick ? 64 * mib : 256 * mib

        // The same certificate for both sides: a CA and a localhost server certificate, made in memory.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sslcat-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let caKey = try PrivateKey.generateEC()
        let ca = try makeCertificate(.authority("sslcat bench CA"), key: caKey)
        let serverKey = try PrivateKey.generateEC()
        let server = try makeCertificate(.server(hosts: ["localhost", "127.0.0.1"]), key: serverKey, issuer: (ca, caKey))
        let (caFile, certFile, keyFile) = (dir + "/ca.pem", dir + "/server.pem", dir + "/server.key")
        try ca.pem().write(toFile: caFile, atomically: true, encoding: .utf8)
        try server.pem().write(toFile: certFile, atomically: true, encoding: .utf8)
        try serverKey.pem().write(toFile: keyFile, atomically: true, encoding: .utf8)
        let reference = try CReference(caFile: caFile, certFile: certFile, keyFile: keyFile)
        let streams = try StreamBench(caFile: caFile, certFile: certFile, keyFile: keyFile)
        let layers = selectedLayers
        let nio = layers.contains(where: { $0.hasPrefix("nio") })
            ? try NIOReference(path: nioBench, caFile: caFile, certFile: certFile, keyFile: keyFile) : nil
        progress("C reference: \(reference.path); layers: \(layers.joined(separator: ", "))")
        if let nio { progress("NIO harness: \(nio.path)") }
        progress("\(ProcessInfo.processInfo.activeProcessorCount) cores; \(rounds) round(s) per layer; workloads: bulk \(bulk16Total / mib) / \(bulk1Total / mib) MiB, \(handshakeCount) handshakes, \(connections) idle connections")

        var results: [Result] = []
        /// Rounds run C then each Swift layer, interleaved, so that all see the same machine weather. A
        /// layer's value is the median of its rounds; its ratio is the median of the per-round ratios.
        func measure(_ name: String, unit: String, c: () throws -> Double, layers: [(String, () throws -> Double)]) throws {
            guard !layers.isEmpty else {
                progress("\(name): none of the selected layers measures it; skipped")
                return
            }
            var cs: [Double] = [], ss = [[Double]](repeating: [], count: layers.count)
            for round in 1...rounds {
                cs.append(try c())
                progress(String(format: "%@ c round %d/%d: %.1f %@", name, round, rounds, cs.last!, unit))
                for (i, (layer, swift)) in layers.enumerated() {
                    ss[i].append(try swift())
                    progress(String(format: "%@ %@ round %d/%d: %.1f %@ (ratio %.3f)", name, layer, round, rounds, ss[i].last!, unit, ss[i].last! / cs.last!))
                }
            }
            func median(_ xs: [Double]) -> Double {
                let sorted = xs.sorted()
                return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            }
            results.append(Result(name: name, layer: "c", value: median(cs), unit: unit, ratio_to_c: 1))
            for (i, (layer, _)) in layers.enumerated() {
                let ratio = median(zip(ss[i], cs).map { $0 / $1 })
                results.append(Result(name: name, layer: layer, value: median(ss[i]), unit: unit, ratio_to_c: ratio))
            }
        }

        /// The selected layers that run `name`, each with how it measures it.
        func swiftLayers(_ name: String, streams streamsMeasure: @escaping () throws -> Double,
                         nio nioMeasure: ((String) throws -> Double)? = nil) -> [(String, () throws -> Double)] {
            var list: [(String, () throws -> Double)] = []
            for layer in layers {
                switch layer {
                case "streams": list.append((layer, streamsMeasure))
                case "nio", "nio-ssl":
                    guard let nioMeasure, Self.nioNames[layer]?.contains(name) == true else { continue }
                    list.append((layer, { try nioMeasure(layer) }))
                default: break
                }
            }
            return list
        }

        for name in Self.allNames where selected.contains(name) {
            switch name {
            case "bulk_16k", "bulk_1k", "bulk_1k_coalesced":
                let size = name == "bulk_16k" ? 16 * 1024 : 1024
                let total = name == "bulk_16k" ? bulk16Total : bulk1Total
                // C sends one record per SSL_write in every case; the Swift layers too, but for the
                // coalesced run, where they flush every 64 KiB (and must coalesce: checked).
                let coalesced = name == "bulk_1k_coalesced"
                func checked(_ who: String, _ r: (seconds: Double, wire: Int), oneRecordPerWrite: Bool?) throws -> Double {
                    let records = try Self.checkRecords(who, name, writeSize: size, total: total, wire: r.wire, oneRecordPerWrite: oneRecordPerWrite)
                    progress("\(name) \(who): \(r.wire) bytes on the wire, about \(records) records for \((total + size - 1) / size) writes")
                    return Double(total) / 1e6 / r.seconds
                }
                try measure(name, unit: "MB/s",
                            c: { try checked("c", try reference.bulk(writeSize: size, total: total), oneRecordPerWrite: true) },
                            layers: swiftLayers(name, streams: {
                                try checked("streams", try streams.bulk(writeSize: size, total: total, flushEach: !coalesced),
                                            oneRecordPerWrite: !coalesced)
                            }, nio: { engine in
                                // swift-nio-ssl decides itself whether it coalesces: counted, not required.
                                try checked(engine, try nio!.bulk(engine, writeSize: size, total: total, flushEach: !coalesced),
                                            oneRecordPerWrite: coalesced && engine == "nio-ssl" ? nil : !coalesced)
                            }))
            case "handshake_full", "handshake_resumed":
                let resume = name == "handshake_resumed"
                try measure(name, unit: "handshakes/s", c: {
                    let r = try reference.handshakes(count: handshakeCount, resume: resume)
                    if resume && r.reused != handshakeCount { throw SSLCatFailure("C reference: only \(r.reused) of \(handshakeCount) resumed") }
                    return Double(handshakeCount) / r.seconds
                }, layers: swiftLayers(name, streams: {
                    let r = try streams.handshakes(count: handshakeCount, resume: resume)
                    if resume && r.reused != handshakeCount { throw SSLCatFailure("streams: only \(r.reused) of \(handshakeCount) resumed") }
                    if !resume && r.reused != 0 { throw SSLCatFailure("streams: \(r.reused) full handshakes were resumed") }
                    return Double(handshakeCount) / r.seconds
                }, nio: { engine in
                    let r = try nio!.handshakes(engine, count: handshakeCount, resume: resume)
                    if resume && r.reused != handshakeCount { throw SSLCatFailure("\(engine): only \(r.reused) of \(handshakeCount) resumed") }
                    if !resume && r.reused != 0 { throw SSLCatFailure("\(engine): \(r.reused) full handshakes were resumed") }
                    return Double(handshakeCount) / r.seconds
                }))
            case "concurrent_100":
                try measure(name, unit: "MB/s",
                            c: { Double(concurrentTotal) / 1e6 / (try reference.concurrent(connections: 100, writeSize: 16 * 1024, total: concurrentTotal)) },
                            layers: swiftLayers(name, streams: {
                                Double(concurrentTotal) / 1e6 / (try streams.concurrent(connections: 100, writeSize: 16 * 1024, total: concurrentTotal))
                            }, nio: { engine in
                                Double(concurrentTotal) / 1e6 / (try nio!.concurrent(engine, connections: 100, writeSize: 16 * 1024, total: concurrentTotal))
                            }))
            case "direct_call":
                guard layers.contains("streams") else { progress("direct_call: measured with the streams layer only; skipped"); continue }
                let iterations = quick ? 5_000_000 : 20_000_000
                let figures = try DirectCallBench(iterations: iterations, rounds: quick ? 3 : 7).measure(progress: progress)
                results.append(Result(name: name, layer: "c", value: figures.raw, unit: "ns/call", ratio_to_c: 1))
                results.append(Result(name: name, layer: "fli", value: figures.wrapper, unit: "ns/call", ratio_to_c: figures.wrapper / figures.raw))
            case "memory_per_conn":
                // Each measurement in a fresh process (memory this process freed earlier would hide growth).
                try measure(name, unit: "bytes",
                            c: { Double(try reference.memoryPerConnection(count: connections)) },
                            layers: swiftLayers(name, streams: {
                                Double(try BenchWorker.memoryPerConnection(count: connections, caFile: caFile, certFile: certFile, keyFile: keyFile))
                            }, nio: { engine in Double(try nio!.memoryPerConnection(engine, count: connections)) }))
            default: break
            }
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(["results": results]), as: UTF8.self))
        } else {
            print("name".padding(toLength: 20, withPad: " ", startingAt: 0) + "layer".padding(toLength: 10, withPad: " ", startingAt: 0)
                  + "value".leftPadded(14) + "  unit".padding(toLength: 16, withPad: " ", startingAt: 0) + "ratio_to_c".leftPadded(11))
            for r in results {
                print(r.name.padding(toLength: 20, withPad: " ", startingAt: 0) + r.layer.padding(toLength: 10, withPad: " ", startingAt: 0)
                      + String(format: "%.1f", r.value).leftPadded(14) + ("  " + r.unit).padding(toLength: 16, withPad: " ", startingAt: 0)
                      + String(format: "%.3f", r.ratio_to_c).leftPadded(11))
            }
            print("(MB/s and handshakes/s: higher is better; ns/call and bytes: lower is better)")
        }
        if let csv {
            var text = "name,layer,value,unit,ratio_to_c\n"
            for r in results { text += "\(r.name),\(r.layer),\(r.value),\(r.unit),\(r.ratio_to_c)\n" }
            do { try text.write(toFile: csv, atomically: true, encoding: .utf8) } catch {
                throw SSLCatFailure("cannot write \(csv): \(error.localizedDescription)")
            }
        }
    }
}

/// `sslcat bench-worker` (hidden): one stream measurement in a fresh process, for `bench`.
struct BenchWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-worker", shouldDisplay: false)

    @Option var memory: Int?
    @Option var handshakes: Int?
    @Flag var resume = false
    /// With `--total`: one bulk run of this write size (for `Benchmarks/icount.sh`).
    @Option var bulk: Int?
    @Option var total: Int?
    @Flag var flushEach = false
    @Option var ca: String
    @Option var cert: String
    @Option var key: String

    func run() throws {
        let bench = try StreamBench(caFile: ca, certFile: cert, keyFile: key)
        if let memory { print("memory \(memory) \(try bench.memoryPerConnection(count: memory))") }
        if let handshakes {
            // For profiling the stream side alone (perf stat / perf record on this process).
            let r = try bench.handshakes(count: handshakes, resume: resume)
            print("handshake \(handshakes) \(r.seconds) \(r.reused)")
        }
        if let bulk, let total {
            let r = try bench.bulk(writeSize: bulk, total: total, flushEach: flushEach)
            print("bulk \(bulk) \(r.seconds) \(total) \(r.wire)")
        }
    }

    /// Runs this executable as `bench-worker` and reads its figure.
    static func memoryPerConnection(count: Int, caFile: String, certFile: String, keyFile: String) throws -> Int {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        process.arguments = ["bench-worker", "--memory", String(count), "--ca", caFile, "--cert", certFile, "--key", keyFile]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let f = output.split(whereSeparator: \.isWhitespace)
        guard process.terminationStatus == 0, f.count == 3, let bytes = Int(f[2]) else {
            throw SSLCatFailure("bench-worker memory failed: \(errors.split(separator: "\n").first ?? "exit \(process.terminationStatus)")")
        }
        return bytes
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

/// The NIO harness of the benchmarks package (`Benchmarks/NIO`, `fli-bench-nio`): `OpenSSLHandler`
/// and swift-nio-ssl's `NIOSSLHandler` in one SwiftNIO harness, run once per measurement as a child
/// process like the C reference, so that sslcat itself never links BoringSSL.
struct NIOReference {
    let path: String
    let caFile, certFile, keyFile: String

    init(path: String?, caFile: String, certFile: String, keyFile: String) throws {
        self.caFile = caFile; self.certFile = certFile; self.keyFile = keyFile
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = path.map { [$0] } ?? ["Benchmarks/.build/release/fli-bench-nio", here.appendingPathComponent("fli-bench-nio").path]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw SSLCatFailure("the NIO harness fli-bench-nio is not built (looked for \(candidates.joined(separator: ", "))); build it: swift build -c release --package-path Benchmarks")
        }
        self.path = found
    }

    func run(_ arguments: [String]) throws -> [String] {
        try runChild(path, [caFile, certFile, keyFile] + arguments)
    }

    /// Seconds and the server's received bytes; `flushEach` flushes every write, else every 64 KiB.
    func bulk(_ engine: String, writeSize: Int, total: Int, flushEach: Bool) throws -> (seconds: Double, wire: Int) {
        let f = try run(["bulk", String(writeSize), String(total), flushEach ? "each" : "batch", engine])
        guard f.count == 5, let seconds = Double(f[2]), let wire = Int(f[4]) else { throw SSLCatFailure("fli-bench-nio bulk: unexpected output \(f)") }
        return (seconds, wire)
    }

    func handshakes(_ engine: String, count: Int, resume: Bool) throws -> (seconds: Double, reused: Int) {
        let f = try run(["handshake", String(count), resume ? "1" : "0", engine])
        guard f.count == 4, let seconds = Double(f[2]), let reused = Int(f[3]) else { throw SSLCatFailure("fli-bench-nio handshake: unexpected output \(f)") }
        return (seconds, reused)
    }

    func memoryPerConnection(_ engine: String, count: Int) throws -> Int {
        let f = try run(["memory", String(count), engine])
        guard f.count == 3, let bytes = Int(f[2]) else { throw SSLCatFailure("fli-bench-nio memory: unexpected output \(f)") }
        return bytes
    }

    func concurrent(_ engine: String, connections: Int, writeSize: Int, total: Int) throws -> Double {
        let f = try run(["concurrent", String(connections), String(writeSize), String(total), engine])
        guard f.count == 4, let seconds = Double(f[2]) else { throw SSLCatFailure("fli-bench-nio concurrent: unexpected output \(f)") }
        return seconds
    }
}

/// Runs a benchmark program and returns the words of its output; a failure names its first stderr line.
func runChild(_ path: String, _ arguments: [String]) throws -> [String] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        let name = URL(fileURLWithPath: path).lastPathComponent
        throw SSLCatFailure("\(name) \(arguments.dropFirst(3).joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self).split(separator: "\n").first ?? "exit \(process.terminationStatus)")")
    }
    return String(decoding: output, as: UTF8.self).split(whereSeparator: \.isWhitespace).map(String.init)
}

/// The C reference program, run once per measurement.
struct CReference {
    let path: String
    let caFile, certFile, keyFile: String

    init(caFile: String, certFile: String, keyFile: String) throws {
        self.caFile = caFile; self.certFile = certFile; self.keyFile = keyFile
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [here.appendingPathComponent("fli-bench-c").path]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw SSLCatFailure("the C reference fli-bench-c is not next to sslcat (\(here.path)); build it: swift build -c release --product fli-bench-c")
        }
        path = found
    }

    func run(_ arguments: [String]) throws -> [String] {
        try runChild(path, [caFile, certFile, keyFile] + arguments)
    }

    /// Seconds and the bytes the server read from its socket.
    func bulk(writeSize: Int, total: Int) throws -> (seconds: Double, wire: Int) {
        let f = try run(["bulk", String(writeSize), String(total)])
        guard f.count == 5, let seconds = Double(f[2]), let wire = Int(f[4]) else { throw SSLCatFailure("fli-bench-c bulk: unexpected output \(f)") }
        return (seconds, wire)
    }

    func concurrent(connections: Int, writeSize: Int, total: Int) throws -> Double {
        let f = try run(["concurrent", String(connections), String(writeSize), String(total)])
        guard f.count == 4, let seconds = Double(f[2]) else { throw SSLCatFailure("fli-bench-c concurrent: unexpected output \(f)") }
        return seconds
    }

    func handshakes(count: Int, resume: Bool) throws -> (seconds: Double, reused: Int) {
        let f = try run(["handshake", String(count), resume ? "1" : "0"])
        guard f.count == 4, let seconds = Double(f[2]), let reused = Int(f[3]) else { throw SSLCatFailure("fli-bench-c handshake: unexpected output \(f)") }
        return (seconds, reused)
    }

    func memoryPerConnection(count: Int) throws -> Int {
        let f = try run(["memory", String(count)])
        guard f.count == 3, let bytes = Int(f[2]) else { throw SSLCatFailure("fli-bench-c memory: unexpected output \(f)") }
        return bytes
    }
}

/// The cost of a generated direct call against the same call through the raw C import.
struct DirectCallBench {
    let iterations: Int
    let rounds: Int

    /// Nanoseconds per call of `SSL_CTX_get_options` through the wrapper and through the raw import
    /// (best batch of each, interleaved); the other cases are reported through `progress`.
    func measure(progress: (String) -> Void) throws -> (wrapper: Double, raw: Double) {
        guard let ctx = SSL_CTX_new(TLS_method()) else { throw ValidationError("SSL_CTX_new failed") }
        defer { SSL_CTX_free(ctx) }
        guard let ssl = SSL_new(ctx) else { throw ValidationError("SSL_new failed") }
        defer { SSL_free(ssl) }
        let raw = ctx.rawValue, rawSSL = ssl.rawValue
        // The C side's argument: a static NUL-terminated string, as `OBJ_sn2nid("SHA256")` in C.
        let sha256Literal: StaticString = "SHA256"
        let sha256Name = UnsafeRawPointer(sha256Literal.utf8Start).assumingMemoryBound(to: CChar.self)
        let sha256String = String(cString: sha256Name)
        let nid = rawSn2nid(sha256Name, 1)
        guard nid != 0, wrapperSn2nidLiteral(1) == nid, wrapperSn2nidString(sha256String, 1) == nid else {
            throw ValidationError("OBJ_sn2nid(\"SHA256\") differs between the wrapper forms and the C call")
        }
        let cases: [(String, () -> UInt64, () -> UInt64)] = [
            ("SSL_CTX_get_options (function)", { wrapperGetOptions(ctx, iterations) }, { rawGetOptions(raw, iterations) }),
            ("SSL_CTX_get_mode (ctrl macro)", { wrapperGetMode(ctx, iterations) }, { rawGetMode(raw, iterations) }),
            ("SSL_get_current_cipher (handle result)", { wrapperCurrentCipher(ssl, iterations) }, { rawCurrentCipher(rawSSL, iterations) }),
            ("OBJ_sn2nid (const char *, a literal: the pointer form)", { wrapperSn2nidLiteral(iterations) }, { rawSn2nid(sha256Name, iterations) }),
            ("OBJ_sn2nid (const char *, a String value: bridged)", { wrapperSn2nidString(sha256String, iterations) }, { rawSn2nid(sha256Name, iterations) }),
        ]
        var first: (Double, Double)?
        for (name, wrapped, direct) in cases {
            var best = (wrapper: Double.infinity, raw: Double.infinity)
            for _ in 0..<rounds {
                best.wrapper = min(best.wrapper, time(wrapped))
                best.raw = min(best.raw, time(direct))
            }
            let perCall = (best.wrapper / Double(iterations) * 1e9, best.raw / Double(iterations) * 1e9)
            progress(String(format: "direct_call %@: wrapper %.3f ns, raw C import %.3f ns, ratio %.3f", name, perCall.0, perCall.1, perCall.0 / perCall.1))
            if first == nil { first = perCall }
        }
        return first!
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

@inline(never) func wrapperSn2nidLiteral(_ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= UInt64(bitPattern: Int64(OBJ_sn2nid("SHA256"))) }
    return acc
}

@inline(never) func wrapperSn2nidString(_ name: String, _ n: Int) -> UInt64 {
    var acc: UInt64 = 0
    for _ in 0..<n { acc &+= UInt64(bitPattern: Int64(OBJ_sn2nid(name))) }
    return acc
}
