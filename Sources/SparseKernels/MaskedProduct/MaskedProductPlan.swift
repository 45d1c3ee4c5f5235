internal import CSparseKernels
import Foundation

/// A masked sparse–sparse product `C⟨M⟩ = diag(r) · A · B · diag(s)` whose patterns are fixed.
///
/// The symbolic phase (this initialiser) runs once: it checks shapes, counts the work, and builds
/// the plan. The numeric phase (`execute`) then reruns as often as needed with new values of A
/// and B (and of the optional row and column scalings r and s), writing every value of C — whose
/// pattern is the mask M — with no allocation. Entries of A·B outside M are never formed; entries
/// of M that A·B does not reach are written as zero.
///
/// Two layouts of the plan:
/// - `runs`: for every column j of C, the list of *runs* — maximal stretches of consecutive
///   entries of a column A(:,k) that land on consecutive entries of C(:,j) — each done as one
///   contiguous axpy `C[c ..< c+len] += s_j · B(k,j) · A[a ..< a+len]`. When columns of A and of M
///   share long contiguous blocks (an influence matrix stored with one column per state variable,
///   parameters of a unit adjacent) runs are long and the loop streams at memory speed; at worst
///   every run has length one (16 bytes of plan per multiply-add).
/// - `accumulator`: no per-entry plan; column j of A·B is accumulated into a dense work vector of
///   length m and gathered at M's rows. It does every multiply-add of A·B, masked or not, so it
///   suits masks that hold most of A·B's pattern, or plans the `runs` layout cannot afford.
///
/// The default chooses the layout with the lower estimated cost (see `Docs/DESIGN.md` for the
/// measurements behind the estimate). With more than one thread, columns of C are split into
/// contiguous ranges of equal estimated work; each column is computed by one thread in a fixed
/// order, so results are bit-identical whatever the thread count.
///
/// A plan may be shared by concurrent callers (tasks or threads), each with its own value arrays:
/// the `runs` layout keeps no state between calls, and the `accumulator` layout's work vectors are
/// used under a lock, so concurrent calls of that layout run one after another. (`@unchecked`:
/// the plan's buffers are written only at initialisation, apart from those work vectors;
/// `MaskedProductConcurrencyTests` shares plans between tasks under the thread sanitizer.)
public final class MaskedProductPlan: @unchecked Sendable {
    /// How the numeric phase walks the product.
    public enum Layout: String, CaseIterable, Sendable {
        /// Contiguous runs of A's entries added into C, planned per column (see above).
        case runs
        /// Each column of A·B accumulated into a dense work vector, then gathered at M's rows.
        case accumulator
    }

    /// The pattern of A (m × k).
    public let a: SparsityPattern
    /// The pattern of B (k × n).
    public let b: SparsityPattern
    /// The mask M (m × n), which is also the pattern of C.
    public let mask: SparsityPattern
    /// The layout in use.
    public let layout: Layout
    /// Multiply-adds that land inside the mask: the useful work of one numeric call.
    public let multiplyAdds: Int
    /// Multiply-adds of the unmasked product A·B.
    public let unmaskedMultiplyAdds: Int
    /// Runs in the `runs` layout (0 for `accumulator`).
    public let runCount: Int
    /// Memory the plan holds beyond the three patterns, in bytes: run arrays and offsets,
    /// thread boundaries and accumulator work vectors.
    public let bytes: Int
    /// Threads the numeric phase uses.
    public let threadCount: Int

    private let runB, runA, runC, runLength: OwnedBuffer<Int32>
    private let runPointers: OwnedBuffer<Int64>
    private let bounds: [Int32]
    private let work: OwnedBuffer<Double>
    /// Held while a call of the `accumulator` layout uses `work`.
    private let workLock = NSLock()
    private let pool: WorkerPool?

