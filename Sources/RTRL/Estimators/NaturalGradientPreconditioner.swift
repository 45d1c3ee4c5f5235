import Foundation

/// NoBackTrack's Kalman-like variant (Ollivier, Tallec & Charpiat, arXiv 1507.07680) read as
/// online natural gradient (Ollivier, "Online natural gradient as a Kalman filter", arXiv
/// 1703.00209): the parameters move by
///
///     θ ← θ − η (F̂ + λI)⁻¹ g̃
///
/// with g̃ the (unbiased, noisy) gradient estimate of the step and F̂ a running estimate of the
/// Fisher matrix built from those estimates. This class supplies the direction (F̂ + λI)⁻¹ g̃; the
/// training loop owns θ and η.
///
/// **Structure.** F is kept block-diagonal, one dense block per unit: the parameters writing
/// unit i (contiguous in `ParameterLayout`'s numbering, f_i of them) form block i, and entries
/// between units are dropped — the same per-unit split NoBackTrack applies to its influence
/// estimate, and what keeps F at Σ f_i² entries instead of p². Each block's upper triangle is
/// packed by columns (the order of the block-diagonal upper pattern, ``pattern``), and it is
/// factorised block by block by the kernel layer's dense packed Cholesky (`BlockDiagonalCholesky`:
/// Σ f_i³/6 multiply-adds over contiguous columns) every `refactorInterval` steps and solved
/// every step. (CHOLMOD's simplicial factorisation did this before; on blocks this small its
/// sparse bookkeeping cost several times the arithmetic, Docs/BENCHMARKS.md.)
///
/// **Per step** (`direction(for:into:)`): F ← decay·F + (1 − decay)·g̃ g̃ᵀ on every block
/// (O(Σ f_i²)); every m-th call (and at the first) the numeric factor of F̂ + λI is recomputed
/// with F̂ = F / (1 − decayᵗ) (bias-corrected, so the first steps are not dominated by the zero
/// start); then one solve with the current factor (O(Σ f_i²)).
///
/// **Schedules and observations.** Two schedules average observations into F̂. The default is the
/// static-parameter Kalman filter: the averaging schedule (weights 1/(t₀ + t) after a prior
/// F₀ = f₀·I worth t₀ observations), stepped by η/(t₀ + t). Fed the true Fisher of the output
/// through ``observe(factors:weights:)`` (x xᵀ for a linear output with unit Gaussian noise,
/// ``softmaxFisherFactors(probabilities:logitJacobian:into:)`` for a softmax), with η = 1 on a
/// linear-Gaussian model it is recursive least squares, exactly
/// (`Tests/RTRLTests/KalmanFilterTests.swift` checks that to 1e-10, for one block and block by
/// block, and the softmax Fisher against a dense computation). The other schedule forgets
/// exponentially (`decay`). `direction(for:into:)` observes the gradient itself (the empirical
/// Fisher g̃ g̃ᵀ), which is what the trainer feeds it.
///
/// **Defaults, and why** (measured on the package's copy and delayed-recall tasks, Docs/RESULTS.md).
/// - The averaging schedule with t₀ = 100 and f₀ = 10⁻², stepped by η/(t₀ + t) with η = 1 (the
///   trainer's default rate for `--optimizer natural`): the prior covariance is P₀ = (t₀f₀)⁻¹ I
///   = I, so the first step on a block b is η g_b/(1 + ‖g_b‖²) — an SGD step of rate η that the
///   observation itself caps at ½ in length — and later steps shrink as information accumulates,
///   as the filter's do. The exponential schedule (decay 0.99), the default before, made F̂ ≈ the
///   last 100 gradients' g gᵀ: its step ~ g/‖g‖² grows as gradients vanish, and with the readout
///   preconditioned too it diverged on the copy task at every rate tried (10⁻³ … 10⁻¹).
/// - `damping` λ = 10⁻³ · tr(F̂)/p: relative to the average diagonal, so the direction is
///   invariant to the scale of the loss (gradients × c give directions × 1/c); it keeps F̂ + λI
///   safely positive definite (λ ≥ 10⁻³/p of any block's largest eigenvalue, far above
///   rounding) and bounds the step in directions nothing has explored where there is no prior.
///   Only while F̂ is exactly zero (no prior, and only zero gradients observed) is
///   λ = `minimumDamping` (10⁻⁸) instead.
/// - `refactorInterval` m = 10: a refactorisation costs Σ f_i³/3, a solve or an update 2Σ f_i²;
///   with f_i ≈ 100 that is ~15 updates' worth, so every 10 steps the factorisation costs about
///   as much as the per-step work, and in 10 steps F̂ changes by at most 10/(t₀ + t) ≤ 10% — a
///   stale preconditioner that the damping absorbs (any SPD matrix gives a descent direction).
public final class NaturalGradientPreconditioner {
    /// How observations are averaged into the Fisher estimate F̂.
    public enum Schedule: Sendable, Hashable, Codable {
        /// Fading memory: F ← decay·F + (1 − decay)·(observation), and F̂ = F/(1 − decayᵗ) after t
        /// observations (bias-corrected). The filter of a parameter that drifts; decay in [0, 1).
        case exponential(decay: Double)
        /// The static-parameter Kalman filter: F̂_t = (t₀·F₀ + Σ_{s ≤ t} observation_s)/(t₀ + t),
        /// with the prior F₀ = `priorFisher`·I weighted as t₀ = `priorWeight` observations. With
        /// observations x xᵀ of a linear-Gaussian model, no damping, refactorisation every step
        /// and the step θ ← θ − (F̂_t)⁻¹ g / (t₀ + t), this is recursive least squares with
        /// P₀ = (t₀·F₀)⁻¹ (Ollivier, arXiv 1703.00209).
        case averaging(priorWeight: Double)
    }

