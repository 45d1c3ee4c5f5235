import Foundation

/// The Kronecker-sum estimators (KF-RTRL and OK; <doc:GradientMethodsAndEstimators>) for every
/// cell, on the immediate Jacobian's Kronecker form I_t = ĥ_tᵀ ⊗ Δ_t (`KroneckerImmediate`):
/// ĥ = [x_t; recurrent feature; 1] (`StepRecord.immediateFeatures`, F = n + k + 1 values) and
/// Δ_t the S × m matrix of the gate coefficients (m = k for the rnn, 4k for gru, lstm and egru;
/// S = 2k for the lstm). A parameter is a pair (feature, column); a masked weight simply has no
/// parameter, so its entry of the estimate is never read.
///
/// The estimate is Ĵ = Σ_{j<r} u_j ⊗ A_j with u_j ∈ R^F and A_j ∈ R^{S×m} (row-major):
/// Ĵ[q, θ] = Σ_j u_j[f(θ)] · A_j[q, column(θ)]. The products D_t A_j run in a `BlockProductPlan`
/// (one block of S rows and m columns per term, multiplied in place by the register-blocked
/// kernels), built once. Each step, the exact update D_t Ĵ + I_t is the
/// r + 1 Kronecker terms u_j ⊗ (D_t A_j) and ĥ ⊗ Δ_t, which are reduced back to r terms
/// without bias:
///
/// - KF-RTRL (Mujika, Meier & Steger, arXiv 1805.10842), r = 1, with random signs c1, c2:
///   u ← c1 p1 u + c2 p2 ĥ,  A ← c1 (D_t A)/p1 + c2 Δ_t/p2,
///   p1 = √((‖D_t A‖ + ε)/(‖u‖ + ε)),  p2 = √((‖Δ_t‖ + ε)/(‖ĥ‖ + ε)).
///   The cross terms carry c1 c2 and vanish in expectation. O(nnz(D)·m) time, O(S·m) memory.
/// - OK (Benzing et al., arXiv 1902.03993), rank r: both sides of the r + 1 terms are
///   orthonormalised (Gram–Schmidt: [u_j, ĥ] = Q_u R_u, [vec(D A_j), vec(Δ)] = Q_v R_v), the
///   (r+1) × (r+1) core R_u R_vᵀ is decomposed (Jacobi SVD), and `OptimalReduction` replaces it by
///   the minimum-variance unbiased rank-r estimate. O(nnz(D)·m·r + S·m·r²) time, O(r·S·m) memory.
///   When the exact influence has Kronecker rank ≤ r (e.g. the first r steps from the zero
///   state) no randomness is used and the estimate is exact.
///
/// The EGRU's k thresholds are not of the form (ϑ_j's column reaches every unit j feeds); their
/// k columns of J are kept exactly, E ← D_t E + I_ϑ (S × k, O(nnz(D)·k) per step), so they add no
/// variance.
final class KroneckerEstimator<Scalar: SparseScalar>: InfluenceEstimator<Scalar> {
    enum Reduction: Equatable {
        case kfRTRL
        case optimal(rank: Int)
    }

    let reduction: Reduction
    /// Kronecker terms kept between steps (1 for KF-RTRL).
    let rank: Int
    /// F = n + k + 1.
    let featureCount: Int
    let immediate: KroneckerImmediate
    /// S · m: the length of vec(A_j).
    let rightLength: Int
    /// A_j ← D_t A_j for the r terms, in place; and E ← D_t E for the EGRU's thresholds.
    let productPlan: BlockProductPlan
    let thresholdPlan: BlockProductPlan?
    /// EGRU: the thresholds' immediate terms, targeted at E (S × k, row-major).
    let thresholdTerms: ThresholdImmediate?

