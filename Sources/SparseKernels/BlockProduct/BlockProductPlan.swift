internal import CSparseKernels

/// Dense blocks multiplied in place by principal submatrices of one sparse matrix:
///
///     X_b ← A[R_b, R_b] · X_b + E_b        for every block b
///
/// X holds dense blocks one after another, block b an m_b × n_b array: row-major (row stride
/// n_b), or panel by panel (`Layout`). A is a square sparse matrix whose pattern is fixed and
/// whose values change from call to call; R_b lists m_b of its indices, so S_b = A[R_b, R_b] is an m_b × m_b sparse matrix (rows of
/// X_b outside R_b do not exist: a row of X_b is the row of the index R_b[q]). E_b is a list of
/// *additions*, X_b[r, c ..< c + count] += e, whose values the caller passes each call.
///
/// A weighted column sum of the new blocks can ride along in the same pass, so the blocks are
/// read once and written once per call:
///
///     columnSums[columnSumStart_b + t] += Σ_q rowWeights[R_b[q]] · X_b[q, t]
///
/// The symbolic work runs once here: S_b's entries by rows (with each entry's position in A's
/// value array, so nothing is gathered by the caller), the cut of every block into panels of
/// columns that fit the L1 cache, and the split of those panels over threads. Each call
/// (`execute`) then packs a panel of the old block, accumulates every new row of the panel in
/// vector registers across the entries of its row of S_b, and stores it once. The kernels are C,
/// written for AVX-512, AVX2 with FMA, and any processor (chosen when the plan is built).
///
/// Every output is computed by one thread in a fixed order, so results are bit-identical for
/// any number of threads (they may differ between instruction sets, which round differently).
///
/// A plan is built for one scalar type (`Float` or `Double`: the panels are cut to its vector
/// width). It is immutable and may be shared between threads; each concurrent caller needs its
/// own `Workspace`.
public final class BlockProductPlan: Sendable {
    /// One dense block of X.
    public struct Block: Sendable, Equatable {
        /// R_b: the indices of A whose rows and columns give S_b; X_b's row q belongs to rows[q].
        public var rows: [Int32]
        /// n_b: the length of X_b's rows.
        public var columnCount: Int
        /// Where X_b's column 0 lands in the column sums.
        public var columnSumStart: Int
        /// How the block's column sums are formed (`automatic`: by the plan's rule). A caller that
        /// splits one logical block's columns between plans (model-parallel runs) and wants the
        /// sums bit-identical to the unsplit plan's must choose the same form for every piece,
        /// since the automatic rule looks at the columns.
        public var columnSumMethod: ColumnSumMethod

        /// A block of `rows.count` rows and `columnCount` columns whose column sums start at
        /// `columnSumStart`, formed as `columnSumMethod` says.
        public init(rows: [Int32], columnCount: Int, columnSumStart: Int, columnSumMethod: ColumnSumMethod = .automatic) {
            self.rows = rows
            self.columnCount = columnCount
            self.columnSumStart = columnSumStart
            self.columnSumMethod = columnSumMethod
        }
    }

    /// One addition `X_b[row, column ..< column + count] += e`, where e is the next `count`
    /// values of the additions array passed to `execute` (additions take their values in the
    /// order they were given to the plan).
    public struct Addition: Sendable, Equatable {
        /// b: the index of the block, in the order the blocks were given to the plan.
        public var block: Int
        /// The row of X_b (a position in the block's `rows`, not an index of A).
        public var row: Int
        /// The first column of X_b the addition reaches.
        public var column: Int
        /// How many consecutive values, from `column`, the addition adds to.
        public var count: Int

        /// An addition to `count` values of row `row` of block `block`, from column `column`.
        public init(block: Int, row: Int, column: Int, count: Int) {
            self.block = block
            self.row = row
            self.column = column
            self.count = count
        }
    }

    /// The instruction sets the kernels are written for.
    public enum Kernel: String, CaseIterable, Sendable {
        /// Plain C with the compiler's generic vectors: any processor.
        case generic
        /// AVX2 with fused multiply-add (x86-64).
        case avx2
        /// AVX-512F (x86-64).
        case avx512

        /// The best this processor runs.
        public static var best: Kernel { Kernel(level: sk_cpu_level()) }

        /// Whether this processor runs the kernel.
        public var isAvailable: Bool { level <= sk_cpu_level() }

        init(level: Int32) {
            switch level {
            case Int32(SK_ISA_AVX512): self = .avx512
            case Int32(SK_ISA_AVX2): self = .avx2
            default: self = .generic
            }
        }

        var level: Int32 {
            switch self {
            case .generic: return Int32(SK_ISA_GENERIC)
            case .avx2: return Int32(SK_ISA_AVX2)
            case .avx512: return Int32(SK_ISA_AVX512)
            }
        }
    }

