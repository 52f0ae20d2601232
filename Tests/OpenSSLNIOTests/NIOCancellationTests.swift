import Foundation
import NIOCore
import NIOPosix
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// The async forms honour Task cancellation (Racket's `…/enable-break`, in Swift's own terms).
final class NIOCancellationTests: XCTestCase {
    func testCancelledAsyncAttachEndsPromptly() async throws {
        let silent = try listen(port: 0, host: "127.0.0.1")  // accepts TCP, never answers TLS
        defer { silent.close() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let collector = Collector()
        let channel = try NIOFixtures.plainClient(group: group, port: silent.port, collector: collector)
        let started = Date()
        let task = Task {
            try await channel.attachSSL(handshakeTimeout: 30, hostName: "localhost", security: .insecure)
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("the handshake with a silent server cannot succeed")
        } catch {
            XCTAssertLessThan(Date().timeIntervalSince(started), 2, "cancellation, not the 30 s limit, ended it: \(error)")
        }
        try? await channel.close()
        try await group.shutdownGracefully()
    }
}
