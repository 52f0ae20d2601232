import Foundation
import NIOCore
import OpenSSLFLI
import OpenSSLNIO
import OpenSSLStreams
import TestSupport
import XCTest

/// The entry-point conformance matrix of issue 16: every client entry point against the same hostile
/// servers, every server entry point against the same hostile clients, every deadline parameter against
/// the one deadline model. The tables are in ClientMatrix.swift, ServerMatrix.swift and
/// DeadlineMatrix.swift (a new entry point is one more row); the model is in DeadlineModel.swift.
/// Cells that fail on the current library carry a `knownFailures` mark in their row, naming a defect of
/// KnownDefects.swift: such a cell must still fail, and fails the test once it passes, so every mark is
/// removed when its defect is fixed. Cells marked `.crashes` / `.hangs` run in a child process.
final class ConformanceTests: XCTestCase {
    func testClientEntryPointsRefuseHostileServersAndAcceptTheControl() throws {
        let pki = try TestPKI.shared
        ClientEntryPoints.withTestCAAsSystemStore(pki) {
            MatrixRunner.run(ClientEntryPoints.cells(pki), width: 8, watchdog: 25 * DeadlineModel.timeScale)
        }
    }

    func testServerEntryPointsEndHostilePeersWithinTheirTotalDeadline() throws {
        MatrixRunner.run(ServerMatrix.cells(try TestPKI.shared), width: 8, watchdog: 10 * DeadlineModel.timeScale)
    }

    func testDeadlineParametersFollowTheOneDeadlineModel() throws {
        MatrixRunner.run(DeadlineMatrix.cells(try TestPKI.shared), width: 6, watchdog: 8 * DeadlineModel.timeScale)
    }

    /// The `async` `connectTLSChannel` used to drop the `NIOAsyncChannel` it had made when the handshake
    /// failed, and NIO stopped the process ("Deinited NIOAsyncWriter without calling finish()"). It must
    /// throw the handshake's error and leave the process running, every time.
    func testAsyncConnectTLSChannelThrowsAFailedHandshakeWithoutCrashing() throws {
        let pki = try TestPKI.shared
        let server = try OpenSSLServer(cert: pki.selfSignedCert, key: pki.serverKey)
        defer { server.stop() }
        for attempt in 1...3 {
            do {
                try blocking {
                    let channel = try await connectTLSChannel(host: "127.0.0.1", port: server.port, group: conformanceGroup,
                                                              security: .trusting(caFile: pki.caCert))
                    try await channel.executeThenClose { _, _ in }
                }
                XCTFail("attempt \(attempt): a self-signed server was accepted")
            } catch let error as SSLError {
                XCTAssertEqual(error.kind, .verificationFailure, "attempt \(attempt): \(error)")
            }
        }
    }
}
