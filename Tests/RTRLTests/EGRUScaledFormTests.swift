@testable import RTRL
import SparseKernels
import XCTest

/// The EGRU's activity-sparse update holds the influence matrix in scaled form (a scale per
/// column, the gradient deferred as per-column weights). Whatever the learner is asked to do —
/// long runs, resets, gradient reads, checkpoints — it must give the numbers of the plain update.
final class EGRUScaledFormTests: XCTestCase {
    /// Runs a learner over sequences (resetting state between them) and returns its gradient.
    private func run<S: SparseScalar>(_ model: Model<S>, _ sequences: [LabelledSequence], skipping: Bool,
                                      method: GradientMethod = .rtrl,
                                      afterStep: (OnlineLearner<S>, Int) throws -> Void = { _, _ in }) throws -> [S] {
        let learner = try OnlineLearner(model: model, method: method, skipsQuietUnits: skipping)
        var step = 0
        for (index, sequence) in sequences.enumerated() {
            if index > 0 { learner.resetState() }
            for t in 0..<sequence.count {
                _ = try learner.step(inputs: sequence.inputs[t].map { S($0) }, targets: [sequence.targets[t]])
                try afterStep(learner, step)
                step += 1
            }
        }
        return learner.gradient().flattened
    }

    private func scales<S>(_ learner: OnlineLearner<S>) -> [S] {
        guard case .sparse(let storage) = learner.tracker, let influence = storage as? ScaledInfluence<S> else { return [] }
        return influence.streams[0].scale
    }

    /// Over hundreds of steps the product of D's diagonals leaves any floating-point range; the
    /// scales are renormalised (they stay in range) and the gradient stays the plain update's.
    func testLongRunsKeepScalesInRangeAndMatchThePlainUpdate() throws {
        let model = try Fixtures.model(.egru, hidden: 12, density: 0.3, seed: 41)
        let sequence = try Fixtures.sequence(for: model, length: 400, seed: 41, scale: 1.5)
        var smallest = Double.infinity, largest = 0.0, renormalised = 0
        let range = ScaledBlockProductPlan.scaleRange(Double.self)
        let skipping = try run(model, [sequence], skipping: true) { learner, _ in
            for s in self.scales(learner) {
                smallest = min(smallest, abs(s)); largest = max(largest, abs(s))
                if s == 1 { renormalised += 1 }
            }
        }
        let plain = try run(model, [sequence], skipping: false)
        XCTAssertRelativelyClose(skipping, plain, tolerance: 1e-10)
        XCTAssertGreaterThanOrEqual(smallest, range.lower)
        XCTAssertLessThanOrEqual(largest, range.upper)
        XCTAssertGreaterThan(smallest, 0)
        XCTAssertGreaterThan(renormalised, 12, "no scale was ever reset to 1: renormalisation is not exercised")

        // Float: a much narrower scale range, renormalised far more often.
        let single = model.converted(to: Float.self)
        let floatRange = ScaledBlockProductPlan.scaleRange(Float.self)
        var floatSmallest = Double.infinity
        let skippingFloat = try run(single, [sequence], skipping: true) { learner, _ in
            for s in self.scales(learner) { floatSmallest = min(floatSmallest, Double(abs(s))) }
        }
        let plainFloat = try run(single, [sequence], skipping: false)
        XCTAssertRelativelyClose(skippingFloat, plainFloat, tolerance: 1e-3)
        XCTAssertGreaterThanOrEqual(floatSmallest, floatRange.lower)
        XCTAssertRelativelyClose(skippingFloat.map { Double($0) }, plain, tolerance: 1e-3)
    }

