/// UORO on a stacked model (Tallec & Ollivier, arXiv 1702.05043; the single-layer form is
/// `UOROEstimator`): Ĵ = s̃ θ̃ᵀ with s̃ over every layer's state and θ̃ over every layer's
/// parameters. Per step, with ν iid ±1 over the stack's state:
///
///     s̃ ← ρ0 · D_t s̃ + ρ1 · ν,     θ̃ ← θ̃ / ρ0 + (νᵀ I_t) / ρ1,
///
/// ρ0 and ρ1 as in the single-layer form. D_t s̃ runs up the layers
/// ((D s̃)^l = D^l s̃^l + A^l (output scale ⊙ (D s̃)^{l−1})), and νᵀ I_t down them (the adjoint
/// ã^l = ν^l + output scale ⊙ A^{l+1}ᵀ ã^{l+1} meets each layer's I^l, and the thresholds below
/// through ∂y/∂ϑ): the within-step paths of a lower layer's parameters into the layers above.
/// Unbiased for the same reason as the single-layer form.
final class StackedUORO<Scalar: SparseScalar> {
    final class Stream {
        var state: [Scalar], parameters: [Scalar]
        var propagated: [Scalar], signs: [Scalar], adjoint: [Scalar], immediate: [Scalar]
        var dynamics: [[Scalar]], input: [Scalar]
        var generator: SeededGenerator
        init(states: Int, parameters: Int, dynamics: [Int], hiddenSize: Int, generator: SeededGenerator) {
            state = [Scalar](repeating: 0, count: states)
            self.parameters = [Scalar](repeating: 0, count: parameters)
            propagated = state
            signs = state
            adjoint = state
            immediate = self.parameters
            self.dynamics = dynamics.map { [Scalar](repeating: 0, count: $0) }
            input = [Scalar](repeating: 0, count: hiddenSize)
            self.generator = generator
        }
    }
    let streams: [Stream]
    let structures: [ModelStructure]
    let parameterStart: [Int]
    let thresholdParameter: [[Int32]]

    init(structures: [ModelStructure], parameterStart: [Int], thresholdParameter: [[Int32]], streams: Int, seed: UInt64,
         memoryBudget: Int) throws {
        self.structures = structures
        self.parameterStart = parameterStart
        self.thresholdParameter = thresholdParameter
        let s = structures.count * structures[0].graph.stateSize, p = parameterStart.last!
        let d = structures.reduce(0) { $0 + $1.graph.jacobianTransposed.nonzeroCount }
        try EstimatorSupport.checkBudget("UORO", streams: streams, bytesPerStream: MemoryLayout<Scalar>.stride * (4 * s + 2 * p + d),
                                         budget: memoryBudget)
        self.streams = (0..<streams).map {
            Stream(states: s, parameters: p, dynamics: structures.map { $0.graph.jacobianTransposed.nonzeroCount },
                   hiddenSize: structures[0].graph.hiddenSize, generator: EstimatorSupport.generator(seed: seed, stream: $0))
        }
    }

    var bytes: Int {
        streams.reduce(0) { $0 + MemoryLayout<Scalar>.stride * (4 * $1.state.count + 2 * $1.parameters.count + $1.dynamics.reduce(0) { $0 + $1.count }) }
    }

