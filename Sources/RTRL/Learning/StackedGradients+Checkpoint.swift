/// A stacked model's evolving state for checkpoints, in the single-layer snapshot's fields: the
/// layers' states, gradients and influence blocks one after another (layer 0 first), and the
/// history's records step after step, layer after layer within a step.
extension StackedGradients {
    func save(stream b: Int) -> LearnerSnapshot<Scalar>.Stream {
        let s = streams[b]
        var saved = LearnerSnapshot<Scalar>.Stream(
            state: Packed(s.states.flatMap { $0 }), isInitial: s.isInitial, coreGradient: Packed(s.coreGradients.flatMap { $0 }),
            readoutWeightGradient: Packed(s.readoutWeightGradient), readoutBiasGradient: Packed(s.readoutBiasGradient))
        if let uoro {
            let u = uoro.streams[b]
            saved.estimator = [Packed(u.state), Packed(u.parameters), Packed(packGenerator(u.generator))]
        } else if let kronecker {
            saved.estimator = kronecker.streams[b].layers.flatMap { block in
                [Packed(block.left), Packed(block.right), Packed(packGenerator(block.generator))] + (block.thresholds.isEmpty ? [] : [Packed(block.thresholds)])
            }
        } else if let sparse {
            saved.influence = Packed(sparse.streams[b].valueArray)
        } else if isDense {
            saved.influence = Packed(ownInfluence.flatMap { $0.streams[b].current } + s.cross.flatMap { $0 })
        } else {
            saved.historyRecords = s.history.flatMap { $0 }
            saved.historyWeights = s.historyWeights.map { Packed($0) }
        }
        return saved
    }

    func restore(stream b: Int, _ saved: LearnerSnapshot<Scalar>.Stream) throws {
        let s = streams[b]
        func split(_ values: [Scalar], _ sizes: [Int], _ what: String) throws -> [[Scalar]] {
            guard values.count == sizes.reduce(0, +) else {
                throw RTRLError.invalidInput("the checkpoint's \(what) has \(values.count) values, not \(sizes.reduce(0, +))")
            }
            var start = 0
            return sizes.map { n in defer { start += n }; return Array(values[start..<start + n]) }
        }
        let states = try split(saved.state.values, s.states.map(\.count), "state")
        let gradients = try split(saved.coreGradient.values, s.coreGradients.map(\.count), "gradient")
        let readout = try split(saved.readoutWeightGradient.values, [s.readoutWeightGradient.count], "readout gradient")
        let bias = try split(saved.readoutBiasGradient.values, [s.readoutBiasGradient.count], "readout bias gradient")
        var influence: [[Scalar]] = []
        if let sparse {
            guard let values = saved.influence else { throw RTRLError.invalidInput("the checkpoint has no influence matrix") }
            influence = try split(values.values, [sparse.streams[b].values.count], "influence matrix")
        } else if isDense {
            guard let values = saved.influence else { throw RTRLError.invalidInput("the checkpoint has no influence matrix") }
            influence = try split(values.values, ownInfluence.map { $0.streams[b].current.count } + s.cross.map(\.count), "influence matrix")
        }
        var estimator: (state: [Scalar], parameters: [Scalar], generator: SeededGenerator)?
        if let uoro {
            let arrays = (saved.estimator ?? []).map(\.values)
            guard arrays.count == 3 else { throw RTRLError.invalidInput("the checkpoint's estimator state is malformed") }
            let u = uoro.streams[b]
            estimator = (try restored(arrays[0], count: u.state.count, "estimator state"),
                         try restored(arrays[1], count: u.parameters.count, "estimator parameters"), try unpackGenerator(arrays[2]))
        }
        var kroneckerState: [(left: [Scalar], right: [Scalar], generator: SeededGenerator, thresholds: [Scalar])] = []
        if let kronecker {
            let arrays = (saved.estimator ?? []).map(\.values), blocks = kronecker.streams[b].layers
            let per = blocks[0].thresholds.isEmpty ? 3 : 4
            guard arrays.count == per * blocks.count else { throw RTRLError.invalidInput("the checkpoint's estimator state is malformed") }
            for (l, block) in blocks.enumerated() {
                let a = Array(arrays[(l * per)..<((l + 1) * per)])
                kroneckerState.append((try restored(a[0], count: block.left.count, "estimator factors"),
                                       try restored(a[1], count: block.right.count, "estimator factors"), try unpackGenerator(a[2]),
                                       per == 4 ? try restored(a[3], count: block.thresholds.count, "threshold influence") : []))
            }
        }
        let records = saved.historyRecords ?? [], weights = (saved.historyWeights ?? []).map(\.values)
        guard records.count == weights.count * layerCount, weights.allSatisfy({ $0.count == s.topStateWeights.count }) else {
            throw RTRLError.invalidInput("the checkpoint's history holds \(records.count) records and \(weights.count) loss weights, not \(layerCount) records per step")
        }
        // Everything checked: apply.
        s.states = states
        s.isInitial = saved.isInitial
        s.coreGradients = gradients
        s.readoutWeightGradient = readout[0]
        s.readoutBiasGradient = bias[0]
        if let uoro, let estimator {
            uoro.streams[b].state = estimator.state
            uoro.streams[b].parameters = estimator.parameters
            uoro.streams[b].generator = estimator.generator
        } else if let kronecker {
            for (block, state) in zip(kronecker.streams[b].layers, kroneckerState) {
                block.left = state.left
                block.right = state.right
                block.generator = state.generator
                block.thresholds = state.thresholds
            }
        } else if let sparse {
            sparse.streams[b].valueArray = influence[0]
        } else if isDense {
            for l in 0..<layerCount {
                ownInfluence[l].streams[b].current = influence[l]
                s.cross[l] = influence[layerCount + l]
            }
        }
        s.history = stride(from: 0, to: records.count, by: layerCount).map { Array(records[$0..<$0 + layerCount]) }
        s.historyWeights = weights
    }
}
