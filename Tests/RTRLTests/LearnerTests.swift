import RTRL
import XCTest

/// The online learner: memory independent of the sequence length, running gradients, resets,
/// and activity bookkeeping.
final class LearnerTests: XCTestCase {
    /// math.md §2: RTRL's (and SnAp's) memory does not grow with T.
    func testInfluenceMemoryDoesNotDependOnSequenceLength() throws {
        let model = try Fixtures.model(.gru, inputs: 2, hidden: 4, outputs: 3, density: 0.5, seed: 401)
        var rng = SeededGenerator(seed: 402)
        for method in [GradientMethod.rtrl, .snap(2)] {
            let learner = try OnlineLearner(model: model, method: method)
            // The values (updated in place), one step's D and the immediate term.
            let structure = learner.structure
            let expected = (learner.influencePattern!.statistics.nonzeros + structure.graph.jacobianTransposed.nonzeroCount
                            + structure.layout.count) * MemoryLayout<Double>.stride
            var after10 = 0
            for t in 1...10_000 {
                let x = (0..<2).map { _ in Double.random(in: -1...1, using: &rng) }
                try learner.step(inputs: x, targets: [t % 5 == 0 ? -1 : Int.random(in: 0..<3, using: &rng)])
                if t == 10 { after10 = learner.influenceBytes }
            }
            XCTAssertGreaterThan(after10, 0)
            XCTAssertEqual(after10, expected, "\(method)")
            XCTAssertEqual(learner.influenceBytes, after10, "\(method): influence memory grew with T")
            XCTAssertEqual(learner.stepCount, 10_000)
            XCTAssertTrue(learner.gradient().isFinite)
        }
        // By contrast BPTT's history grows with T (so the measure above measures something).
        let bptt = try OnlineLearner(model: model, method: .bptt)
        for _ in 0..<10 { try bptt.step(inputs: [0.1, -0.2], targets: [1]) }
        let bptt10 = bptt.influenceBytes
        for _ in 0..<90 { try bptt.step(inputs: [0.1, -0.2], targets: [1]) }
        XCTAssertGreaterThan(bptt.influenceBytes, bptt10)
    }

