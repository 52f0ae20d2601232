import Foundation

/// A failure of the generator: printed and the process exits non-zero.
struct GeneratorError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs a program to completion and returns its standard output. Standard error is captured too and
/// reported when the program fails.
@discardableResult
func run(_ executable: String, _ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let outPipe = Pipe(), errPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    try process.run()
    // Read both pipes concurrently so neither can fill up and block the child.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errBox.data = errPipe.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let out = String(decoding: outData, as: UTF8.self)
    let err = String(decoding: errBox.data, as: UTF8.self)
    if process.terminationStatus != 0 && !allowFailure {
        throw GeneratorError("\(executable) \(arguments.joined(separator: " ")) failed (\(process.terminationStatus)):\n\(err.prefix(4000))")
    }
    return (process.terminationStatus, out, err)
}

/// Finds an executable: an explicit path from the environment, then the Swift toolchain's own
/// directory, then PATH.
func findTool(_ name: String, envVar: String) throws -> String {
    let env = ProcessInfo.processInfo.environment
    if let explicit = env[envVar], !explicit.isEmpty { return explicit }
    var dirs: [String] = []
    if let path = env["PATH"] { dirs += path.split(separator: ":").map(String.init) }
    dirs += ["/opt/swift/usr/bin", "/usr/bin", "/usr/local/bin"]
    for dir in dirs {
        let candidate = dir + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw GeneratorError("cannot find \(name) (set \(envVar) to its path)")
}
