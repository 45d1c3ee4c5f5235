/// Snapshots of a run split over processes (``TrainingPartition``): joined into the snapshot a
/// learner of the whole run takes, so that a checkpoint does not depend on how the run was
/// split, and cut back into any process's part when it resumes, with any number of processes.
extension OnlineLearner {
    /// The whole run's snapshot from the snapshots of its parts, given in process order with
    /// their partitions: by streams, the parts' streams one after another; by units, every
    /// stream's state and readout gradient from the first part, and from each part its units'
    /// influence values (the "blocked" order is unit by unit, so consecutive ranges of units
    /// concatenate) and its units' core gradient. Throws for parts that do not tile the run,
    /// and for the EGRU's scaled form (skipping quiet units), whose storage order depends on
    /// the split.
    public func joinedSnapshot(_ parts: [LearnerSnapshot<Scalar>], partitions: [TrainingPartition]) throws -> LearnerSnapshot<Scalar> {
        guard !parts.isEmpty, parts.count == partitions.count else {
            throw RTRLError.invalidInput("a split run's snapshot needs one part per process (\(parts.count) parts, \(partitions.count) processes)")
        }
        var whole = parts[0]
        if partitions.allSatisfy({ $0.streams != nil }) {
            try checkTiling(partitions.map { $0.streams! }, "streams")
            whole.streams = parts.flatMap(\.streams)
            return whole
        }
        guard partitions.allSatisfy({ $0.units != nil }) else {
            guard partitions.count == 1 else { throw RTRLError.invalidInput("the processes of a split run are split in different ways") }
            return whole
        }
        let ranges = partitions.map { $0.units! }
        try checkTiling(ranges, "units", total: model.hiddenSize)
        guard whole.layout == InfluenceLayout.unitBlocked.rawValue, parts.allSatisfy({ $0.layout == whole.layout }) else {
            throw RTRLError.invalidOption("the influence matrix stored \(whole.layout ?? "unnamed") cannot be joined from shards (the EGRU's scaled form, used when quiet units are skipped, depends on the split)")
        }
        guard parts.allSatisfy({ $0.streams.count == whole.streams.count }) else {
            throw RTRLError.invalidInput("the shards' snapshots hold different numbers of streams")
        }
        let unitStart = structure.layout.unitStart
        for b in whole.streams.indices {
            var influence: [Scalar] = []
            var core = whole.streams[b].coreGradient.values
            for (r, part) in parts.enumerated() {
                influence += part.streams[b].influence?.values ?? []
                let own = Int(unitStart[ranges[r].lowerBound])..<Int(unitStart[ranges[r].upperBound])
                guard part.streams[b].coreGradient.values.count == core.count else {
                    throw RTRLError.invalidInput("shard \(r)'s gradient has \(part.streams[b].coreGradient.values.count) values, not \(core.count)")
                }
                for t in own { core[t] = part.streams[b].coreGradient.values[t] }
            }
            whole.streams[b].influence = Packed(influence)
            whole.streams[b].coreGradient = Packed(core)
        }
        return whole
    }

    /// Restores this learner, one process's part of a split run, from the whole run's snapshot
    /// (a checkpoint written by any number of processes): its streams, or its units' part of
    /// every stream's influence matrix.
    public func restore(_ whole: LearnerSnapshot<Scalar>, partition: TrainingPartition) throws {
        var part = whole
        if let streams = partition.streams {
            guard streams.lowerBound >= 0, streams.upperBound <= whole.streams.count else {
                throw RTRLError.invalidInput("the checkpoint has \(whole.streams.count) stream(s), not the streams \(streams) of this process")
            }
            part.streams = Array(whole.streams[streams])
        }
        if let units = partition.units, let pattern = influencePattern, pattern.isShard {
            guard whole.layout == InfluenceLayout.unitBlocked.rawValue else {
                throw RTRLError.invalidOption("the checkpoint's influence matrix is stored \(whole.layout ?? "unnamed"), which cannot be cut into shards (the EGRU's scaled form, used when quiet units are skipped, depends on the split)")
            }
            // This shard's values start after those of the units before it, in the whole order.
            let before = units.lowerBound == 0 ? 0
                : try InfluencePattern.statistics(graph: structure.graph, layout: structure.layout, order: pattern.order,
                                                  units: 0..<units.lowerBound).nonzeros
            let count = pattern.statistics.nonzeros
            for b in part.streams.indices {
                guard let values = part.streams[b].influence?.values, values.count >= before + count else {
                    throw RTRLError.invalidInput("the checkpoint's influence matrix of stream \(b) does not hold units \(units)")
                }
                part.streams[b].influence = Packed(Array(values[before..<(before + count)]))
            }
        }
        try restore(part)
    }

    private func checkTiling(_ ranges: [Range<Int>], _ what: String, total: Int? = nil) throws {
        var next = 0
        for range in ranges {
            guard range.lowerBound == next, !range.isEmpty else {
                throw RTRLError.invalidInput("the processes' \(what) \(ranges) are not consecutive ranges from 0")
            }
            next = range.upperBound
        }
        if let total, next != total { throw RTRLError.invalidInput("the processes' \(what) \(ranges) do not cover 0..<\(total)") }
    }
}
