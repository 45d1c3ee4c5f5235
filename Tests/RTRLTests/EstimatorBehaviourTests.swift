import RTRL
import XCTest

/// OK's exactness when the influence has Kronecker rank ≤ r (on every cell: a wrong Kronecker form
/// of a gated cell's immediate Jacobian would break it), and the estimators' bookkeeping: streams,
/// threads, resets, budgets, checkpoints, Float.
final class EstimatorBehaviourTests: XCTestCase {
    /// From the zero state J_t has Kronecker rank ≤ t, so for T ≤ r steps ok-r keeps every term
    /// exactly: the exact gradient (1e-9) with no variance across seeds.
    func testOKIsExactWhileTheRankSuffices() throws {
        for (density, seed) in [(1.0, 31 as UInt64), (0.5, 32)] {
            let model = try Fixtures.model(.rnn, inputs: 3, hidden: 5, outputs: 4, density: density, seed: seed)
            try checkOKExact(model, ranks: [(1, [1]), (2, [1, 2]), (3, [2, 3]), (5, [5]), (8, [4, 8])], seed: seed)
        }
    }

    /// The same on the gated cells, whose immediate Jacobian is one Kronecker product ĥᵀ ⊗ Δ with an
    /// S × 4k Δ (a separate column for the GRU's recurrent candidate coefficient; the LSTM's two
    /// state components): exact while T ≤ r, so every column, component and coefficient family is
    /// right. The EGRU's thresholds are carried exactly.
    func testOKIsExactWhileTheRankSufficesOnGatedCells() throws {
        for cell in [CellKind.gru, .lstm, .egru] {
            for (density, seed) in [(1.0, 33 as UInt64), (0.4, 34)] {
                let model = try Fixtures.model(cell, inputs: 3, hidden: 5, outputs: 4, density: density, seed: seed)
                try checkOKExact(model, ranks: [(1, [1]), (2, [2]), (4, [3, 4])], seed: seed)
            }
        }
    }

    private func checkOKExact(_ model: Model<Double>, ranks: [(Int, [Int])], seed: UInt64, file: StaticString = #filePath,
                              line: UInt = #line) throws {
        for (r, lengths) in ranks {
            for T in lengths {
                let sequence = try Fixtures.sequence(for: model, length: T, seed: seed + UInt64(T), scale: 1.5, unlabelled: 0)
                let exact = try sequenceGradient(model, sequence, .rtrl).gradient
                var first: [Double]?
                for s in 0..<4 as Range<UInt64> {
                    let g = try SequenceGradient(model: model, sequence: sequence, method: .ok(r), seed: s).gradient.flattened
                    XCTAssertRelativelyClose(g, exact, tolerance: 1e-9, "\(model.cell) ok-\(r), T = \(T), seed \(s)",
                                             file: file, line: line)
                    if let first {
                        XCTAssertEqual(g, first, "\(model.cell) ok-\(r), T = \(T): the estimate varies with the seed", file: file, line: line)
                    }
                    first = g
                }
            }
        }
        // Beyond the rank the estimate is random (the test above could fail).
        let sequence = try Fixtures.sequence(for: model, length: 6, seed: seed, scale: 1.5, unlabelled: 0)
        let a = try SequenceGradient(model: model, sequence: sequence, method: .ok(2), seed: 1).gradient.flattened
        let b = try SequenceGradient(model: model, sequence: sequence, method: .ok(2), seed: 2).gradient.flattened
        XCTAssertNotEqual(a, b, "\(model.cell)", file: file, line: line)
    }

