import Foundation
@testable import RTRL
import XCTest

final class TrainingTests: XCTestCase {
    private func makeTrainer(method: String = "snap-2", batch: Int = 2, seed: UInt64 = 3, cell: CellKind = .gru,
                             optimizer: OptimizerKind = .adam) throws -> Trainer<Double> {
        let task = CopyTask(streams: batch, seed: seed)
        let configuration = try ModelConfiguration(cell: cell, inputSize: 4, hiddenSize: 12, outputSize: 4)
        let model = try Model<Double>(random: configuration, density: 0.4, seed: seed)
        return try Trainer(model: model, task: task, configuration: try TrainingConfiguration(
            method: GradientMethod(parsing: method), optimizer: optimizer, learningRate: 1e-2, seed: seed))
    }

    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rtrl-training-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Loss per step of a model on 30 fixed copy sequences (curriculum length 1), each from the
    /// zero state as in training, forward only.
    private func heldOutLoss(_ model: Model<Double>) throws -> Double {
        let task = CopyTask(streams: 1, seed: 99)
        var sequences: [(inputs: [[Double]], targets: [Int])] = []
        var input = [Double](repeating: 0, count: 4)
        while true {
            let step = input.withUnsafeMutableBufferPointer { task.next(stream: 0, input: $0) }
            if step.startsSequence {
                if sequences.count == 30 { break }
                sequences.append(([], []))
            }
            sequences[sequences.count - 1].inputs.append(input)
            sequences[sequences.count - 1].targets.append(step.target)
        }
        var total = 0.0, count = 0
        for s in sequences {
            total += try SequenceLoss.evaluate(model: model, inputs: s.inputs, targets: s.targets)
            count += s.targets.count
        }
        return total / Double(count)
    }

    func testSnAp2LearnsATinyCopyTask() throws {
        let trainer = try makeTrainer()
        let initial = try heldOutLoss(trainer.model)
        for _ in 0..<3000 { try trainer.trainStep() }
        let final = try heldOutLoss(trainer.model)
        XCTAssertGreaterThan(initial, 1.0, "an untrained model is near chance (ln 4 ≈ 1.39)")
        XCTAssertLessThan(final, 0.3 * initial, "initial \(initial), final \(final)")
        XCTAssertTrue(trainer.model.parameters.isFinite)
    }

