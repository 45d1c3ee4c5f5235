/// How a sparse influence matrix is stored and updated (both give the same numbers, to rounding).
public enum InfluenceLayout: String, CaseIterable, Sendable, Codable {
    /// The fast path (the unit blocks of the influence matrix): the block J[R, params] of each
    /// group of units that share a reach set stored contiguously and updated in place by
    /// D[R, R] with the kernel layer's `BlockProductPlan` — product, immediate term and gradient
    /// in one pass over J. (For the EGRU with skipping, held in column-scaled form instead.)
    case unitBlocked = "blocked"
    /// The generic masked product on Jᵀ stored one column per state variable: Jᵀ ← Jᵀ · Dᵀ.
    case stateMajor = "generic"
}