    func reset(stream b: Int) {
        let st = streams[b]
        for q in st.state.indices { st.state[q] = 0 }
        for t in st.parameters.indices { st.parameters[t] = 0 }
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, models: [Model<Scalar>], records: [StepRecord<Scalar>]) {
        let st = streams[b], layers = structures.count, size = structures[0].graph.stateSize
        let k = structures[0].graph.hiddenSize, components = structures[0].graph.cell.stateComponents
        // D s̃, up the layers.
        for l in 0..<layers {
            let graph = structures[l].graph, weightHH = models[l].parameters.weightHH
            st.dynamics[l].withUnsafeMutableBufferPointer { dt in
                StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: records[l], into: dt)
            }
            st.propagated.withUnsafeMutableBufferPointer { all in
                let out = UnsafeMutableBufferPointer(rebasing: all[(l * size)..<((l + 1) * size)])
                st.dynamics[l].withUnsafeBufferPointer { dt in
                    st.state.withUnsafeBufferPointer { v in
                        StepJacobian.dynamicsProduct(graph: graph, dt: dt, UnsafeBufferPointer(rebasing: v[(l * size)..<((l + 1) * size)]), into: out)
                    }
                }
                if l > 0 {
                    let below = records[l - 1]
                    for j in 0..<k {
                        var x: Scalar = 0
                        for c in 0..<components { x += below.outputScale[c * k + j] * all[(l - 1) * size + c * k + j] }
                        st.input[j] = x
                    }
                    st.input.withUnsafeBufferPointer { x in
                        StepJacobian.inputProduct(weightIH: models[l].parameters.weightIH, record: records[l], components: components,
                                                  hiddenSize: k, x, into: out)
                    }
                }
            }
        }
        // νᵀ I_t, down the layers.
        for q in st.signs.indices { st.signs[q] = Scalar(st.generator.nextSign()) }
        for t in st.immediate.indices { st.immediate[t] = 0 }
        for q in st.adjoint.indices { st.adjoint[q] = st.signs[q] }
        for l in stride(from: layers - 1, through: 0, by: -1) {
            let model = models[l], record = records[l], structure = structures[l]
            st.adjoint.withUnsafeMutableBufferPointer { all in
                let a = UnsafeBufferPointer(rebasing: all[(l * size)..<((l + 1) * size)])
                st.immediate.withUnsafeMutableBufferPointer { g in
                    let own = UnsafeMutableBufferPointer(rebasing: g[parameterStart[l]..<parameterStart[l + 1]])
                    StepJacobian.immediateTransposedProduct(structure: structure, weightHH: model.parameters.weightHH, record: record, a, into: own)
                    if l > 0 {
                        st.input.withUnsafeMutableBufferPointer { e in
                            StepJacobian.handDown(weightIH: model.parameters.weightIH, record: record, below: records[l - 1],
                                                  components: components, thresholdParameter: thresholdParameter[l - 1], a, scratch: e,
                                                  into: UnsafeMutableBufferPointer(rebasing: all[((l - 1) * size)..<(l * size)]),
                                                  belowGradient: UnsafeMutableBufferPointer(rebasing: g[parameterStart[l - 1]..<parameterStart[l]]))
                        }
                    }
                }
            }
        }
        let thetaNorm = st.parameters.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let propagatedNorm = st.propagated.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let deltaNorm = st.immediate.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let rho0 = EstimatorSupport.scaling(thetaNorm, propagatedNorm)
        let rho1 = EstimatorSupport.scaling(deltaNorm, Double(st.signs.count).squareRoot())
        let r0 = Scalar(rho0), inverse0 = Scalar(1 / rho0), r1 = Scalar(rho1), inverse1 = Scalar(1 / rho1)
        for t in st.parameters.indices { st.parameters[t] = st.parameters[t] * inverse0 + st.immediate[t] * inverse1 }
        for q in st.state.indices { st.state[q] = r0 * st.propagated[q] + r1 * st.signs[q] }
    }

    /// g += (w^{L−1}ᵀ s̃^{L−1}) θ̃, into each layer's gradient.
    func accumulate(stream b: Int, topStateWeights w: [Scalar], into gradients: inout [[Scalar]]) {
        let st = streams[b], size = structures[0].graph.stateSize, top = (structures.count - 1) * size
        var c: Scalar = 0
        for q in 0..<size { c += w[q] * st.state[top + q] }
        if c == 0 { return }
        for l in 0..<structures.count {
            for t in 0..<gradients[l].count { gradients[l][t] += c * st.parameters[parameterStart[l] + t] }
        }
    }
}
