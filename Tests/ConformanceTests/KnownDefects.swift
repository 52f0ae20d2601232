import Foundation

/// The defects of the current library that the matrix's `knownFailures` marks name, each written once
/// (issue 16). A fix removes the marks that name its defect, then the defect here.
enum Defect {
    static let emptyHostNameSkipsCheck: KnownFailure = "hostName \"\" switches the host and IP check off"
    static let sslcatEmptyServerNameSkipsCheck: KnownFailure = "--servername \"\" switches the host and IP check off"
    static let bracketedLiteralCheckedAsName: KnownFailure = "the bracketed literal \"[::1]\" is checked as a DNS name (SSL_set1_host), not as the IP ::1"
    static let bracketedLiteralNotResolvedByNIO: KnownFailure = "the bracketed literal \"[::1]\" goes to NIO as it is: UnknownHost, no connection"
    static let noNameCheckWithoutHostName: KnownFailure = "without hostName the chain is verified but no name is checked"
    static let biglooVerifiesNothingWithoutCAs: KnownFailure = "configureBigloo sets verify mode .never when no CAs are given: nothing is verified"
    static let securityNotAppliedToCallerContext: KnownFailure = "SSLSecurity is not applied to a caller's context: verify mode none, nothing is verified"
    static let noVersionFloorOnCallerContext: KnownFailure = "SSLSecurity is not applied to a caller's context: no TLS 1.2 floor, TLS 1.0 is negotiated and fails later (legacy sigalg)"
    static let perReceiveTimeoutNotTotal: KnownFailure = "SO_RCVTIMEO bounds each recv, not the handshake: every byte restarts the 1 s"
    static let socketTimeoutValuesMeanNoLimit: KnownFailure = "SO_RCVTIMEO: NaN and values <= 0 (and 1e-9, rounded to a zero timeval) mean no limit"
    static let nonPositiveTimeoutDefers: KnownFailure = "<= 0 is handed on as LispWorks' \"defer\": no handshake and no error"
    static let dtlsNonPositiveTimeoutSkipsHandshake: KnownFailure = "<= 0 skips the handshake (as documented), no error"
    static let handlerTimeoutValuesMeanNoLimit: KnownFailure = "OpenSSLHandler: NaN and <= 0 mean no limit"
    static let badTimeoutTakenAsPassed: KnownFailure = "NaN / -1 are taken as a deadline that has passed (a timeout), not refused as a usage error"
    static let serverNonPositiveTimeoutWaitsForever: KnownFailure = "<= 0 defers the server handshake to a read without a read timeout: it waits forever"
    static let sslcatRefusesZeroTimeout: KnownFailure = "sslcat refuses --timeout 0 as an option error (exit 64), where the model makes 0 a deadline that has passed"
    static let sslcatServeDoesNotCheckTimeout: KnownFailure = "sslcat serve does not check --timeout: NaN / -1 reach the listener, and the connection fails (exit 1), no option error"
    static let handlerTrapsOnInfiniteTimeout: KnownFailure = .crashes("+infinity traps: Int64(timeout * 1e9) in OpenSSLHandler.start (\"Double value cannot be converted to Int64\")")
    static let dtlsAcceptNotEndedByClose: KnownFailure = .hangs("closing the listener from another thread does not end a blocked DTLSv1_listen wait")
}

/// The `knownFailures` of a row: each group of cells with the defect that makes them fail.
func marks<Key: Hashable>(_ groups: ([Key], KnownFailure)...) -> [Key: KnownFailure] {
    var result: [Key: KnownFailure] = [:]
    for (keys, defect) in groups {
        for key in keys {
            precondition(result[key] == nil, "a cell is marked twice")
            result[key] = defect
        }
    }
    return result
}
