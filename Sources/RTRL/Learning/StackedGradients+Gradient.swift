/// Reading and resetting a stacked model's gradient and state.
extension StackedGradients {
    /// Stream b's gradient per layer (`ParameterLayout` order), the history's waiting losses
    /// included, passed to `body` (in the scratch when there is a history: nothing is allocated).
    private func withCoreGradients(stream b: Int, _ body: ([[Scalar]]) -> Void) {
        let s = streams[b]
        if s.history.isEmpty { body(s.coreGradients); return }
        for l in 0..<layerCount { for t in 0..<scratch[l].count { scratch[l][t] = s.coreGradients[l][t] } }
        backpropagate(stream: b, into: &scratch)
        body(scratch)
    }

    /// Every layer's gradient summed over streams, the history's waiting losses included (per
    /// layer, `ParameterLayout` order); the readout's is in the streams.
    func coreGradients() -> [[Scalar]] {
        var total = structures.map { [Scalar](repeating: 0, count: $0.layout.count) }
        for b in streams.indices {
            withCoreGradients(stream: b) { core in
                for l in 0..<layerCount { for t in 0..<core[l].count { total[l][t] += core[l][t] } }
            }
        }
        return total
    }

    /// The gradient shaped like `parameters` (zeros of the model's).
    func gradient(zeros: Parameters<Scalar>) -> Parameters<Scalar> {
        var result = zeros
        let cores = coreGradients()
        for l in 0..<layerCount {
            cores[l].withUnsafeBufferPointer { core in
                if l == 0 {
                    structures[0].layout.scatterAdd(core, into: &result)
                } else {
                    let layer = result.upperLayers[l - 1]
                    var view = Parameters(weightIH: layer.weightIH, weightHH: layer.weightHH, biasIH: layer.biasIH, biasHH: layer.biasHH,
                                          readoutWeight: result.readoutWeight, readoutBias: [], threshold: layer.threshold)
                    structures[l].layout.scatterAdd(core, into: &view)
                    result.upperLayers[l - 1] = RecurrentLayerParameters(weightIH: view.weightIH, weightHH: view.weightHH,
                                                                         biasIH: view.biasIH, biasHH: view.biasHH, threshold: view.threshold)
                }
            }
        }
        for s in streams {
            result.readoutWeight.values.withUnsafeMutableBufferPointer { w in
                for t in w.indices { w[t] += s.readoutWeightGradient[t] }
            }
            for a in result.readoutBias.indices { result.readoutBias[a] += s.readoutBiasGradient[a] }
        }
        return result
    }

    /// Adds the gradient into `flat` (the order of `Parameters.flattened`, at `flatOffsets`).
    /// Allocates nothing.
    func addGradient(into flat: UnsafeMutableBufferPointer<Scalar>) {
        for b in streams.indices {
            withCoreGradients(stream: b) { core in
                for l in 0..<layerCount {
                    let layout = structures[l].layout, offsets = flatOffsets[l]
                    for t in 0..<layout.count { flat[layout.flatIndex(t, offsets: offsets)] += core[l][t] }
                }
            }
            let s = streams[b]
            for t in 0..<s.readoutWeightGradient.count { flat[flatReadout.weight + t] += s.readoutWeightGradient[t] }
            for t in 0..<s.readoutBiasGradient.count { flat[flatReadout.bias + t] += s.readoutBiasGradient[t] }
        }
    }

    /// Zeroes the accumulated gradient; states and influence carry on.
    func resetGradient() {
        for s in streams {
            for l in 0..<layerCount { for t in 0..<s.coreGradients[l].count { s.coreGradients[l][t] = 0 } }
            for t in 0..<s.readoutWeightGradient.count { s.readoutWeightGradient[t] = 0 }
            for t in 0..<s.readoutBiasGradient.count { s.readoutBiasGradient[t] = 0 }
            for t in 0..<s.historyWeights.count { for q in 0..<s.historyWeights[t].count { s.historyWeights[t][q] = 0 } }
        }
    }

    /// Starts a new sequence on stream b: the history's waiting losses are banked, then every
    /// layer's state and influence is zeroed.
    func resetState(stream b: Int) {
        let s = streams[b]
        if !s.history.isEmpty { backpropagate(stream: b, into: &s.coreGradients) }
        s.history.removeAll(keepingCapacity: true)
        s.historyWeights.removeAll(keepingCapacity: true)
        for l in 0..<layerCount { for q in 0..<s.states[l].count { s.states[l][q] = 0 } }
        s.isInitial = true
        sparse?.reset(stream: b)
        uoro?.reset(stream: b)
        kronecker?.reset(stream: b)
        if isDense {
            for own in ownInfluence { own.reset(stream: b) }
            for l in 0..<layerCount { for t in 0..<s.cross[l].count { s.cross[l][t] = 0 } }
        }
    }

    /// All layers' states of a stream, layer 0 first.
    func state(stream b: Int) -> [Scalar] { streams[b].states.flatMap { $0 } }

    /// Bytes of the influence (dense RTRL) or of the kept records (BPTT), all streams.
    var bytes: Int {
        if let sparse { return sparse.bytes }
        if let uoro { return uoro.bytes }
        if let kronecker { return kronecker.bytes }
        if isDense { return StackedGradients.denseBytes(structures: structures, streams: streams.count) }
        return streams.reduce(0) { $0 + $1.history.count * layerCount } * MemoryLayout<StepRecord<Scalar>>.stride
    }
}