    /// Builds the plan (the symbolic phase).
    ///
    /// - Parameters:
    ///   - a: the pattern of A (m × k).
    ///   - b: the pattern of B (k × n); its row count must equal A's column count.
    ///   - mask: the mask M (m × n), which becomes the pattern of C.
    ///   - requested: the layout (argument label `layout`), or `nil` to choose by estimated cost.
    ///   - threads: threads for the numeric phase (1 runs on the caller only).
    ///   - memoryBudget: the most bytes the plan may hold. If the chosen layout needs more, the
    ///     automatic choice falls back to the other; otherwise the initialiser throws
    ///     `memoryBudgetExceeded` with the bytes needed, before allocating.
    public init(a: SparsityPattern, b: SparsityPattern, mask: SparsityPattern, layout requested: Layout? = nil,
                threads: Int = 1, memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        guard a.columnCount == b.rowCount else {
            throw SparseKernelsError.shapeMismatch(
                "A is \(a.rowCount) × \(a.columnCount) but B is \(b.rowCount) × \(b.columnCount): A's columns must equal B's rows")
        }
        guard mask.rowCount == a.rowCount, mask.columnCount == b.columnCount else {
            throw SparseKernelsError.shapeMismatch(
                "the mask is \(mask.rowCount) × \(mask.columnCount) but A · B is \(a.rowCount) × \(b.columnCount)")
        }
        guard threads >= 1 else { throw SparseKernelsError.invalidArgument("threads must be at least 1, not \(threads)") }
        let n = mask.columnCount, m = mask.rowCount

        var runsPerColumn = [Int64](repeating: 0, count: n)
        var flopsPerColumn = [Int64](repeating: 0, count: n)
        var unmaskedPerColumn = [Int64](repeating: 0, count: n)
        var mark = [Int32](repeating: -1, count: m)
        let totalRuns = Int(withNonNullPointer(a.columnPointers) { ap in withNonNullPointer(a.rowIndices) { ai in
            withNonNullPointer(b.columnPointers) { bp in withNonNullPointer(b.rowIndices) { bi in
                withNonNullPointer(mask.columnPointers) { mp in withNonNullPointer(mask.rowIndices) { mi in
                    mark.withUnsafeMutableBufferPointer { mk in
                        runsPerColumn.withUnsafeMutableBufferPointer { rc in
                            flopsPerColumn.withUnsafeMutableBufferPointer { fc in
                                unmaskedPerColumn.withUnsafeMutableBufferPointer { uc in
                                    sk_mprod_count_flops(Int32(n), ap, bp, bi, uc.baseAddress)
                                    return sk_mprod_count_runs(Int32(n), ap, ai, bp, bi, mp, mi, mk.baseAddress,
                                                               rc.baseAddress, fc.baseAddress)
                                }
                            }
                        }
                    }
                } }
            } }
        } })
        let maskedFlops = flopsPerColumn.reduce(0) { $0 + Int($1) }
        let unmaskedFlops = unmaskedPerColumn.reduce(0) { $0 + Int($1) }
        let runsBytes = 16 * totalRuns + 8 * (n + 1) + 4 * (threads + 1)
        let accumulatorBytes = 8 * m * threads + 4 * (threads + 1)

        // Estimated cost, in units of one streamed multiply-add (Docs/DESIGN.md).
        let runsCost = 6 * totalRuns + maskedFlops + mask.nonzeroCount
        let accumulatorCost = 3 * unmaskedFlops + 2 * mask.nonzeroCount
        var chosen: Layout
        if let requested {
            chosen = requested
        } else {
            chosen = runsCost <= accumulatorCost ? .runs : .accumulator
            if chosen == .runs && runsBytes > memoryBudget { chosen = .accumulator }
            if chosen == .accumulator && accumulatorBytes > memoryBudget && runsBytes <= memoryBudget { chosen = .runs }
        }
        let needed = chosen == .runs ? runsBytes : accumulatorBytes
        guard needed <= memoryBudget else {
            throw SparseKernelsError.memoryBudgetExceeded(
                what: "a masked product plan (\(chosen.rawValue) layout, \(a.rowCount) × \(a.columnCount) by \(b.rowCount) × \(b.columnCount))",
                neededBytes: needed, budgetBytes: memoryBudget)
        }
        for (what, value) in [("run count", totalRuns), ("multiply-add count", maskedFlops)] where value > Int(Int32.max) && chosen == .runs {
            _ = try checkedInt32(value, "the plan's \(what)")
        }

        self.a = a
        self.b = b
        self.mask = mask
        self.layout = chosen
        self.multiplyAdds = maskedFlops
        self.unmaskedMultiplyAdds = unmaskedFlops
        self.threadCount = threads
        self.pool = threads > 1 ? try WorkerPool(threads: threads) : nil

        let costs: [Int]
        if chosen == .runs {
            let rp = OwnedBuffer<Int64>(count: n + 1, zeroedAs: 0)
            for j in 0..<n { rp.pointer[j + 1] = rp.pointer[j] + runsPerColumn[j] }
            runPointers = rp
            let rb = OwnedBuffer<Int32>(count: totalRuns, zeroedAs: 0)
            let ra = OwnedBuffer<Int32>(count: totalRuns, zeroedAs: 0)
            let rc = OwnedBuffer<Int32>(count: totalRuns, zeroedAs: 0)
            let rl = OwnedBuffer<Int32>(count: totalRuns, zeroedAs: 0)
            runB = rb; runA = ra; runC = rc; runLength = rl
            work = OwnedBuffer(count: 0, zeroedAs: 0)
            runCount = totalRuns
            withNonNullPointer(a.columnPointers) { ap in withNonNullPointer(a.rowIndices) { ai in
                withNonNullPointer(b.columnPointers) { bp in withNonNullPointer(b.rowIndices) { bi in
                    withNonNullPointer(mask.columnPointers) { mp in withNonNullPointer(mask.rowIndices) { mi in
                        mark.withUnsafeMutableBufferPointer { mk in
                            sk_mprod_fill_runs(Int32(n), ap, ai, bp, bi, mp, mi, mk.baseAddress, rp.pointer,
                                               rb.pointer, ra.pointer, rc.pointer, rl.pointer)
                        }
                    } }
                } }
            } }
            costs = (0..<n).map { j in
                6 * Int(runsPerColumn[j]) + Int(flopsPerColumn[j]) + Int(mask.columnPointers[j + 1] - mask.columnPointers[j])
            }
        } else {
            runPointers = OwnedBuffer(count: 0, zeroedAs: 0)
            runB = OwnedBuffer(count: 0, zeroedAs: 0)
            runA = OwnedBuffer(count: 0, zeroedAs: 0)
            runC = OwnedBuffer(count: 0, zeroedAs: 0)
            runLength = OwnedBuffer(count: 0, zeroedAs: 0)
            work = OwnedBuffer(count: m * threads, zeroedAs: 0)
            runCount = 0
            costs = (0..<n).map { j in
                3 * Int(unmaskedPerColumn[j]) + 2 * Int(mask.columnPointers[j + 1] - mask.columnPointers[j])
            }
        }
        bounds = WorkerPool.balancedBoundaries(costs: costs, parts: threads)
        bytes = needed
    }

