import Foundation

/// The rank-one estimators (UORO and NoBackTrack; <doc:GradientMethodsAndEstimators>):
/// Ĵ_t = s̃_t θ̃_tᵀ with s̃ over the S state variables and θ̃ over the p parameters, O(S + p) memory,
/// one D-product and one immediate VJP per step. Both update by the rank-one trick: for
/// A = Σ_i v_i w_iᵀ and independent random signs ε_i, (Σ ε_i ρ_i v_i)(Σ ε_i w_i / ρ_i)ᵀ has
/// expectation A for any ρ_i > 0, and ρ_i = √(‖w_i‖/‖v_i‖) minimises its variance. The first term
/// D_t s̃ θ̃ᵀ needs no sign of its own (flipping every sign leaves the product unchanged). The
/// gradient estimate is (wᵀ s̃) θ̃.
///
/// Subclasses differ in how the immediate term I_t is split: UORO draws one random ±1 vector ν
/// and uses I_t = E[ν (νᵀI_t)]; NoBackTrack splits I_t by state variable.
class RankOneEstimator<Scalar: SparseScalar>: InfluenceEstimator<Scalar> {
    /// One stream's buffers (separate objects, so streams update concurrently).
    final class Stream {
        /// s̃ (S) and θ̃ (p).
        var state: [Scalar]
        var parameters: [Scalar]
        /// D's values on Dᵀ's pattern, D·s̃, the signs (or VJP weights), and the VJP result.
        var dynamics: [Scalar]
        var propagated: [Scalar]
        var signs: [Scalar]
        var weights: [Scalar]
        var immediate: [Scalar]
        /// NoBackTrack: ‖I_t[q, :]‖² per state variable, and a scratch vector (all zero between uses).
        var rowNorms: [Double]
        var scratch: [Double]
        var generator: SeededGenerator

        init(stateSize s: Int, parameters p: Int, dynamics d: Int, generator: SeededGenerator) {
            state = [Scalar](repeating: 0, count: s)
            parameters = [Scalar](repeating: 0, count: p)
            dynamics = [Scalar](repeating: 0, count: d)
            propagated = [Scalar](repeating: 0, count: s)
            signs = [Scalar](repeating: 0, count: s)
            weights = [Scalar](repeating: 0, count: s)
            immediate = [Scalar](repeating: 0, count: p)
            rowNorms = [Double](repeating: 0, count: s)
            scratch = [Double](repeating: 0, count: s)
            self.generator = generator
        }

        var bytes: Int {
            MemoryLayout<Scalar>.stride * (state.count + parameters.count + dynamics.count + propagated.count
                + signs.count + weights.count + immediate.count) + 8 * (rowNorms.count + scratch.count)
        }
    }

    let streams: [Stream]
    /// I_t's products with precomputed indices.
    let immediateJacobian: ImmediateJacobian

    init(model: Model<Scalar>, structure: ModelStructure, streams: Int, seed: UInt64, memoryBudget: Int, name: String) throws {
        let s = structure.graph.stateSize, p = structure.layout.count
        let d = structure.graph.jacobianTransposed.nonzeroCount
        let perStream = MemoryLayout<Scalar>.stride * (5 * s + 2 * p + d) + 16 * s
        try EstimatorSupport.checkBudget(name, streams: streams, bytesPerStream: perStream, budget: memoryBudget)
        self.streams = (0..<streams).map {
            Stream(stateSize: s, parameters: p, dynamics: d, generator: EstimatorSupport.generator(seed: seed, stream: $0))
        }
        immediateJacobian = ImmediateJacobian(structure: structure, weightHH: model.parameters.weightHH.pattern)
        super.init(structure: structure, streams: streams)
    }

    override func reset(stream b: Int) {
        let st = streams[b]
        st.state.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        st.parameters.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// g += (wᵀ s̃) θ̃.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    override func accumulate(stream b: Int, stateWeights w: UnsafeBufferPointer<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        let st = streams[b]
        let c = Scalar(st.state.withUnsafeBufferPointer { EstimatorSupport.dot(w, $0) })
        if c == 0 { return }
        st.parameters.withUnsafeBufferPointer { theta in
            for t in 0..<theta.count { g[t] += c * theta[t] }
        }
    }