    /// One stream's buffers (separate objects, so streams update concurrently).
    final class Stream {
        /// u_j (F × r, column-major) and A_j (r blocks of S × m, row-major).
        var left: [Scalar]
        var right: [Scalar]
        /// D's values on Dᵀ's pattern.
        var dynamics: [Scalar]
        /// The r + 1 terms before the reduction (OK): [u_j, ĥ] (F × (r+1)) and [vec(D A_j), vec(Δ)]
        /// (S·m × (r+1)), orthonormalised in place. KF-RTRL needs neither.
        var bigLeft: [Scalar]
        var bigRight: [Scalar]
        /// Small (r+1)-sized work (OK): R factors, core, SVD, reduced coefficients.
        var leftR: [Double], rightR: [Double], core: [Double]
        var x: [Double], y: [Double], sigma: [Double], order: [Int], work: [Double]
        var leftCoefficients: [Double], rightCoefficients: [Double]
        var reducer: OptimalReduction
        /// A_jᵀw per term (accumulate), m × r.
        var projected: [Double]
        /// EGRU: the thresholds' exact columns of J (S × k, row-major); empty otherwise.
        var thresholds: [Scalar]
        var generator: SeededGenerator
        /// The plans' workspaces (nil where the caller multiplies by D itself: stacked models).
        let productWorkspace: BlockProductPlan.Workspace?
        let thresholdWorkspace: BlockProductPlan.Workspace?

        init(rank r: Int, features f: Int, rightLength v: Int, columns m: Int, thresholdLength e: Int, dynamics d: Int,
             optimal: Bool, generator: SeededGenerator, productWorkspace: BlockProductPlan.Workspace?,
             thresholdWorkspace: BlockProductPlan.Workspace?) {
            let n = r + 1
            left = [Scalar](repeating: 0, count: f * r)
            right = [Scalar](repeating: 0, count: v * r)
            dynamics = [Scalar](repeating: 0, count: d)
            bigLeft = [Scalar](repeating: 0, count: optimal ? f * n : 0)
            bigRight = [Scalar](repeating: 0, count: optimal ? v * n : 0)
            let small = optimal ? n * n : 0
            leftR = [Double](repeating: 0, count: small); rightR = leftR; core = leftR; x = leftR; y = leftR
            sigma = [Double](repeating: 0, count: optimal ? n : 0)
            order = [Int](repeating: 0, count: optimal ? n : 0)
            work = [Double](repeating: 0, count: n)
            leftCoefficients = [Double](repeating: 0, count: optimal ? n * r : 0)
            rightCoefficients = leftCoefficients
            reducer = OptimalReduction(rank: r)
            projected = [Double](repeating: 0, count: m * r)
            thresholds = [Scalar](repeating: 0, count: e)
            self.generator = generator
            self.productWorkspace = productWorkspace
            self.thresholdWorkspace = thresholdWorkspace
        }

        var bytes: Int {
            MemoryLayout<Scalar>.stride * (left.count + right.count + dynamics.count + bigLeft.count + bigRight.count
                                           + thresholds.count)
                + 8 * (leftR.count * 5 + sigma.count * 3 + work.count + leftCoefficients.count * 2 + projected.count)
                + 8 * (reducer.rank + 1) * (reducer.rank + 3) + (productWorkspace?.bytes ?? 0) + (thresholdWorkspace?.bytes ?? 0)
        }
    }

    let streams: [Stream]