    /// How X's values are laid out. The blocks follow one another in the order given to the
    /// plan; `valueIndex(block:row:column:placement:)` says where any value lives.
    public enum Layout: String, CaseIterable, Sendable {
        /// Each block an m_b × n_b row-major array (row stride n_b).
        case rowMajor
        /// Each block as its panels of columns (`panels(ofBlock:)`), one after another, each
        /// panel an m_b × width row-major array (row stride: the panel's width). A panel is then
        /// one stretch of memory, which the kernel packs as the hardware prefetchers stream it:
        /// whole RTRL steps 2–9% faster than with row-major blocks, where a panel's rows lie n_b
        /// apart (Docs/BENCHMARKS.md), with the same results to the bit. The panels depend on the
        /// instruction set, the scalar type and `maximumPanelVectors`, so only this plan's
        /// `valueIndex` places values.
        case panelMajor
        /// Panel by panel as `panelMajor`, each panel's rows rounded up to whole vectors, and
        /// each thread's share of the panels (in order) one stretch of X after a gap of its own
        /// as large as its largest panel. A call reads every old panel where it is and writes
        /// the new one into the gap and the places of panels already read, so no panel is copied
        /// aside first (the other layouts copy each into a buffer: the update is in place). The
        /// values so move between two placements (`Placement`), one call to the next, and
        /// `execute(a:x:additions:rowWeights:columnSums:placement:workspace:)` keeps track; X
        /// holds `storageCount` values (gaps and padding included, their contents unused).
        /// Every panel and row starts on a whole vector, so in an X aligned to 64 bytes each
        /// vector the kernel loads lies in one cache line: allocate it so (unaligned, gru k = 256
        /// SnAp-2 steps were 20% slower than with the copying `panelMajor`; aligned, 8% faster).
        case shiftingPanels
    }

    /// Where the values of a `Layout.shiftingPanels` X are: after each thread's gap (`upper`,
    /// where they start) or before it (`lower`). Each call moves them to the other placement.
    public enum Placement: String, CaseIterable, Sendable {
        /// Each thread's share of the panels after its gap: the placement X starts in.
        case upper
        /// Each thread's share of the panels before its gap.
        case lower

        /// The other placement.
        public var other: Placement { self == .upper ? .lower : .upper }
    }

    /// How a block's weighted column sums are formed (`Block.columnSumMethod`). Both forms give
    /// the same sums up to rounding.
    public enum ColumnSumMethod: String, CaseIterable, Sendable {
        /// Per block, the form that costs less by the plan's measured rule: `transposed` when the
        /// block's rows times its vectors of columns exceed 16 times its entries of S_b, else
        /// `rowByRow`.
        case automatic
        /// Each new row, times its weight, is added to the running sums as it is stored: a
        /// multiply-add and a load and store of the sums for every vector stored.
        case rowByRow
        /// u = S_bᵀ·w(R_b) is formed once per block (a pass over S_b's entries) and u'·X_old is
        /// accumulated while each panel is packed, which costs next to nothing: pays when many
        /// panels share u.
        case transposed
    }

    /// The size n of the square matrix A.
    public let dimension: Int
    /// Length of the value array of A passed to `execute`.
    public let aValueCount: Int
    /// Number of values of X (all blocks).
    public let valueCount: Int
    /// Length of the array X is held in: `valueCount`, and with `Layout.shiftingPanels` the gaps
    /// and the padding of rows to whole vectors too.
    public let storageCount: Int
    /// Number of values of the additions array.
    public let additionValueCount: Int
    /// Length of the column sums.
    public let columnSumCount: Int
    /// Multiply-adds of one call: Σ_b nnz(S_b) · n_b.
    public let multiplyAdds: Int
    /// Number of blocks.
    public let blockCount: Int
    /// Work units: panels of blocks, the pieces threads take.
    public let panelCount: Int
    /// Rows computed two at a time (pairs sharing their columns): with `tiledRows`, the
    /// register-blocked kernels the plan chose.
    public let pairedRows: Int
    /// Rows computed three to six at a time (longer runs of rows sharing their columns, as in a
    /// dense S_b); the other rows, neither paired nor tiled, are computed one at a time.
    public let tiledRows: Int
    /// Blocks whose column sums go through u = S_bᵀ·w (`ColumnSumMethod.transposed`); the
    /// others' go row by row.
    public let transposedSumBlocks: Int
    /// The instruction set the plan runs on.
    public let kernel: Kernel
    /// How X's values are laid out.
    public let layout: Layout
    /// The scalar type the plan was built for.
    public var scalar: any SparseScalar.Type { isSingle ? Float.self : Double.self }
    private let isSingle: Bool
    /// Threads a call uses.
    public let threadCount: Int
    /// Memory the plan holds, in bytes.
    public let bytes: Int

    // Plan arrays, in two flat buffers (offsets into them below), handed to C as pointers.
    private let int32Data: [Int32]
    private let int64Data: [Int64]
    private let tiles: [sk_bprod_tile]
    /// Per block: form the column sums as u'·X_old with u = S_bᵀw (1), or row by row (0).
    private let sumsByU: [UInt8]
    /// Per block: the sets of accumulators a single row's entries are dealt to (1 to 3), from the
    /// widest panel its rows allow, so that no sum depends on how the columns are cut.
    private let chainsOfBlock: [UInt8]
    private let offsets: Offsets
    private let bounds: [Int32]
    private let maxRows: Int32
    private let maxVectors: Int32
    private let maxEntries: Int64
    /// Per block (and one past the last): its first work unit; a block's units are its panels,
    /// left to right.
    private let firstUnitOfBlock: [Int]
    /// `Layout.shiftingPanels`: each unit's panel's place in X in the lower placement (empty
    /// otherwise), and the gap (the upper placement's offset).
    private let unitOffset: [Int64]
    private let gap: Int

