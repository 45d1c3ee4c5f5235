import RTRL
import XCTest

/// Model parallelism without processes: learners that each hold one shard of the influence matrix
/// (a range of units' blocks), combined by taking every unit's parameters from the shard that
/// holds them, must give the whole learner's gradient — bit for bit for SnAp-n, to rounding for
/// exact RTRL (see below) — and hold between them exactly its entries.
final class ShardTests: XCTestCase {
    /// Runs `learner` over two streams of `sequences` and returns its flat gradient.
    private func flatGradient(_ learner: OnlineLearner<Double>, _ sequences: [LabelledSequence]) throws -> [Double] {
        for t in 0..<sequences[0].count {
            try learner.step(inputs: sequences.flatMap { $0.inputs[t] }, targets: sequences.map { $0.targets[t] })
        }
        var flat = [Double](repeating: .nan, count: learner.flatParameterCount)
        try flat.withUnsafeMutableBufferPointer { try learner.gradient(into: $0) }
        return flat
    }

    func testShardsCombineToTheWholeGradientBitForBit() throws {
        for cell in CellKind.allCases {
            for (k, density, seed) in [(13, 0.2, 401 as UInt64), (20, 0.35, 402)] {
                let model = try Fixtures.model(cell, hidden: k, density: density, seed: seed)
                let sequences = try (0..<2).map { try Fixtures.sequence(for: model, length: 15, seed: seed + 10 * UInt64($0), scale: 1.5) }
                let structure = ModelStructure(model)
                for method in [GradientMethod.rtrl, .snap(1), .snap(2)] {
                    for skips in cell == .egru ? [false, true] : [true] {
                        let order: InfluencePattern.Order = method == .rtrl ? .exact : .snap(method == .snap(1) ? 1 : 2)
                        let whole = try OnlineLearner(model: model, method: method, streams: 2, skipsQuietUnits: skips)
                        let expected = try flatGradient(whole, sequences)
                        for count in [2, 3] {
                            let shards = try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout,
                                                                             order: order, count: count)
                            var combined: [Double]? = nil
                            var entries = 0
                            for units in shards {
                                let part = try OnlineLearner(model: model, method: method, streams: 2, skipsQuietUnits: skips, units: units)
                                XCTAssertEqual(part.influenceUnits, units)
                                entries += part.influencePattern!.statistics.nonzeros
                                let flat = try flatGradient(part, sequences)
                                if combined == nil { combined = flat }
                                for index in try part.flatIndices(ofUnits: units) { combined![index] = flat[index] }
                                // The readout's gradient is exact on every shard.
                                let readout = (flat.count - model.parameters.readoutWeight.values.count - model.outputSize - model.parameters.threshold.count)
                                XCTAssertTrue(flat[readout..<(flat.count - model.parameters.threshold.count)]
                                    .elementsEqual(expected[readout..<(expected.count - model.parameters.threshold.count)]), "readout")
                            }
                            let name = "\(cell) k=\(k) \(method) skips=\(skips) \(count) shards \(shards)"
                            if method == .rtrl {
                                // Exact RTRL keeps one block for all units (one reach set); shards cut it, so the
                                // gradient's partial sums over the block's rows are grouped differently.
                                XCTAssertRelativelyClose(combined!, expected, tolerance: 1e-13, name)
                            } else {
                                let differing = zip(combined!, expected).filter { $0 != $1 }.count
                                XCTAssertEqual(differing, 0, "\(name): \(differing) values differ, by up to \(relativeError(combined!, expected)) relative")
                            }
                            XCTAssertTrue(expected.contains { $0 != 0 }, name)
                            XCTAssertEqual(entries, whole.influencePattern!.statistics.nonzeros, name)
                        }
                    }
                }
            }
        }
    }

    func testBalancedShardsCoverEveryUnitOnceWithBalancedWork() throws {
        let model = try Fixtures.model(.gru, hidden: 40, density: 0.1, seed: 411)
        let structure = ModelStructure(model)
        for order in [InfluencePattern.Order.snap(2), .exact] {
            let whole = try structure.influencePattern(order)
            for count in [1, 2, 3, 7, 40] {
                let shards = try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: order, count: count)
                XCTAssertEqual(shards.count, count)
                XCTAssertEqual(shards.first?.lowerBound, 0)
                XCTAssertEqual(shards.last?.upperBound, 40)
                for r in 1..<count { XCTAssertEqual(shards[r].lowerBound, shards[r - 1].upperBound) }
                XCTAssertTrue(shards.allSatisfy { !$0.isEmpty })
                // Each shard's work is within one unit's work of an even share.
                let work = try shards.map { try structure.influencePattern(order, units: $0).statistics.multiplyAddsPerStep }
                XCTAssertEqual(work.reduce(0, +), whole.statistics.multiplyAddsPerStep)
                let largestUnit = try (0..<40).map { try structure.influencePattern(order, units: $0..<$0 + 1).statistics.multiplyAddsPerStep }.max()!
                let share = Double(whole.statistics.multiplyAddsPerStep) / Double(count)
                for w in work { XCTAssertLessThanOrEqual(abs(Double(w) - share), Double(largestUnit), "\(order) \(count): \(work)") }
            }
        }
        XCTAssertThrowsError(try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: .snap(2), count: 41))
        XCTAssertThrowsError(try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: .snap(2), count: 0))
    }

    /// A budget the whole influence matrix exceeds is refused with the bytes needed, and met by
    /// shards of it.
    func testABudgetTooSmallForTheWholeMatrixFitsItsShards() throws {
        let model = try Fixtures.model(.lstm, hidden: 24, density: 0.3, seed: 421)
        let whole = try OnlineLearner(model: model, method: .rtrl)
        let budget = whole.influenceBytes * 6 / 10
        XCTAssertThrowsError(try OnlineLearner(model: model, method: .rtrl, memoryBudget: budget)) { error in
            XCTAssertTrue("\(error)".contains("would need"), "\(error)")
        }
        let structure = ModelStructure(model)
        let shards = try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: .exact, count: 2)
        let parts = try shards.map { try OnlineLearner(model: model, method: .rtrl, memoryBudget: budget, units: $0) }
        let bytes = parts.map(\.influenceBytes)
        XCTAssertTrue(bytes.allSatisfy { $0 <= budget }, "\(bytes) within \(budget)")
    }

    func testShardsAreRefusedWhereTheyDoNotApply() throws {
        let model = try Fixtures.model(.gru, hidden: 8, density: 0.5, seed: 431)
        XCTAssertThrowsError(try OnlineLearner(model: model, method: .uoro, units: 0..<4))
        XCTAssertThrowsError(try OnlineLearner(model: model, method: .rtrl, layout: .stateMajor, units: 0..<4))
        XCTAssertThrowsError(try OnlineLearner(model: model, method: .rtrl, units: 4..<9))
        XCTAssertThrowsError(try OnlineLearner(model: model, method: .rtrl, units: 3..<3))
    }
}