    /// resetState starts every estimator afresh: after a long random sequence, a reset and T ≤ r
    /// steps, ok-r is exact again; and KF-RTRL's first step (rank one) is exact too.
    func testResetStartsAfresh() throws {
        let model = try Fixtures.model(.rnn, inputs: 3, hidden: 5, outputs: 4, density: 0.6, seed: 41)
        let long = try Fixtures.sequence(for: model, length: 15, seed: 42, scale: 1.5)
        let short = try Fixtures.sequence(for: model, length: 3, seed: 43, scale: 1.5, unlabelled: 0)
        let exact = try sequenceGradient(model, short, .rtrl).gradient
        for method in [GradientMethod.ok(3), .ok(4)] {
            let learner = try OnlineLearner(model: model, method: method, seed: 7)
            for t in 0..<long.count { try learner.step(inputs: long.inputs[t], targets: [long.targets[t]]) }
            learner.resetState()
            learner.resetGradient()
            for t in 0..<short.count { try learner.step(inputs: short.inputs[t], targets: [short.targets[t]]) }
            XCTAssertRelativelyClose(learner.gradient().flattened, exact, tolerance: 1e-9, "\(method) after a reset")
        }
        let one = try LabelledSequence(inputs: [short.inputs[0]], targets: [short.targets[0]], inputSize: 3, outputSize: 4)
        for method in [GradientMethod.kfRTRL, .ok(1)] {
            let learner = try OnlineLearner(model: model, method: method, seed: 9)
            for t in 0..<long.count { try learner.step(inputs: long.inputs[t], targets: [long.targets[t]]) }
            learner.resetState()
            learner.resetGradient()
            try learner.step(inputs: one.inputs[0], targets: [one.targets[0]])
            // One step from zero: J = ĥ ⊗ Δ exactly, up to KF-RTRL's random sign pair (c2² = 1).
            XCTAssertRelativelyClose(learner.gradient().flattened, try sequenceGradient(model, one, .rtrl).gradient,
                                     tolerance: 1e-12, "\(method), one step after a reset")
        }
    }