    private struct Offsets: Sendable {
        // Int32 arrays
        var rows = 0, rowGlobal = 0, entryColumn = 0, entryValue = 0
        var unitBlock = 0, unitColumn = 0, unitWidth = 0, addRow = 0, addColumn = 0, addCount = 0
        // Int64 arrays
        var columns = 0, valueStart = 0, sumStart = 0, rowStart = 0, tileStart = 0, columnStart = 0, entryStart = 0
        var unitAdd = 0, addSource = 0
    }

    /// Builds the plan.
    ///
    /// - Parameters:
    ///   - a: the pattern of A (n × n).
    ///   - aValueIndex: for every stored entry of `a` (in storage order), its position in the value
    ///     array passed to `execute`; nil for the identity (values in `a`'s own order).
    ///   - aValueCount: the length of that array (nil: `a.nonzeroCount`).
    ///   - blocks: the blocks of X, stored one after another in this order.
    ///   - additions: the additions, in the order they are applied and take their values.
    ///   - columnSumCount: the length of the column sums (each block's columns must fit in it).
    ///   - threads: threads for `execute`.
    ///   - kernel: the instruction set (nil: the best this processor runs).
    ///   - maximumPanelVectors: the widest panel in vectors (nil: as wide as the registers and the
    ///     L1 cache allow, and with AVX2 at least 4 vectors); a tuning and testing knob, 1 to 15.
    ///   - layout: how X's values are laid out (`Layout`).
    ///   - memoryBudget: the most bytes the plan may hold, checked before its arrays are allocated.
    ///   - scalar: the scalar type of the values `execute` takes.
    public init<Scalar: SparseScalar>(a: SparsityPattern, aValueIndex: [Int32]? = nil, aValueCount: Int? = nil, blocks: [Block],
                                      additions: [Addition] = [], columnSumCount: Int, threads: Int = 1, kernel: Kernel? = nil,
                                      maximumPanelVectors: Int? = nil, layout: Layout = .rowMajor,
                                      memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget,
                                      scalar: Scalar.Type = Double.self) throws {
        let n = a.rowCount
        guard a.columnCount == n else {
            throw SparseKernelsError.shapeMismatch("A must be square, not \(a.rowCount) × \(a.columnCount)")
        }
        guard threads >= 1, threads <= 1024 else {
            throw SparseKernelsError.invalidArgument("threads must be between 1 and 1024, not \(threads)")
        }
        let valueCountOfA = aValueCount ?? a.nonzeroCount
        if let aValueIndex {
            guard aValueIndex.count == a.nonzeroCount else {
                throw SparseKernelsError.shapeMismatch("aValueIndex needs one index per entry of A (\(a.nonzeroCount)), not \(aValueIndex.count)")
            }
            if let bad = aValueIndex.firstIndex(where: { $0 < 0 || Int($0) >= valueCountOfA }) {
                throw SparseKernelsError.invalidArgument("the value index \(aValueIndex[bad]) of A's entry \(bad) is outside 0..<\(valueCountOfA)")
            }
        } else if valueCountOfA != a.nonzeroCount {
            throw SparseKernelsError.shapeMismatch("without aValueIndex, A's values are its \(a.nonzeroCount) entries, not \(valueCountOfA)")
        }
        guard columnSumCount >= 0 else { throw SparseKernelsError.invalidArgument("columnSumCount must not be negative") }
        if let maximumPanelVectors, !(1...15).contains(maximumPanelVectors) {
            throw SparseKernelsError.invalidArgument("maximumPanelVectors must be 1 to 15, not \(maximumPanelVectors)")
        }
        let kernel = kernel ?? .best
        guard kernel.isAvailable else {
            throw SparseKernelsError.invalidArgument("this processor does not run the \(kernel.rawValue) kernels")
        }
        let single: Int32 = Scalar.self == Float.self ? 1 : 0
        let lanes = Int(sk_bprod_lanes(kernel.level, single))

        // Check the blocks; count values, rows and (through A's rows) entries before allocating.
        var mark = [Int32](repeating: -1, count: n)
        var totalValues = 0, totalRows = 0, totalEntries = 0, maxEntries = 0, maxRows = 0
        let rowsOfA = a.transposedWithPositions()
        var entriesOfBlock = [Int](repeating: 0, count: blocks.count)
        for (b, block) in blocks.enumerated() {
            guard block.columnCount >= 0, block.columnSumStart >= 0, block.columnSumStart + block.columnCount <= columnSumCount else {
                throw SparseKernelsError.invalidArgument("block \(b)'s \(block.columnCount) columns from column sum \(block.columnSumStart) do not fit \(columnSumCount) column sums")
            }
            for (q, r) in block.rows.enumerated() {
                guard r >= 0, Int(r) < n else {
                    throw SparseKernelsError.invalidArgument("row \(q) of block \(b) is index \(r), outside A's 0..<\(n)")
                }
                guard mark[Int(r)] < 0 else {
                    throw SparseKernelsError.invalidArgument("block \(b) lists index \(r) twice")
                }
                mark[Int(r)] = Int32(q)
            }
            var entries = 0
            for r in block.rows {
                for p in Int(rowsOfA.pattern.columnPointers[Int(r)])..<Int(rowsOfA.pattern.columnPointers[Int(r) + 1])
                where mark[Int(rowsOfA.pattern.rowIndices[p])] >= 0 {
                    entries += 1
                }
            }
            for r in block.rows { mark[Int(r)] = -1 }
            guard let values = multipliedOrNil(block.rows.count, block.columnCount) else {
                throw SparseKernelsError.indexOverflow("block \(b) (\(block.rows.count) × \(block.columnCount)) is too large")
            }
            _ = try checkedInt32(entries, "the entries of block \(b)'s submatrix")
            _ = try checkedInt32(block.columnCount, "the columns of block \(b)")
            entriesOfBlock[b] = entries
            totalValues += values
            totalRows += block.rows.count
            totalEntries += entries
            maxEntries = max(maxEntries, entries)
            maxRows = max(maxRows, block.rows.count)
        }
        for (t, addition) in additions.enumerated() {
            guard addition.block >= 0, addition.block < blocks.count else {
                throw SparseKernelsError.invalidArgument("addition \(t) is to block \(addition.block), but there are \(blocks.count) blocks")
            }
            let block = blocks[addition.block]
            guard addition.row >= 0, addition.row < block.rows.count, addition.column >= 0, addition.count >= 0,
                  addition.column + addition.count <= block.columnCount else {
                throw SparseKernelsError.invalidArgument("addition \(t) (row \(addition.row), columns \(addition.column)..<\(addition.column + addition.count)) does not fit block \(addition.block) (\(block.rows.count) × \(block.columnCount))")
            }
        }

        // Tiles and panels are decided per block once S_b is known, so the budget is checked
        // first with the most they can need: one tile per row, one panel per vector.
        var upperUnits = 0
        for block in blocks where !block.rows.isEmpty { upperUnits += (block.columnCount + lanes - 1) / lanes }
        var upperPieces = 0
        for addition in additions where addition.count > 0 { upperPieces += (addition.count + lanes - 1) / lanes + 1 }
        // (A tile pads its values to six a column: at most three times its entries.)
        let int32Count = blocks.count + totalRows + 5 * totalRows + 4 * totalEntries + 3 * upperUnits + 3 * upperPieces
        let int64Count = 4 * blocks.count + 4 * (blocks.count + 1) + (upperUnits + 1) + upperPieces
        // (The last terms: a byte per block for the column sums' form and one for the sets of
        // accumulators; each block's first unit; shifting, each unit's place.)
        let needed = 4 * int32Count + 8 * int64Count + 4 * (threads + 1) + 2 * blocks.count + 8 * (blocks.count + 1)
            + (layout == .shiftingPanels ? 8 * upperUnits : 0)
        guard needed <= memoryBudget else {
            throw SparseKernelsError.memoryBudgetExceeded(what: "a block product plan (\(blocks.count) blocks, \(totalEntries) submatrix entries)",
                                                          neededBytes: needed, budgetBytes: memoryBudget)
        }

        // S_b by rows, in tiles of rows that share their columns (below).
        let tileRows = Int(sk_bprod_tile_rows())
        var tiles = [sk_bprod_tile](), tileStart: [Int64] = [0], columnStart: [Int64] = [0], entryStart: [Int64] = [0]
        var entryColumn = [Int32](), entryValue = [Int32]()
        entryColumn.reserveCapacity(totalEntries); entryValue.reserveCapacity(totalEntries)
        var tileMode = [Int](repeating: 0, count: blocks.count)
        var multiplyAdds = 0
        for (b, block) in blocks.enumerated() {
            let m = block.rows.count
            for (q, r) in block.rows.enumerated() { mark[Int(r)] = Int32(q) }
            var rowColumns = [[Int32]](repeating: [], count: m), rowValues = [[Int32]](repeating: [], count: m)
            for (q, r) in block.rows.enumerated() {
                for p in Int(rowsOfA.pattern.columnPointers[Int(r)])..<Int(rowsOfA.pattern.columnPointers[Int(r) + 1]) {
                    let j = mark[Int(rowsOfA.pattern.rowIndices[p])]
                    if j < 0 { continue }
                    let position = Int(rowsOfA.position[p])
                    rowColumns[q].append(j)
                    rowValues[q].append(aValueIndex.map { $0[position] } ?? Int32(position))
                }
            }
            for r in block.rows { mark[Int(r)] = -1 }
            multiplyAdds += entriesOfBlock[b] * block.columnCount
            // Runs of consecutive rows that share their columns (at least two rows).
            var run = [Int](repeating: 1, count: m)
            var q = 0, runRows = 0, longRunRows = 0
            while q < m {
                var h = 1
                while q + h < m && !rowColumns[q].isEmpty && rowColumns[q + h] == rowColumns[q] { h += 1 }
                if h > 1 { run[q] = h; runRows += h }
                if h > 2 { longRunRows += h }
                q += h
            }
            // Where at least half the rows are in runs: long runs (a dense S) as tiles of up to
            // tileRows rows (zero-padded to tileRows values a column), pairs (an LSTM unit's h
            // and c rows) as tiles of two (two values a column).
            let mode: Int  // 0: rows one by one; 2: pairs; tileRows: long tiles
            if m == 0 || 2 * runRows < m {
                mode = 0
            } else if 2 * longRunRows >= m {
                mode = tileRows
            } else {
                mode = 2
            }
            tileMode[b] = mode
            let firstColumn = entryColumn.count, firstValue = entryValue.count
            q = 0
            while q < m {
                var h = 1
                if mode > 0 && run[q] > 1 {
                    h = min(run[q], mode)
                    if h < run[q] { run[q + h] = run[q] - h } // the rest of the run starts a tile of its own
                }
                let length = rowColumns[q].count
                tiles.append(sk_bprod_tile(row: Int32(q), height: Int32(h), length: Int32(length),
                                           column: Int32(entryColumn.count - firstColumn), value: Int32(entryValue.count - firstValue)))
                entryColumn += rowColumns[q]
                if h == 1 {
                    entryValue += rowValues[q]
                } else {
                    // The tile's values column by column: two for a pair, else tileRows with the
                    // rows beyond its height zero (index −1).
                    let stride = h == 2 ? 2 : tileRows
                    for l in 0..<length { for r in 0..<stride { entryValue.append(r < h ? rowValues[q + r][l] : -1) } }
                }
                q += h
            }
            tileStart.append(Int64(tiles.count))
            columnStart.append(Int64(entryColumn.count))
            entryStart.append(Int64(entryValue.count))
            maxEntries = max(maxEntries, entryValue.count - firstValue)
        }

        // Panels: each block's columns cut into nearly equal panels no wider than the kernel's.
        var panelsOfBlock = [[(column: Int, width: Int)]]()
        var chainsOfBlock = [UInt8](repeating: 1, count: blocks.count)
        var widestPanel = 1
        for (b, block) in blocks.enumerated() {
            var panels: [(column: Int, width: Int)] = []
            if block.columnCount > 0 && !block.rows.isEmpty {
                var most = maximumPanelVectors ?? Int(sk_bprod_max_vectors(kernel.level, single, Int32(block.rows.count)))
                // Tiled blocks: panels a multiple of the tile kernel's sub-panel where possible.
                let unit = tileMode[b] == 0 ? 1 : Int(sk_bprod_tile_vectors(kernel.level, tileMode[b] == 2 ? 1 : 0))
                if maximumPanelVectors == nil && most >= unit { most -= most % unit }
                // From the widest panel, which the rows set, not from this block's columns: a block
                // whose columns are split between processes sums every column as the whole does.
                chainsOfBlock[b] = UInt8(sk_bprod_chains(kernel.level, Int32(most)))
                let vectors = (block.columnCount + lanes - 1) / lanes
                let count = (vectors + most - 1) / most
                var per = (vectors + count - 1) / count
                if per % unit != 0 && per - per % unit + unit <= most { per += unit - per % unit }
                var column = 0
                while column < block.columnCount {
                    let width = min(per * lanes, block.columnCount - column)
                    panels.append((column, width))
                    column += width
                }
                widestPanel = max(widestPanel, per)
            }
            panelsOfBlock.append(panels)
        }
        let units = panelsOfBlock.reduce(0) { $0 + $1.count }

        // Fill.
        var o = Offsets()
        var i32 = [Int32](), i64 = [Int64]()
        i32.reserveCapacity(int32Count)
        i64.reserveCapacity(int64Count)
        o.rows = i32.count; i32 += blocks.map { Int32($0.rows.count) }
        o.rowGlobal = i32.count; for block in blocks { i32 += block.rows }
        o.columns = i64.count; i64 += blocks.map { Int64($0.columnCount) }
        o.valueStart = i64.count
        var start = 0
        for block in blocks { i64.append(Int64(start)); start += block.rows.count * block.columnCount }
        o.sumStart = i64.count; i64 += blocks.map { Int64($0.columnSumStart) }
        o.rowStart = i64.count
        var rowStart = 0
        for block in blocks { i64.append(Int64(rowStart)); rowStart += block.rows.count }
        i64.append(Int64(rowStart))
        o.tileStart = i64.count; i64 += tileStart
        o.columnStart = i64.count; i64 += columnStart
        o.entryStart = i64.count; i64 += entryStart
        o.entryColumn = i32.count; i32 += entryColumn
        o.entryValue = i32.count; i32 += entryValue
        // Units, and the additions cut into them (in order within each unit).
        var unitOfBlock = [Int](repeating: 0, count: blocks.count + 1)
        for b in blocks.indices { unitOfBlock[b + 1] = unitOfBlock[b] + panelsOfBlock[b].count }
        var piecesOfUnit = [[(row: Int32, column: Int32, count: Int32, source: Int64)]](repeating: [], count: units)
        var source = 0
        for addition in additions {
            for (u, panel) in panelsOfBlock[addition.block].enumerated() {
                let lower = max(panel.column, addition.column)
                let upper = min(panel.column + panel.width, addition.column + addition.count)
                if lower < upper {
                    piecesOfUnit[unitOfBlock[addition.block] + u].append(
                        (Int32(addition.row), Int32(lower), Int32(upper - lower), Int64(source + lower - addition.column)))
                }
            }
            source += addition.count
        }
        o.unitBlock = i32.count
        for (b, panels) in panelsOfBlock.enumerated() { i32 += [Int32](repeating: Int32(b), count: panels.count) }
        o.unitColumn = i32.count; for panels in panelsOfBlock { i32 += panels.map { Int32($0.column) } }
        o.unitWidth = i32.count; for panels in panelsOfBlock { i32 += panels.map { Int32($0.width) } }
        o.unitAdd = i64.count
        var added: Int64 = 0
        i64.append(0)
        for list in piecesOfUnit { added += Int64(list.count); i64.append(added) }
        o.addRow = i32.count; for list in piecesOfUnit { i32 += list.map { $0.row } }
        o.addColumn = i32.count; for list in piecesOfUnit { i32 += list.map { $0.column } }
        o.addCount = i32.count; for list in piecesOfUnit { i32 += list.map { $0.count } }
        o.addSource = i64.count; for list in piecesOfUnit { i64 += list.map { $0.source } }

        // Threads take contiguous runs of units of about equal work.
        var costs = [Int]()
        costs.reserveCapacity(units)
        for (b, panels) in panelsOfBlock.enumerated() {
            let m = blocks[b].rows.count
            for panel in panels { costs.append((entriesOfBlock[b] + 2 * m) * ((panel.width + lanes - 1) / lanes) + entriesOfBlock[b]) }
        }

        self.dimension = n
        self.aValueCount = valueCountOfA
        self.valueCount = totalValues
        self.additionValueCount = source
        self.columnSumCount = columnSumCount
        self.multiplyAdds = multiplyAdds
        self.blockCount = blocks.count
        self.panelCount = units
        self.pairedRows = tiles.filter { $0.height == 2 }.count * 2
        self.tiledRows = tiles.filter { $0.height > 2 }.reduce(0) { $0 + Int($1.height) }
        self.kernel = kernel
        self.layout = layout
        self.firstUnitOfBlock = unitOfBlock
        self.isSingle = single == 1
        self.threadCount = threads
        self.int32Data = i32
        self.int64Data = i64
        self.tiles = tiles
        // The column sums cost, per block, either a pass over S_b's entries (u = S_bᵀw, with a
        // scatter into u, then u'·X_old while packing: next to nothing) or, row by row, a
        // multiply-add with a load and a store of the sums per stored vector. Measured
        // (Docs/BENCHMARKS.md, "What was tried"): row by row was 4–6% faster on rnn k = 512
        // SnAp-2 (blocks of 52 rows × 14 vectors over 322 entries: 2.3 stored vectors an entry),
        // the transposed form 0–2% faster on the dense rnn k = 64 exact RTRL (64 × 1,568 over
        // 4,096: 24.5) and 1–2% on rnn k = 256 exact RTRL (256 × 1,971 over 6,579: 77). The
        // threshold sits between 2.3 and 24.5.
        let sumsByU: [UInt8] = blocks.indices.map { b in
            switch blocks[b].columnSumMethod {
            case .rowByRow: return 0
            case .transposed: return 1
            case .automatic:
                let vectors = (blocks[b].columnCount + lanes - 1) / lanes
                return 16 * entriesOfBlock[b] < blocks[b].rows.count * vectors ? 1 : 0
            }
        }
        self.sumsByU = sumsByU
        self.chainsOfBlock = chainsOfBlock
        self.transposedSumBlocks = sumsByU.reduce(0) { $0 + Int($1) }
        self.offsets = o
        let bounds = WorkerPool.balancedBoundaries(costs: costs, parts: threads)
        self.bounds = bounds
        // Shifting panels: every thread's units one stretch, after a gap as large as its largest
        // panel (rows rounded up to whole vectors, so that every panel and row starts on one: on
        // a cache line, in an X aligned to 64 bytes).
        var unitOffset: [Int64] = [], gap = 0, storage = totalValues
        if layout == .shiftingPanels {
            var size = [Int](repeating: 0, count: units)
            for u in 0..<units {
                let b = Int(i32[o.unitBlock + u]), width = Int(i32[o.unitWidth + u])
                size[u] = blocks[b].rows.count * ((width + lanes - 1) / lanes * lanes)
                gap = max(gap, size[u])
            }
            unitOffset = [Int64](repeating: 0, count: units)
            var offset = 0
            for t in 0..<threads {
                let u0 = Int(bounds[t]), u1 = Int(bounds[t + 1])
                if u0 >= u1 { continue }
                for u in u0..<u1 { unitOffset[u] = Int64(offset); offset += size[u] }
                offset += gap
            }
            storage = offset
        }
        self.unitOffset = unitOffset
        self.gap = gap
        self.storageCount = storage
        self.maxRows = Int32(maxRows)
        self.maxVectors = Int32(widestPanel)
        self.maxEntries = Int64(maxEntries)
        self.bytes = needed
    }

