internal import CSparseKernels

/// An in-place product `X ← X · B` for a block-diagonal X with dense blocks, held in
/// column-scaled form, and a block-diagonal B on the same column blocks whose rows are mostly
/// zero off the diagonal at any one step.
///
/// X (m × n) is stored as `Y · diag(s)`: Y the stored values, block after block, each block
/// column-major, each column padded to a multiple of `columnAlignment` values
/// (`valueRange(ofColumn:)`); s one scale per column. B's diagonal is applied to the scales alone,
/// so an update costs only the off-diagonal terms of the rows of B the caller flags *active*:
///
///     Y(:,j) += (s_r · B(r,j) / s_j′) · Y_old(:,r)     for each active row r, each B(r,j), j ≠ r
///
/// A row that is not flagged must be zero off the diagonal this step; it is not read. Work and
/// memory traffic then follow the active rows, not the size of X. A scale leaving
/// `scaleRange` (or zero, or not finite) is moved into its column.
///
/// A deferred matrix–vector product rides along: the caller's vector is `g + Y · w` (one weight
/// w_j per column). Accumulating `g += X · x` costs n multiplications (w_j += x_j s_j); before a
/// column of Y changes, its term is folded into g. `foldPending` folds everything.
///
/// B's values are not stored in B's own order: each entry is read through an index into a value
/// array the caller passes to `update` (so B can be a rearrangement of another matrix's values,
/// with no gather). The symbolic work (the row-wise lists of B's off-diagonal entries, the
/// thread split) is done once here. Blocks are independent, so with several threads each block is
/// updated by one thread and the result has the same bits for any thread count.
public final class ScaledBlockProductPlan: @unchecked Sendable {
    /// Columns of X and B.
    public let columnCount: Int
    /// Length of the vector g of the deferred product.
    public let rowCount: Int
    /// Number of stored values of X (with the columns' padding).
    public let valueCount: Int
    /// Each column's length is rounded up to a multiple of this many values in Y.
    public let columnAlignment: Int
    /// Length of the value array B's entries are read from.
    public let bValueCount: Int
    /// Multiply-adds of the plain product X · B (diagonal included): what an update that skipped
    /// nothing would cost.
    public let multiplyAdds: Int
    /// Threads an update uses.
    public let threadCount: Int
    /// Memory the plan holds, in bytes.
    public let bytes: Int
    /// The range scales are kept in: 2⁻²⁵⁶…2²⁵⁶ for Double, 2⁻⁴⁸…2⁴⁸ for Float. A stored value is
    /// X's divided by its scale, so it overflows only where |X| exceeds 2⁷⁶⁸ (Double) or 2⁸⁰
    /// (Float); a wider range would renormalise less often but narrow that margin.
    public static func scaleRange<Scalar: SparseScalar>(_: Scalar.Type) -> (lower: Double, upper: Double) {
        Scalar.self == Float.self ? (0x1p-48, 0x1p48) : (0x1p-256, 0x1p256)
    }

    let blockCount: Int
    let colStart, rows, rowStart: OwnedBuffer<Int32>
    let valueStart, edgeStart: OwnedBuffer<Int64>
    let edgeColumn, edgeValue, diagonalValue: OwnedBuffer<Int32>
    /// Per column: first stored value, its length (the block's rows; the padding after it is not
    /// X's) and first row in g (for folding and unscaling).
    let columnPointers: [Int32]
    let columnLength: [Int32]
    let columnFirstRow: [Int32]
    /// Per block: values from one column to the next.
    let columnStride: OwnedBuffer<Int32>
    let maxBlockValues: Int
    let maxBlockColumns: Int
    /// Most off-diagonal entries of B in one block.
    let maxBlockEdges: Int
    let bounds: [Int32]
    let pool: WorkerPool?