    /// A new sequence zeroes the influence: the deferred gradient must be folded in first.
    func testResetBetweenSequencesKeepsTheDeferredGradient() throws {
        let model = try Fixtures.model(.egru, hidden: 10, density: 0.4, seed: 42)
        let sequences = try (0..<3).map { try Fixtures.sequence(for: model, length: 15 + 5 * $0, seed: 420 + UInt64($0), scale: 1.5) }
        for method in [GradientMethod.rtrl, .snap(2)] {
            let skipping = try run(model, sequences, skipping: true, method: method)
            let plain = try run(model, sequences, skipping: false, method: method)
            XCTAssertRelativelyClose(skipping, plain, tolerance: 1e-12, "\(method)")
        }
        // And the sum over sequences is BPTT's gradient of each sequence, summed.
        var bptt = [Double](repeating: 0, count: model.parameters.count)
        for s in sequences {
            let g = try sequenceGradient(model, s, .bptt).gradient
            for t in bptt.indices { bptt[t] += g[t] }
        }
        XCTAssertRelativelyClose(try run(model, sequences, skipping: true), bptt, tolerance: 1e-10)
    }

    /// Reading the gradient does not disturb the run (bit for bit); resetting it mid-run drops
    /// the deferred part as well.
    func testReadingAndResettingTheGradient() throws {
        let model = try Fixtures.model(.egru, hidden: 9, density: 0.5, seed: 43)
        let sequence = try Fixtures.sequence(for: model, length: 40, seed: 43, scale: 1.5)
        let quiet = try run(model, [sequence], skipping: true)
        var reads: [[Double]] = []
        let reading = try run(model, [sequence], skipping: true) { learner, _ in reads.append(learner.gradient().flattened) }
        XCTAssertEqual(quiet, reading)
        // Every intermediate read equals the plain update's gradient at that step.
        var plainReads: [[Double]] = []
        _ = try run(model, [sequence], skipping: false) { learner, _ in plainReads.append(learner.gradient().flattened) }
        for (t, (a, b)) in zip(reads, plainReads).enumerated() { XCTAssertRelativelyClose(a, b, tolerance: 1e-12, "step \(t)") }

        let reset: (OnlineLearner<Double>, Int) throws -> Void = { learner, step in if step == 24 { learner.resetGradient() } }
        let skippingReset = try run(model, [sequence], skipping: true, afterStep: reset)
        let plainReset = try run(model, [sequence], skipping: false, afterStep: reset)
        XCTAssertRelativelyClose(skippingReset, plainReset, tolerance: 1e-12)
        XCTAssertGreaterThan(relativeError(skippingReset, quiet), 1e-3, "resetting the gradient changed nothing")
    }

