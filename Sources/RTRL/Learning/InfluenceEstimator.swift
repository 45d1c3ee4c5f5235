/// A method that tracks (an estimate of) the influence J = ds/dθ of every stream by its own
/// means — the rank-one and Kronecker-sum estimators (UORO, NoBackTrack, KF-RTRL, OK). The
/// learner calls, per stream and step: `update` with the step's record (after the cell step), then
/// `accumulate` with w = ∂L_t/∂s_t to add the gradient estimate wᵀĴ_t into g (θ-ordered).
///
/// Subclasses override all four methods. They receive everything a step exposes through
/// `StepRecord` and the helpers of `StepJacobian` (D·v, Dᵀ·v, vᵀI), and allocate their
/// buffers in their initialiser, per stream, in separate objects.
class InfluenceEstimator<Scalar: SparseScalar> {
    let structure: ModelStructure
    let streamCount: Int

    init(structure: ModelStructure, streams: Int) {
        self.structure = structure
        self.streamCount = streams
    }

    /// Forgets stream b's estimate (a new sequence).
    func reset(stream b: Int) { fatalError("\(Self.self) must override reset(stream:)") }

    /// Advances stream b's estimate by one step: Ĵ_t ≈ D_t Ĵ_{t−1} + I_t.
    func update(stream b: Int, model: Model<Scalar>, record: StepRecord<Scalar>) throws {
        fatalError("\(Self.self) must override update(stream:model:record:)")
    }

    /// Adds wᵀĴ_t into g.
    func accumulate(stream b: Int, stateWeights w: UnsafeBufferPointer<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        fatalError("\(Self.self) must override accumulate(stream:stateWeights:into:)")
    }

    /// Bytes held by the estimate of all streams.
    var bytes: Int { 0 }

    /// One stream's work per step in the estimate's update and gradient (nil where it is not
    /// counted): multiply-adds, and the bytes of the least traffic (the estimate read and written
    /// once, D read once).
    var workPerStep: (multiplyAdds: Int, bytes: Int)? { nil }

    /// Stream b's evolving state (estimate and random generator) as arrays, for checkpoints.
    /// Subclasses that support checkpoints override this and `restoreState`.
    func saveState(stream b: Int) throws -> [[Scalar]] {
        throw RTRLError.invalidOption("checkpoints are not supported for \(Self.self)")
    }

    func restoreState(stream b: Int, _ arrays: [[Scalar]]) throws {
        throw RTRLError.invalidOption("checkpoints are not supported for \(Self.self)")
    }
}