    /// Builds the plan.
    ///
    /// - Parameters:
    ///   - blockColumns: columns of each block (they sum to n); block b's columns follow block b−1's.
    ///   - blockRows: rows of each block (its dense columns' length).
    ///   - blockFirstRows: where each block's rows start in the vector g of the deferred product.
    ///     With more than one thread, blocks (with rows and columns) must not share rows of g.
    ///   - rowCount: the length of g; every block's rows must fit in it.
    ///   - b: the pattern of B (n × n); every entry must lie inside a diagonal block.
    ///   - bValueIndex: for each stored entry of `b`, its index in the value array of `update`.
    ///   - bValueCount: that array's length.
    ///   - threads: threads for `update`.
    ///   - columnAlignment: each column of Y takes its block's rows rounded up to a multiple of
    ///     this many values (the rest padding, never read as X): 8 Doubles or 16 Floats put every
    ///     column on a 64-byte line of a Y aligned to 64 bytes, which the update's vector loops
    ///     stream half again as fast as columns that straddle lines (Docs/BENCHMARKS.md).
    ///   - memoryBudget: the most bytes the plan may hold; checked before allocating.
    public init(blockColumns: [Int], blockRows: [Int], blockFirstRows: [Int], rowCount: Int,
                b: SparsityPattern, bValueIndex: [Int32], bValueCount: Int, threads: Int = 1,
                columnAlignment: Int = 1, memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        let nb = blockColumns.count
        guard blockRows.count == nb, blockFirstRows.count == nb else {
            throw SparseKernelsError.shapeMismatch("blockColumns, blockRows and blockFirstRows need one entry per block (\(nb), \(blockRows.count), \(blockFirstRows.count))")
        }
        guard threads >= 1 else { throw SparseKernelsError.invalidArgument("threads must be at least 1, not \(threads)") }
        guard rowCount >= 0, bValueCount >= 0 else { throw SparseKernelsError.invalidArgument("rowCount and bValueCount must not be negative") }
        guard (1...64).contains(columnAlignment) else {
            throw SparseKernelsError.invalidArgument("columnAlignment must be 1 to 64, not \(columnAlignment)")
        }
        func padded(_ rows: Int) -> Int { (rows + columnAlignment - 1) / columnAlignment * columnAlignment }
        var n = 0, values = 0, maxValues = 0, maxColumns = 0
        for t in 0..<nb {
            let c = blockColumns[t], r = blockRows[t], f = blockFirstRows[t]
            guard c >= 0, r >= 0, f >= 0, f + r <= rowCount else {
                throw SparseKernelsError.invalidArgument("block \(t) (\(r) × \(c), rows from \(f)) does not fit \(rowCount) rows")
            }
            n += c; values += padded(r) * c
            maxValues = max(maxValues, padded(r) * c); maxColumns = max(maxColumns, c)
        }
        if threads > 1 {
            // Threads update different blocks at once, folding into their rows of g: the rows
            // must not be shared.
            let spans = (0..<nb).filter { blockRows[$0] > 0 && blockColumns[$0] > 0 }
                .map { (blockFirstRows[$0], blockFirstRows[$0] + blockRows[$0]) }.sorted { $0.0 < $1.0 }
            for t in spans.indices.dropFirst() where spans[t].0 < spans[t - 1].1 {
                throw SparseKernelsError.invalidArgument(
                    "with \(threads) threads the blocks' rows of g must not overlap, but rows \(spans[t].0)..<\(min(spans[t].1, spans[t - 1].1)) belong to two blocks")
            }
        }
        guard b.rowCount == n, b.columnCount == n else {
            throw SparseKernelsError.shapeMismatch("B is \(b.rowCount) × \(b.columnCount) but the blocks have \(n) columns")
        }
        guard bValueIndex.count == b.nonzeroCount else {
            throw SparseKernelsError.shapeMismatch("bValueIndex needs one index per entry of B (\(b.nonzeroCount)), not \(bValueIndex.count)")
        }
        _ = try checkedInt32(values, "the stored values of X")
        let offDiagonal = b.nonzeroCount // at most
        let needed = 4 * (3 * nb + 1) + 8 * (nb + 2 * n + 1) + 8 * offDiagonal + 4 * n + 8 * n + 4 * (threads + 1) + 4 * nb + 4 * n
        guard needed <= memoryBudget else {
            throw SparseKernelsError.memoryBudgetExceeded(what: "a scaled block product plan (\(nb) blocks, \(n) columns)",
                                                          neededBytes: needed, budgetBytes: memoryBudget)
        }
        // Block of every column.
        var blockOf = [Int32](repeating: 0, count: n)
        var start = 0
        for t in 0..<nb { for j in start..<start + blockColumns[t] { blockOf[j] = Int32(t) }; start += blockColumns[t] }
        // B's entries, row-wise, diagonal apart; check blocks and value indices.
        var diagonal = [Int32](repeating: -1, count: n)
        var perRow = [Int64](repeating: 0, count: n + 1)
        var work = 0
        for j in 0..<n {
            for p in Int(b.columnPointers[j])..<Int(b.columnPointers[j + 1]) {
                let r = Int(b.rowIndices[p]), v = bValueIndex[p]
                guard blockOf[r] == blockOf[j] else {
                    throw SparseKernelsError.invalidArgument("B(\(r), \(j)) lies outside the diagonal blocks")
                }
                guard v >= 0, Int(v) < bValueCount else {
                    throw SparseKernelsError.invalidArgument("the value index \(v) of B(\(r), \(j)) is outside 0..<\(bValueCount)")
                }
                work += blockRows[Int(blockOf[j])]
                if r == j { diagonal[j] = v } else { perRow[r + 1] += 1 }
            }
        }
        for r in 0..<n { perRow[r + 1] += perRow[r] }
        let edges = Int(perRow[n])
        let edgeColumn = OwnedBuffer<Int32>(count: edges, zeroedAs: 0), edgeValue = OwnedBuffer<Int32>(count: edges, zeroedAs: 0)
        var next = perRow
        for j in 0..<n {
            for p in Int(b.columnPointers[j])..<Int(b.columnPointers[j + 1]) {
                let r = Int(b.rowIndices[p])
                if r == j { continue }
                edgeColumn.pointer[Int(next[r])] = Int32(j); edgeValue.pointer[Int(next[r])] = bValueIndex[p]
                next[r] += 1
            }
        }
        func owned<T: BinaryInteger>(_ a: [T], as _: T.Type) -> OwnedBuffer<T> {
            let o = OwnedBuffer<T>(count: a.count, zeroedAs: 0)
            for t in a.indices { o.pointer[t] = a[t] }
            return o
        }
        var maxEdges = 0
        var colStart = [Int32](repeating: 0, count: nb + 1), valueStart = [Int64](repeating: 0, count: nb)
        var columnPointers = [Int32](repeating: 0, count: n + 1), columnFirstRow = [Int32](repeating: 0, count: n)
        var columnLength = [Int32](repeating: 0, count: n)
        var costs = [Int](repeating: 0, count: nb)
        for t in 0..<nb {
            colStart[t + 1] = colStart[t] + Int32(blockColumns[t])
            if t + 1 < nb { valueStart[t + 1] = valueStart[t] + Int64(padded(blockRows[t]) * blockColumns[t]) }
            for j in Int(colStart[t])..<Int(colStart[t + 1]) {
                columnPointers[j + 1] = columnPointers[j] + Int32(padded(blockRows[t]))
                columnLength[j] = Int32(blockRows[t])
                columnFirstRow[j] = Int32(blockFirstRows[t])
                costs[t] += blockRows[t] * (1 + Int(perRow[j + 1] - perRow[j]))
            }
            maxEdges = max(maxEdges, Int(perRow[Int(colStart[t + 1])] - perRow[Int(colStart[t])]))
        }
        self.columnCount = n
        self.rowCount = rowCount
        self.valueCount = values
        self.bValueCount = bValueCount
        self.multiplyAdds = work
        self.threadCount = threads
        self.bytes = needed
        self.blockCount = nb
        self.colStart = owned(colStart, as: Int32.self)
        self.rows = owned(blockRows.map { Int32($0) }, as: Int32.self)
        self.rowStart = owned(blockFirstRows.map { Int32($0) }, as: Int32.self)
        self.valueStart = owned(valueStart, as: Int64.self)
        self.edgeStart = owned(perRow, as: Int64.self)
        self.edgeColumn = edgeColumn
        self.edgeValue = edgeValue
        self.diagonalValue = owned(diagonal, as: Int32.self)
        self.columnPointers = columnPointers
        self.columnLength = columnLength
        self.columnFirstRow = columnFirstRow
        self.columnAlignment = columnAlignment
        self.columnStride = owned(blockRows.map { Int32(padded($0)) }, as: Int32.self)
        // (Each thread's scratch starts on an aligned value too.)
        self.maxBlockValues = padded(maxValues)
        self.maxBlockColumns = maxColumns
        self.maxBlockEdges = maxEdges
        self.bounds = WorkerPool.balancedBoundaries(costs: costs, parts: threads)
        self.pool = threads > 1 ? try WorkerPool(threads: threads) : nil
    }