    /// The filter's settings (see the type's documentation for the defaults).
    public struct Options: Sendable, Hashable, Codable {
        /// How observations are averaged (the Kalman filter's averaging by default).
        public var schedule: Schedule
        /// The exponential schedule's forgetting factor (1 for the averaging schedule); setting it
        /// selects the exponential schedule.
        public var decay: Double {
            get { if case .exponential(let decay) = schedule { return decay } else { return 1 } }
            set { schedule = .exponential(decay: newValue) }
        }
        /// F₀ = priorFisher·I, the averaging schedule's prior (≥ 0; unused by the exponential one).
        public var priorFisher: Double
        /// λ relative to the average diagonal of F̂.
        public var damping: Double
        /// λ while F̂ is zero (> 0).
        public var minimumDamping: Double
        /// Refactorise every this many steps (≥ 1).
        public var refactorInterval: Int

        /// The exponential schedule with forgetting factor `decay` (0.99 remembers about 100 steps).
        public init(decay: Double, damping: Double = 1e-3, minimumDamping: Double = 1e-8, refactorInterval: Int = 10) {
            self.schedule = .exponential(decay: decay)
            self.priorFisher = 0
            self.damping = damping
            self.minimumDamping = minimumDamping
            self.refactorInterval = refactorInterval
        }

        /// Any schedule; with no arguments, the documented defaults (the Kalman filter's averaging
        /// with t₀ = 100 and F₀ = 10⁻²·I; see the type's documentation for why). For the averaging
        /// schedule, `damping` may be 0 when the prior makes F̂ positive definite (`priorWeight` ·
        /// `priorFisher` > 0).
        public init(schedule: Schedule = .averaging(priorWeight: 100), priorFisher: Double = 1e-2, damping: Double = 1e-3,
                    minimumDamping: Double = 1e-8, refactorInterval: Int = 10) {
            self.schedule = schedule
            self.priorFisher = priorFisher
            self.damping = damping
            self.minimumDamping = minimumDamping
            self.refactorInterval = refactorInterval
        }

