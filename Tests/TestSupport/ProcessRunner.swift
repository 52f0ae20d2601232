import Foundation

/// Output of a finished child process.
public struct ProcessResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

public struct ProcessTimeout: Error, CustomStringConvertible {
    public var command: String
    public var description: String { "timed out: \(command)" }
}

/// Runs a program with a time limit (the child is killed when it runs over) and returns its output.
public func runProcess(_ executable: String, _ arguments: [String], timeout: TimeInterval,
                directory: String? = nil, stdin: Data? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = inPipe
    final class Box: @unchecked Sendable { var out = Data(); var err = Data() }  // each field is written by its reader thread, read after both were waited for
    let box = Box()
    let group = DispatchGroup()
    try process.run()
    group.enter()
    DispatchQueue.global().async { box.out = outPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { box.err = errPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin { inPipe.fileHandleForWriting.write(stdin) }
    try? inPipe.fileHandleForWriting.close()
    if group.wait(timeout: .now() + timeout) == .timedOut {
        process.terminate()
        kill(process.processIdentifier, SIGKILL)
        _ = group.wait(timeout: .now() + 5)
        throw ProcessTimeout(command: ([executable] + arguments).joined(separator: " "))
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus,
                         stdout: String(decoding: box.out, as: UTF8.self),
                         stderr: String(decoding: box.err, as: UTF8.self))
}