    /// Per-caller workspace of `update` (one per stream updated concurrently), built once.
    public final class Workspace {
        let scratch: OwnedBuffer<Double>     // max block values per thread (Float uses half)
        let sourceScale: OwnedBuffer<Double>
        let sources: OwnedBuffer<Int32>
        let written: OwnedBuffer<UInt8>
        /// The active columns' terms listed by target column (per thread).
        let heads, links, linkSource: OwnedBuffer<Int32>
        let linkCoefficient: OwnedBuffer<Double>     // Float uses half
        let done, changed: OwnedBuffer<Int64>
        init(plan: ScaledBlockProductPlan) {
            // On 64-byte lines, as the copies of padded columns then are.
            scratch = OwnedBuffer(count: plan.threadCount * plan.maxBlockValues, zeroedAs: 0, alignment: 64)
            sourceScale = OwnedBuffer(count: plan.threadCount * plan.maxBlockColumns, zeroedAs: 0)
            sources = OwnedBuffer(count: plan.threadCount * plan.maxBlockColumns, zeroedAs: 0)
            written = OwnedBuffer(count: plan.threadCount * plan.maxBlockColumns, zeroedAs: 0)
            heads = OwnedBuffer(count: plan.threadCount * plan.maxBlockColumns, zeroedAs: -1)
            links = OwnedBuffer(count: plan.threadCount * plan.maxBlockEdges, zeroedAs: 0)
            linkSource = OwnedBuffer(count: plan.threadCount * plan.maxBlockEdges, zeroedAs: 0)
            linkCoefficient = OwnedBuffer(count: plan.threadCount * plan.maxBlockEdges, zeroedAs: 0)
            done = OwnedBuffer(count: plan.threadCount, zeroedAs: 0)
            changed = OwnedBuffer(count: plan.threadCount, zeroedAs: 0)
        }
        /// Bytes held.
        public var bytes: Int {
            scratch.bytes + sourceScale.bytes + sources.bytes + written.bytes + done.bytes + changed.bytes
                + heads.bytes + links.bytes + linkSource.bytes + linkCoefficient.bytes
        }
    }