    /// Every cell's first step from the zero state is one Kronecker term, J_1 = ĥ ⊗ Δ (and the EGRU's
    /// exact threshold columns), so KF-RTRL (c2² = 1) and OK-1 give the exact gradient of a one-step
    /// sequence, and a longer one gives a finite estimate that depends on the seed.
    func testKroneckerMethodsTakeEveryCell() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, inputs: 3, hidden: 4, outputs: 3, density: 0.5, seed: 51)
            let one = try Fixtures.sequence(for: model, length: 1, seed: 52, scale: 1.5, unlabelled: 0)
            let exact = try sequenceGradient(model, one, .rtrl).gradient
            let longer = try Fixtures.sequence(for: model, length: 7, seed: 53, scale: 1.5)
            for method in [GradientMethod.kfRTRL, .ok(1), .ok(3)] {
                let g = try SequenceGradient(model: model, sequence: one, method: method, seed: 1).gradient.flattened
                XCTAssertRelativelyClose(g, exact, tolerance: 1e-12, "\(cell) \(method), one step")
                let a = try SequenceGradient(model: model, sequence: longer, method: method, seed: 1).gradient
                let b = try SequenceGradient(model: model, sequence: longer, method: method, seed: 2).gradient
                XCTAssertTrue(a.isFinite, "\(cell) \(method)")
                XCTAssertNotEqual(a.flattened, b.flattened, "\(cell) \(method): the seed is ignored")
            }
        }
    }

    /// Streams draw from their own generators: a batch gives the same bits on 1 or 2 threads, is
    /// reproducible from the seed, and a different seed gives a different estimate.
    func testStreamsAreDeterministicAcrossThreads() throws {
        let rnn = try Fixtures.model(.rnn, inputs: 3, hidden: 6, outputs: 4, density: 0.5, seed: 61)
        let lstm = try Fixtures.model(.lstm, inputs: 3, hidden: 5, outputs: 4, density: 0.5, seed: 62)
        let egru = try Fixtures.model(.egru, inputs: 3, hidden: 5, outputs: 4, density: 0.5, seed: 64)
        let cases: [(Model<Double>, GradientMethod)] = [(rnn, .uoro), (rnn, .noBackTrack), (rnn, .kfRTRL), (rnn, .ok(3)),
                                                       (lstm, .uoro), (lstm, .noBackTrack), (lstm, .kfRTRL), (lstm, .ok(3)),
                                                       (egru, .kfRTRL), (egru, .ok(2))]
        var rng = SeededGenerator(seed: 63)
        let steps = (0..<12).map { _ in ((0..<9).map { _ in Double.random(in: -1.5...1.5, using: &rng) }, (0..<3).map { _ in Int.random(in: 0..<4, using: &rng) }) }
        for (model, method) in cases {
            func run(threads: Int, seed: UInt64) throws -> [Double] {
                let learner = try OnlineLearner(model: model, method: method, streams: 3, threads: threads, seed: seed)
                for (t, step) in steps.enumerated() {
                    try learner.step(inputs: step.0, targets: step.1)
                    if t == 5 { learner.resetState(stream: 1) }
                }
                XCTAssertGreaterThan(learner.influenceBytes, 0)
                return learner.gradient().flattened
            }
            let one = try run(threads: 1, seed: 5)
            XCTAssertEqual(try run(threads: 2, seed: 5), one, "\(model.cell) \(method): threads changed the bits")
            XCTAssertEqual(try run(threads: 1, seed: 5), one, "\(model.cell) \(method): not reproducible")
            XCTAssertNotEqual(try run(threads: 1, seed: 6), one, "\(model.cell) \(method): the seed is ignored")
        }
    }

    /// The estimators' memory is fixed when the learner is built (no growth with T) and checked
    /// against the budget.
    func testMemoryIsFixedAndBudgeted() throws {
        let model = try Fixtures.model(.rnn, inputs: 3, hidden: 6, outputs: 4, density: 0.5, seed: 71)
        let gru = try Fixtures.model(.gru, inputs: 3, hidden: 6, outputs: 4, density: 0.5, seed: 72)
        let sequence = try Fixtures.sequence(for: model, length: 30, seed: 71)
        for (model, method) in [(model, GradientMethod.uoro), (model, .noBackTrack), (model, .kfRTRL), (model, .ok(4)),
                                (gru, .kfRTRL), (gru, .ok(4))] {
            let learner = try OnlineLearner(model: model, method: method, streams: 2)
            let before = learner.influenceBytes
            XCTAssertGreaterThan(before, 0)
            for t in 0..<sequence.count { try learner.step(inputs: sequence.inputs[t] + sequence.inputs[t], targets: [sequence.targets[t], -1]) }
            XCTAssertEqual(learner.influenceBytes, before, "\(model.cell) \(method)")
            XCTAssertThrowsError(try OnlineLearner(model: model, method: method, streams: 2, memoryBudget: before / 4)) { error in
                guard case RTRLError.tooLarge(_, let needed, let budget) = error else { return XCTFail("\(method): \(error)") }
                XCTAssertGreaterThan(needed, budget)
            }
        }
        // A rank too large to allocate (or to count in bytes) is refused, not a crash.
        for rank in [1 << 40, Int.max - 1, Int.max] {
            XCTAssertThrowsError(try OnlineLearner(model: model, method: .ok(rank))) { error in
                guard case RTRLError.tooLarge(_, let needed, let budget) = error else { return XCTFail("ok-\(rank): \(error)") }
                XCTAssertGreaterThan(needed, budget)
            }
        }
        // OK's memory grows with r (r k² + …), KF-RTRL's is one term.
        let kf = try OnlineLearner(model: model, method: .kfRTRL).influenceBytes
        let ok8 = try OnlineLearner(model: model, method: .ok(8)).influenceBytes
        XCTAssertGreaterThan(ok8, 4 * kf)
        // A gru's Δ has 4k columns to the rnn's k: its term holds 3k² more values (k = 6).
        let gruKF = try OnlineLearner(model: gru, method: .kfRTRL).influenceBytes
        XCTAssertGreaterThanOrEqual(gruKF - kf, 3 * 36 * MemoryLayout<Double>.stride)
    }

    /// Float32 runs the same estimators: OK is exact within its rank to single precision, and
    /// every method gives a finite gradient.
    func testFloat32() throws {
        let model = try Fixtures.model(.rnn, inputs: 3, hidden: 5, outputs: 4, density: 0.6, seed: 81)
        let sequence = try Fixtures.sequence(for: model, length: 3, seed: 81, scale: 1.5, unlabelled: 0)
        let exact = try sequenceGradient(model, sequence, .rtrl).gradient
        let single = model.converted(to: Float.self)
        let ok = try SequenceGradient(model: single, sequence: sequence, method: .ok(3), seed: 3).gradient.flattened
        XCTAssertRelativelyClose(ok.map { Double($0) }, exact, tolerance: 1e-5, "ok-3 in float32")
        let longer = try Fixtures.sequence(for: model, length: 12, seed: 82, scale: 1.5)
        for cell in CellKind.allCases {
            let m = try Fixtures.model(cell, inputs: 3, hidden: 5, outputs: 4, density: 0.6, seed: 83).converted(to: Float.self)
            let methods: [GradientMethod] = [.uoro, .noBackTrack, .kfRTRL, .ok(2)]
            for method in methods {
                XCTAssertTrue(try SequenceGradient(model: m, sequence: longer, method: method, seed: 4).gradient.isFinite, "\(cell) \(method)")
            }
        }
    }
}