    /// A snapshot of the scaled form resumes bit for bit (through JSON, as checkpoints store it),
    /// and a learner storing the influence otherwise refuses it.
    func testSnapshotsOfTheScaledFormResume() throws {
        let model = try Fixtures.model(.egru, hidden: 11, density: 0.35, seed: 44)
        let sequence = try Fixtures.sequence(for: model, length: 60, seed: 44, scale: 1.5)
        let first = try OnlineLearner(model: model, method: .rtrl)
        for t in 0..<35 { _ = try first.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
        let data = try JSONEncoder().encode(try first.snapshot())
        let snapshot = try JSONDecoder().decode(LearnerSnapshot<Double>.self, from: data)
        XCTAssertNotNil(snapshot.streams[0].influenceScale)
        XCTAssertNotEqual(snapshot.streams[0].influenceScale?.values.allSatisfy { $0 == 1 }, true,
                          "the scales are all 1: the snapshot does not exercise the scaled form")

        let resumed = try OnlineLearner(model: model, method: .rtrl)
        try resumed.restore(snapshot)
        for t in 35..<60 {
            for learner in [first, resumed] { _ = try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
        }
        XCTAssertEqual(first.gradient().flattened, resumed.gradient().flattened)
        XCTAssertRelativelyClose(first.gradient().flattened, try sequenceGradient(model, sequence, .bptt).gradient, tolerance: 1e-10)

        // A snapshot of one storage order cannot be restored into another.
        let plain = try OnlineLearner(model: model, method: .rtrl, skipsQuietUnits: false)
        XCTAssertThrowsError(try plain.restore(snapshot))
        let generic = try OnlineLearner(model: model, method: .rtrl, layout: .stateMajor)
        XCTAssertThrowsError(try generic.restore(snapshot))
        XCTAssertThrowsError(try resumed.restore(try plain.snapshot()))
        // A checkpoint from before storage orders were named cannot be the scaled form's.
        var unnamed = snapshot
        unnamed.layout = nil
        XCTAssertThrowsError(try resumed.restore(unnamed))
    }

    /// Grouped columns: with many small groups (forced here) and with one group per reach set,
    /// 1 and 2 threads and three streams give the plain update's gradient, and threads give the
    /// same bits.
    func testGroupingsAndThreads() throws {
        let saved = ScaledFormTuning.columnBytes.load(ordering: .relaxed)
        defer { ScaledFormTuning.columnBytes.store(saved, ordering: .relaxed) }
        let model = try Fixtures.model(.egru, hidden: 24, density: 0.2, seed: 45)
        let sequences = try (0..<3).map { try Fixtures.sequence(for: model, length: 30, seed: 450 + UInt64($0), scale: 1.5) }
        for bytes in [1, 300, 8192] {
            ScaledFormTuning.columnBytes.store(bytes, ordering: .relaxed)
            for method in [GradientMethod.rtrl, .snap(2)] {
                let plain = try sequenceGradient(model, sequences[0], method, skipsQuietUnits: false)
                let one = try sequenceGradient(model, sequences[0], method, threads: 1)
                let two = try sequenceGradient(model, sequences[0], method, threads: 2)
                XCTAssertEqual(one.gradient, two.gradient, "\(method), \(bytes)-byte columns")
                XCTAssertRelativelyClose(one.gradient, plain.gradient, tolerance: 1e-12, "\(method), \(bytes)-byte columns")
                // Three streams at once.
                let learner = try OnlineLearner(model: model, method: method, streams: 3, threads: 2)
                for t in 0..<30 {
                    _ = try learner.step(inputs: sequences.flatMap { $0.inputs[t] }, targets: sequences.map { $0.targets[t] })
                }
                var sum = [Double](repeating: 0, count: plain.gradient.count)
                for s in sequences {
                    let g = try sequenceGradient(model, s, method, skipsQuietUnits: false).gradient
                    for q in sum.indices { sum[q] += g[q] }
                }
                XCTAssertRelativelyClose(learner.gradient().flattened, sum, tolerance: 1e-12, "\(method), 3 streams, \(bytes)-byte columns")
                if bytes == 1, case .sparse(let storage) = learner.tracker, let influence = storage as? ScaledInfluence<Double> {
                    XCTAssertEqual(influence.groups.count, 24, "one unit per group")
                }
                if bytes == 8192, method == .rtrl, case .sparse(let storage) = learner.tracker,
                   let influence = storage as? ScaledInfluence<Double> {
                    XCTAssertLessThan(influence.groups.count, 24, "units sharing a reach set are grouped")
                }
            }
        }
    }

    /// The thresholds' immediate terms in scaled form keep the deferred gradient g + Ŷπ unchanged
    /// and add the plain terms to J = Ŷ·diag(σ), even where a target column still has a pending
    /// weight (which the learner's own order never leaves, so it is forced here).
    func testThresholdTermsKeepTheDeferredGradient() throws {
        let model = try Fixtures.model(.egru, hidden: 10, density: 0.4, seed: 46)
        let sequence = try Fixtures.sequence(for: model, length: 12, seed: 46, scale: 1.5)
        let learner = try OnlineLearner(model: model, method: .rtrl)
        for t in 0..<12 { _ = try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
        guard case .sparse(let storage) = learner.tracker, let influence = storage as? ScaledInfluence<Double> else {
            return XCTFail("no scaled form")
        }
        let plan = influence.plan, thresholds = influence.thresholds
        let record = learner.lastRecord(stream: 0)
        XCTAssertTrue(record.thresholdPreviousOutput.contains { $0 != 0 }, "no threshold terms to add")
        let stream = influence.streams[0]
        var random = SeededGenerator(seed: 46)
        stream.pending = stream.pending.map { _ in Double.random(in: -1...1, using: &random) }
        var g = (0..<plan.rowCount).map { _ in Double.random(in: -1...1, using: &random) }
        func deferred() throws -> [Double] {
            var total = g
            try stream.pending.withUnsafeBufferPointer { w in
                try total.withUnsafeMutableBufferPointer { try plan.addPending(values: UnsafeBufferPointer(stream.values), pendingWeights: w, to: $0) }
            }
            return total
        }
        func unscaled() -> [Double] {
            var j = Array(stream.values)
            for c in 0..<influence.columnState.count {
                let start = Int(influence.columnValueStart[c])
                for p in start..<(start + Int(influence.columnLength[c])) { j[p] *= stream.scale[c] }
            }
            return j
        }
        let before = try deferred(), jBefore = unscaled()
        // The plain terms, added to the unscaled values.
        var expected = jBefore
        expected.withUnsafeMutableBufferPointer { thresholds.add(weightHH: model.parameters.weightHH, record: record, into: $0) }
        XCTAssertGreaterThan(zip(expected, jBefore).filter { $0 != $1 }.count, 0)
        stream.scale.withUnsafeBufferPointer { scales in
            stream.pending.withUnsafeBufferPointer { pending in
                g.withUnsafeMutableBufferPointer { g in
                    thresholds.addScaled(weightHH: model.parameters.weightHH, record: record, into: stream.values, scales: scales,
                                         pending: pending, columnStart: influence.columnValueStart,
                                         columnFirstRow: influence.columnFirstRow, gradient: g)
                }
            }
        }
        XCTAssertRelativelyClose(try deferred(), before, tolerance: 1e-13)
        XCTAssertRelativelyClose(unscaled(), expected, tolerance: 1e-13)
    }

    /// `writtenInfluenceFraction`: 1 for the plain update; in scaled form the share of states with
    /// an open input (the model is one group, so a state has one column), counted here from the
    /// weight pattern and the step's open units.
    func testWrittenInfluenceFraction() throws {
        // Two units in three can never fire (thresholds far above v): they stay quiet.
        let base = try Fixtures.model(.egru, hidden: 12, density: 0.3, seed: 47)
        let model = try Fixtures.replacing(base) { p in
            p.threshold = p.threshold.enumerated().map { $0.offset % 3 == 0 ? $0.element : 5.0 }
        }
        let sequence = try Fixtures.sequence(for: model, length: 8, seed: 47, scale: 1.5)
        let skipping = try OnlineLearner(model: model, method: .rtrl)
        let plain = try OnlineLearner(model: model, method: .rtrl, skipsQuietUnits: false)
        let w = model.parameters.weightHH.pattern, k = 12
        var between = 0
        for t in 0..<8 {
            for learner in [skipping, plain] { _ = try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
            XCTAssertEqual(plain.writtenInfluenceFraction(), 1)
            // The first step has no previous state: D is zero, every scale becomes zero and its
            // column is rewritten (zeroed).
            if t == 0 { XCTAssertEqual(skipping.writtenInfluenceFraction(), 1); continue }
            let open = skipping.lastRecord(stream: 0).columnScale.map { $0 != 0 }
            var written = Set<Int>()
            for j in 0..<k where open[j] {
                for r in w.rows(inColumn: j) where Int(r) % k != j { written.insert(Int(r) % k) }
            }
            XCTAssertEqual(skipping.writtenInfluenceFraction(), Double(written.count) / Double(k), accuracy: 1e-12, "step \(t)")
            if written.count > 0 && written.count < k { between += 1 }
        }
        XCTAssertGreaterThan(between, 0, "no step wrote only some of the columns")
    }
}