    /// Scratch and threads for one caller of `execute`, built once and reused every call. A
    /// workspace serves one call at a time: give each thread or task that executes the plan
    /// concurrently its own.
    public final class Workspace {
        let owner: ObjectIdentifier
        let scratch: UnsafeMutableRawPointer
        let stride: Int
        let pool: WorkerPool?
        /// Bytes of scratch the workspace holds.
        public let bytes: Int

        fileprivate init(plan: BlockProductPlan) throws {
            owner = ObjectIdentifier(plan)
            stride = plan.withRawPlan { raw in
                (Int(sk_bprod_scratch_bytes(raw, plan.kernel.level, plan.isSingle ? 1 : 0)) + 63) / 64 * 64
            }
            bytes = max(stride, 64) * plan.threadCount
            scratch = .allocate(byteCount: bytes, alignment: 64)
            pool = plan.threadCount > 1 ? try WorkerPool(threads: plan.threadCount) : nil
        }

        deinit { scratch.deallocate() }
    }

    /// A new workspace for this plan.
    public func makeWorkspace() throws -> Workspace { try Workspace(plan: self) }

    /// One call: every block becomes S_b · X_b plus its additions, in place; with `rowWeights`
    /// (length `dimension`), `columnSums` (length `columnSumCount`) gains the weighted column
    /// sums of the new blocks. Allocates nothing.
    ///
    /// - Parameters:
    ///   - a: A's values (`aValueCount` of them; the plan reads them through its value index).
    ///   - x: the blocks' values, overwritten.
    ///   - additions: `additionValueCount` values (an empty buffer when there are none).
    ///   - rowWeights: w, one weight per index of A (`dimension` of them), or `nil` for no
    ///     column sums; pass it together with `columnSums` or not at all.
    ///   - columnSums: `columnSumCount` sums that gain the weighted column sums of the new
    ///     blocks (added to, not overwritten), or `nil`; both or neither with `rowWeights`.
    ///   - workspace: one of this plan's workspaces, used by one call at a time.
    ///
    /// A plan with `Layout.shiftingPanels` needs the placement as well:
    /// `execute(a:x:additions:rowWeights:columnSums:placement:workspace:)`.
    public func execute<Scalar: SparseScalar>(a: UnsafeBufferPointer<Scalar>, x: UnsafeMutableBufferPointer<Scalar>,
                                              additions: UnsafeBufferPointer<Scalar>, rowWeights: UnsafeBufferPointer<Scalar>? = nil,
                                              columnSums: UnsafeMutableBufferPointer<Scalar>? = nil, workspace: Workspace) throws {
        guard layout != .shiftingPanels else {
            throw SparseKernelsError.invalidArgument("a plan with shifting panels moves X every call: pass its placement")
        }
        var placement = Placement.upper
        try execute(a: a, x: x, additions: additions, rowWeights: rowWeights, columnSums: columnSums, placement: &placement,
                    workspace: workspace)
    }

