import SparseKernels

/// A sparse influence matrix J on a SnAp-n (or exact) pattern for a batch of streams, updated
/// every step from the step's record:
///
///     J_t = (D_t J_{t−1} + I_t) ⊙ M,        g += wᵀ J_t   (w = ∂L_t/∂s_t)
///
/// Three storages implement it, each through one kernel-layer plan built once:
/// - `BlockedInfluence` (the default): unit blocks J[R(i), params of i], grouped where units
///   share a reach set, updated by `BlockProductPlan` — the product, the immediate term and the
///   gradient in one pass over J;
/// - `StateMajorInfluence` (`InfluenceLayout.stateMajor`): Jᵀ with one column per state
///   variable, the generic masked product of `MaskedProductPlan`;
/// - `ScaledInfluence`: the EGRU's activity-sparse form, J = Ŷ·diag(σ) updated in place by
///   `ScaledBlockProductPlan`, its work following the open units.
protocol InfluenceStorage<Scalar>: AnyObject {
    associatedtype Scalar: SparseScalar

    var pattern: InfluencePattern { get }
    /// The storage order's name in checkpoints.
    var storageName: String { get }
    /// Multiply-adds of one update that skips nothing.
    var multiplyAdds: Int { get }
    /// Memory held per stream, in bytes.
    var bytesPerStream: Int { get }

    /// One step of stream b: J ← (D J + I) ⊙ M from the record, then g += wᵀJ (w over state
    /// variables, g the stream's θ-ordered gradient).
    func update(stream b: Int, weightHH: SparseMatrix<Scalar>, record: StepRecord<Scalar>,
                stateWeights w: UnsafeBufferPointer<Scalar>, gradient g: UnsafeMutableBufferPointer<Scalar>) throws
    /// Starts stream b afresh (J = 0), first folding any deferred gradient into `gradient`.
    func reset(stream b: Int, gradient: UnsafeMutableBufferPointer<Scalar>)
    /// Adds stream b's deferred gradient (if the storage defers any) into a θ-ordered gradient,
    /// leaving it deferred.
    func addDeferredGradient(stream b: Int, into g: UnsafeMutableBufferPointer<Scalar>)
    /// Drops every stream's deferred gradient (with the learner's `resetGradient`).
    func resetDeferredGradient()
    /// Stream b's influence state for a checkpoint.
    func saveState(stream b: Int) -> InfluenceState<Scalar>
    /// Restores a state saved by a storage of the same name and pattern (counts are checked).
    func restoreState(stream b: Int, _ state: InfluenceState<Scalar>) throws
    /// The fraction of the storage's columns the last update of stream b wrote.
    func writtenFraction(stream b: Int) -> Double
    /// The fraction of the product's multiply-adds skipped in the last update of stream b.
    func skippedWorkFraction(stream b: Int) -> Double
}

extension InfluenceStorage {
    func addDeferredGradient(stream b: Int, into g: UnsafeMutableBufferPointer<Scalar>) {}
    func resetDeferredGradient() {}
    func writtenFraction(stream b: Int) -> Double { 1 }
    func skippedWorkFraction(stream b: Int) -> Double { 0 }
}

/// One stream's influence state as a checkpoint holds it: the values (in the storage's named
/// order) and, for the scaled form, its column scales and deferred gradient weights.
struct InfluenceState<Scalar: SparseScalar> {
    var values: [Scalar]
    var scales: [Scalar]?
    var pending: [Scalar]?
    /// The order's name in the checkpoint, where a storage reads more than one.
    var order: String? = nil
}

/// Checks a saved array's length.
func checkedCount<Scalar>(_ values: [Scalar], _ count: Int, _ what: String) throws -> [Scalar] {
    guard values.count == count else {
        throw RTRLError.invalidInput("the checkpoint's \(what) has \(values.count) values, not \(count)")
    }
    return values
}

/// The immediate term I_t of one unit and state component: for the f_i parameters θ of unit i,
/// `∂s'_(c,i)/∂θ = coefficient(c, θ) · feature(θ)` (`StepRecord`), written (or, scaled by
/// `factor`, added) to `target[0 ..< f_i]`.
struct ImmediateRow<Scalar: SparseScalar> {
    let coefficients: UnsafePointer<Scalar>
    let features: UnsafePointer<Scalar>
    let coefficientIndex: UnsafePointer<Int32>
    let featureIndex: UnsafePointer<Int32>

    @inline(__always)
    func write(first: Int, count: Int, into target: UnsafeMutablePointer<Scalar>) {
        for t in 0..<count {
            target[t] = coefficients[Int(coefficientIndex[first + t])] * features[Int(featureIndex[first + t])]
        }
    }

    @inline(__always)
    func add(first: Int, count: Int, into target: UnsafeMutablePointer<Scalar>, times factor: Scalar) {
        for t in 0..<count {
            target[t] += coefficients[Int(coefficientIndex[first + t])] * features[Int(featureIndex[first + t])] * factor
        }
    }
}

extension ParameterLayout {
    /// Calls `body` with the immediate-term reader of component c of a step record.
    @inline(__always)
    func withImmediateRow<Scalar: SparseScalar, R>(_ r: StepRecord<Scalar>, component c: Int, gateRows: Int,
                                                    _ body: (ImmediateRow<Scalar>) throws -> R) rethrows -> R {
        try r.immediateCoefficients.withUnsafeBufferPointer { coefficients in
            try r.immediateFeatures.withUnsafeBufferPointer { features in
                try coefficientIndex.withUnsafeBufferPointer { ci in
                    try featureIndex.withUnsafeBufferPointer { fi in
                        try body(ImmediateRow(coefficients: coefficients.baseAddress! + c * (2 * gateRows + 1),
                                              features: features.baseAddress!, coefficientIndex: ci.baseAddress!,
                                              featureIndex: fi.baseAddress!))
                    }
                }
            }
        }
    }
}