    /// The running gradient after t steps is the gradient of the first t steps' losses, for
    /// every exact method (and reading it does not disturb later steps).
    func testRunningGradientIsThePrefixGradient() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 6, density: 0.5, seed: 411)
            let sequence = try Fixtures.sequence(for: model, length: 20, seed: 411, scale: 1.5)
            for method in [GradientMethod.rtrl, .rtrlDense, .bptt, .snap(2)] {
                let learner = try OnlineLearner(model: model, method: method)
                for t in 0..<sequence.count {
                    try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
                    if t == 6 || t == 13 {
                        let prefix = try LabelledSequence(inputs: Array(sequence.inputs[...t]), targets: Array(sequence.targets[...t]),
                                                          inputSize: model.inputSize, outputSize: model.outputSize)
                        let expected = try sequenceGradient(model, prefix, method)
                        XCTAssertRelativelyClose(learner.gradient().flattened, expected.gradient, tolerance: 1e-12,
                                                 "\(cell) \(method) after \(t + 1) steps")
                    }
                }
                XCTAssertRelativelyClose(learner.gradient().flattened, try sequenceGradient(model, sequence, method).gradient,
                                         tolerance: 1e-12, "\(cell) \(method) full")
            }
        }
    }

    /// resetGradient mid-sequence keeps state and influence: the gradient afterwards is the
    /// gradient of the later losses only (full − prefix), and exact methods still agree.
    func testResetGradientKeepsInfluence() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 6, density: 0.5, seed: 421)
            let sequence = try Fixtures.sequence(for: model, length: 24, seed: 421, scale: 1.5)
            let cut = 9
            let prefix = try LabelledSequence(inputs: Array(sequence.inputs[..<cut]), targets: Array(sequence.targets[..<cut]),
                                              inputSize: model.inputSize, outputSize: model.outputSize)
            let full = try sequenceGradient(model, sequence, .bptt).gradient
            let early = try sequenceGradient(model, prefix, .bptt).gradient
            let expected = zip(full, early).map { $0 - $1 }
            for method in [GradientMethod.rtrl, .rtrlDense, .bptt] {
                let learner = try OnlineLearner(model: model, method: method)
                for t in 0..<sequence.count {
                    if t == cut { learner.resetGradient() }
                    try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
                }
                XCTAssertRelativelyClose(learner.gradient().flattened, expected, tolerance: 1e-9, "\(cell) \(method)")
            }
        }
    }

    /// resetState starts a new sequence: after it (and resetGradient) the learner gives the
    /// second sequence's gradient as if it were fresh.
    func testResetStateStartsAFreshSequence() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 6, density: 0.5, seed: 431)
            let first = try Fixtures.sequence(for: model, length: 11, seed: 431, scale: 1.5)
            let second = try Fixtures.sequence(for: model, length: 14, seed: 432, scale: 1.5)
            for method in [GradientMethod.rtrl, .rtrlDense, .bptt, .snap(1), .snap(2)] {
                let learner = try OnlineLearner(model: model, method: method)
                for t in 0..<first.count { try learner.step(inputs: first.inputs[t], targets: [first.targets[t]]) }
                // Without resetGradient, both sequences' gradients add up.
                learner.resetState()
                var loss = 0.0
                for t in 0..<second.count { loss += try learner.step(inputs: second.inputs[t], targets: [second.targets[t]]) }
                let g1 = try sequenceGradient(model, first, method), g2 = try sequenceGradient(model, second, method)
                XCTAssertRelativelyClose(learner.gradient().flattened, zip(g1.gradient, g2.gradient).map { $0 + $1 },
                                         tolerance: 1e-12, "\(cell) \(method): two sequences")
                XCTAssertLossesClose(loss, g2.loss)
                // With it, only the new sequence counts.
                learner.resetState()
                learner.resetGradient()
                for t in 0..<second.count { try learner.step(inputs: second.inputs[t], targets: [second.targets[t]]) }
                XCTAssertRelativelyClose(learner.gradient().flattened, g2.gradient, tolerance: 1e-12, "\(cell) \(method): after reset")
            }
        }
    }

    /// EGRU activity: silent units (thresholds far above v) make the recurrent work skippable;
    /// the records report the activity.
    func testEGRUActivityIsReported() throws {
        let base = try Fixtures.model(.egru, hidden: 8, density: 0.5, seed: 441)
        let silent = try Fixtures.replacing(base) { $0.threshold = $0.threshold.map { _ in 5.0 } }
        let firing = try Fixtures.replacing(base) { $0.threshold = $0.threshold.map { _ in -3.0 } }
        let sequence = try Fixtures.sequence(for: base, length: 6, seed: 441)
        let quietLearner = try OnlineLearner(model: silent, method: .rtrl)
        let loudLearner = try OnlineLearner(model: firing, method: .rtrl)
        for t in 0..<sequence.count {
            try quietLearner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            try loudLearner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            XCTAssertEqual(quietLearner.lastRecord(stream: 0).activeUnits, 0)
            XCTAssertEqual(quietLearner.lastRecord(stream: 0).quietUnits, 8)
            XCTAssertEqual(loudLearner.lastRecord(stream: 0).activeUnits, 8)
            let skipped = quietLearner.skippedWorkFraction()
            XCTAssertGreaterThan(skipped, 0, "step \(t)")
            XCTAssertLessThanOrEqual(skipped, 1)
            if t > 0 { XCTAssertEqual(loudLearner.lastRecord(stream: 0).quietUnits, 0) }
        }
        let dense = try OnlineLearner(model: silent, method: .rtrlDense)
        try dense.step(inputs: sequence.inputs[0], targets: [0])
        XCTAssertEqual(dense.skippedWorkFraction(), 0)
    }
}

final class LearnerParameterUpdateTests: XCTestCase {
    /// `setParameters` changes the weights the next steps use and keeps the state; it refuses
    /// parameters with other weight patterns.
    func testSetParametersChangesWeightsAndRefusesOtherPatterns() throws {
        let model = try Model<Double>(random: try ModelConfiguration(cell: .gru, inputSize: 2, hiddenSize: 5, outputSize: 3),
                                      density: 0.6, seed: 41)
        let learner = try OnlineLearner(model: model, method: .rtrl)
        try learner.step(inputs: [0.3, -0.2], targets: [1])
        let stateBefore = learner.state(stream: 0)
        var changed = model.parameters
        changed.readoutBias = changed.readoutBias.map { $0 + 1 }
        try learner.setParameters(changed)
        XCTAssertEqual(learner.model.parameters.readoutBias, changed.readoutBias)
        XCTAssertEqual(learner.state(stream: 0), stateBefore, "the state carries on")
        // The next step uses the new weights: the same as another learner switched at the same
        // point, and different from one that kept the old weights.
        let reference = try OnlineLearner(model: model, method: .rtrl)
        try reference.step(inputs: [0.3, -0.2], targets: [1])
        try reference.setParameters(changed)
        XCTAssertEqual(try learner.step(inputs: [0.1, 0.4], targets: [2]), try reference.step(inputs: [0.1, 0.4], targets: [2]))
        let unchanged = try OnlineLearner(model: model, method: .rtrl)
        try unchanged.step(inputs: [0.3, -0.2], targets: [1])
        XCTAssertNotEqual(try unchanged.step(inputs: [0.1, 0.4], targets: [2]), try learner.step(inputs: [0.1, 0.4], targets: [2]))
        let other = try Model<Double>(random: try ModelConfiguration(cell: .gru, inputSize: 2, hiddenSize: 5, outputSize: 3),
                                      density: 0.6, seed: 42)
        XCTAssertThrowsError(try learner.setParameters(other.parameters))
    }
}
