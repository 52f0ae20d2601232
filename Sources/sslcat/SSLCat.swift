import ArgumentParser
import Foundation
import OpenSSLFLI

@main
struct SSLCat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sslcat",
        abstract: "TLS from the command line with swift-openssl-fli.",
        version: "sslcat (swift-openssl-fli), running \(openSSLVersion.text)",
        subcommands: [Demo.self, Connect.self, Serve.self, GenCert.self, Bench.self, BenchWorker.self, Calls.self]
    )

    /// Parses and runs; any failure is one line on stderr ("sslcat: error: …") and a non-zero exit.
    /// `--help` prints the help and exits 0.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            if error is ExitCode { Glibc.exit(code.rawValue) }  // already reported
            let message = (error is SSLCatFailure || error is SocketErrorFamily) ? "\(error)" : message(for: error)
            let oneLine = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? "failed"
            printError("sslcat: error: \(oneLine)")
            Glibc.exit(code == .success ? 1 : code.rawValue)
        }
    }
}