    init(reduction: Reduction, model: Model<Scalar>, structure: ModelStructure, streams: Int, seed: UInt64,
         memoryBudget: Int) throws {
        let rank: Int
        switch reduction {
        case .kfRTRL: rank = 1
        case .optimal(let r):
            guard r >= 1 else { throw RTRLError.invalidOption("the rank of ok-R must be at least 1, not \(r)") }
            rank = r
        }
        let immediate = KroneckerImmediate(structure: structure)
        let k = model.hiddenSize, f = model.inputSize + k + 1, m = immediate.columnCount
        let (n, overflowN) = rank.addingReportingOverflow(1)
        let v = immediate.stateCount * m
        let e = immediate.thresholdParameter.isEmpty ? 0 : immediate.stateCount * k
        let d = structure.graph.jacobianTransposed.nonzeroCount
        let optimal = reduction != .kfRTRL
        // The terms alone (r of them, and r + 1 more before OK's reduction), checked without
        // overflow before anything else is sized from the rank.
        let (termBytes, overflowA) = (f + v).multipliedReportingOverflow(by: MemoryLayout<Scalar>.stride * (optimal ? 2 : 1))
        let (allTerms, overflowB) = termBytes.multipliedReportingOverflow(by: n)
        guard !overflowN, !overflowA, !overflowB, allTerms <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the \(optimal ? "OK (rank \(rank))" : "KF-RTRL") estimates of \(streams) stream(s)",
                                     neededBytes: overflowN || overflowA || overflowB ? Int.max : allTerms, budgetBytes: memoryBudget)
        }
        let scalars = f * rank + v * rank + d + (optimal ? (f + v) * n : 0) + e
        let perStream = MemoryLayout<Scalar>.stride * scalars + 8 * (6 * n * n + 4 * n + 2 * n * rank + m * rank)
        try EstimatorSupport.checkBudget(optimal ? "OK (rank \(rank))" : "KF-RTRL", streams: streams,
                                         bytesPerStream: perStream, budget: memoryBudget)
        // D (from Dᵀ's values, read in place) times every term: one block of all S rows per term.
        let dt = structure.graph.jacobianTransposed
        let (dPattern, position) = dt.transposedWithPositions()
        let everyRow = (0..<immediate.stateCount).map { Int32($0) }
        let planBudget = max(0, memoryBudget - streams * perStream)
        let productPlan = try BlockProductPlan(
            a: dPattern, aValueIndex: position, aValueCount: d,
            blocks: (0..<rank).map { _ in BlockProductPlan.Block(rows: everyRow, columnCount: m, columnSumStart: 0) },
            columnSumCount: m, memoryBudget: planBudget, scalar: Scalar.self)
        let thresholdPlan = e == 0 ? nil : try BlockProductPlan(
            a: dPattern, aValueIndex: position, aValueCount: d,
            blocks: [BlockProductPlan.Block(rows: everyRow, columnCount: k, columnSumStart: 0)],
            columnSumCount: k, memoryBudget: planBudget, scalar: Scalar.self)
        self.reduction = reduction
        self.rank = rank
        self.featureCount = f
        self.immediate = immediate
        self.rightLength = v
        self.productPlan = productPlan
        self.thresholdPlan = thresholdPlan
        // E[q, j] (state q, threshold ϑ_j of unit j = the parameter's storage index) at q·k + j.
        let layout = structure.layout
        func thresholdPosition(_ state: Int, _ parameter: Int) -> Int? {
            parameter < 0 ? nil : state * k + Int(layout.storage[parameter])
        }
        self.thresholdTerms = e == 0 ? nil : ThresholdImmediate(layout: layout, weightHH: model.parameters.weightHH.pattern,
                                                                 hiddenSize: k, column: thresholdPosition,
                                                                 position: thresholdPosition)
        self.streams = try (0..<streams).map {
            Stream(rank: rank, features: f, rightLength: v, columns: m, thresholdLength: e, dynamics: d, optimal: optimal,
                   generator: EstimatorSupport.generator(seed: seed, stream: $0),
                   productWorkspace: try productPlan.makeWorkspace(), thresholdWorkspace: try thresholdPlan?.makeWorkspace())
        }
        super.init(structure: structure, streams: streams)
    }

    override func reset(stream b: Int) {
        let st = streams[b]
        st.left.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        st.right.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        st.thresholds.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    override var bytes: Int { streams.reduce(0) { $0 + $1.bytes } }

    /// Multiply-adds: the products (nnz(D)·m per term, nnz(D)·k for the thresholds), the reduction
    /// (KF-RTRL: scaling A, S·m; OK: CGS2 of r + 1 columns of length S·m on each side — two passes of
    /// j dot products and j updates for column j, plus the norms — and the r new terms from r + 1),
    /// and the gradient (A_jᵀw and Σ_j u_j·(A_jᵀw) per parameter). Bytes: the terms read and
    /// written once (OK: also the r + 1 columns before the reduction), D and the thresholds once.
    override var workPerStep: (multiplyAdds: Int, bytes: Int)? {
        let v = rightLength, f = featureCount, r = rank, n = r + 1, p = structure.layout.count
        let products = productPlan.multiplyAdds + (thresholdPlan?.multiplyAdds ?? 0)
        let gradient = r * v + r * p + (thresholdPlan == nil ? 0 : immediate.stateCount * immediate.hiddenSize)
        let reductionWork: Int, values: Int
        switch reduction {
        case .kfRTRL:
            reductionWork = v + 2 * f
            values = 2 * r * v
        case .optimal:
            reductionWork = (2 * n * (n - 1) + 2 * n) * (v + f) + n * r * (v + f)
            values = 2 * r * v + 2 * n * v
        }
        let d = structure.graph.jacobianTransposed.nonzeroCount
        let thresholds = thresholdPlan == nil ? 0 : 2 * immediate.stateCount * immediate.hiddenSize
        return (products + reductionWork + gradient, MemoryLayout<Scalar>.stride * (values + d + thresholds))
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    override func update(stream b: Int, model: Model<Scalar>, record: StepRecord<Scalar>) throws {
        let st = streams[b], graph = structure.graph
        st.dynamics.withUnsafeMutableBufferPointer { dt in
            StepJacobian.dynamicsTransposed(graph: graph, weightHH: model.parameters.weightHH, record: record, into: dt)
        }
        // A_j ← D A_j for every term, and E ← D E + I_ϑ.
        try st.dynamics.withUnsafeBufferPointer { dt in
            try st.right.withUnsafeMutableBufferPointer {
                try productPlan.execute(a: dt, x: $0, additions: UnsafeBufferPointer(start: nil, count: 0), workspace: st.productWorkspace!)
            }
            if let thresholdPlan, let thresholdTerms, let workspace = st.thresholdWorkspace {
                try st.thresholds.withUnsafeMutableBufferPointer {
                    try thresholdPlan.execute(a: dt, x: $0, additions: UnsafeBufferPointer(start: nil, count: 0), workspace: workspace)
                    thresholdTerms.add(weightHH: model.parameters.weightHH, record: record, into: $0)
                }
            }
        }
        switch reduction {
        case .kfRTRL: updateKF(st, record: record)
        case .optimal: updateOptimal(st, record: record)
        }
    }

    /// KF-RTRL's random combination of u ⊗ DA and ĥ ⊗ Δ.
    private func updateKF(_ st: Stream, record: StepRecord<Scalar>) {
        record.immediateFeatures.withUnsafeBufferPointer { features in
            Self.combineKF(st, features: features, rightLength: rightLength, newRightNorm: immediate.coefficientSquaredNorm(record).squareRoot()) {
                immediate.addCoefficients(record, scale: $1, into: $0)
            }
        }
    }

    /// KF-RTRL's step on one stream's factors: u ← c1 p1 u + c2 p2 ĥ, A ← c1 (D A)/p1 + c2 Δ/p2 (the
    /// right factor already holds D A; `addNewRight(a, scale)` adds scale · Δ into a, whose norm
    /// is `newRightNorm`). Shared with the stacked models' form.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func combineKF(_ st: Stream, features: UnsafeBufferPointer<Scalar>, rightLength: Int, newRightNorm: Double,
                          addNewRight: (UnsafeMutableBufferPointer<Scalar>, Scalar) -> Void) {
        let f = features.count
        let c1 = st.generator.nextSign(), c2 = st.generator.nextSign()
        let productNorm = st.right.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let uNorm = st.left.withUnsafeBufferPointer { EstimatorSupport.squaredNorm($0) }.squareRoot()
        let featureNorm = EstimatorSupport.squaredNorm(features).squareRoot()
        let p1 = EstimatorSupport.scaling(productNorm, uNorm), p2 = EstimatorSupport.scaling(newRightNorm, featureNorm)
        let leftOld = Scalar(c1 * p1), leftNew = Scalar(c2 * p2)
        for t in 0..<f { st.left[t] = leftOld * st.left[t] + leftNew * features[t] }
        let rightOld = Scalar(c1 / p1), rightNew = Scalar(c2 / p2)
        st.right.withUnsafeMutableBufferPointer { a in
            for t in 0..<rightLength { a[t] *= rightOld }
            addNewRight(a, rightNew)
        }
    }

    /// OK's reduction of the r + 1 terms to r.
    private func updateOptimal(_ st: Stream, record: StepRecord<Scalar>) {
        record.immediateFeatures.withUnsafeBufferPointer { features in
            Self.reduceOptimal(st, features: features, rightLength: rightLength, rank: rank) { immediate.addCoefficients(record, scale: 1, into: $0) }
        }
    }

    /// OK's reduction of one stream's r terms (the right factors already holding D A_j) and the new
    /// term ĥ ⊗ Δ (`addNewRight(a)` adds Δ into a) to r terms. Shared with the stacked models' form.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func reduceOptimal(_ st: Stream, features: UnsafeBufferPointer<Scalar>, rightLength kk: Int, rank r: Int,
                              addNewRight: (UnsafeMutableBufferPointer<Scalar>) -> Void) {
        let f = features.count, n = r + 1
        // The new term ĥ ⊗ Δ in the last columns.
        for t in 0..<(f * r) { st.bigLeft[t] = st.left[t] }
        for t in 0..<f { st.bigLeft[f * r + t] = features[t] }
        st.bigRight.withUnsafeMutableBufferPointer { big in
            _ = st.right.withUnsafeBufferPointer { UnsafeMutableBufferPointer(rebasing: big[0..<(kk * r)]).update(fromContentsOf: $0) }
            let last = UnsafeMutableBufferPointer(rebasing: big[(kk * r)..<(kk * n)])
            last.update(repeating: 0)
            addNewRight(last)
        }
        // Orthonormalise both sides; the core is R_u R_vᵀ.
        let tolerance = 64 * Double(Scalar.ulpOfOne)
        st.work.withUnsafeMutableBufferPointer { work in
            st.bigLeft.withUnsafeMutableBufferPointer { a in
                st.leftR.withUnsafeMutableBufferPointer { SmallDense.orthonormalize(a, length: f, count: n, r: $0, work: work, tolerance: tolerance) }
            }
            st.bigRight.withUnsafeMutableBufferPointer { a in
                st.rightR.withUnsafeMutableBufferPointer { SmallDense.orthonormalize(a, length: kk, count: n, r: $0, work: work, tolerance: tolerance) }
            }
        }
        for l in 0..<n {
            for i in 0..<n {
                var sum = 0.0
                for j in max(i, l)..<n { sum += st.leftR[i + j * n] * st.rightR[l + j * n] } // both upper triangular
                st.core[i + l * n] = sum
            }
        }
        st.core.withUnsafeMutableBufferPointer { m in
            st.x.withUnsafeMutableBufferPointer { x in
                st.y.withUnsafeMutableBufferPointer { y in
                    st.sigma.withUnsafeMutableBufferPointer { sigma in
                        st.order.withUnsafeMutableBufferPointer { order in
                            SmallDense.singularValueDecomposition(m, n: n, x: x, sigma: sigma, y: y, order: order)
                        }
                    }
                }
            }
        }
        _ = st.x.withUnsafeBufferPointer { x in
            st.y.withUnsafeBufferPointer { y in
                st.sigma.withUnsafeBufferPointer { sigma in
                    st.leftCoefficients.withUnsafeMutableBufferPointer { lc in
                        st.rightCoefficients.withUnsafeMutableBufferPointer { rc in
                            st.reducer.reduce(x: x, sigma: sigma, y: y, left: lc, right: rc, generator: &st.generator)
                        }
                    }
                }
            }
        }
        // New factors: u_j = Q_u · L[:, j], vec(A_j) = Q_v · R[:, j].
        Self.combine(st.bigLeft, length: f, count: n, coefficients: st.leftCoefficients, terms: r, into: &st.left)
        Self.combine(st.bigRight, length: kk, count: n, coefficients: st.rightCoefficients, terms: r, into: &st.right)
    }

    /// out[:, j] = Σ_i q[:, i] · c[i, j] for j < terms.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func combine(_ q: [Scalar], length: Int, count n: Int, coefficients c: [Double], terms: Int, into out: inout [Scalar]) {
        q.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { out in
                for j in 0..<terms {
                    let target = out.baseAddress! + j * length
                    for t in 0..<length { target[t] = 0 }
                    for i in 0..<n {
                        let coefficient = Scalar(c[i + j * n])
                        if coefficient == 0 { continue }
                        let source = q.baseAddress! + i * length
                        for t in 0..<length { target[t] += coefficient * source[t] }
                    }
                }
            }
        }
    }

    /// g[θ] += Σ_j u_j[f(θ)] · (A_jᵀ w)[column(θ)]; an EGRU threshold ϑ_j gets wᵀ E[:, j].
    override func accumulate(stream b: Int, stateWeights w: UnsafeBufferPointer<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        Self.accumulate(streams[b], rows: immediate.stateCount, columns: immediate.columnCount, features: featureCount, rank: rank,
                        featureIndex: structure.layout.featureIndex, columnOfParameter: immediate.columnOfParameter,
                        thresholdParameter: immediate.thresholdParameter, stateWeights: w, into: g)
    }

    /// The gradient of one stream's factors whose right factors have `rows` rows (the state
    /// variables, or a stack's), w over those rows. Shared with the stacked models' form.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func accumulate(_ st: Stream, rows s: Int, columns m: Int, features f: Int, rank r: Int, featureIndex: [Int32],
                           columnOfParameter: [Int32], thresholdParameter: [Int32], stateWeights w: UnsafeBufferPointer<Scalar>,
                           into g: UnsafeMutableBufferPointer<Scalar>) {
        let rightLength = s * m
        if !st.thresholds.isEmpty {
            let k = thresholdParameter.count
            st.thresholds.withUnsafeBufferPointer { e in
                for j in 0..<k {
                    var sum = 0.0
                    for q in 0..<s { sum += Double(w[q]) * Double(e[q * k + j]) }
                    g[Int(thresholdParameter[j])] += Scalar(sum)
                }
            }
        }
        // A_jᵀ w, row by row of A_j.
        st.projected.withUnsafeMutableBufferPointer { projected in
            projected.update(repeating: 0)
            st.right.withUnsafeBufferPointer { a in
                for j in 0..<r {
                    let out = projected.baseAddress! + j * m
                    for q in 0..<s {
                        let weight = Double(w[q])
                        if weight == 0 { continue }
                        let row = a.baseAddress! + j * rightLength + q * m
                        for e in 0..<m { out[e] += weight * Double(row[e]) }
                    }
                }
            }
        }
        let any = st.projected.contains { $0 != 0 }
        if !any { return }
        featureIndex.withUnsafeBufferPointer { feature in
            columnOfParameter.withUnsafeBufferPointer { columnOf in
                st.left.withUnsafeBufferPointer { u in
                    st.projected.withUnsafeBufferPointer { projected in
                        for t in 0..<g.count {
                            let e = Int(columnOf[t])
                            if e < 0 { continue }
                            let fi = Int(feature[t])
                            var sum = 0.0
                            for j in 0..<r { sum += Double(u[j * f + fi]) * projected[j * m + e] }
                            g[t] += Scalar(sum)
                        }
                    }
                }
            }
        }
    }

    /// Checkpoint state: the Kronecker factors and the generator (the rest is per-step scratch).
    override func saveState(stream b: Int) throws -> [[Scalar]] {
        let st = streams[b]
        return [st.left, st.right, packGenerator(st.generator)] + (st.thresholds.isEmpty ? [] : [st.thresholds])
    }

    override func restoreState(stream b: Int, _ arrays: [[Scalar]]) throws {
        let st = streams[b]
        guard arrays.count == (st.thresholds.isEmpty ? 3 : 4) else {
            throw RTRLError.invalidInput("the checkpoint's estimator state is malformed")
        }
        st.left = try restored(arrays[0], count: st.left.count, "estimator factors")
        st.right = try restored(arrays[1], count: st.right.count, "estimator factors")
        st.generator = try unpackGenerator(arrays[2])
        if !st.thresholds.isEmpty { st.thresholds = try restored(arrays[3], count: st.thresholds.count, "threshold influence") }
    }
}