    /// The default budget for a plan's memory: half of the machine's physical memory.
    public static var defaultMemoryBudget: Int { Int(ProcessInfo.processInfo.physicalMemory / 2) }

    /// The numeric phase on raw value arrays laid out on the plan's patterns: A's values, B's
    /// values, C's values (on the mask's pattern, overwritten), and optional scalings of C's
    /// rows (length m) and columns (length n). Allocates nothing.
    ///
    /// With `skippingZeroFactors`, every term whose factor from B is exactly zero is skipped
    /// without reading the column of A it would scale — the work then follows B's non-zeros (the
    /// results are the same, but for the sign of a zero).
    ///
    /// - Returns: the multiply-adds skipped (0 without `skippingZeroFactors`).
    @discardableResult
    public func execute<Scalar: SparseScalar>(
        a aValues: UnsafeBufferPointer<Scalar>, b bValues: UnsafeBufferPointer<Scalar>,
        into cValues: UnsafeMutableBufferPointer<Scalar>,
        rowScale: UnsafeBufferPointer<Scalar>? = nil, columnScale: UnsafeBufferPointer<Scalar>? = nil,
        skippingZeroFactors: Bool = false
    ) throws -> Int {
        guard aValues.count == a.nonzeroCount, bValues.count == b.nonzeroCount, cValues.count == mask.nonzeroCount else {
            throw SparseKernelsError.shapeMismatch(
                "the plan needs \(a.nonzeroCount), \(b.nonzeroCount) and \(mask.nonzeroCount) values for A, B and C, not \(aValues.count), \(bValues.count) and \(cValues.count)")
        }
        if let rowScale, rowScale.count != mask.rowCount {
            throw SparseKernelsError.shapeMismatch("the row scaling needs \(mask.rowCount) values, not \(rowScale.count)")
        }
        if let columnScale, columnScale.count != mask.columnCount {
            throw SparseKernelsError.shapeMismatch("the column scaling needs \(mask.columnCount) values, not \(columnScale.count)")
        }
        guard mask.nonzeroCount > 0 else { return 0 }
        let single = Scalar.self == Float.self
        // Per-thread counters on the stack: a plan may run for several streams at once.
        return withUnsafeTemporaryAllocation(of: Int64.self, capacity: threadCount) { skipped in
        skipped.initialize(repeating: 0)
        withNonNullPointer(a.columnPointers) { ap in withNonNullPointer(a.rowIndices) { ai in
            withNonNullPointer(b.columnPointers) { bp in withNonNullPointer(b.rowIndices) { bi in
                withNonNullPointer(mask.columnPointers) { mp in withNonNullPointer(mask.rowIndices) { mi in
                    bounds.withUnsafeBufferPointer { bounds in
                        var runs = sk_run_plan(Mp: mp, Mi: mi, Rp: runPointers.pointer, run_b: runB.pointer,
                                               run_a: runA.pointer, run_c: runC.pointer, run_len: runLength.pointer)
                        var accumulator = sk_accumulator_plan(m: Int32(mask.rowCount), Ap: ap, Ai: ai, Bp: bp, Bi: bi,
                                                              Mp: mp, Mi: mi)
                        withUnsafePointer(to: &runs) { runs in
                            withUnsafePointer(to: &accumulator) { accumulator in
                                var call = sk_mprod_call(
                                    runs: layout == .runs ? runs : nil,
                                    accumulator: layout == .accumulator ? accumulator : nil,
                                    Ax: aValues.baseAddress, Bx: bValues.baseAddress,
                                    rowscale: rowScale?.baseAddress, colscale: columnScale?.baseAddress,
                                    Cx: cValues.baseAddress, work: work.pointer, bounds: bounds.baseAddress,
                                    single: single ? 1 : 0, skip_zero: skippingZeroFactors ? 1 : 0,
                                    skipped: skipped.baseAddress)
                                if layout == .accumulator {
                                    workLock.lock()
                                    sk_mprod_execute(pool?.raw, &call)
                                    workLock.unlock()
                                } else {
                                    sk_mprod_execute(pool?.raw, &call)
                                }
                            }
                        }
                    }
                } }
            } }
        } }
        return Int(skipped.reduce(0, +))
        }
    }