    override var bytes: Int { streams.reduce(0) { $0 + $1.bytes } }

    /// D_t's values and D_t s̃ into the stream's buffers.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    final func propagate(_ st: Stream, weightHH: SparseMatrix<Scalar>, record: StepRecord<Scalar>) {
        let graph = structure.graph
        st.dynamics.withUnsafeMutableBufferPointer { dt in
            StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: record, into: dt)
        }
        st.dynamics.withUnsafeBufferPointer { dt in
            st.state.withUnsafeBufferPointer { v in
                st.propagated.withUnsafeMutableBufferPointer { out in
                    StepJacobian.dynamicsProduct(graph: graph, dt: dt, v, into: out)
                }
            }
        }
    }

    /// θ̃ ← θ̃/ρ0 + immediateScale·(the immediate VJP in `immediate`), s̃ ← ρ0·(D s̃) + `signs`
    /// (already scaled by the caller: ρ1·ν for UORO, ε_q ρ_q for NoBackTrack).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    final func combine(_ st: Stream, rho0: Double, immediateScale: Double) {
        let inverse = Scalar(1 / rho0), scale = Scalar(immediateScale), r0 = Scalar(rho0)
        st.parameters.withUnsafeMutableBufferPointer { theta in
            st.immediate.withUnsafeBufferPointer { delta in
                for t in 0..<theta.count { theta[t] = theta[t] * inverse + delta[t] * scale }
            }
        }
        st.state.withUnsafeMutableBufferPointer { s in
            st.propagated.withUnsafeBufferPointer { ds in
                st.signs.withUnsafeBufferPointer { noise in
                    for q in 0..<s.count { s[q] = r0 * ds[q] + noise[q] }
                }
            }
        }
    }

    /// Checkpoint state: s̃, θ̃ and the generator (everything else is per-step scratch).
    override func saveState(stream b: Int) throws -> [[Scalar]] {
        let st = streams[b]
        return [st.state, st.parameters, packGenerator(st.generator)]
    }

    override func restoreState(stream b: Int, _ arrays: [[Scalar]]) throws {
        guard arrays.count == 3 else { throw RTRLError.invalidInput("the checkpoint's estimator state is malformed") }
        let st = streams[b]
        st.state = try restored(arrays[0], count: st.state.count, "estimator state")
        st.parameters = try restored(arrays[1], count: st.parameters.count, "estimator parameters")
        st.generator = try unpackGenerator(arrays[2])
    }
}

