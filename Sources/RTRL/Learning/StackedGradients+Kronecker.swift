/// KF-RTRL and OK-r on a stacked model (the single-layer form is `KroneckerEstimator`, whose
/// per-stream factors, KF-RTRL step, OK reduction and gradient this reuses).
///
/// A lower layer's parameters reach the layers above within the step, but their immediate
/// columns are still one Kronecker product: for layer l, I_t[:, (feature f, column e)] =
/// ĥ^l[f] · Δ̃^l[:, e], where ĥ^l = [x^l; recurrent feature; 1] and Δ̃^l (over the whole stack's
/// state, R = L·S rows) holds layer l's coefficients Δ^l on its own rows and, above them, those
/// carried up the layers: Δ̃^{m} = A^m (output scale ⊙ Δ̃^{m−1}). So each layer's columns of J are
/// estimated on their own, Ĵ_l = Σ_j u_j ⊗ A_j with A_j ∈ R^{R×m_l}; D_t A_j runs up the layers
/// ((D A)^m = D^m A^m + A^m_in (output scale ⊙ (D A)^{m−1})); and the reduction of the r + 1 terms
/// to r is the single-layer one. The EGRU's thresholds are carried exactly per layer, E_l ← D E_l +
/// I_ϑ, their immediate columns carried up the same way (plus ∂y/∂ϑ into the layer above).
final class StackedKronecker<Scalar: SparseScalar> {
    let optimal: Bool
    let rank: Int
    let structures: [ModelStructure]
    let immediates: [KroneckerImmediate]
    let thresholdTerms: [ThresholdImmediate?]
    /// Per layer (≥ 1), per unit: the `weight_ih` entries of its gate rows.
    let input: StackedInputEntries
    let stateSize: Int, rows: Int, hiddenSize: Int, components: Int

    final class Stream {
        /// Layer l's factors (and the EGRU's exact threshold columns) in the single-layer form.
        let layers: [KroneckerEstimator<Scalar>.Stream]
        var dynamics: [[Scalar]]
        /// Scratch: one layer's new rows (S × widest), the inputs' derivatives (k × widest), Δ̃ (R × widest),
        /// and w over the stack's state.
        var layerRows: [Scalar], feature: [Scalar], delta: [Scalar], weights: [Scalar]
        init(layers: [KroneckerEstimator<Scalar>.Stream], dynamics: [Int], stateSize: Int, rows: Int, hiddenSize: Int, widest: Int) {
            self.layers = layers
            self.dynamics = dynamics.map { [Scalar](repeating: 0, count: $0) }
            layerRows = [Scalar](repeating: 0, count: stateSize * widest)
            feature = [Scalar](repeating: 0, count: hiddenSize * widest)
            delta = [Scalar](repeating: 0, count: rows * widest)
            weights = [Scalar](repeating: 0, count: rows)
        }
    }
    let streams: [Stream]

    init(optimal: Bool, rank: Int, models: [Model<Scalar>], structures: [ModelStructure], streams: Int, seed: UInt64,
         memoryBudget: Int) throws {
        guard rank >= 1 else { throw RTRLError.invalidOption("the rank of ok-R must be at least 1, not \(rank)") }
        self.optimal = optimal
        self.rank = rank
        self.structures = structures
        let layers = structures.count, k = structures[0].graph.hiddenSize, s = structures[0].graph.stateSize
        stateSize = s
        rows = layers * s
        hiddenSize = k
        components = structures[0].graph.cell.stateComponents
        immediates = structures.map { KroneckerImmediate(structure: $0) }
        let egru = structures[0].graph.cell == .egru
        thresholdTerms = zip(structures, models).map { structure, model in
            guard egru else { return nil }
            let layout = structure.layout
            func position(_ state: Int, _ parameter: Int) -> Int? { parameter < 0 ? nil : state * k + Int(layout.storage[parameter]) }
            return ThresholdImmediate(layout: layout, weightHH: model.parameters.weightHH.pattern, hiddenSize: k, column: position,
                                      position: position)
        }
        // Memory: every layer's terms (and OK's r + 1 before the reduction), checked before allocating.
        let n = rank + 1, widest = immediates.map(\.columnCount).max()!
        var scalars = 0
        for (l, immediate) in immediates.enumerated() {
            let f = models[l].inputSize + k + 1, v = rows * immediate.columnCount
            let (terms, o1) = (f + v).multipliedReportingOverflow(by: optimal ? 2 * n : rank)
            guard !o1, terms < Int.max / 64 else {
                throw RTRLError.tooLarge(what: "the \(optimal ? "OK (rank \(rank))" : "KF-RTRL") estimates of \(layers) stacked layers",
                                         neededBytes: Int.max, budgetBytes: memoryBudget)
            }
            scalars += terms + (egru ? rows * k : 0)
        }
        scalars += structures.reduce(0) { $0 + $1.graph.jacobianTransposed.nonzeroCount } + (s + k + rows) * widest + rows
        try EstimatorSupport.checkBudget(optimal ? "OK (rank \(rank))" : "KF-RTRL", streams: streams,
                                         bytesPerStream: MemoryLayout<Scalar>.stride * scalars + 8 * layers * (6 * n * n + 4 * n + 2 * n * rank + widest * rank),
                                         budget: memoryBudget)
        input = StackedInputEntries(weightIH: models.map(\.parameters.weightIH.pattern), hiddenSize: k)
        let rows = self.rows, immediates = self.immediates
        self.streams = (0..<streams).map { b in
            let blocks = (0..<layers).map { l in
                KroneckerEstimator<Scalar>.Stream(
                    rank: rank, features: models[l].inputSize + k + 1, rightLength: rows * immediates[l].columnCount,
                    columns: immediates[l].columnCount, thresholdLength: egru ? rows * k : 0, dynamics: 0, optimal: optimal,
                    generator: EstimatorSupport.generator(seed: seed &+ UInt64(l) &* 0x9E37_79B9_7F4A_7C15, stream: b),
                    productWorkspace: nil, thresholdWorkspace: nil)
            }
            return Stream(layers: blocks, dynamics: structures.map { $0.graph.jacobianTransposed.nonzeroCount }, stateSize: s,
                          rows: rows, hiddenSize: k, widest: widest)
        }
    }