extension ShardTests {
    /// A whole run's snapshot cut into shards and joined again is the same snapshot, for the
    /// unit-blocked storage and for the EGRU's scaled form.
    func testSnapshotsCutIntoShardsJoinToTheWhole() throws {
        let model = try Fixtures.model(.lstm, hidden: 11, density: 0.4, seed: 441)
        let sequences = try (0..<2).map { try Fixtures.sequence(for: model, length: 9, seed: 442 + UInt64($0)) }
        let whole = try OnlineLearner(model: model, method: .snap(2), streams: 2)
        for t in 0..<9 { try whole.step(inputs: sequences.flatMap { $0.inputs[t] }, targets: sequences.map { $0.targets[t] }) }
        let snapshot = try whole.snapshot()
        let structure = ModelStructure(model)
        let partitions = try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: .snap(2), count: 3)
            .map { TrainingPartition(units: $0) }
        let parts = try partitions.map { partition -> OnlineLearner<Double> in
            let part = try OnlineLearner(model: model, method: .snap(2), streams: 2, units: partition.units)
            try part.restore(snapshot, partition: partition)
            return part
        }
        let joined = try whole.joinedSnapshot(parts.map { try $0.snapshot() }, partitions: partitions)
        XCTAssertEqual(joined, snapshot)
        // Out of order, the parts do not tile the units.
        XCTAssertThrowsError(try whole.joinedSnapshot(parts.reversed().map { try $0.snapshot() }, partitions: partitions.reversed()))