/// UORO (Tallec & Ollivier, arXiv 1702.05043), for every cell. Per step, with ν iid ±1 over the
/// S state variables:
///
///     s̃ ← ρ0 · D_t s̃ + ρ1 · ν,     θ̃ ← θ̃ / ρ0 + (νᵀ I_t) / ρ1,
///     ρ0 = √((‖θ̃‖ + ε)/(‖D_t s̃‖ + ε)),   ρ1 = √((‖νᵀI_t‖ + ε)/(‖ν‖ + ε)),   ε = 10⁻⁷.
///
/// Unbiased: the cross terms are odd in ν (ρ1 is even in ν), so they vanish in expectation, and
/// E[ν νᵀ] = I. The immediate VJP νᵀI_t includes the EGRU thresholds' wider columns.
final class UOROEstimator<Scalar: SparseScalar>: RankOneEstimator<Scalar> {
    init(model: Model<Scalar>, structure: ModelStructure, streams: Int, seed: UInt64, memoryBudget: Int) throws {
        try super.init(model: model, structure: structure, streams: streams, seed: seed, memoryBudget: memoryBudget, name: "UORO")
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    override func update(stream b: Int, model: Model<Scalar>, record: StepRecord<Scalar>) throws {
        let st = streams[b], weightHH = model.parameters.weightHH
        propagate(st, weightHH: weightHH, record: record)
        let s = st.signs.count
        st.signs.withUnsafeMutableBufferPointer { signs in
            for q in 0..<s { signs[q] = Scalar(st.generator.nextSign()) }
        }
        st.immediate.withUnsafeMutableBufferPointer { delta in
            delta.update(repeating: 0)
            st.signs.withUnsafeBufferPointer { nu in
                immediateJacobian.addTransposedProduct(weightHH: weightHH, record: record, nu, into: delta)
            }
        }
        let thetaNorm = st.parameters.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let propagatedNorm = st.propagated.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let deltaNorm = st.immediate.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let rho0 = EstimatorSupport.scaling(thetaNorm, propagatedNorm)
        let rho1 = EstimatorSupport.scaling(deltaNorm, Double(s).squareRoot())
        // The state side receives ρ1·ν: scale the signs in place.
        let r1 = Scalar(rho1)
        st.signs.withUnsafeMutableBufferPointer { signs in
            for q in 0..<s { signs[q] *= r1 }
        }
        combine(st, rho0: rho0, immediateScale: 1 / rho1)
    }
}

/// NoBackTrack (Ollivier, Tallec & Charpiat, arXiv 1507.07680), for every cell: the immediate
/// term is split into its rows, I_t = Σ_q e_q I_t[q, :], one term per state variable q with its
/// own random sign ε_q and its own variance-minimising scale ρ_q = √((‖I_t[q, :]‖ + ε)/(1 + ε))
/// (v_q = e_q has norm 1):
///
///     s̃_q ← ρ0 · (D_t s̃)_q + ε_q ρ_q,     θ̃ ← θ̃ / ρ0 + Σ_q (ε_q / ρ_q) I_t[q, :],
///     ρ0 = √((‖θ̃‖ + ε)/(‖D_t s̃‖ + ε)).
///
/// For the single-state cells (rnn, gru, egru) a state variable is a unit: one sign per unit,
/// and a unit's row of I_t holds exactly the parameters writing it (plus, for the EGRU, the
/// thresholds of the units it reads). The LSTM's two state variables per unit (h_i, c_i) get
/// one sign each: unit i's block of I_t has rank two (the output gate writes h_i but not c_i), so
/// a single sign per unit would not be an unbiased rank-one split. Unlike UORO, whose one ρ1 is
/// shared by all rows, every row is scaled on its own, which lowers the variance when the rows'
/// norms differ (saturated or silent units).
final class NoBackTrackEstimator<Scalar: SparseScalar>: RankOneEstimator<Scalar> {
    init(model: Model<Scalar>, structure: ModelStructure, streams: Int, seed: UInt64, memoryBudget: Int) throws {
        try super.init(model: model, structure: structure, streams: streams, seed: seed, memoryBudget: memoryBudget,
                       name: "NoBackTrack")
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    override func update(stream b: Int, model: Model<Scalar>, record: StepRecord<Scalar>) throws {
        let st = streams[b], weightHH = model.parameters.weightHH
        propagate(st, weightHH: weightHH, record: record)
        // ‖I_t[q, :]‖² per state variable q: unit i's parameters for component c and, for the
        // EGRU, the thresholds' entries (ϑ_j reaches unit j and the units reading y_j).
        st.rowNorms.withUnsafeMutableBufferPointer { norms in
            st.scratch.withUnsafeMutableBufferPointer { scratch in
                immediateJacobian.rowSquaredNorms(weightHH: weightHH, record: record, into: norms, scratch: scratch)
            }
        }
        st.signs.withUnsafeMutableBufferPointer { signs in
            st.weights.withUnsafeMutableBufferPointer { weights in
                st.rowNorms.withUnsafeBufferPointer { norms in
                    for q in 0..<signs.count {
                        let sign = st.generator.nextSign()
                        let rho = EstimatorSupport.scaling(norms[q].squareRoot(), 1)
                        signs[q] = Scalar(sign * rho)      // ε_q ρ_q: the state side
                        weights[q] = Scalar(sign / rho)    // ε_q / ρ_q: the parameter side
                    }
                }
            }
        }
        st.immediate.withUnsafeMutableBufferPointer { delta in
            delta.update(repeating: 0)
            st.weights.withUnsafeBufferPointer { a in
                immediateJacobian.addTransposedProduct(weightHH: weightHH, record: record, a, into: delta)
            }
        }
        let thetaNorm = st.parameters.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let propagatedNorm = st.propagated.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        combine(st, rho0: EstimatorSupport.scaling(thetaNorm, propagatedNorm), immediateScale: 1)
    }
}