    var bytes: Int {
        streams.reduce(0) { total, st in
            total + st.layers.reduce(0) { $0 + $1.bytes }
                + MemoryLayout<Scalar>.stride * (st.dynamics.reduce(0) { $0 + $1.count } + st.layerRows.count + st.feature.count + st.delta.count)
        }
    }

    func reset(stream b: Int) {
        for block in streams[b].layers {
            for t in block.left.indices { block.left[t] = 0 }
            for t in block.right.indices { block.right[t] = 0 }
            for t in block.thresholds.indices { block.thresholds[t] = 0 }
        }
    }

    /// x ← (D_t x + the immediate term) over the layers from `first` up, for a block x of the
    /// stack's rows (R × width, row-major): each layer's new rows are D^m x^m (if `multiplyD`) plus
    /// A^m (output scale ⊙ the new rows below) (above `first`), plus what `addOwn(m, rows)` adds;
    /// `thresholdLayer`: the layer whose ∂y/∂ϑ_j also enters column j of the layer above's input.
    private func layered(_ x: UnsafeMutablePointer<Scalar>, width: Int, from first: Int, multiplyD: Bool, _ st: Stream,
                         _ models: [Model<Scalar>], _ records: [StepRecord<Scalar>], thresholdLayer: Int? = nil,
                         addOwn: (Int, UnsafeMutablePointer<Scalar>) -> Void) {
        let s = stateSize, k = hiddenSize, layers = structures.count
        st.layerRows.withUnsafeMutableBufferPointer { out in
        st.feature.withUnsafeMutableBufferPointer { feature in
            for m in first..<layers {
                let rowsOfLayer = x + m * s * width, o = out.baseAddress!
                for t in 0..<(s * width) { o[t] = 0 }
                if multiplyD {
                    let dt = structures[m].graph.jacobianTransposed
                    st.dynamics[m].withUnsafeBufferPointer { d in
                        for q in 0..<s {
                            let target = o + q * width
                            for p in Int(dt.columnPointers[q])..<Int(dt.columnPointers[q + 1]) {
                                let value = d[p]
                                if value == 0 { continue }
                                let source = rowsOfLayer + Int(dt.rowIndices[p]) * width
                                for e in 0..<width { target[e] += value * source[e] }
                            }
                        }
                    }
                }
                if m > first {
                    let gk = models[m].parameters.weightIH.rowCount, record = records[m]
                    models[m].parameters.weightIH.values.withUnsafeBufferPointer { wx in
                        record.inputCoefficient.withUnsafeBufferPointer { coefficient in
                            for i in 0..<k {
                                for entry in input.start[m][i]..<input.start[m][i + 1] {
                                    let source = feature.baseAddress! + Int(input.column[m][entry]) * width
                                    let w = wx[Int(input.position[m][entry])], row = Int(input.row[m][entry])
                                    for c in 0..<components {
                                        let a = coefficient[c * gk + row] * w
                                        if a == 0 { continue }
                                        let target = o + (c * k + i) * width
                                        for e in 0..<width { target[e] += a * source[e] }
                                    }
                                }
                            }
                        }
                    }
                }
                addOwn(m, o)
                rowsOfLayer.update(from: o, count: s * width)
                // The next layer's input derivatives: output scale ⊙ these rows (+ ∂y/∂ϑ).
                if m + 1 < layers {
                    let record = records[m]
                    for j in 0..<k {
                        let f = feature.baseAddress! + j * width
                        for e in 0..<width { f[e] = 0 }
                        for c in 0..<components {
                            let scale = record.outputScale[c * k + j]
                            if scale == 0 { continue }
                            let source = rowsOfLayer + (c * k + j) * width
                            for e in 0..<width { f[e] += scale * source[e] }
                        }
                        if thresholdLayer == m { f[j] += record.thresholdOutput[j] }
                    }
                }
            }
        }}
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, models: [Model<Scalar>], records: [StepRecord<Scalar>]) {
        let st = streams[b], layers = structures.count, s = stateSize, k = hiddenSize
        for m in 0..<layers {
            st.dynamics[m].withUnsafeMutableBufferPointer { dt in
                StepJacobian.dynamicsTransposed(graph: structures[m].graph, weightHH: models[m].parameters.weightHH, record: records[m], into: dt)
            }
        }
        for l in 0..<layers {
            let block = st.layers[l], immediate = immediates[l], m = immediate.columnCount, length = rows * m
            // A_j ← D_t A_j.
            block.right.withUnsafeMutableBufferPointer { a in
                for j in 0..<rank { layered(a.baseAddress! + j * length, width: m, from: l, multiplyD: true, st, models, records) { _, _ in } }
            }
            // E_l ← D_t E_l + I_ϑ (layer l's rows, then carried up with ∂y/∂ϑ).
            if let terms = thresholdTerms[l] {
                block.thresholds.withUnsafeMutableBufferPointer { e in
                    layered(e.baseAddress!, width: k, from: l, multiplyD: true, st, models, records, thresholdLayer: l) { layer, rowsOfLayer in
                        if layer == l { terms.add(weightHH: models[l].parameters.weightHH, record: records[l], into: UnsafeMutableBufferPointer(start: rowsOfLayer, count: s * k)) }
                    }
                }
            }
            // Δ̃^l: layer l's coefficients, carried up.
            st.delta.withUnsafeMutableBufferPointer { delta in
                for t in 0..<length { delta[t] = 0 }
                layered(delta.baseAddress!, width: m, from: l, multiplyD: false, st, models, records) { layer, rowsOfLayer in
                    if layer == l { immediate.addCoefficients(records[l], scale: 1, into: UnsafeMutableBufferPointer(start: rowsOfLayer, count: s * m)) }
                }
            }
            let delta = st.delta
            records[l].immediateFeatures.withUnsafeBufferPointer { features in
                if optimal {
                    KroneckerEstimator<Scalar>.reduceOptimal(block, features: features, rightLength: length, rank: rank) { a in
                        for t in 0..<length { a[t] += delta[t] }
                    }
                } else {
                    let norm = delta.withUnsafeBufferPointer { EstimatorSupport.squaredNorm(UnsafeBufferPointer(rebasing: $0[0..<length])) }.squareRoot()
                    KroneckerEstimator<Scalar>.combineKF(block, features: features, rightLength: length, newRightNorm: norm) { a, scale in
                        for t in 0..<length { a[t] += scale * delta[t] }
                    }
                }
            }
        }
    }

    /// g_l += w̃ᵀ Ĵ_l for every layer, w̃ the top layer's state weights placed in the stack's rows.
    func accumulate(stream b: Int, topStateWeights w: [Scalar], into gradients: inout [[Scalar]]) {
        let st = streams[b], top = (structures.count - 1) * stateSize
        for q in 0..<stateSize { st.weights[top + q] = w[q] }
        st.weights.withUnsafeBufferPointer { weights in
            for l in 0..<structures.count {
                let immediate = immediates[l]
                gradients[l].withUnsafeMutableBufferPointer { g in
                    KroneckerEstimator<Scalar>.accumulate(st.layers[l], rows: rows, columns: immediate.columnCount,
                                                          features: st.layers[l].left.count / rank, rank: rank,
                                                          featureIndex: structures[l].layout.featureIndex,
                                                          columnOfParameter: immediate.columnOfParameter,
                                                          thresholdParameter: immediate.thresholdParameter, stateWeights: weights, into: g)
                }
            }
        }
    }
}
