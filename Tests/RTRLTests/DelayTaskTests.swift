import Foundation
import RTRL
import XCTest

/// The delayed-recall task follows its definition, measures accuracy as stated, resumes exactly,
/// and separates a method that carries credit across the lag from one truncated below it.
final class DelayTaskTests: XCTestCase {
    private func token(_ input: [Double]) -> Int { input.firstIndex(of: 1)! }

    func testTargetsAreTheSymbolSeenLagStepsEarlier() throws {
        let lag = 5, streams = 2, steps = 4000
        let task = try DelayTask(streams: streams, lag: lag, symbols: 3, distractors: 2, recallProbability: 0.3, seed: 7)
        XCTAssertEqual(task.inputSize, 5)
        XCTAssertEqual(task.outputSize, 4)
        var tokens = [[Int]](repeating: [], count: streams)
        var input = [Double](repeating: -1, count: task.inputSize)
        var symbols = 0
        for t in 0..<steps {
            for b in 0..<streams {
                let step = input.withUnsafeMutableBufferPointer { task.next(stream: b, input: $0) }
                XCTAssertEqual(input.filter { $0 == 1 }.count, 1, "one-hot")
                XCTAssertEqual(input.filter { $0 == 0 }.count, task.inputSize - 1, "one-hot")
                tokens[b].append(token(input))
                XCTAssertEqual(step.startsSequence, t == 0)
                if t < lag {
                    XCTAssertEqual(step.target, -1, "no target before \(lag) steps")
                } else {
                    let old = tokens[b][t - lag]
                    XCTAssertEqual(step.target, old < 3 ? old : 3, "stream \(b), step \(t)")
                }
                if tokens[b][t] < 3 { symbols += 1 }
            }
        }
        XCTAssertNotEqual(tokens[0], tokens[1], "streams draw their own tokens")
        // The share of symbols is 0.3 within 5 standard deviations of a binomial count.
        let n = Double(steps * streams), sd = (n * 0.3 * 0.7).squareRoot()
        XCTAssertEqual(Double(symbols), 0.3 * n, accuracy: 5 * sd)
    }

    func testAccuracyIsAMovingAverageOverSymbolTargets() throws {
        let task = try DelayTask(streams: 1, lag: 1, symbols: 4, distractors: 4, recallProbability: 0.5, seed: 3)
        XCTAssertEqual(task.metricValue, 0.25, "starts at chance")
        var input = [Double](repeating: 0, count: task.inputSize)
        var expected = 0.25, counted = 0
        for t in 0..<3000 {
            let step = input.withUnsafeMutableBufferPointer { task.next(stream: 0, input: $0) }
            // Right for the first 2000 steps, then wrong; blank targets and target-less steps do not count.
            let prediction = step.target >= 0 ? (t < 2000 ? step.target : (step.target + 1) % 5) : -1
            task.observe(stream: 0, loss: 0.1, hadTarget: step.target >= 0, prediction: prediction)
            if step.target >= 0 && step.target < 4 {
                expected = 0.999 * expected + 0.001 * (t < 2000 ? 1 : 0)
                counted += 1
            }
            XCTAssertEqual(task.metricValue, expected, accuracy: 1e-12, "step \(t)")
        }
        XCTAssertGreaterThan(counted, 1200)
        XCTAssertLessThan(counted, 1800)
    }

    func testStateRoundTripContinuesExactly() throws {
        let task = try DelayTask(streams: 2, lag: 4, seed: 11)
        var input = [Double](repeating: 0, count: task.inputSize)
        func run(_ task: DelayTask, _ steps: Int) -> [Int] {
            var out: [Int] = []
            for _ in 0..<steps {
                for b in 0..<2 {
                    let step = input.withUnsafeMutableBufferPointer { task.next(stream: b, input: $0) }
                    task.observe(stream: b, loss: 0, hadTarget: step.target >= 0, prediction: 0)
                    out += [token(input), step.target]
                }
            }
            return out
        }
        _ = run(task, 37)
        let saved = try task.saveState()
        let continued = run(task, 50)
        let restored = try DelayTask(streams: 2, lag: 4, seed: 99)
        try restored.restoreState(saved)
        XCTAssertEqual(run(restored, 50), continued)
        XCTAssertEqual(restored.metricValue, task.metricValue)
        XCTAssertThrowsError(try DelayTask(streams: 2, lag: 5, seed: 11).restoreState(saved), "another lag")
        XCTAssertThrowsError(try DelayTask(streams: 3, lag: 4, seed: 11).restoreState(saved), "another stream count")
    }

    func testBadSettingsAreRefused() {
        XCTAssertThrowsError(try DelayTask(streams: 1, lag: 0, seed: 1))
        XCTAssertThrowsError(try DelayTask(streams: 0, lag: 3, seed: 1))
        XCTAssertThrowsError(try DelayTask(streams: 1, lag: 3, symbols: 0, seed: 1))
        XCTAssertThrowsError(try DelayTask(streams: 1, lag: 3, recallProbability: 0, seed: 1))
        XCTAssertThrowsError(try DelayTask(streams: 1, lag: 3, distractors: 0, recallProbability: 0.5, seed: 1), "without distractors every step is a symbol")
        XCTAssertNoThrow(try DelayTask(streams: 1, lag: 3, distractors: 0, recallProbability: 1, seed: 1))
    }

    /// Exact RTRL learns to recall across a lag of 2; truncated BPTT over 1 step has no gradient
    /// path from a target to the input it names and stays at its blank-predicting start.
    func testCreditAcrossTheLagNeedsAMethodThatReachesIt() throws {
        func train(_ method: GradientMethod) throws -> Double {
            let task = try DelayTask(streams: 1, lag: 2, seed: 1)
            let model = try Model<Double>(random: try ModelConfiguration(cell: .gru, inputSize: task.inputSize, hiddenSize: 12,
                                                                         outputSize: task.outputSize),
                                          density: 1, seed: 1)
            let trainer = try Trainer(model: model, task: task,
                                      configuration: try TrainingConfiguration(method: method, learningRate: 1e-2, seed: 1))
            for _ in 0..<4000 { try trainer.trainStep() }
            return task.metricValue
        }
        let exact = try train(.rtrl), truncated = try train(.tbptt(1))
        XCTAssertGreaterThan(exact, 0.4, "exact RTRL: recall accuracy \(exact)")
        XCTAssertLessThan(truncated, 0.2, "tbptt-1: recall accuracy \(truncated)")
    }
}
