import ArgumentParser
import OpenSSLFLI

@main
struct SSLCat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sslcat",
        abstract: "TLS from the command line with swift-openssl-fli.",
        subcommands: [Demo.self, Bench.self]
    )
}