    /// What one `update` did.
    public struct Work: Equatable, Sendable {
        /// Multiply-adds of the off-diagonal terms done.
        public var multiplyAdds: Int
        /// Columns of Y whose values were written (pushed into, or renormalised): the memory an
        /// update touches beyond O(n) bookkeeping is these columns, read and written.
        public var columnsWritten: Int
    }

    /// A workspace for one concurrent caller of `update`.
    public func makeWorkspace() -> Workspace { Workspace(plan: self) }

    /// One update `X ← X · B` (see the type's description). Allocates nothing.
    ///
    /// - Parameters:
    ///   - values: Y (`valueCount`), updated in place.
    ///   - scales: s (n), updated.
    ///   - pendingWeights: w (n) of the deferred product; folded into `g` where a column changes.
    ///   - g: the deferred product's vector (`rowCount`).
    ///   - bValues: the array B's entries are read from (`bValueCount`).
    ///   - activeRows: n flags; a zero flag promises that row of B is zero off the diagonal.
    ///   - workspace: one of this plan's workspaces (`makeWorkspace()`), used by one call at a time.
    /// - Returns: the multiply-adds done (the off-diagonal terms of the active rows) and the
    ///   columns written.
    @discardableResult
    public func update<Scalar: SparseScalar>(
        values: UnsafeMutableBufferPointer<Scalar>, scales: UnsafeMutableBufferPointer<Scalar>,
        pendingWeights: UnsafeMutableBufferPointer<Scalar>, g: UnsafeMutableBufferPointer<Scalar>,
        bValues: UnsafeBufferPointer<Scalar>, activeRows: UnsafeBufferPointer<UInt8>, workspace: Workspace
    ) throws -> Work {
        guard values.count == valueCount, scales.count == columnCount, pendingWeights.count == columnCount,
              g.count == rowCount, bValues.count == bValueCount, activeRows.count == columnCount else {
            throw SparseKernelsError.shapeMismatch(
                "the plan needs \(valueCount) values, \(columnCount) scales, weights and flags, \(rowCount) entries of g and \(bValueCount) values of B")
        }
        guard workspace.done.count == threadCount, workspace.scratch.count == threadCount * maxBlockValues,
              workspace.sources.count == threadCount * maxBlockColumns,
              workspace.sourceScale.count == threadCount * maxBlockColumns,
              workspace.written.count == threadCount * maxBlockColumns,
              workspace.links.count == threadCount * maxBlockEdges else {
            throw SparseKernelsError.invalidArgument("the workspace belongs to another plan")
        }
        guard columnCount > 0 else { return Work(multiplyAdds: 0, columnsWritten: 0) }
        let range = Self.scaleRange(Scalar.self)
        var plan = sk_scaled_block_plan(
            nblocks: Int32(blockCount), col_start: colStart.pointer, rows: rows.pointer, row_start: rowStart.pointer,
            value_start: valueStart.pointer, edge_start: edgeStart.pointer, edge_col: edgeColumn.pointer,
            edge_val: edgeValue.pointer, diag_val: diagonalValue.pointer, max_block_values: Int64(maxBlockValues),
            max_block_columns: Int32(maxBlockColumns), max_block_edges: Int64(maxBlockEdges), column_stride: columnStride.pointer)
        return withUnsafePointer(to: &plan) { plan in
            bounds.withUnsafeBufferPointer { bounds in
                var call = sk_scaled_block_call(
                    plan: plan, Bv: bValues.baseAddress, active: activeRows.baseAddress, Y: values.baseAddress,
                    s: scales.baseAddress, w: pendingWeights.baseAddress, g: g.baseAddress, lo: range.lower, hi: range.upper,
                    bounds: bounds.baseAddress, scratch: workspace.scratch.pointer, source_scale: workspace.sourceScale.pointer,
                    sources: workspace.sources.pointer, written: workspace.written.pointer, heads: workspace.heads.pointer,
                    links: workspace.links.pointer, link_source: workspace.linkSource.pointer,
                    link_coef: workspace.linkCoefficient.pointer, done: workspace.done.pointer,
                    changed: workspace.changed.pointer, single: Scalar.self == Float.self ? 1 : 0)
                sk_scaled_block_execute(pool?.raw, &call)
                return Work(multiplyAdds: (0..<threadCount).reduce(0) { $0 + Int(workspace.done.pointer[$1]) },
                            columnsWritten: (0..<threadCount).reduce(0) { $0 + Int(workspace.changed.pointer[$1]) })
            }
        }
    }