    /// A diverged run (a state value that is not finite, which JSON cannot hold) gets a checkpoint
    /// error naming the value and where it is, and leaves no directory behind, not even a
    /// temporary one; an earlier checkpoint in the same place is kept.
    func testCheckpointOfADivergedRunNamesTheValueAndWritesNothing() throws {
        let parent = try temporaryDirectory()
        let dir = parent.appendingPathComponent("checkpoint").path
        let trainer = try makeTrainer(method: "rtrl", cell: .rnn)
        for _ in 0..<5 { try trainer.trainStep() }
        try trainer.saveCheckpoint(to: dir)
        let before = try Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("trainer.json"))
        trainer.lastGradientNorm = .infinity
        XCTAssertThrowsError(try trainer.saveCheckpoint(to: dir)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("lastGradientNorm") && message.contains("not finite"), message)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent.path), ["checkpoint"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("trainer.json")), before)
    }

    func testResumeContinuesBitForBit() throws {
        let cases: [(String, CellKind, Optimizer<Double>.Kind)] = [
            ("snap-2", .gru, .adam), ("rtrl", .gru, .adam), ("tbptt-4", .gru, .adam), ("uoro", .gru, .adam),
            ("nobacktrack", .lstm, .natural), ("ok-2", .rnn, .sgd), ("kf-rtrl", .rnn, .adam),
            ("ok-2", .egru, .adam), ("kf-rtrl", .lstm, .sgd),
        ]
        for (method, cell, optimizer) in cases {
            let dir = try temporaryDirectory().appendingPathComponent("checkpoint").path
            let uninterrupted = try makeTrainer(method: method, cell: cell, optimizer: optimizer)
            for _ in 0..<150 { try uninterrupted.trainStep() }
            let first = try makeTrainer(method: method, cell: cell, optimizer: optimizer)
            for _ in 0..<70 { try first.trainStep() }
            try first.saveCheckpoint(to: dir)
            let resumed = try Trainer<Double>(resumingFrom: dir, task: CopyTask(streams: 2, seed: 3))
            XCTAssertEqual(resumed.step, 70)
            for _ in 70..<150 { try resumed.trainStep() }
            XCTAssertEqual(resumed.model.parameters.flattened, uninterrupted.model.parameters.flattened, method)
            XCTAssertTrue(resumed.model.parameters.isFinite, method)
            XCTAssertEqual(resumed.task.metricValue, uninterrupted.task.metricValue, method)
        }
    }

    func testTrainingIsDeterministicAcrossRunsAndThreads() throws {
        func train(threads: Int, method: String) throws -> [Double] {
            let task = CopyTask(streams: 3, seed: 8)
            let model = try Model<Double>(random: try ModelConfiguration(cell: .lstm, inputSize: 4, hiddenSize: 10, outputSize: 4),
                                          density: 0.4, seed: 8)
            let trainer = try Trainer(model: model, task: task,
                                      configuration: try TrainingConfiguration(method: GradientMethod(parsing: method), threads: threads, seed: 8))
            for _ in 0..<200 { try trainer.trainStep() }
            return trainer.model.parameters.flattened
        }
        for method in ["snap-2", "rtrl", "tbptt-5"] {
            let once = try train(threads: 1, method: method)
            XCTAssertEqual(try train(threads: 1, method: method), once, "\(method): two runs")
            XCTAssertEqual(try train(threads: 2, method: method), once, "\(method): 1 vs 2 threads")
        }
    }

    func testInterruptedCheckpointLeavesThePreviousIntact() throws {
        let dir = try temporaryDirectory().appendingPathComponent("checkpoint").path
        let trainer = try makeTrainer()
        for _ in 0..<20 { try trainer.trainStep() }
        try trainer.saveCheckpoint(to: dir)
        let before = try String(contentsOfFile: dir + "/trainer.json", encoding: .utf8)
        for _ in 0..<20 { try trainer.trainStep() }
        struct Interrupted: Error {}
        trainer.afterCheckpointFile = { _ in throw Interrupted() }
        XCTAssertThrowsError(try trainer.saveCheckpoint(to: dir))
        XCTAssertEqual(try String(contentsOfFile: dir + "/trainer.json", encoding: .utf8), before)
        let parent = URL(fileURLWithPath: dir).deletingLastPathComponent().path
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["checkpoint"], "no partial directory left")
        let resumed = try Trainer<Double>(resumingFrom: dir, task: CopyTask(streams: 2, seed: 3))
        XCTAssertEqual(resumed.step, 20)
    }

    func testCopyTaskFollowsTheCurriculumDefinition() throws {
        let task = CopyTask(streams: 1, seed: 1)
        var input = [Double](repeating: 0, count: 4)
        var tokens: [Int] = [], targets: [Int] = []
        var step = input.withUnsafeMutableBufferPointer { task.next(stream: 0, input: $0) }
        XCTAssertTrue(step.startsSequence)
        repeat {
            tokens.append(input.firstIndex(of: 1)!)
            targets.append(step.target)
            step = input.withUnsafeMutableBufferPointer { task.next(stream: 0, input: $0) }
        } while !step.startsSequence
        // T_max = 1: input 2, b, 3, 3; target 3, 3, 2, b.
        XCTAssertEqual(tokens.count, 4)
        XCTAssertEqual(tokens[0], 2)
        XCTAssertEqual(Array(tokens[2...]), [3, 3])
        XCTAssertEqual(Array(targets[..<3]), [3, 3, 2])
        XCTAssertEqual(targets[3], tokens[1])
        // A run of zero losses drives the average below 0.15 bits and grows the curriculum.
        for _ in 0..<2000 { task.observe(stream: 0, loss: 0, hadTarget: true) }
        XCTAssertGreaterThan(task.metricValue, 1)
    }

    func testTextTaskAndBadInput() throws {
        let task = try TextTask(text: "abcabcabcabd", streams: 2, validationFraction: 0.25)
        XCTAssertEqual(task.vocabulary.map { String($0) }, ["a", "b", "c", "d"])
        XCTAssertThrowsError(try TextTask(text: "", streams: 1))
        XCTAssertThrowsError(try TextTask(text: "aaaa", streams: 1))
        XCTAssertThrowsError(try TextTask(text: "ab", streams: 5))
        let dir = try temporaryDirectory()
        let latin1 = dir.appendingPathComponent("latin1.txt").path
        _ = FileManager.default.createFile(atPath: latin1, contents: Data([0x63, 0x61, 0x66, 0xE9, 0x20, 0xFF]))
        XCTAssertThrowsError(try TextTask(file: latin1, streams: 1)) { XCTAssertTrue("\($0)".contains("UTF-8")) }
        XCTAssertGreaterThan(TextTask.builtInCorpus().unicodeScalars.count, 50_000)
        // A model whose sizes disagree with the task.
        let wrong = try Model<Double>(random: try ModelConfiguration(cell: .gru, inputSize: 3, hiddenSize: 4, outputSize: 4),
                                      density: 1, seed: 1)
        XCTAssertThrowsError(try Trainer(model: wrong, task: CopyTask(streams: 1, seed: 1),
                                         configuration: try TrainingConfiguration(method: .snap(1))))
        XCTAssertThrowsError(try GradientMethod(parsing: "magic"))
        XCTAssertThrowsError(try TrainingConfiguration(method: .tbptt(0)))
        XCTAssertThrowsError(try TrainingConfiguration(method: .snap(1), learningRate: 0))
        XCTAssertThrowsError(try TrainingConfiguration(method: .snap(1), updateEvery: 0))
        XCTAssertThrowsError(try Optimizer<Double>(kind: .adam, learningRate: -1, parameterCount: 3))
    }

    func testOptimizersAndClipping() throws {
        var g = [3.0, 4.0]
        let norm = g.withUnsafeMutableBufferPointer { clipGradientNorm($0, maximum: 1) }
        XCTAssertEqual(norm, 5)
        XCTAssertEqual(g[0], 0.6, accuracy: 1e-15)
        XCTAssertEqual(g[1], 0.8, accuracy: 1e-15)
        var sgd = try Optimizer<Double>(kind: .sgd, learningRate: 0.5, parameterCount: 2)
        var theta = [1.0, 1.0]
        g.withUnsafeBufferPointer { gv in theta.withUnsafeMutableBufferPointer { sgd.apply(gradient: gv, to: $0) } }
        XCTAssertEqual(theta, [0.7, 0.6])
        // Adam's first step moves every parameter by about the learning rate, against the gradient.
        var adam = try Optimizer<Double>(kind: .adam, learningRate: 0.01, parameterCount: 2)
        theta = [0, 0]
        [2.0, -1e-3].withUnsafeBufferPointer { gv in theta.withUnsafeMutableBufferPointer { adam.apply(gradient: gv, to: $0) } }
        XCTAssertEqual(theta[0], -0.01, accuracy: 1e-6)
        XCTAssertEqual(theta[1], 0.01, accuracy: 1e-4)
    }
}