    /// One call, as `execute(a:x:additions:rowWeights:columnSums:workspace:)`, for any layout:
    /// with `Layout.shiftingPanels`, `placement` says where X's values are and becomes where the
    /// new ones are (the other placement); with the other layouts it is left alone. `x` holds
    /// `storageCount` values.
    public func execute<Scalar: SparseScalar>(a: UnsafeBufferPointer<Scalar>, x: UnsafeMutableBufferPointer<Scalar>,
                                              additions: UnsafeBufferPointer<Scalar>, rowWeights: UnsafeBufferPointer<Scalar>? = nil,
                                              columnSums: UnsafeMutableBufferPointer<Scalar>? = nil, placement: inout Placement,
                                              workspace: Workspace) throws {
        guard (Scalar.self == Float.self) == isSingle else {
            throw SparseKernelsError.invalidArgument("the plan was built for \(scalar) values, not \(Scalar.self)")
        }
        guard a.count == aValueCount, x.count == storageCount, additions.count == additionValueCount else {
            throw SparseKernelsError.shapeMismatch(
                "the plan needs \(aValueCount) values of A, \(storageCount) of X and \(additionValueCount) additions, not \(a.count), \(x.count) and \(additions.count)")
        }
        guard (rowWeights == nil) == (columnSums == nil) else {
            throw SparseKernelsError.invalidArgument("rowWeights and columnSums go together: pass both or neither")
        }
        if let rowWeights, let columnSums, rowWeights.count != dimension || columnSums.count != columnSumCount {
            throw SparseKernelsError.shapeMismatch(
                "the column sums need \(dimension) row weights and \(columnSumCount) sums, not \(rowWeights.count) and \(columnSums.count)")
        }
        guard workspace.owner == ObjectIdentifier(self) else {
            throw SparseKernelsError.invalidArgument("the workspace was made by another plan")
        }
        guard panelCount > 0 else { return }
        let from = placement
        withRawPlan { raw in
            bounds.withUnsafeBufferPointer { bounds in
                var call = sk_bprod_call(
                    plan: raw, level: kernel.level, single: isSingle ? 1 : 0,
                    Av: a.baseAddress, X: x.baseAddress, E: additions.baseAddress,
                    w: rowWeights?.baseAddress, g: columnSums?.baseAddress, bounds: bounds.baseAddress,
                    scratch: workspace.scratch, scratch_stride: workspace.stride, placement: from == .upper ? 0 : 1)
                sk_bprod_execute(workspace.pool?.raw, &call)
            }
        }
        if layout == .shiftingPanels { placement = from.other }
    }