        /// Throws `RTRLError.invalidOption` for settings out of range: a decay outside [0, 1), a
        /// negative or non-finite prior, negative damping, a minimum damping that is not positive,
        /// a refactorisation interval below 1.
        public func validate() throws {
            switch schedule {
            case .exponential(let decay):
                guard decay >= 0, decay < 1 else {
                    throw RTRLError.invalidOption("the Fisher decay must be in [0, 1), not \(decay)")
                }
            case .averaging(let priorWeight):
                guard priorWeight >= 0, priorWeight.isFinite, priorFisher >= 0, priorFisher.isFinite else {
                    throw RTRLError.invalidOption("the Fisher prior's weight and scale must be finite and ≥ 0, not \(priorWeight) and \(priorFisher)")
                }
            }
            guard damping >= 0, damping.isFinite, minimumDamping > 0, minimumDamping.isFinite else {
                throw RTRLError.invalidOption("the damping must be ≥ 0 and the minimum damping > 0 (finite), not \(damping) and \(minimumDamping)")
            }
            guard refactorInterval >= 1 else {
                throw RTRLError.invalidOption("the refactorisation interval must be at least 1, not \(refactorInterval)")
            }
        }
    }

    /// The options the preconditioner was built with.
    public let options: Options
    /// Block b holds parameters `blockStarts[b] ..< blockStarts[b + 1]`.
    public let blockStarts: [Int]
    /// p: the length of the gradients.
    public let parameterCount: Int
    /// The upper triangle (with the diagonal) of the block-diagonal pattern.
    public let pattern: SparsityPattern
    /// Gradients observed since the last `reset`.
    public private(set) var observations = 0
    /// Numeric factorisations done since the preconditioner was built.
    public private(set) var factorizations = 0
    /// λ of the last factorisation.
    public private(set) var lastDamping = 0.0

    private let cholesky: BlockDiagonalCholesky
    /// F's running values (not bias-corrected), F̂ + λI as last factorised, and the diagonal's
    /// positions.
    private var running: [Double]
    private var factorized: [Double]
    private let diagonal: [Int]
    private var stepsSinceFactorization = 0
    private var hasFactor = false
    private var right: [Double]
    private var solution: [Double]
    /// Scratch for `observe(factors:weights:)`: the factors in Double, grown to the largest count seen.
    private var factorScratch: [Double] = []

    /// A preconditioner over a model's core parameters θ, one block per unit.
    public convenience init(layout: ParameterLayout, options: Options = Options(),
                            memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        try self.init(blockStarts: layout.unitStart.map { Int($0) }, options: options, memoryBudget: memoryBudget)
    }