    /// The numeric phase on matrices: `c`'s values become `diag(rowScale) · A · B · diag(columnScale)`
    /// on the mask. The matrices' patterns must be the plan's.
    public func execute<Scalar: SparseScalar>(_ aMatrix: SparseMatrix<Scalar>, _ bMatrix: SparseMatrix<Scalar>,
                                              into c: inout SparseMatrix<Scalar>,
                                              rowScale: [Scalar]? = nil, columnScale: [Scalar]? = nil) throws {
        guard aMatrix.pattern == a, bMatrix.pattern == b, c.pattern == mask else {
            throw SparseKernelsError.shapeMismatch("the matrices' patterns are not the ones the plan was built for")
        }
        try aMatrix.values.withUnsafeBufferPointer { av in
            try bMatrix.values.withUnsafeBufferPointer { bv in
                try c.values.withUnsafeMutableBufferPointer { cv in
                    try withOptionalBuffer(rowScale) { rs in
                        try withOptionalBuffer(columnScale) { cs in
                            _ = try execute(a: av, b: bv, into: cv, rowScale: rs, columnScale: cs)
                        }
                    }
                }
            }
        }
    }

    /// The masked product as a new matrix on the mask's pattern.
    public func product<Scalar: SparseScalar>(_ aMatrix: SparseMatrix<Scalar>, _ bMatrix: SparseMatrix<Scalar>,
                                              rowScale: [Scalar]? = nil, columnScale: [Scalar]? = nil) throws -> SparseMatrix<Scalar> {
        var c = SparseMatrix<Scalar>(zerosOn: mask)
        try execute(aMatrix, bMatrix, into: &c, rowScale: rowScale, columnScale: columnScale)
        return c
    }
}

private func withOptionalBuffer<T, R>(_ array: [T]?, _ body: (UnsafeBufferPointer<T>?) throws -> R) rethrows -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0) }
}