    /// The panels block b's columns are cut into, left to right (column ranges of X_b; none for
    /// a block without rows or columns), or nil if there is no block b. Each panel is one work
    /// unit of `execute`; with `Layout.panelMajor` each is also a contiguous array of X.
    public func panels(ofBlock b: Int) -> [Range<Int>]? {
        guard b >= 0, b < blockCount else { return nil }
        return (firstUnitOfBlock[b]..<firstUnitOfBlock[b + 1]).map { u in
            let column = Int(int32Data[offsets.unitColumn + u])
            return column..<(column + Int(int32Data[offsets.unitWidth + u]))
        }
    }

    /// Where X_b[row, column] lives in the values `execute` takes, for the plan's layout (and,
    /// with `Layout.shiftingPanels`, the placement the values are in); nil if block b has no such
    /// row or column.
    public func valueIndex(block b: Int, row: Int, column: Int, placement: Placement = .upper) -> Int? {
        guard b >= 0, b < blockCount else { return nil }
        let m = Int(int32Data[offsets.rows + b]), n = Int(int64Data[offsets.columns + b])
        guard row >= 0, row < m, column >= 0, column < n else { return nil }
        let start = Int(int64Data[offsets.valueStart + b])
        if layout == .rowMajor { return start + row * n + column }
        // The last of the block's panels that starts at or before the column.
        var low = firstUnitOfBlock[b], high = firstUnitOfBlock[b + 1] - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if Int(int32Data[offsets.unitColumn + mid]) <= column { low = mid } else { high = mid - 1 }
        }
        let first = Int(int32Data[offsets.unitColumn + low]), width = Int(int32Data[offsets.unitWidth + low])
        guard layout == .shiftingPanels else { return start + first * m + row * width + (column - first) }
        let lanes = Int(sk_bprod_lanes(kernel.level, isSingle ? 1 : 0)), stride = (width + lanes - 1) / lanes * lanes
        return Int(unitOffset[low]) + (placement == .upper ? gap : 0) + row * stride + (column - first)
    }

    /// The plan's arrays as the C struct (valid inside `body` only).
    private func withRawPlan<R>(_ body: (UnsafePointer<sk_bprod_plan>) throws -> R) rethrows -> R {
        try withNonNullPointer(int32Data) { i32 in
            try withNonNullPointer(sumsByU) { byU in
            try withNonNullPointer(chainsOfBlock) { chains in
            try withNonNullPointer(tiles) { tiles in
            try withNonNullPointer(int64Data) { i64 in
                let o = offsets
                var raw = sk_bprod_plan(
                    nblocks: Int32(blockCount), rows: i32 + o.rows, cols: i64 + o.columns, x_start: i64 + o.valueStart,
                    g_start: i64 + o.sumStart, row_start: i64 + o.rowStart, row_global: i32 + o.rowGlobal,
                    tile_start: i64 + o.tileStart, tiles: tiles, col_start: i64 + o.columnStart, entry_col: i32 + o.entryColumn,
                    entry_start: i64 + o.entryStart, entry_val: i32 + o.entryValue, block_chains: chains, block_sums_by_u: byU, nunits: Int32(panelCount), unit_block: i32 + o.unitBlock,
                    unit_col: i32 + o.unitColumn, unit_width: i32 + o.unitWidth, unit_add: i64 + o.unitAdd,
                    add_row: i32 + o.addRow, add_col: i32 + o.addColumn, add_len: i32 + o.addCount,
                    add_src: i64 + o.addSource, max_rows: maxRows, max_vectors: maxVectors, max_entries: maxEntries,
                    panel_major: layout == .panelMajor ? 1 : 0, unit_offset: nil, gap: Int64(gap))
                if layout == .shiftingPanels {
                    return try unitOffset.withUnsafeBufferPointer { offsets in
                        raw.unit_offset = offsets.baseAddress
                        return try withUnsafePointer(to: &raw) { try body($0) }
                    }
                }
                return try withUnsafePointer(to: &raw) { try body($0) }
            }
            }
            }
            }
        }
    }
}

/// A workspace is scratch for one call at a time; give each task its own (the plan itself is shared freely).
@available(*, unavailable)
extension BlockProductPlan.Workspace: Sendable {}
