import Foundation
import RTRL
import XCTest

/// `rtrl train --distributed` under mpirun against the same run in one process: the checkpoints'
/// exact parameters, optimiser moments and learner state (influence matrices included) must be
/// the single process's, bit for bit (the checkpoint stores every value's bytes). Needs a build
/// with the `MPI` trait (Scripts/test builds one) and Open MPI's mpirun.
final class DistributedTrainingTests: XCTestCase {
    override func setUpWithError() throws {
        #if !MPI
        throw XCTSkip("built without the MPI trait (swift build --traits MPI)")
        #endif
    }

    private func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rtrl-distributed-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Runs `rtrl train` (alone for 0 processes) and returns its JSON result.
    @discardableResult
    private func train(_ processes: Int, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let job = try MPIJob(processes: processes, ["train"] + arguments)
        let result = job.wait(file: file, line: line)
        XCTAssertEqual(result.status, 0, "\(processes) processes, \(arguments): \(result.stderr)", file: file, line: line)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one result line from rank 0 only: \(result.stdout)", file: file, line: line)
        return try JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8)) as? [String: Any] ?? [:]
    }

    /// A checkpoint's trainer.json.
    private func saved(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url.appendingPathComponent("trainer.json"))) as? [String: Any] ?? [:]
    }

    /// The evolving parts of two checkpoints are equal: every value's bytes.
    private func assertSameState(_ a: URL, _ b: URL, _ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try saved(a), y = try saved(b)
        XCTAssertNotNil(x["parameters"], message, file: file, line: line)
        for key in ["parameters", "optimizer", "learner", "preconditioner", "step"] {
            XCTAssertEqual(x[key] as? NSObject, y[key] as? NSObject, "\(message): \(key) differs", file: file, line: line)
        }
        // The task's state is JSON inside base64, its keys in each process's dictionary order.
        func task(_ saved: [String: Any]) throws -> NSObject? {
            guard let text = saved["taskState"] as? String, let data = Data(base64Encoded: text) else { return nil }
            return try JSONSerialization.jsonObject(with: data) as? NSObject
        }
        XCTAssertNotNil(try task(x), message, file: file, line: line)
        XCTAssertEqual(try task(x), try task(y), "\(message): the task's state differs", file: file, line: line)
    }

    /// Trains with `arguments` alone and split by `split` over 2 and 3 processes; the results and
    /// checkpoints must be the single process's.
    private func assertSplitRunsMatch(_ arguments: [String], split: String, _ name: String,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try directory()
        let single = dir.appendingPathComponent("1")
        let alone = try train(0, arguments + ["--checkpoint", single.path], file: file, line: line)
        for processes in [2, 3] {
            let checkpoint = dir.appendingPathComponent("\(processes)")
            let result = try train(processes, arguments + ["--checkpoint", checkpoint.path, "--distributed", split], file: file, line: line)
            XCTAssertEqual(result["processes"] as? Int, processes, file: file, line: line)
            XCTAssertGreaterThan(result["values_exchanged"] as? Int ?? 0, 0, file: file, line: line)
            XCTAssertEqual(result["final_loss"] as? Double, alone["final_loss"] as? Double, file: file, line: line)
            try assertSameState(single, checkpoint, "\(name) split by \(split) over \(processes) processes", file: file, line: line)
        }
    }

    func testModelParallelRunsAreTheSingleProcessRun() throws {
        for cell in ["gru", "lstm"] {
            for method in ["snap-2", "rtrl"] {
                try assertSplitRunsMatch(["--task", "copy", "--cell", cell, "--hidden", "12", "--density", "0.3", "--method", method,
                                          "--batch", "2", "--steps", "60", "--report-every", "30", "--seed", "5"],
                                         split: "units", "\(cell) \(method)")
            }
        }
    }

    func testDataParallelRunsAreTheSingleProcessRun() throws {
        for (cell, method) in [("gru", "snap-2"), ("lstm", "bptt"), ("rnn", "uoro"), ("gru", "kf-rtrl")] {
            try assertSplitRunsMatch(["--task", "copy", "--cell", cell, "--hidden", "10", "--density", "0.4", "--method", method,
                                      "--batch", "5", "--steps", "50", "--report-every", "25", "--seed", "7"],
                                     split: "streams", "\(cell) \(method)")
        }
    }

    /// The natural-gradient filter runs on every process, on the gathered gradient.
    func testNaturalGradientRunsAreTheSingleProcessRun() throws {
        for split in ["units", "streams"] {
            try assertSplitRunsMatch(["--task", "copy", "--cell", "gru", "--hidden", "12", "--density", "0.3", "--method", "snap-2",
                                      "--optimizer", "natural", "--batch", "3", "--steps", "60", "--report-every", "30", "--seed", "4"],
                                     split: split, "gru snap-2 natural")
        }
    }

    /// The EGRU's skipping form (its scaled storage, grouped differently in each shard) splits
    /// by units too, checkpoints included.
    func testModelParallelEGRUIsTheSingleProcessRun() throws {
        try assertSplitRunsMatch(["--task", "copy", "--cell", "egru", "--hidden", "12", "--density", "0.4", "--method", "snap-2",
                                  "--batch", "2", "--steps", "60", "--report-every", "30", "--seed", "3"],
                                 split: "units", "egru snap-2")
    }

    /// `rtrl bench step --distributed`: the processes' work and entries add up to the whole
    /// pattern's, counted here by the library.
    func testTheDistributedBenchmarkSplitsTheWholeWork() throws {
        let configuration = try ModelConfiguration(cell: .gru, inputSize: 16, hiddenSize: 20, outputSize: 4)
        let model = try Model<Double>(random: configuration, density: 0.3, seed: 17)
        let pattern = try ModelStructure(model).influencePattern(.snap(2))
        let job = try MPIJob(processes: 3, ["bench", "step", "--distributed", "units", "--cell", "gru", "--rows", "20",
                                            "--density", "0.3", "--inputs", "16", "--seed", "17", "--method", "snap-2",
                                            "--steps", "20", "--warmup", "2"])
        let result = job.wait()
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").last)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(json["processes"] as? Int, 3)
        XCTAssertEqual((json["multiply_adds_per_step"] as? [Int])?.reduce(0, +), pattern.statistics.multiplyAddsPerStep)
        XCTAssertEqual((json["influence_entries"] as? [Int])?.reduce(0, +), pattern.statistics.nonzeros)
        XCTAssertEqual((json["values_received_per_update"] as? [Int]) ?? [], [Int](repeating: pattern.layout.count, count: 3))
        XCTAssertEqual((json["step_seconds"] as? [Double])?.count, 3)
    }

    /// A checkpoint written by 2 processes, resumed by 3 (and by 1), ends where the
    /// uninterrupted single-process run ends.
    func testResumingWithAnotherProcessCountGivesTheUninterruptedRun() throws {
        let dir = try directory()
        for split in ["units", "streams"] {
            let common = ["--task", "copy", "--cell", "gru", "--hidden", "12", "--density", "0.3", "--method", "snap-2",
                          "--batch", "3", "--report-every", "20", "--seed", "9"]
            let uninterrupted = dir.appendingPathComponent("\(split)-uninterrupted")
            try train(0, common + ["--steps", "80", "--checkpoint", uninterrupted.path])
            let first = dir.appendingPathComponent("\(split)-first")
            try train(2, common + ["--steps", "40", "--checkpoint", first.path, "--distributed", split])
            XCTAssertEqual(try saved(first)["step"] as? Int, 40)
            let resumed = dir.appendingPathComponent("\(split)-resumed")
            try FileManager.default.copyItem(at: first, to: resumed)
            try train(3, ["--resume", resumed.path, "--task", "copy", "--batch", "3", "--steps", "80", "--report-every", "20",
                          "--seed", "9", "--checkpoint", resumed.path, "--distributed", split])
            try assertSameState(uninterrupted, resumed, "\(split): 2 processes, then 3")
            let alone = dir.appendingPathComponent("\(split)-alone")
            try train(0, ["--resume", first.path, "--task", "copy", "--batch", "3", "--steps", "80", "--report-every", "20",
                          "--seed", "9", "--checkpoint", alone.path])
            try assertSameState(uninterrupted, alone, "\(split): 2 processes, then 1")
        }
    }

    /// Killing one process ends the job: the others report why, nothing is left running, and the
    /// checkpoint in place is whole and resumes (with another process count) to the
    /// uninterrupted run's result.
    func testKillingOneProcessEndsTheJobAndLeavesAWholeCheckpoint() throws {
        let dir = try directory()
        let checkpoint = dir.appendingPathComponent("run")
        let common = ["--task", "copy", "--cell", "gru", "--hidden", "16", "--density", "0.3", "--method", "snap-2",
                      "--batch", "1", "--report-every", "100", "--seed", "11"]
        let job = try MPIJob(processes: 3, ["train"] + common + ["--steps", "100000000", "--checkpoint", checkpoint.path,
                                                                  "--checkpoint-every", "50", "--distributed", "units"])
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent("trainer.json").path) && Date() < deadline {
            usleep(50_000)
        }
        let ranks = job.ranks
        XCTAssertEqual(ranks.count, 3, "mpirun started 3 processes")
        guard let victim = ranks.last else { return }
        kill(victim, SIGKILL)
        let result = job.wait(timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        let stopped = result.stderr.components(separatedBy: "was stopped: the MPI job ended because another process failed or was killed").count - 1
        XCTAssertEqual(stopped, 2, "both surviving processes say why they stopped: \(result.stderr)")
        for pid in ranks { XCTAssertTrue(MPIJob.ended(pid), "process \(pid) is gone") }
        // The checkpoint in place is whole: it resumes, with 2 processes, to the uninterrupted result.
        let step = try XCTUnwrap(saved(checkpoint)["step"] as? Int)
        let target = step + 30
        try train(2, ["--resume", checkpoint.path, "--task", "copy", "--batch", "1", "--steps", "\(target)", "--report-every", "10",
                      "--seed", "11", "--checkpoint", checkpoint.path, "--distributed", "units"])
        let uninterrupted = dir.appendingPathComponent("uninterrupted")
        try train(0, common + ["--steps", "\(target)", "--checkpoint", uninterrupted.path])
        try assertSameState(uninterrupted, checkpoint, "resumed after the kill")
    }

    /// A budget the whole influence matrix exceeds: refused in one process with the bytes needed,
    /// refused on every process when the shards are still too large, met by enough shards.
    func testAMatrixAboveTheBudgetTrainsWhenShardedOverEnoughProcesses() throws {
        let task = CopyTask(streams: 1, seed: 13)
        let configuration = try ModelConfiguration(cell: .gru, inputSize: task.inputSize, hiddenSize: 24, outputSize: task.outputSize)
        let model = try Model<Double>(random: configuration, density: 0.3, seed: 13)
        let whole = try OnlineLearner(model: model, method: .rtrl).influenceBytes
        let common = ["--task", "copy", "--cell", "gru", "--hidden", "24", "--density", "0.3", "--method", "rtrl",
                      "--steps", "20", "--report-every", "10", "--seed", "13"]
        let budget = whole * 45 / 100
        let alone = try MPIJob(processes: 0, ["train"] + common + ["--memory-budget", "\(budget)"]).wait()
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.stderr.contains("would need"), alone.stderr)
        let tooFew = try MPIJob(processes: 2, ["train"] + common + ["--memory-budget", "\(whole * 20 / 100)", "--distributed", "units"]).wait()
        XCTAssertNotEqual(tooFew.status, 0)
        XCTAssertTrue(tooFew.stderr.contains("would need"), tooFew.stderr)
        XCTAssertTrue(tooFew.stderr.contains("ending the job"), tooFew.stderr)
        let result = try train(3, common + ["--memory-budget", "\(budget)", "--distributed", "units"])
        XCTAssertEqual(result["processes"] as? Int, 3)
    }
}