    /// Where column j's values lie in Y (its block's rows; the padding after them is not X's),
    /// or nil if there is no column j.
    public func valueRange(ofColumn j: Int) -> Range<Int>? {
        guard j >= 0, j < columnCount else { return nil }
        return Int(columnPointers[j])..<(Int(columnPointers[j]) + Int(columnLength[j]))
    }

    /// Folds the deferred product into g: `g += Y · w`, then w = 0.
    public func foldPending<Scalar: SparseScalar>(values: UnsafeBufferPointer<Scalar>,
                                                   pendingWeights: UnsafeMutableBufferPointer<Scalar>,
                                                   g: UnsafeMutableBufferPointer<Scalar>) throws {
        try addPending(values: values, pendingWeights: UnsafeBufferPointer(pendingWeights), to: g)
        pendingWeights.update(repeating: 0)
    }

    /// Adds the deferred product to another vector: `v += Y · w` (w unchanged).
    public func addPending<Scalar: SparseScalar>(values: UnsafeBufferPointer<Scalar>, pendingWeights: UnsafeBufferPointer<Scalar>,
                                                  to v: UnsafeMutableBufferPointer<Scalar>) throws {
        guard values.count == valueCount, pendingWeights.count == columnCount, v.count == rowCount else {
            throw SparseKernelsError.shapeMismatch("the plan needs \(valueCount) values, \(columnCount) weights and \(rowCount) entries of g")
        }
        guard columnCount > 0 else { return }
        if columnAlignment == 1 {
            columnPointers.withUnsafeBufferPointer { cp in
                columnFirstRow.withUnsafeBufferPointer { first in
                    if Scalar.self == Double.self {
                        sk_block_gaxpy_f64(Int32(columnCount), cp.baseAddress, first.baseAddress, rebound(values, Double.self),
                                           rebound(pendingWeights, Double.self), reboundMutable(v, Double.self))
                    } else {
                        sk_block_gaxpy_f32(Int32(columnCount), cp.baseAddress, first.baseAddress, rebound(values, Float.self),
                                           rebound(pendingWeights, Float.self), reboundMutable(v, Float.self))
                    }
                }
            }
            return
        }
        // Padded columns: each column's own values only, one column at a time through the same
        // kernel (so the sums round as the unpadded plan's do).
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2) { ap in
            columnFirstRow.withUnsafeBufferPointer { first in
                for j in 0..<columnCount where pendingWeights[j] != 0 {
                    ap[0] = columnPointers[j]
                    ap[1] = columnPointers[j] + columnLength[j]
                    if Scalar.self == Double.self {
                        sk_block_gaxpy_f64(1, ap.baseAddress, first.baseAddress! + j, rebound(values, Double.self),
                                           rebound(pendingWeights, Double.self) + j, reboundMutable(v, Double.self))
                    } else {
                        sk_block_gaxpy_f32(1, ap.baseAddress, first.baseAddress! + j, rebound(values, Float.self),
                                           rebound(pendingWeights, Float.self) + j, reboundMutable(v, Float.self))
                    }
                }
            }
        }
    }

    /// Moves the scales into the values: folds the deferred product into g, then `Y ← Y · diag(s)`,
    /// s = 1. Afterwards Y holds X itself.
    public func unscale<Scalar: SparseScalar>(values: UnsafeMutableBufferPointer<Scalar>, scales: UnsafeMutableBufferPointer<Scalar>,
                                               pendingWeights: UnsafeMutableBufferPointer<Scalar>,
                                               g: UnsafeMutableBufferPointer<Scalar>) throws {
        guard scales.count == columnCount else { throw SparseKernelsError.shapeMismatch("the plan needs \(columnCount) scales") }
        try foldPending(values: UnsafeBufferPointer(values), pendingWeights: pendingWeights, g: g)
        for j in 0..<columnCount {
            let s = scales[j]
            if s == 1 { continue }
            for p in Int(columnPointers[j])..<Int(columnPointers[j]) + Int(columnLength[j]) { values[p] *= s }
            scales[j] = 1
        }
    }
}

/// A workspace is scratch for one call at a time; give each task its own (the plan itself is shared freely).
@available(*, unavailable)
extension ScaledBlockProductPlan.Workspace: Sendable {}
