import Foundation
import XCTest

/// Runs `rtrl` (built beside the test bundle) as an MPI job of R processes with `mpirun`, and
/// makes sure no process it started outlives the test: on any exit path the job is ended
/// (mpirun forwards SIGTERM to its processes), then any process still alive is killed.
final class MPIJob {
    static var rtrl: URL {
        var directory = Bundle.main.bundleURL
        if directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        return directory.appendingPathComponent("rtrl")
    }

    /// `mpirun`, or nil where Open MPI is not installed.
    static var mpirun: String? {
        ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    let process = Process()
    /// stdout and stderr go to files (a pipe nobody reads could fill and stall the job).
    private let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("mpijob-\(UUID().uuidString).out")
    private let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("mpijob-\(UUID().uuidString).err")

    /// Starts `rtrl arguments…` in `processes` processes (or alone, without mpirun, for 0).
    init(processes: Int, _ arguments: [String]) throws {
        if processes == 0 {
            process.executableURL = MPIJob.rtrl
            process.arguments = arguments
        } else {
            guard let mpirun = MPIJob.mpirun else { throw XCTSkip("Open MPI's mpirun is not installed") }
            process.executableURL = URL(fileURLWithPath: mpirun)
            // Root in CI's containers; more processes than cores on this machine.
            process.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "\(processes)", MPIJob.rtrl.path] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        process.environment = environment
        guard FileManager.default.createFile(atPath: outURL.path, contents: nil),
              FileManager.default.createFile(atPath: errURL.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: outURL.deletingLastPathComponent().path])
        }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }

    /// The processes mpirun started (its children).
    var ranks: [Int32] {
        let pgrep = Process()
        pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        pgrep.arguments = ["-P", "\(process.processIdentifier)"]
        let pipe = Pipe()
        pgrep.standardOutput = pipe
        guard (try? pgrep.run()) != nil else { return [] }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        pgrep.waitUntilExit()
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// Waits for the job (at most `timeout` seconds, then ends it and fails) and returns its exit
    /// status, stdout and stderr.
    func wait(timeout: Double = 300, file: StaticString = #filePath, line: UInt = #line) -> (status: Int32, stdout: String, stderr: String) {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            XCTFail("the MPI job did not end within \(timeout) s", file: file, line: line)
            stop()
        }
        process.waitUntilExit()
        let out = (try? Data(contentsOf: outURL)) ?? Data(), err = (try? Data(contentsOf: errURL)) ?? Data()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    /// Whether process `pid` has ended (gone, or a zombie waiting to be reaped) within 10 s.
    static func ended(_ pid: Int32) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        repeat {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            // The state follows the parenthesised command name.
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { return true }
            usleep(50_000)
        } while Date() < deadline
        return false
    }

    /// Ends the job and every process it started.
    func stop() {
        let children = ranks
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(20_000) }
        }
        for pid in children where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