        // The EGRU's scaled form (skipping quiet units) too: its checkpoint order is unit by unit,
        // whatever the grouping, and shards grouped their own way continue as the whole does.
        let egru = try Fixtures.model(.egru, hidden: 13, density: 0.4, seed: 443)
        let egruSequences = try (0..<2).map { try Fixtures.sequence(for: egru, length: 14, seed: 444 + UInt64($0), scale: 1.5) }
        func steps(_ learner: OnlineLearner<Double>, _ range: Range<Int>) throws {
            for t in range { try learner.step(inputs: egruSequences.flatMap { $0.inputs[t] }, targets: egruSequences.map { $0.targets[t] }) }
        }
        let scaled = try OnlineLearner(model: egru, method: .rtrl, streams: 2)
        try steps(scaled, 0..<8)
        let saved = try scaled.snapshot()
        let egruStructure = ModelStructure(egru)
        let egruPartitions = try InfluencePattern.balancedShards(graph: egruStructure.graph, layout: egruStructure.layout, order: .exact, count: 3)
            .map { TrainingPartition(units: $0) }
        let shards = try egruPartitions.map { partition -> OnlineLearner<Double> in
            let shard = try OnlineLearner(model: egru, method: .rtrl, streams: 2, units: partition.units)
            try shard.restore(saved, partition: partition)
            return shard
        }
        XCTAssertEqual(try scaled.joinedSnapshot(shards.map { try $0.snapshot() }, partitions: egruPartitions), saved)
        try steps(scaled, 8..<14)
        for shard in shards { try steps(shard, 8..<14) }
        let continued = try scaled.joinedSnapshot(shards.map { try $0.snapshot() }, partitions: egruPartitions)
        XCTAssertEqual(continued, try scaled.snapshot(), "the shards continue as the whole does")
        XCTAssertNotEqual(continued, saved)
    }
}

extension ShardTests {
    /// Streams split over learners (`firstStream`): each stream's gradient is the whole learner's
    /// stream's, bit for bit, random numbers of the stochastic methods included.
    func testStreamsSplitOverLearnersDrawTheWholeRunsNumbers() throws {
        let model = try Fixtures.model(.gru, hidden: 9, density: 0.4, seed: 451)
        let sequences = try (0..<3).map { try Fixtures.sequence(for: model, length: 12, seed: 452 + UInt64($0)) }
        for method in [GradientMethod.uoro, .noBackTrack, .kfRTRL, .snap(2)] {
            func run(_ learner: OnlineLearner<Double>, _ streams: Range<Int>) throws -> [[Double]] {
                for t in 0..<12 {
                    try learner.step(inputs: streams.flatMap { sequences[$0].inputs[t] }, targets: streams.map { sequences[$0].targets[t] })
                }
                return try (0..<streams.count).map { b in
                    var flat = [Double](repeating: 0, count: learner.flatParameterCount)
                    try flat.withUnsafeMutableBufferPointer { try learner.gradient(stream: b, into: $0) }
                    return flat
                }
            }
            let whole = try run(OnlineLearner(model: model, method: method, streams: 3, seed: 7), 0..<3)
            let first = try run(OnlineLearner(model: model, method: method, streams: 1, seed: 7), 0..<1)
            let rest = try run(OnlineLearner(model: model, method: method, streams: 2, seed: 7, firstStream: 1), 1..<3)
            XCTAssertEqual(first + rest, whole, "\(method)")
            // Without the offset, the second part would draw the first part's numbers.
            if method != .snap(2) {
                let unshifted = try run(OnlineLearner(model: model, method: method, streams: 2, seed: 7), 1..<3)
                XCTAssertNotEqual(unshifted, rest, "\(method)")
            }
        }
    }
}
