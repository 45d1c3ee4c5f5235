internal import CSparseKernels

/// A sparse Cholesky factorisation A = LLᵀ of a symmetric positive definite matrix through
/// CHOLMOD, for one fixed pattern: the initialiser analyses the pattern once (fill-reducing
/// ordering and symbolic factor, `cholmod_analyze`); `factorize(values:)` computes the numeric
/// factor for new values on the same pattern as often as needed (`cholmod_factorize`, reusing
/// the symbolic analysis and the factor's memory); `solve` applies A⁻¹ (`cholmod_solve2`, with
/// workspace kept between calls, so a solve allocates nothing after the first).
///
/// **Licensing.** Only CHOLMOD's *Cholesky* module (LGPL) is used: the workspace is set to
/// `CHOLMOD_SIMPLICIAL` before the analysis, so the GPL *Supernodal* module is never entered,
/// whatever the matrix. The factor is computed as LLᵀ (`final_ll`), so a matrix that is not
/// positive definite fails at its first non-positive pivot and is reported as such.
///
/// **Pattern.** A is square and symmetric; only its stored entries with row ≤ column (the upper
/// triangle and the diagonal) are read (`stype` = 1), so either the full symmetric pattern or its
/// upper triangle may be given. Values are given in the pattern's storage order. A diagonal entry
/// must be stored in every column.
///
/// One instance is not safe to use from two threads at once (it owns one CHOLMOD workspace).
public final class SparseCholesky {
    /// Fill-reducing orderings of the analysis.
    public enum Ordering: Sendable {
        /// No permutation: best for block-diagonal or banded matrices, which have no fill.
        case natural
        /// Approximate minimum degree.
        case amd
    }

    /// The pattern analysed (as given).
    public let pattern: SparsityPattern
    /// n, for an n × n matrix.
    public let dimension: Int
    /// Stored entries of the factor L (after the analysis: its symbolic size).
    public var factorNonzeros: Int { Int(factor.pointee.nzmax) }
    /// Whether `factorize` has succeeded at least once (a failed factorisation clears it).
    public private(set) var isFactorized = false

    private let cholmod: Cholmod
    /// What a failed factorisation or solve reports (built once: a step allocates nothing).
    private let factorizing: String
    private let solving: String
    private var factor: UnsafeMutablePointer<cholmod_factor>
    /// `solve` workspace (allocated by CHOLMOD on the first solve, reused afterwards).
    private var solution: UnsafeMutablePointer<cholmod_dense>?
    private var workY: UnsafeMutablePointer<cholmod_dense>?
    private var workE: UnsafeMutablePointer<cholmod_dense>?

    /// Analyses `pattern` (symbolic factorisation).
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` if the pattern is not square or misses a
    ///   diagonal entry; `.cholmod` if CHOLMOD fails (out of memory).
    public init(pattern: SparsityPattern, ordering: Ordering = .amd) throws {
        guard pattern.rowCount == pattern.columnCount, pattern.rowCount > 0 else {
            throw SparseKernelsError.invalidArgument(
                "a Cholesky factorisation needs a non-empty square matrix, not \(pattern.rowCount) × \(pattern.columnCount)")
        }
        for j in 0..<pattern.columnCount where !pattern.contains(row: j, column: j) {
            throw SparseKernelsError.invalidArgument(
                "a Cholesky factorisation needs every diagonal entry stored, but (\(j), \(j)) is not")
        }
        self.pattern = pattern
        self.dimension = pattern.columnCount
        let cholmod = try Cholmod()
        let common = cholmod.common
        common.pointee.supernodal = CHOLMOD_SIMPLICIAL // LGPL Cholesky module only, never Supernodal (GPL)
        common.pointee.final_ll = 1                     // LLᵀ: an indefinite matrix fails
        common.pointee.final_asis = 0                   // honour final_ll
        common.pointee.final_super = 0
        common.pointee.final_pack = 1
        common.pointee.final_monotonic = 1
        switch ordering {
        case .natural:
            common.pointee.nmethods = 1
            common.pointee.method.0.ordering = CHOLMOD_NATURAL
            common.pointee.postorder = 0
        case .amd:
            common.pointee.nmethods = 1
            common.pointee.method.0.ordering = CHOLMOD_AMD
        }
        self.cholmod = cholmod
        factorizing = "factorising a \(pattern.rowCount) × \(pattern.columnCount) matrix"
        solving = "solving with a \(pattern.rowCount) × \(pattern.columnCount) factor"
        var zeros = [Double](repeating: 0, count: pattern.nonzeroCount)
        factor = try zeros.withUnsafeMutableBufferPointer { x in
            try Self.withView(pattern, x.baseAddress!) { a in
                try cholmod.call("analysing a \(pattern.rowCount) × \(pattern.columnCount) matrix") { cholmod_analyze(a, $0) }
            }
        }
        if factor.pointee.is_super != 0 {
            // Cannot happen with CHOLMOD_SIMPLICIAL; checked so a change of CHOLMOD defaults
            // never silently routes through the Supernodal module.
            var f: UnsafeMutablePointer<cholmod_factor>? = factor
            cholmod_free_factor(&f, common)
            throw SparseKernelsError.invalidArgument("CHOLMOD chose a supernodal analysis although simplicial was requested")
        }
    }

    deinit {
        let common = cholmod.common
        var f: UnsafeMutablePointer<cholmod_factor>? = factor
        cholmod_free_factor(&f, common)
        cholmod_free_dense(&solution, common)
        cholmod_free_dense(&workY, common)
        cholmod_free_dense(&workE, common)
    }

    /// Computes the numeric factor of the matrix with these values (one per stored entry of
    /// `pattern`, in storage order; entries below the diagonal are ignored).
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` for a wrong count or a non-finite value;
    ///   `.cholmod(status: CHOLMOD_NOT_POSDEF, …)` naming the column where the factorisation
    ///   broke down if the matrix is not positive definite (the factor is then unusable until the
    ///   next successful `factorize`).
    public func factorize(values: UnsafeBufferPointer<Double>) throws {
        guard values.count == pattern.nonzeroCount else {
            throw SparseKernelsError.invalidArgument(
                "a pattern with \(pattern.nonzeroCount) entries needs as many values, not \(values.count)")
        }
        for p in 0..<values.count where !values[p].isFinite {
            throw SparseKernelsError.invalidArgument("value \(p) of the matrix to factorise is not finite (\(values[p]))")
        }
        isFactorized = false
        let factor = self.factor, cholmod = self.cholmod, n = dimension
        let ok: Int32 = try Self.withView(pattern, UnsafeMutablePointer(mutating: values.baseAddress!)) { a in
            try cholmod.call(factorizing) { common -> Int32? in
                let result = cholmod_factorize(a, factor, common)
                return result != 0 ? result : nil
            }
        }
        _ = ok
        let status = cholmod.common.pointee.status
        let minor = Int(factor.pointee.minor)
        if status == CHOLMOD_NOT_POSDEF || minor < n {
            throw SparseKernelsError.cholmod(
                status: CHOLMOD_NOT_POSDEF,
                message: "the \(n) × \(n) matrix is not positive definite (the factorisation broke down at column \(minor))")
        }
        isFactorized = true
    }