    /// A preconditioner over p = `blockStarts.last` parameters with the given contiguous blocks.
    ///
    /// - Throws: `RTRLError.invalidOption` for settings out of range or blocks that are not
    ///   increasing from 0; `.tooLarge` if the blocks' values (three copies: the running F, the
    ///   matrix factorised, its factor) and a dense square of the largest block exceed `memoryBudget`.
    public init(blockStarts: [Int], options: Options = Options(),
                memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        try options.validate()
        guard let first = blockStarts.first, first == 0, blockStarts.count >= 2,
              zip(blockStarts, blockStarts.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw RTRLError.invalidOption("parameter blocks must start at 0 and strictly increase, not \(blockStarts.prefix(8))…")
        }
        let p = blockStarts.last!
        let sizes = BlockDiagonalCholesky.allocatedValues(blockStarts: blockStarts), entries = sizes.factor
        // Running F, the matrix factorised and its factor; the pattern; vectors; the factorisation's square.
        let needed = 3 * 8 * entries + 4 * (entries + p + 1) + 3 * 8 * p + 8 * sizes.square
        guard needed <= memoryBudget, entries <= Int(Int32.max) else {
            throw RTRLError.tooLarge(what: "a block-diagonal Fisher matrix of \(p) parameters in \(blockStarts.count - 1) blocks (\(entries) entries)",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        let cholesky = try BlockDiagonalCholesky(blockStarts: blockStarts)
        // The packed blocks' order is the upper pattern's; column j's diagonal is its last entry.
        let pattern = cholesky.upperPattern
        self.options = options
        self.blockStarts = blockStarts
        self.parameterCount = p
        self.pattern = pattern
        self.diagonal = (0..<p).map { Int(pattern.columnPointers[$0 + 1]) - 1 }
        self.cholesky = cholesky
        running = [Double](repeating: 0, count: entries)
        factorized = running
        right = [Double](repeating: 0, count: p)
        solution = right
        reset()
    }

    /// Forgets the Fisher estimate (and the factor): F = 0, or t₀·F₀ for the averaging schedule.
    public func reset() {
        running.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        if case .averaging(let priorWeight) = options.schedule {
            for j in 0..<parameterCount { running[diagonal[j]] = priorWeight * options.priorFisher }
        }
        observations = 0
        hasFactor = false
        stepsSinceFactorization = 0
    }

    /// One observation g gᵀ (the empirical Fisher of a gradient), on every block.
    @_specialize(where S == Double)
    @_specialize(where S == Float)
    public func observe<S: SparseScalar>(_ g: UnsafeBufferPointer<S>) throws {
        try load(g)
        right.withUnsafeBufferPointer { g in accumulate(g.baseAddress!, count: 1, weights: nil) }
        observations += 1
    }

    /// One observation Σ_r weights[r] · v_r v_rᵀ, on every block, for the r = `weights.count`
    /// vectors v_r stored one after another in `factors` (r·p values). The true Fisher of a
    /// model's output is a sum of that form: x xᵀ for a linear output with unit Gaussian noise;
    /// for a softmax output, see ``softmaxFisherFactors(probabilities:logitJacobian:into:)``.
    /// Allocates nothing once it has seen `weights.count` vectors.
    @_specialize(where S == Double)
    @_specialize(where S == Float)
    public func observe<S: SparseScalar>(factors: UnsafeBufferPointer<S>, weights: UnsafeBufferPointer<Double>) throws {
        let r = weights.count
        guard factors.count == r * parameterCount else {
            throw RTRLError.invalidInput("\(r) Fisher factors of \(parameterCount) parameters need \(r * parameterCount) values, not \(factors.count)")
        }
        for k in 0..<r where !(weights[k].isFinite && weights[k] >= 0) {
            throw RTRLError.invalidInput("Fisher factor weight \(k) must be finite and ≥ 0, not \(weights[k])")
        }
        if factorScratch.count < factors.count { factorScratch = [Double](repeating: 0, count: factors.count) }
        for t in 0..<factors.count {
            let value = Double(factors[t])
            guard value.isFinite else { throw RTRLError.invalidInput("Fisher factor value \(t) is not finite (\(value))") }
            factorScratch[t] = value
        }
        factorScratch.withUnsafeBufferPointer { v in accumulate(v.baseAddress!, count: r, weights: weights) }
        observations += 1
    }

    /// F ← decay·F + (1 − decay)·Σ_r w_r v_r v_rᵀ (exponential), or F ← F + Σ_r w_r v_r v_rᵀ
    /// (averaging: F holds t₀·F₀ plus the sum of the observations), on every block.
    private func accumulate(_ v: UnsafePointer<Double>, count r: Int, weights: UnsafeBufferPointer<Double>?) {
        let p = parameterCount
        let decay: Double, weight: Double
        switch options.schedule {
        case .exponential(let d): decay = d; weight = 1 - d
        case .averaging: decay = 1; weight = 1
        }
        running.withUnsafeMutableBufferPointer { f in
            var position = 0
            for b in 0..<(blockStarts.count - 1) {
                let start = blockStarts[b]
                for j in start..<blockStarts[b + 1] {
                    if r == 1 && weights == nil {
                        // One unweighted vector (a gradient): a scaled column, which vectorises.
                        let vj = weight * v[j]
                        for i in start...j {
                            f[position] = decay * f[position] + vj * v[i]
                            position += 1
                        }
                        continue
                    }
                    for i in start...j {
                        var sum = 0.0
                        for k in 0..<r { sum += (weights?[k] ?? 1) * v[k * p + j] * v[k * p + i] }
                        f[position] = decay * f[position] + weight * sum
                        position += 1
                    }
                }
            }
        }
    }

    /// The factor that turns F into F̂: 1/(1 − decayᵗ) (exponential, 0 before any observation), or
    /// 1/(t₀ + t) (averaging; 0 while t₀ + t = 0).
    private var normalisation: Double {
        switch options.schedule {
        case .exponential(let decay):
            return observations == 0 ? 0 : 1 / (1 - Foundation.pow(decay, Double(observations)))
        case .averaging(let priorWeight):
            let total = priorWeight + Double(observations)
            return total > 0 ? 1 / total : 0
        }
    }

    /// Factorises F̂ + λI now, with F̂ as the schedule defines it and λ = damping·tr(F̂)/p
    /// (minimumDamping while F̂ = 0; for the exponential schedule also whenever that product is 0).
    public func refactorize() throws {
        let correction = normalisation
        var trace = 0.0
        for j in 0..<parameterCount { trace += running[diagonal[j]] }
        var lambda = options.damping * correction * trace / Double(parameterCount)
        if case .averaging = options.schedule {
            if !(correction * trace > 0) { lambda = options.minimumDamping }
        } else if !(lambda > 0) {
            lambda = options.minimumDamping
        }
        for t in 0..<running.count { factorized[t] = correction * running[t] }
        for j in 0..<parameterCount { factorized[diagonal[j]] += lambda }
        hasFactor = false
        try cholesky.factorize(values: factorized)
        hasFactor = true
        lastDamping = lambda
        factorizations += 1
        stepsSinceFactorization = 0
    }

    /// out = (F̂ + λI)⁻¹ g with the last factorisation (`g` and `out` may be the same memory).
    @_specialize(where S == Double)
    @_specialize(where S == Float)
    public func solve<S: SparseScalar>(_ g: UnsafeBufferPointer<S>, into out: UnsafeMutableBufferPointer<S>) throws {
        guard hasFactor else { throw RTRLError.invalidInput("the natural-gradient preconditioner has no factorisation yet") }
        guard out.count == parameterCount else {
            throw RTRLError.invalidInput("the preconditioned direction has \(parameterCount) values, not \(out.count)")
        }
        try load(g)
        try right.withUnsafeBufferPointer { b in
            try solution.withUnsafeMutableBufferPointer { x in try cholesky.solve(b, into: x) }
        }
        for t in 0..<parameterCount { out[t] = S(solution[t]) }
    }

    /// One step of the filter: observe g, refactorise if `refactorInterval` steps have passed
    /// since the last factorisation (or there is none), and write (F̂ + λI)⁻¹ g into `out`.
    @_specialize(where S == Double)
    @_specialize(where S == Float)
    public func direction<S: SparseScalar>(for g: UnsafeBufferPointer<S>, into out: UnsafeMutableBufferPointer<S>) throws {
        try observe(g)
        if !hasFactor || stepsSinceFactorization >= options.refactorInterval { try refactorize() }
        stepsSinceFactorization += 1
        try solve(g, into: out)
    }

    /// `direction(for:into:)` for arrays.
    public func direction<S: SparseScalar>(for g: [S]) throws -> [S] {
        var out = [S](repeating: 0, count: parameterCount)
        try g.withUnsafeBufferPointer { gv in try out.withUnsafeMutableBufferPointer { try direction(for: gv, into: $0) } }
        return out
    }

    /// The matrix F̂ + λI of the last factorisation (upper triangle and diagonal stored).
    public var factorizedMatrix: SparseMatrix<Double> { try! SparseMatrix(pattern: pattern, values: factorized) }

    /// The current bias-corrected estimate F̂ (upper triangle and diagonal stored).
    public var fisher: SparseMatrix<Double> {
        let correction = normalisation
        return try! SparseMatrix(pattern: pattern, values: running.map { $0 * correction })
    }

    /// The Fisher factors of a softmax output over o classes, for ``observe(factors:weights:)``:
    /// with p = `probabilities` and J_c = ∂z_c/∂θ the rows of `logitJacobian` (o·n values, row c
    /// the gradient of logit c), writes v_c = J_c − Σ_k p_k J_k into `factors` (o·n values); with
    /// weights p_c, Σ_c p_c v_c v_cᵀ = Jᵀ(diag(p) − p pᵀ)J, the Fisher matrix of the softmax
    /// output (the expected outer product of ∇ log p_y over y drawn from p).
    public static func softmaxFisherFactors<S: SparseScalar>(probabilities: UnsafeBufferPointer<Double>,
                                                             logitJacobian: UnsafeBufferPointer<S>,
                                                             into factors: UnsafeMutableBufferPointer<S>) throws {
        let o = probabilities.count
        guard o > 0, logitJacobian.count % o == 0, factors.count == logitJacobian.count else {
            throw RTRLError.invalidInput("a softmax over \(o) classes needs a logit Jacobian of o·n values and as many factors, not \(logitJacobian.count) and \(factors.count)")
        }
        let n = logitJacobian.count / o
        for t in 0..<n {
            var mean = 0.0
            for c in 0..<o { mean += probabilities[c] * Double(logitJacobian[c * n + t]) }
            for c in 0..<o { factors[c * n + t] = S(Double(logitJacobian[c * n + t]) - mean) }
        }
    }

    /// Copies g into the Double buffer, checking its length and values.
    @_specialize(where S == Double)
    @_specialize(where S == Float)
    private func load<S: SparseScalar>(_ g: UnsafeBufferPointer<S>) throws {
        guard g.count == parameterCount else {
            throw RTRLError.invalidInput("the natural-gradient preconditioner takes \(parameterCount) gradient values, not \(g.count)")
        }
        for t in 0..<parameterCount {
            let value = Double(g[t])
            guard value.isFinite else { throw RTRLError.invalidInput("gradient value \(t) is not finite (\(value))") }
            right[t] = value
        }
    }
}

extension NaturalGradientPreconditioner {
    /// Everything that evolves, for checkpoints.
    public struct State: Codable, Sendable {
        var running: [Double]
        var factorized: [Double]
        var observations: Int
        var factorizations: Int
        var stepsSinceFactorization: Int
        var hasFactor: Bool
        var lastDamping: Double
    }

    /// The evolving state, for checkpoints.
    public func saveState() -> State {
        State(running: running, factorized: factorized, observations: observations, factorizations: factorizations,
              stepsSinceFactorization: stepsSinceFactorization, hasFactor: hasFactor, lastDamping: lastDamping)
    }

    /// Restores a saved state; the factor is recomputed from the saved matrix, bit for bit.
    public func restore(_ state: State) throws {
        guard state.running.count == running.count, state.factorized.count == factorized.count else {
            throw RTRLError.invalidInput("the checkpoint's preconditioner does not fit this model")
        }
        running = state.running
        factorized = state.factorized
        observations = state.observations
        factorizations = state.factorizations
        stepsSinceFactorization = state.stepsSinceFactorization
        lastDamping = state.lastDamping
        hasFactor = false
        if state.hasFactor {
            try cholesky.factorize(values: factorized)
            hasFactor = true
        }
    }
}

/// The preconditioner's running Fisher estimate and factor change with every call; use one per task.
@available(*, unavailable)
extension NaturalGradientPreconditioner: Sendable {}
