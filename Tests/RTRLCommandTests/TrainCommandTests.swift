import Foundation
import RTRL
import XCTest

final class TrainCommandTests: XCTestCase {
    func testTrainWritesMetricsPlotAndCheckpointAndResumes() throws {
        let dir = try temporaryDirectory()
        let csv = dir.appendingPathComponent("m.csv").path, svg = dir.appendingPathComponent("m.svg").path
        let checkpoint = dir.appendingPathComponent("ckpt").path
        let common = ["train", "--task", "copy", "--hidden", "8", "--density", "0.5", "--method", "snap-2", "--seed", "4",
                      "--report-every", "100"]
        let full = try runJSON(common + ["--steps", "400"])
        XCTAssertEqual(full["task"] as? String, "copy")
        XCTAssertEqual(full["method"] as? String, "snap-2")
        XCTAssertEqual(full["steps"] as? Int, 400)
        XCTAssertNotNil(full["final_loss"] as? Double)
        XCTAssertNotNil(full["curriculum_length"] as? Double)

        _ = try runJSON(common + ["--steps", "200", "--metrics", csv, "--plot", svg, "--checkpoint", checkpoint])
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.first, "step,seconds,steps_per_second,loss,curriculum_length,grad_norm")
        XCTAssertEqual(rows.count, 3)
        XCTAssertTrue(try String(contentsOfFile: svg, encoding: .utf8).hasPrefix("<svg"))
        XCTAssertNoThrow(try Model<Double>(directory: checkpoint))
        // Resuming to 400 steps ends where the uninterrupted run ended.
        let resumed = try runJSON(common + ["--steps", "400", "--resume", checkpoint])
        XCTAssertEqual(resumed["steps"] as? Int, 400)
        XCTAssertEqual(resumed["curriculum_length"] as? Double, full["curriculum_length"] as? Double)
        XCTAssertEqual(resumed["final_loss"] as? Double, full["final_loss"] as? Double)

        let plot = dir.appendingPathComponent("both.svg").path
        let result = try RTRLExecutable.run(["plot", csv, csv, "--out", plot, "--labels", "a,b"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(try String(contentsOfFile: plot, encoding: .utf8).contains(">b</text>"))
    }

    func testTrainRejectsBadInput() throws {
        let dir = try temporaryDirectory()
        try assertFails(["train", "--task", "poetry"], mentioning: "poetry")
        try assertFails(["train", "--method", "magic", "--steps", "1"], mentioning: "unknown method")
        let empty = dir.appendingPathComponent("empty.txt").path
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        try assertFails(["train", "--task", "text", "--text", empty, "--steps", "1"], mentioning: "empty")
        let binary = dir.appendingPathComponent("binary.txt").path
        _ = FileManager.default.createFile(atPath: binary, contents: Data([0x61, 0xFF, 0xFE, 0x62]))
        try assertFails(["train", "--task", "text", "--text", binary, "--steps", "1"], mentioning: "UTF-8")
        // A model whose sizes disagree with the task (3 inputs; copy has 4).
        let model = dir.appendingPathComponent("model").path
        _ = try runJSON(["init", "--cell", "gru", "--inputs", "3", "--hidden", "4", "--outputs", "4", "--out", model])
        try assertFails(["train", "--task", "copy", "--model", model, "--steps", "1"], mentioning: "inputs")
        try assertFails(["train", "--steps", "-5"], mentioning: "--steps")
        try assertFails(["train", "--steps", "10", "--plot", dir.appendingPathComponent("x.svg").path], mentioning: "--metrics")
        try assertFails(["train", "--resume", dir.appendingPathComponent("nothing").path, "--steps", "1"], mentioning: "checkpoint")
    }

    /// The delay task and the filter's settings on the command line: a run reports the recall
    /// accuracy, resumes to the uninterrupted result, and bad settings are refused.
    func testDelayTaskWithTheKalmanFilter() throws {
        let dir = try temporaryDirectory()
        let checkpoint = dir.appendingPathComponent("ckpt").path
        let common = ["train", "--task", "delay", "--lag", "3", "--cell", "rnn", "--hidden", "8", "--density", "0.5",
                      "--method", "nobacktrack", "--optimizer", "natural", "--lr", "0.05", "--fisher-prior-weight", "10",
                      "--fisher-prior", "0.5", "--fisher-damping", "0", "--fisher-refactor-every", "1", "--seed", "2",
                      "--report-every", "100"]
        let full = try runJSON(common + ["--steps", "300"])
        XCTAssertEqual(full["task"] as? String, "delay")
        let accuracy = try XCTUnwrap(full["recall_accuracy"] as? Double)
        XCTAssertTrue(accuracy >= 0 && accuracy <= 1, "\(accuracy)")
        _ = try runJSON(common + ["--steps", "120", "--checkpoint", checkpoint])
        let resumed = try runJSON(common + ["--steps", "300", "--resume", checkpoint])
        XCTAssertEqual(resumed["final_loss"] as? Double, full["final_loss"] as? Double)
        XCTAssertEqual(resumed["recall_accuracy"] as? Double, accuracy)
        try assertFails(["train", "--task", "delay", "--lag", "0", "--steps", "1"], mentioning: "--lag")
        try assertFails(["train", "--optimizer", "natural", "--fisher-decay", "1", "--steps", "1"], mentioning: "decay")
        try assertFails(["train", "--optimizer", "natural", "--fisher-decay", "0.9", "--fisher-prior-weight", "10", "--steps", "1"],
                        mentioning: "not both")
    }
}
