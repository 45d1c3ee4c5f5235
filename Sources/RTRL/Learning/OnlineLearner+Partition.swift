/// Snapshots of a run split over processes (``TrainingPartition``): joined into the snapshot a
/// learner of the whole run takes, so that a checkpoint does not depend on how the run was
/// split, and cut back into any process's part when it resumes, with any number of processes.
extension OnlineLearner {
    /// The whole run's snapshot from the snapshots of its parts, given in process order with
    /// their partitions: by streams, the parts' streams one after another; by units, every
    /// stream's state and readout gradient from the first part, and from each part its units'
    /// influence values (the "blocked" order is unit by unit, so consecutive ranges of units
    /// concatenate; so do the EGRU's scaled form's "blocked-scaled-units" values, scales and
    /// deferred weights) and its units' core gradient. Throws for parts that do not tile the run,
    /// and for influence orders that do not concatenate.
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
        guard let layout = whole.layout, Self.unitOrders.contains(layout), parts.allSatisfy({ $0.layout == layout }) else {
            throw RTRLError.invalidOption("the influence matrix stored \(whole.layout ?? "unnamed") cannot be joined from shards (its order is not unit by unit)")
        }
        guard parts.allSatisfy({ $0.streams.count == whole.streams.count }) else {
            throw RTRLError.invalidInput("the shards' snapshots hold different numbers of streams")
        }
        let unitStart = structure.layout.unitStart
        let scaled = whole.streams.first?.influenceScale != nil
        for b in whole.streams.indices {
            var influence: [Scalar] = [], scales: [Scalar] = [], pending: [Scalar] = []
            var core = whole.streams[b].coreGradient.values
            for (r, part) in parts.enumerated() {
                influence += part.streams[b].influence?.values ?? []
                scales += part.streams[b].influenceScale?.values ?? []
                pending += part.streams[b].influencePending?.values ?? []
                let own = Int(unitStart[ranges[r].lowerBound])..<Int(unitStart[ranges[r].upperBound])
                guard part.streams[b].coreGradient.values.count == core.count else {
                    throw RTRLError.invalidInput("shard \(r)'s gradient has \(part.streams[b].coreGradient.values.count) values, not \(core.count)")
                }
                for t in own { core[t] = part.streams[b].coreGradient.values[t] }
            }
            whole.streams[b].influence = Packed(influence)
            if scaled {
                whole.streams[b].influenceScale = Packed(scales)
                whole.streams[b].influencePending = Packed(pending)
            }
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
            guard let layout = whole.layout, Self.unitOrders.contains(layout) else {
                throw RTRLError.invalidOption("the checkpoint's influence matrix is stored \(whole.layout ?? "unnamed"), which cannot be cut into shards (its order is not unit by unit)")
            }
            // This shard's values (and the scaled form's columns) start after those of the units
            // before it, in the whole order.
            let earlier = units.lowerBound == 0 ? nil
                : try InfluencePattern.statistics(graph: structure.graph, layout: structure.layout, order: pattern.order,
                                                  units: 0..<units.lowerBound)
            let before = earlier?.nonzeros ?? 0, count = pattern.statistics.nonzeros
            let components = structure.graph.cell.stateComponents
            let columnsBefore = (earlier?.reachPairs ?? 0) * components, columns = pattern.statistics.reachPairs * components
            func cut(_ array: Packed<Scalar>?, _ start: Int, _ count: Int, _ b: Int) throws -> Packed<Scalar>? {
                guard let values = array?.values else { return nil }
                guard values.count >= start + count else {
                    throw RTRLError.invalidInput("the checkpoint's influence matrix of stream \(b) does not hold units \(units)")
                }
                return Packed(Array(values[start..<(start + count)]))
            }
            for b in part.streams.indices {
                guard part.streams[b].influence != nil else {
                    throw RTRLError.invalidInput("the checkpoint has no influence matrix")
                }
                part.streams[b].influence = try cut(part.streams[b].influence, before, count, b)
                part.streams[b].influenceScale = try cut(part.streams[b].influenceScale, columnsBefore, columns, b)
                part.streams[b].influencePending = try cut(part.streams[b].influencePending, columnsBefore, columns, b)
            }
        }
        try restore(part)
    }

    /// The influence orders that hold J unit by unit, so that shards concatenate.
    private static var unitOrders: Set<String> { [InfluenceLayout.unitBlocked.rawValue, ScaledInfluence<Scalar>.unitOrderName] }

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