    /// `factorize(values:)` for an array.
    public func factorize(values: [Double]) throws {
        try values.withUnsafeBufferPointer { try factorize(values: $0) }
    }

    /// Factorises a matrix on the analysed pattern.
    public func factorize(_ matrix: SparseMatrix<Double>) throws {
        guard matrix.pattern == pattern else {
            throw SparseKernelsError.shapeMismatch("the matrix to factorise (\(matrix.pattern)) is not on the analysed pattern (\(pattern))")
        }
        try factorize(values: matrix.values)
    }

    /// x = A⁻¹ b with the last factor. `b` and `x` have n entries and may be the same memory.
    public func solve(_ b: UnsafeBufferPointer<Double>, into x: UnsafeMutableBufferPointer<Double>) throws {
        guard isFactorized else {
            throw SparseKernelsError.invalidArgument("solve needs a successful factorize first")
        }
        guard b.count == dimension, x.count == dimension else {
            throw SparseKernelsError.shapeMismatch("a solve with a \(dimension) × \(dimension) matrix needs vectors of \(dimension), not \(b.count) and \(x.count)")
        }
        var rhs = cholmod_dense()
        rhs.nrow = dimension
        rhs.ncol = 1
        rhs.nzmax = Swift.max(dimension, 1)
        rhs.d = Swift.max(dimension, 1)
        rhs.x = UnsafeMutableRawPointer(mutating: b.baseAddress)
        rhs.z = nil
        rhs.xtype = CHOLMOD_REAL
        rhs.dtype = CHOLMOD_DOUBLE
        let factor = self.factor
        _ = try cholmod.call(solving) { common -> Int32? in
            let result = cholmod_solve2(CHOLMOD_A, factor, &rhs, nil, &solution, nil, &workY, &workE, common)
            return result != 0 ? result : nil
        }
        guard let solution, let values = solution.pointee.x?.assumingMemoryBound(to: Double.self) else {
            throw SparseKernelsError.cholmod(status: CHOLMOD_INVALID, message: "solve returned no solution")
        }
        for i in 0..<dimension { x[i] = values[i] }
    }

    /// A⁻¹ b for an array.
    public func solve(_ b: [Double]) throws -> [Double] {
        var x = [Double](repeating: 0, count: dimension)
        try b.withUnsafeBufferPointer { bv in try x.withUnsafeMutableBufferPointer { try solve(bv, into: $0) } }
        return x
    }

    /// A `cholmod_sparse` view (stype 1: upper triangle read) of the pattern with values `x`
    /// (non-empty: every column stores its diagonal). CHOLMOD only reads it.
    private static func withView<R>(_ pattern: SparsityPattern, _ x: UnsafeMutablePointer<Double>,
                                    _ body: (UnsafeMutablePointer<cholmod_sparse>) throws -> R) rethrows -> R {
        try pattern.columnPointers.withUnsafeBufferPointer { p in
            try pattern.rowIndices.withUnsafeBufferPointer { i in
                var view = cholmod_sparse(viewing: pattern, p: p.baseAddress, i: i.baseAddress,
                                          x: UnsafeMutableRawPointer(x), stype: 1)
                return try body(&view)
            }
        }
    }
}

/// A factorisation holds CHOLMOD state that every call changes; use one per task.
@available(*, unavailable)
extension SparseCholesky: Sendable {}
