import SparseKernels
import XCTest

/// `ScaledBlockProductPlan` (X ← X·B in column-scaled form, with a deferred product g + Y·w)
/// checked against plain dense arithmetic written here: X_true = Y·diag(s) and B as [[Double]],
/// multiplied with plain loops.
final class ScaledBlockProductPlanTests: XCTestCase {
    // MARK: - Problems

    /// The blocks of X: columns, rows and first row in g of each block, and g's length.
    private struct Blocks {
        var columns: [Int]
        var rows: [Int]
        var firstRows: [Int]
        var rowCount: Int

        private static func prefix(_ a: [Int]) -> [Int] {
            var p = [0]
            for x in a { p.append(p.last! + x) }
            return p
        }
        var n: Int { columns.reduce(0, +) }
        /// Whether no two blocks (with rows and columns) share a row of g.
        var rowsAreDisjoint: Bool {
            var owner = [Int](repeating: -1, count: rowCount)
            for t in columns.indices where rows[t] > 0 && columns[t] > 0 {
                for r in firstRows[t]..<firstRows[t] + rows[t] {
                    if owner[r] >= 0 { return false }
                    owner[r] = t
                }
            }
            return true
        }
        /// Rows of X, the blocks stacked.
        var m: Int { rows.reduce(0, +) }
        var valueCount: Int { zip(rows, columns).map { $0 * $1 }.reduce(0, +) }
        var columnStart: [Int] { Self.prefix(columns) }
        var rowStart: [Int] { Self.prefix(rows) }
        var valueStart: [Int] { Self.prefix(zip(rows, columns).map { $0 * $1 }) }
        var blockOfColumn: [Int] {
            var result: [Int] = []
            for (t, c) in columns.enumerated() { result += [Int](repeating: t, count: c) }
            return result
        }
        /// Rows of g no block covers.
        var uncoveredRows: [Int] {
            var covered = [Bool](repeating: false, count: rowCount)
            for t in rows.indices { for i in 0..<rows[t] { covered[firstRows[t] + i] = true } }
            return (0..<rowCount).filter { !covered[$0] }
        }
    }

    /// B's pattern and value-index map. Slot 0 of the value array is always zero; diagonal entries
    /// read from `diagonalSlots`, off-diagonal ones from `offDiagonalSlots` (several entries share
    /// a slot); slots past those are never referenced.
    private struct Problem {
        var blocks: Blocks
        var b: SparsityPattern
        var index: [Int32]
        var bValueCount: Int
        var diagonalSlots: Range<Int>
        var offDiagonalSlots: Range<Int>

        func makePlan(threads: Int = 1, columnAlignment: Int = 1) throws -> ScaledBlockProductPlan {
            try ScaledBlockProductPlan(blockColumns: blocks.columns, blockRows: blocks.rows, blockFirstRows: blocks.firstRows,
                                       rowCount: blocks.rowCount, b: b, bValueIndex: index, bValueCount: bValueCount,
                                       threads: threads, columnAlignment: columnAlignment)
        }
    }

    /// A pattern from CSC arrays built column by column (rows ascending).
    private func pattern(_ n: Int, _ columns: [[Int]]) -> SparsityPattern {
        var pointers: [Int32] = [0], rows: [Int32] = []
        for c in columns { rows += c.map { Int32($0) }; pointers.append(Int32(rows.count)) }
        return try! SparsityPattern(rowCount: n, columnCount: n, columnPointers: pointers, rowIndices: rows)
    }

    /// A random B inside the diagonal blocks (each diagonal entry present with probability
    /// `diagonal`, each off-diagonal one with `density`) and a random value-index map.
    private func makeProblem(_ blocks: Blocks, _ random: inout SeededGenerator, density: Double = 0.5,
                             diagonal: Double = 0.85) -> Problem {
        let n = blocks.n, start = blocks.columnStart, blockOf = blocks.blockOfColumn
        var columns: [[Int]] = []
        for j in 0..<n {
            let t = blockOf[j]
            columns.append((start[t]..<start[t + 1]).filter {
                Double.random(in: 0..<1, using: &random) < ($0 == j ? diagonal : density)
            })
        }
        let b = pattern(n, columns)
        let offCount = (0..<n).reduce(0) { total, j in total + columns[j].filter { $0 != j }.count }
        let diagonalSlots = 1..<(1 + max(1, n / 2))
        let offDiagonalSlots = diagonalSlots.upperBound..<(diagonalSlots.upperBound + max(1, offCount * 2 / 3))
        let bValueCount = offDiagonalSlots.upperBound + Int.random(in: 0...3, using: &random)
        var index: [Int32] = []
        for j in 0..<n {
            for r in columns[j] {
                let u = Double.random(in: 0..<1, using: &random)
                if r == j {
                    index.append(u < 0.05 ? 0 : Int32(Int.random(in: diagonalSlots, using: &random)))
                } else {
                    index.append(u < 0.1 ? 0 : Int32(Int.random(in: offDiagonalSlots, using: &random)))
                }
            }
        }
        return Problem(blocks: blocks, b: b, index: index, bValueCount: bValueCount,
                       diagonalSlots: diagonalSlots, offDiagonalSlots: offDiagonalSlots)
    }

    /// Fresh values of B and active flags for one step: diagonal values ±[0.6, 1.4] (or as given),
    /// off-diagonal ones in ±offScale; every slot an inactive row's off-diagonal entry reads is
    /// set to zero (so the promise holds), unreferenced slots hold a large value never to be read.
    private func stepValues<S: SparseScalar>(_ problem: Problem, _ random: inout SeededGenerator, activeProbability: Double,
                                             offScale: Double = 0.4,
                                             diagonalValue: ((inout SeededGenerator) -> Double)? = nil) -> (values: [S], active: [UInt8]) {
        var v = [S](repeating: 0, count: problem.bValueCount)
        for k in problem.diagonalSlots {
            v[k] = S(diagonalValue?(&random) ?? random.nextSign() * Double.random(in: 0.6...1.4, using: &random))
        }
        for k in problem.offDiagonalSlots { v[k] = S(Double.random(in: -offScale...offScale, using: &random)) }
        for k in problem.offDiagonalSlots.upperBound..<problem.bValueCount { v[k] = 1e6 }
        let n = problem.blocks.n
        let active: [UInt8] = (0..<n).map { _ in Double.random(in: 0..<1, using: &random) < activeProbability ? 1 : 0 }
        let b = problem.b
        for j in 0..<n {
            for p in Int(b.columnPointers[j])..<Int(b.columnPointers[j + 1]) {
                let r = Int(b.rowIndices[p])
                if r != j && active[r] == 0 { v[Int(problem.index[p])] = 0 }
            }
        }
        return (v, active)
    }

    // MARK: - Dense reference

    /// Dense B (n × n) from the pattern, the index map and the value array.
    private func denseB<S: SparseScalar>(_ b: SparsityPattern, _ index: [Int32], _ values: [S]) -> [[Double]] {
        var d = [[Double]](repeating: [Double](repeating: 0, count: b.columnCount), count: b.rowCount)
        for j in 0..<b.columnCount {
            for p in Int(b.columnPointers[j])..<Int(b.columnPointers[j + 1]) {
                d[Int(b.rowIndices[p])][j] = Double(values[Int(index[p])])
            }
        }
        return d
    }

    /// Dense X = Y·diag(s) (m × n, the blocks stacked); with no scales, Y itself.
    private func denseX<S: SparseScalar>(_ blocks: Blocks, _ y: [S], _ s: [S]? = nil) -> [[Double]] {
        var x = [[Double]](repeating: [Double](repeating: 0, count: blocks.n), count: blocks.m)
        let cs = blocks.columnStart, rs = blocks.rowStart, vs = blocks.valueStart
        for t in blocks.columns.indices {
            for j in cs[t]..<cs[t + 1] {
                for i in 0..<blocks.rows[t] {
                    let value = Double(y[vs[t] + (j - cs[t]) * blocks.rows[t] + i])
                    x[rs[t] + i][j] = s.map { value * Double($0[j]) } ?? value
                }
            }
        }
        return x
    }

    /// Plain dense product.
    private func multiply(_ a: [[Double]], _ b: [[Double]], columns n: Int) -> [[Double]] {
        a.map { row in
            (0..<n).map { j in
                var sum = 0.0
                for k in row.indices { sum += row[k] * b[k][j] }
                return sum
            }
        }
    }

    private func absolute(_ a: [[Double]]) -> [[Double]] { a.map { $0.map { abs($0) } } }

    /// A vector over X's rows placed in g's rows (block t's rows from firstRows[t]; overlaps add).
    private func embed(_ blocks: Blocks, _ v: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: blocks.rowCount)
        let rs = blocks.rowStart
        for t in blocks.rows.indices { for i in 0..<blocks.rows[t] { out[blocks.firstRows[t] + i] += v[rs[t] + i] } }
        return out
    }

    private func matrixVector(_ a: [[Double]], _ x: [Double]) -> [Double] {
        a.map { row in zip(row, x).reduce(0) { $0 + $1.0 * $1.1 } }
    }

    /// The deferred product's vector G = g + Y·w, and its size max_i(|g_i| + Σ|Y_ij w_j|).
    private func deferred<S: SparseScalar>(_ blocks: Blocks, _ g: [S], _ y: [S], _ w: [S]) -> (value: [Double], size: Double) {
        let ym = denseX(blocks, y), wd = w.map { Double($0) }
        let yw = embed(blocks, matrixVector(ym, wd))
        let size = embed(blocks, matrixVector(absolute(ym), wd.map { abs($0) }))
        let value = zip(g, yw).map { Double($0) + $1 }
        let magnitude = zip(g, size).map { abs(Double($0)) + $1 }.max() ?? 0
        return (value, magnitude)
    }

    /// Multiply-adds of one update counted independently: each active row's non-zero
    /// off-diagonal entries times the rows of its block.
    /// Columns an update writes: those an active row pushes a non-zero value into, and those
    /// whose new scale s_j·B(j,j) leaves the scale range (moved into the column).
    private func expectedColumnsWritten<S: SparseScalar>(_ blocks: Blocks, _ b: [[Double]], _ active: [UInt8],
                                                         scalesBefore s: [S]) -> Int {
        let range = ScaledBlockProductPlan.scaleRange(S.self)
        return (0..<blocks.n).filter { j in
            let scale = abs(Double(s[j] * S(b[j][j])))
            let renormalised = !(scale >= range.lower && scale <= range.upper)
            return renormalised || (0..<blocks.n).contains { r in r != j && active[r] != 0 && b[r][j] != 0 }
        }.count
    }

    private func expectedMultiplyAdds(_ blocks: Blocks, _ b: [[Double]], _ active: [UInt8]) -> Int {
        let blockOf = blocks.blockOfColumn
        var count = 0
        for r in 0..<blocks.n where active[r] != 0 {
            count += (0..<blocks.n).filter { $0 != r && b[r][$0] != 0 }.count * blocks.rows[blockOf[r]]
        }
        return count
    }

    /// Every |actual − expected| ≤ tolerance · bound (elementwise; a zero bound asks for exactness).
    private func assertClose(_ actual: [[Double]], _ expected: [[Double]], bound: [[Double]], tolerance: Double,
                             _ context: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, context(), file: file, line: line)
        for i in actual.indices {
            for j in actual[i].indices {
                let error = abs(actual[i][j] - expected[i][j])
                if !(error <= tolerance * bound[i][j]) {
                    XCTFail("X(\(i), \(j)) = \(actual[i][j]), expected \(expected[i][j]) (bound \(bound[i][j])) \(context())",
                            file: file, line: line)
                    return
                }
            }
        }
    }

    /// max |a − b| ≤ tolerance · size.
    private func assertClose(_ a: [Double], _ b: [Double], size: Double, tolerance: Double, _ context: @autoclosure () -> String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, context(), file: file, line: line)
        let error = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(error, tolerance * size, "max error \(error), size \(size) \(context())", file: file, line: line)
    }

    private func assertScalesInRange<S: SparseScalar>(_ s: [S], _ context: @autoclosure () -> String,
                                                      file: StaticString = #filePath, line: UInt = #line) {
        let range = ScaledBlockProductPlan.scaleRange(S.self)
        for (j, v) in s.enumerated() where !(abs(Double(v)) >= range.lower && abs(Double(v)) <= range.upper) {
            XCTFail("scale \(j) = \(v) is outside [\(range.lower), \(range.upper)] \(context())", file: file, line: line)
            return
        }
    }

    // MARK: - Calling the plan with arrays

    @discardableResult
    private func update<S: SparseScalar>(_ plan: ScaledBlockProductPlan, _ y: inout [S], _ s: inout [S], _ w: inout [S],
                                         _ g: inout [S], _ bValues: [S], _ active: [UInt8],
                                         _ workspace: ScaledBlockProductPlan.Workspace) throws -> ScaledBlockProductPlan.Work {
        try y.withUnsafeMutableBufferPointer { y in
            try s.withUnsafeMutableBufferPointer { s in
                try w.withUnsafeMutableBufferPointer { w in
                    try g.withUnsafeMutableBufferPointer { g in
                        try bValues.withUnsafeBufferPointer { bv in
                            try active.withUnsafeBufferPointer { a in
                                try plan.update(values: y, scales: s, pendingWeights: w, g: g, bValues: bv, activeRows: a,
                                                workspace: workspace)
                            }
                        }
                    }
                }
            }
        }
    }

    private func foldPending<S: SparseScalar>(_ plan: ScaledBlockProductPlan, _ y: [S], _ w: inout [S], _ g: inout [S]) throws {
        try y.withUnsafeBufferPointer { y in
            try w.withUnsafeMutableBufferPointer { w in
                try g.withUnsafeMutableBufferPointer { g in try plan.foldPending(values: y, pendingWeights: w, g: g) }
            }
        }
    }

    private func addPending<S: SparseScalar>(_ plan: ScaledBlockProductPlan, _ y: [S], _ w: [S], _ v: inout [S]) throws {
        try y.withUnsafeBufferPointer { y in
            try w.withUnsafeBufferPointer { w in
                try v.withUnsafeMutableBufferPointer { v in try plan.addPending(values: y, pendingWeights: w, to: v) }
            }
        }
    }

    private func unscale<S: SparseScalar>(_ plan: ScaledBlockProductPlan, _ y: inout [S], _ s: inout [S], _ w: inout [S],
                                          _ g: inout [S]) throws {
        try y.withUnsafeMutableBufferPointer { y in
            try s.withUnsafeMutableBufferPointer { s in
                try w.withUnsafeMutableBufferPointer { w in
                    try g.withUnsafeMutableBufferPointer { g in try plan.unscale(values: y, scales: s, pendingWeights: w, g: g) }
                }
            }
        }
    }

    // MARK: - Layouts and states

    /// Fixed awkward layouts, then random ones (first rows anywhere, so they overlap or leave gaps).
    private func layouts(_ random: inout SeededGenerator) -> [(String, Blocks)] {
        var list: [(String, Blocks)] = [
            ("no blocks", Blocks(columns: [], rows: [], firstRows: [], rowCount: 0)),
            ("no blocks, g of 3", Blocks(columns: [], rows: [], firstRows: [], rowCount: 3)),
            ("1x1", Blocks(columns: [1], rows: [1], firstRows: [0], rowCount: 1)),
            ("1x1 inside a longer g", Blocks(columns: [1], rows: [1], firstRows: [2], rowCount: 4)),
            ("a block of 0 rows", Blocks(columns: [3, 2], rows: [0, 4], firstRows: [0, 1], rowCount: 6)),
            ("only blocks of 0 rows", Blocks(columns: [2, 3], rows: [0, 0], firstRows: [0, 0], rowCount: 0)),
            ("blocks of 0 columns", Blocks(columns: [0, 3, 0, 2], rows: [5, 2, 0, 3], firstRows: [0, 1, 4, 4], rowCount: 8)),
            ("only blocks of 0 columns", Blocks(columns: [0, 0], rows: [3, 2], firstRows: [0, 1], rowCount: 3)),
            ("unequal, overlapping rows", Blocks(columns: [1, 5, 3, 6], rows: [4, 1, 6, 3], firstRows: [0, 2, 2, 5], rowCount: 10)),
            ("all at row 0", Blocks(columns: [2, 3, 1], rows: [3, 2, 4], firstRows: [0, 0, 0], rowCount: 4)),
            ("gaps", Blocks(columns: [2, 4, 3], rows: [3, 5, 2], firstRows: [1, 7, 15], rowCount: 20)),
            ("one block", Blocks(columns: [7], rows: [6], firstRows: [0], rowCount: 6)),
            // Wide blocks: at few active columns most targets have one to three terms, so the
            // kernel's groups of two and four targets with as many terms are formed.
            ("wide blocks", Blocks(columns: [40, 27], rows: [9, 5], firstRows: [0, 9], rowCount: 14)),
        ]
        for k in 0..<8 {
            let count = Int.random(in: 1...6, using: &random)
            let columns = (0..<count).map { _ in Int.random(in: 0...6, using: &random) }
            let rows = (0..<count).map { _ in Int.random(in: 0...6, using: &random) }
            let rowCount = rows.max()! + Int.random(in: 0...8, using: &random)
            let firstRows = rows.map { Int.random(in: 0...(rowCount - $0), using: &random) }
            list.append(("random \(k)", Blocks(columns: columns, rows: rows, firstRows: firstRows, rowCount: rowCount)))
        }
        return list
    }

    /// Random Y and g (±1), scales ±2^[-3, 3] (never 1), pending weights ±1 with some zeros.
    private func randomState<S: SparseScalar>(_ blocks: Blocks, _ random: inout SeededGenerator)
        -> (y: [S], s: [S], w: [S], g: [S]) {
        let y = (0..<blocks.valueCount).map { _ in S(Double.random(in: -1...1, using: &random)) }
        let s = (0..<blocks.n).map { _ in S(random.nextSign() * Double.random(in: 0.125...8, using: &random)) }
            .map { $0 == 1 ? S(1.5) : $0 }
        let w = (0..<blocks.n).map { _ in
            Double.random(in: 0..<1, using: &random) < 0.2 ? 0 : S(Double.random(in: -1...1, using: &random))
        }
        let g = (0..<blocks.rowCount).map { _ in S(Double.random(in: -1...1, using: &random)) }
        return (y, s, w, g)
    }

    // MARK: - Random updates against the dense reference

    /// Runs 20 updates per layout with fresh B values and flags, checking X, G, the scales and the
    /// multiply-adds after each against the dense reference.
    private func checkRandomUpdates<S: SparseScalar>(_: S.Type, seed: UInt64, tolerance: Double) throws {
        var random = SeededGenerator(seed: seed)
        var totalDone = 0, folds = 0
        for (name, blocks) in layouts(&random) {
            for repetition in 0..<2 {
                let problem = makeProblem(blocks, &random, density: repetition == 0 ? 0.5 : 0.9,
                                          diagonal: repetition == 0 ? 0.85 : 0.6)
                let plan = try problem.makePlan()
                let workspace = plan.makeWorkspace()
                let n = blocks.n
                var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
                var xRef = denseX(blocks, y, s)
                var bound = absolute(xRef)
                let start = deferred(blocks, g, y, w)
                var gRef = start.value, gSize = start.size
                let gUncovered = blocks.uncoveredRows.map { g[$0] }
                for step in 0..<20 {
                    let context = "\(name) #\(repetition) step \(step) (\(S.self))"
                    let p = [0.0, 0.3, 1.0, 0.5, 0.1][step % 5]
                    let (bv, active): ([S], [UInt8]) = stepValues(problem, &random, activeProbability: p)
                    let b = denseB(problem.b, problem.index, bv)
                    let before = deferred(blocks, g, y, w)
                    let wBefore = w, sBefore = s
                    let done = try update(plan, &y, &s, &w, &g, bv, active, workspace)
                    XCTAssertEqual(done.multiplyAdds, expectedMultiplyAdds(blocks, b, active), context)
                    XCTAssertEqual(done.columnsWritten, expectedColumnsWritten(blocks, b, active, scalesBefore: sBefore), context)
                    totalDone += done.multiplyAdds
                    folds += zip(w, wBefore).filter { $0 != $1 }.count
                    xRef = multiply(xRef, b, columns: n)
                    bound = multiply(bound, absolute(b), columns: n)
                    assertClose(denseX(blocks, y, s), xRef, bound: bound, tolerance: tolerance, context)
                    assertScalesInRange(s, context)
                    let after = deferred(blocks, g, y, w)
                    assertClose(after.value, before.value, size: before.size, tolerance: tolerance, "G changed, " + context)
                    // Accumulate G += X·x through the weights: w_j += x_j s_j.
                    if step % 3 == 1 {
                        let x = (0..<n).map { _ in Double(S(Double.random(in: -1...1, using: &random))) }
                        for j in 0..<n { w[j] += S(x[j]) * s[j] }
                        gRef = zip(gRef, embed(blocks, matrixVector(xRef, x))).map { $0 + $1 }
                        gSize += embed(blocks, matrixVector(bound, x.map { abs($0) })).max() ?? 0
                    }
                }
                let final = deferred(blocks, g, y, w)
                assertClose(final.value, gRef, size: max(gSize, final.size), tolerance: tolerance, "final G, \(name) (\(S.self))")
                XCTAssertEqual(blocks.uncoveredRows.map { g[$0] }, gUncovered, "rows of g outside the blocks, \(name)")
            }
        }
        // The run did real work: many pushes, and many columns folded before they changed.
        XCTAssertGreaterThan(totalDone, 5000)
        XCTAssertGreaterThan(folds, 100)
    }

    /// Double: 20 random updates on awkward and random layouts match the dense product chain (1e-12
    /// of |X|·|B| chain), keep G = g + Y·w, keep scales in range and count the multiply-adds.
    func testRandomUpdatesMatchDenseReferenceDouble() throws {
        try checkRandomUpdates(Double.self, seed: 2024, tolerance: 1e-12)
    }

    /// Float: the same as the Double test to 1e-4.
    func testRandomUpdatesMatchDenseReferenceFloat() throws {
        try checkRandomUpdates(Float.self, seed: 7, tolerance: 1e-4)
    }

    /// The plan's counts (n, rowCount, valueCount, bValueCount, threads) and `multiplyAdds` (every
    /// stored entry of B times its block's rows) match independent counts.
    func testPlanCountsMatchIndependentCounts() throws {
        var random = SeededGenerator(seed: 11)
        for (name, blocks) in layouts(&random) {
            let problem = makeProblem(blocks, &random)
            for threads in [1, 3] {
                if threads > 1 && !blocks.rowsAreDisjoint {
                    XCTAssertThrowsError(try problem.makePlan(threads: threads), "\(name): shared rows of g with \(threads) threads")
                    continue
                }
                let plan = try problem.makePlan(threads: threads)
                XCTAssertEqual(plan.columnCount, blocks.n, name)
                XCTAssertEqual(plan.rowCount, blocks.rowCount, name)
                XCTAssertEqual(plan.valueCount, blocks.valueCount, name)
                XCTAssertEqual(plan.bValueCount, problem.bValueCount, name)
                XCTAssertEqual(plan.threadCount, threads, name)
                let blockOf = blocks.blockOfColumn
                var expected = 0
                for j in 0..<blocks.n {
                    expected += blocks.rows[blockOf[j]] * problem.b.rows(inColumn: j).count
                }
                XCTAssertEqual(plan.multiplyAdds, expected, name)
                // With every row active and every value non-zero, an update does the product's
                // multiply-adds less the diagonal's.
                let values = [Double](repeating: 0.5, count: problem.bValueCount)
                let index = (0..<problem.index.count).map { Int32($0 % max(1, problem.bValueCount)) }
                let full = try ScaledBlockProductPlan(
                    blockColumns: blocks.columns, blockRows: blocks.rows, blockFirstRows: blocks.firstRows,
                    rowCount: blocks.rowCount, b: problem.b, bValueIndex: problem.bValueCount == 0 ? [] : index,
                    bValueCount: problem.bValueCount, threads: threads)
                var (y, s, w, g): ([Double], [Double], [Double], [Double]) = randomState(blocks, &random)
                let diagonal = (0..<blocks.n).reduce(0) { $0 + (problem.b.contains(row: $1, column: $1) ? blocks.rows[blockOf[$1]] : 0) }
                let done = try update(full, &y, &s, &w, &g, values, [UInt8](repeating: 1, count: blocks.n), full.makeWorkspace())
                XCTAssertEqual(done.multiplyAdds, expected - diagonal, name)
            }
        }
    }

    // MARK: - Renormalisation

    /// Runs `steps` updates with every diagonal value `diagonal` and off-diagonal values in
    /// ±offScale, checking scales each step and values for the first `compared` steps.
    private func checkRenormalisation<S: SparseScalar>(_: S.Type, diagonal: Double, offScale: Double, steps: Int, compared: Int,
                                                       tolerance: Double, seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let blocks = Blocks(columns: [3, 4, 1], rows: [5, 2, 3], firstRows: [0, 5, 4], rowCount: 7)
        let n = blocks.n
        // B full inside the blocks, its own slot per entry; diagonal slots first.
        let blockOf = blocks.blockOfColumn, cs = blocks.columnStart
        let b = pattern(n, (0..<n).map { j in Array(cs[blockOf[j]]..<cs[blockOf[j] + 1]) })
        var index: [Int32] = [], offSlots = 0
        for j in 0..<n {
            for r in b.rows(inColumn: j) {
                if Int(r) == j { index.append(Int32(j)) } else { index.append(Int32(n + offSlots)); offSlots += 1 }
            }
        }
        let problem = Problem(blocks: blocks, b: b, index: index, bValueCount: n + offSlots,
                              diagonalSlots: 0..<n, offDiagonalSlots: n..<(n + offSlots))
        let plan = try problem.makePlan()
        let workspace = plan.makeWorkspace()
        var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
        var xRef = denseX(blocks, y, s), bound = absolute(xRef)
        let g0 = deferred(blocks, g, y, w)
        var smallest = Double.infinity, largest = 0.0
        for step in 0..<steps {
            let context = "step \(step) (\(S.self), diagonal \(diagonal))"
            var (bv, active): ([S], [UInt8]) = stepValues(problem, &random, activeProbability: 0.5, offScale: offScale,
                                                          diagonalValue: { _ in diagonal })
            if step % 4 == 0 { active = [UInt8](repeating: 0, count: n); for k in problem.offDiagonalSlots { bv[k] = 0 } }
            let bDense = denseB(b, index, bv)
            try update(plan, &y, &s, &w, &g, bv, active, workspace)
            assertScalesInRange(s, context)
            for v in s { smallest = min(smallest, abs(Double(v))); largest = max(largest, abs(Double(v))) }
            if step < compared {
                xRef = multiply(xRef, bDense, columns: n)
                bound = multiply(bound, absolute(bDense), columns: n)
                assertClose(denseX(blocks, y, s), xRef, bound: bound, tolerance: tolerance, context)
            }
            XCTAssertTrue(y.allSatisfy { $0.isFinite }, context)
        }
        // G is what it was: the folds kept it while the columns were renormalised.
        let gNow = deferred(blocks, g, y, w)
        assertClose(gNow.value, g0.value, size: g0.size, tolerance: tolerance, "G (\(S.self))")
        // The product of the diagonals left the scale range long ago: renormalisation happened.
        let range = ScaledBlockProductPlan.scaleRange(S.self)
        XCTAssertGreaterThan(abs(log2(abs(diagonal))) * Double(steps), log2(range.upper) + 3)
        XCTAssertGreaterThanOrEqual(smallest, range.lower)
        XCTAssertLessThanOrEqual(largest, range.upper)
        if compared == steps { XCTAssertTrue(xRef.joined().contains { $0 != 0 }) }
    }

    /// Double, diagonal 1e-3 for 100 steps (X ≈ 1e-300): scales stay in scaleRange, X stays right.
    func testTinyDiagonalKeepsScalesInRangeDouble() throws {
        try checkRenormalisation(Double.self, diagonal: 1e-3, offScale: 1e-4, steps: 100, compared: 100, tolerance: 1e-12, seed: 31)
    }

    /// Float, diagonal 1e-2 for 100 steps: scales stay in range; X right over the first 15 steps
    /// (after that X itself is below Float's range).
    func testTinyDiagonalKeepsScalesInRangeFloat() throws {
        try checkRenormalisation(Float.self, diagonal: 1e-2, offScale: 1e-3, steps: 100, compared: 15, tolerance: 1e-4, seed: 32)
    }

    /// Double, diagonal 1e3 for 40 steps (X ≈ 1e120), and Float, 1e2 for 15 steps: scales stay
    /// below the upper bound and X stays right.
    func testLargeDiagonalKeepsScalesInRange() throws {
        try checkRenormalisation(Double.self, diagonal: 1e3, offScale: 1e2, steps: 40, compared: 40, tolerance: 1e-12, seed: 33)
        try checkRenormalisation(Float.self, diagonal: -1e2, offScale: 10, steps: 15, compared: 15, tolerance: 1e-4, seed: 34)
    }

    /// A zero diagonal (entry missing, or present with value 0) gives an exactly-zero column of X
    /// while G is kept; pushes into that column afterwards give the reference values.
    func testZeroDiagonalGivesExactlyZeroColumn() throws {
        try checkZeroDiagonal(Double.self, tolerance: 1e-12)
        try checkZeroDiagonal(Float.self, tolerance: 1e-4)
    }

    private func checkZeroDiagonal<S: SparseScalar>(_: S.Type, tolerance: Double) throws {
        var random = SeededGenerator(seed: 41)
        let blocks = Blocks(columns: [4, 2], rows: [3, 2], firstRows: [0, 1], rowCount: 3)
        // Block 0: columns 0..3. Column 1 has no diagonal entry; B(2,2) reads slot 0 (zero).
        // Off-diagonal: B(0,3) (slot 4), B(3,1) (slot 5), B(0,2) (slot 6). Block 1: diagonal only.
        let b = pattern(6, [[0], [3], [0, 2], [0, 3], [4], [5]])
        let index: [Int32] = [1, 5, 6, 0, 4, 2, 3, 3]
        var bv: [S] = [0, 0.5, -2, 1.25, 0.75, 0.3, -0.6]
        let plan = try ScaledBlockProductPlan(blockColumns: blocks.columns, blockRows: blocks.rows, blockFirstRows: blocks.firstRows,
                                              rowCount: blocks.rowCount, b: b, bValueIndex: index, bValueCount: bv.count)
        let workspace = plan.makeWorkspace()
        var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
        w = w.map { $0 == 0 ? 0.5 : $0 }
        let g0 = deferred(blocks, g, y, w)
        var xRef = denseX(blocks, y, s), bound = absolute(xRef)
        // Step 1: only row 0 active, pushing into column 3 alone (B(0,2) zero this step); row 3
        // inactive, so B(3,1) is zero too.
        bv[6] = 0; bv[5] = 0
        var active: [UInt8] = [1, 0, 0, 0, 0, 0]
        var bDense = denseB(b, index, bv)
        let done = try update(plan, &y, &s, &w, &g, bv, active, workspace)
        XCTAssertEqual(done.multiplyAdds, 3)
        xRef = multiply(xRef, bDense, columns: 6); bound = multiply(bound, absolute(bDense), columns: 6)
        var x = denseX(blocks, y, s)
        for i in 0..<blocks.m {
            XCTAssertEqual(x[i][1], 0, "missing diagonal, row \(i)")
            XCTAssertEqual(x[i][2], 0, "zero diagonal value, row \(i)")
        }
        assertClose(x, xRef, bound: bound, tolerance: tolerance, "after the zero diagonal")
        assertScalesInRange(s, "after the zero diagonal")
        assertClose(deferred(blocks, g, y, w).value, g0.value, size: g0.size, tolerance: tolerance, "G")
        // Step 2: rows 0 and 3 active push into the zero columns 2 and 1.
        bv[6] = -0.6; bv[5] = 0.3
        active = [1, 0, 0, 1, 0, 0]
        bDense = denseB(b, index, bv)
        try update(plan, &y, &s, &w, &g, bv, active, workspace)
        xRef = multiply(xRef, bDense, columns: 6); bound = multiply(bound, absolute(bDense), columns: 6)
        x = denseX(blocks, y, s)
        assertClose(x, xRef, bound: bound, tolerance: tolerance, "pushes into zero columns")
        XCTAssertTrue((0..<3).contains { x[$0][1] != 0 } && (0..<3).contains { x[$0][2] != 0 })
        assertClose(deferred(blocks, g, y, w).value, g0.value, size: g0.size, tolerance: tolerance, "G after step 2")
    }

    /// A NaN diagonal value makes its column of X all NaN and nothing else: other columns (also
    /// those its row pushes into), the scales and G stay finite and right.
    func testNaNDiagonalPoisonsOnlyItsColumn() throws {
        try checkNaNDiagonal(Double.self, tolerance: 1e-12)
        try checkNaNDiagonal(Float.self, tolerance: 1e-4)
    }

    private func checkNaNDiagonal<S: SparseScalar>(_: S.Type, tolerance: Double) throws {
        var random = SeededGenerator(seed: 51)
        let blocks = Blocks(columns: [3, 2], rows: [4, 3], firstRows: [0, 4], rowCount: 7)
        let b = pattern(5, [[0, 1, 2], [0, 1, 2], [0, 1, 2], [3, 4], [3, 4]])
        let index = (0..<Int32(b.nonzeroCount)).map { $0 }
        var bv: [S] = (0..<b.nonzeroCount).map { _ in S(Double.random(in: 0.5...1, using: &random)) }
        bv[Int(b.position(row: 1, column: 1)!)] = .nan
        let plan = try ScaledBlockProductPlan(blockColumns: blocks.columns, blockRows: blocks.rows, blockFirstRows: blocks.firstRows,
                                              rowCount: blocks.rowCount, b: b, bValueIndex: index, bValueCount: bv.count)
        var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
        w = w.map { $0 == 0 ? -0.25 : $0 }
        let g0 = deferred(blocks, g, y, w)
        let x0 = denseX(blocks, y, s)
        let bDense = denseB(b, index, bv)
        let done = try update(plan, &y, &s, &w, &g, bv, [UInt8](repeating: 1, count: 5), plan.makeWorkspace())
        XCTAssertEqual(done.multiplyAdds, 4 * 6 + 3 * 2)
        let xRef = multiply(x0, bDense, columns: 5), bound = multiply(absolute(x0), absolute(bDense), columns: 5)
        let x = denseX(blocks, y, s)
        for i in 0..<4 { XCTAssertTrue(x[i][1].isNaN, "X(\(i), 1) = \(x[i][1])") }
        for i in 0..<blocks.m {
            for j in 0..<5 where j != 1 {
                XCTAssertTrue(x[i][j].isFinite, "X(\(i), \(j)) = \(x[i][j])")
                XCTAssertLessThanOrEqual(abs(x[i][j] - xRef[i][j]), tolerance * bound[i][j], "X(\(i), \(j))")
            }
        }
        assertScalesInRange(s, "NaN diagonal")
        let gNow = deferred(blocks, g, y.map { $0.isNaN ? 0 : $0 }, w)
        XCTAssertTrue(g.allSatisfy { $0.isFinite })
        XCTAssertEqual(w[1], 0, "the NaN column's weight was folded")
        assertClose(gNow.value, g0.value, size: g0.size, tolerance: tolerance, "G")
    }

    // MARK: - Threads

    /// 1, 2, 3 and 5 threads give bit-identical Y, s, w, g (and multiply-add counts) over 10
    /// updates with renormalisations and folds, for Double and Float.
    func testThreadCountsGiveIdenticalBits() throws {
        try checkThreads(Double.self, seed: 61)
        try checkThreads(Float.self, seed: 62)
    }

    /// Ten updates' B values, active flags and weights x (w += x ⊙ s after each), the diagonals
    /// spread over 2^±12 so that the Float scales renormalise too.
    private func tenSteps<S: SparseScalar>(_ problem: Problem, _ random: inout SeededGenerator) -> [([S], [UInt8], [S])] {
        (0..<10).map { step in
            let (bv, active): ([S], [UInt8]) = stepValues(problem, &random, activeProbability: [0.3, 1, 0.6][step % 3],
                                                          diagonalValue: { r in r.nextSign() * exp2(Double.random(in: -12...12, using: &r)) })
            return (bv, active, (0..<problem.blocks.n).map { _ in S(Double.random(in: -1...1, using: &random)) })
        }
    }

    private func checkThreads<S: SparseScalar>(_: S.Type, seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        // 13 blocks with disjoint row ranges in g (with gaps); one of 0 rows, one of 0 columns.
        var columns = (0..<13).map { _ in Int.random(in: 1...6, using: &random) }
        var rows = (0..<13).map { _ in Int.random(in: 1...7, using: &random) }
        columns[4] = 0; rows[9] = 0
        var firstRows: [Int] = [], next = 0
        for r in rows { next += Int.random(in: 0...2, using: &random); firstRows.append(next); next += r }
        let blocks = Blocks(columns: columns, rows: rows, firstRows: firstRows, rowCount: next + 1)
        let problem = makeProblem(blocks, &random, density: 0.6)
        let initial: ([S], [S], [S], [S]) = randomState(blocks, &random)
        let steps: [([S], [UInt8], [S])] = tenSteps(problem, &random)
        var results: [(threads: Int, bits: [[UInt64]], done: [ScaledBlockProductPlan.Work])] = []
        for threads in [1, 2, 3, 5] {
            let plan = try problem.makePlan(threads: threads)
            let workspace = plan.makeWorkspace()
            var (y, s, w, g) = initial
            var done: [ScaledBlockProductPlan.Work] = []
            for (bv, active, x) in steps {
                done.append(try update(plan, &y, &s, &w, &g, bv, active, workspace))
                for j in 0..<blocks.n { w[j] += x[j] * s[j] }
            }
            let exact = [y, s, w, g].map { $0.map { Double($0).bitPattern } }
            results.append((threads, exact, done))
        }
        for r in results.dropFirst() {
            XCTAssertEqual(r.bits, results[0].bits, "\(r.threads) threads vs 1 (\(S.self))")
            XCTAssertEqual(r.done, results[0].done, "\(r.threads) threads vs 1 (\(S.self))")
        }
    }

    /// Columns padded to 3 or 8 values (NaN in the padding) give the unpadded plan's Y, s, w, g
    /// and work to the bit over 10 updates, with 1 and 2 threads, and the same deferred product,
    /// fold and unscaling; Double and Float.
    func testPaddedColumnsGiveTheUnpaddedResults() throws {
        try checkPadding(Double.self, seed: 63)
        try checkPadding(Float.self, seed: 64)
    }

    private func checkPadding<S: SparseScalar>(_: S.Type, seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        var columns = (0..<9).map { _ in Int.random(in: 1...6, using: &random) }
        var rows = (0..<9).map { _ in Int.random(in: 1...11, using: &random) }
        columns[4] = 0; rows[6] = 0
        var firstRows: [Int] = [], next = 0
        for r in rows { firstRows.append(next); next += r }
        let blocks = Blocks(columns: columns, rows: rows, firstRows: firstRows, rowCount: next)
        let problem = makeProblem(blocks, &random, density: 0.6)
        let initial: ([S], [S], [S], [S]) = randomState(blocks, &random)
        let steps: [([S], [UInt8], [S])] = tenSteps(problem, &random)
        for threads in [1, 2] {
            var reference: (y: [S], s: [S], w: [S], g: [S], done: [ScaledBlockProductPlan.Work])?
            for alignment in [1, 3, 8] {
                let plan = try problem.makePlan(threads: threads, columnAlignment: alignment)
                XCTAssertEqual(plan.columnAlignment, alignment)
                // Where unpadded value t of the plain layout lives in the padded one.
                var place: [Int] = [], start = 0, column = 0
                for (b, r) in blocks.rows.enumerated() {
                    let stride = (r + alignment - 1) / alignment * alignment
                    for c in 0..<blocks.columns[b] {
                        for i in 0..<r { place.append(start + c * stride + i) }
                        XCTAssertEqual(plan.valueRange(ofColumn: column), (start + c * stride)..<(start + c * stride + r))
                        column += 1
                    }
                    start += stride * blocks.columns[b]
                }
                XCTAssertEqual(plan.valueCount, start)
                XCTAssertNil(plan.valueRange(ofColumn: column))
                XCTAssertNil(plan.valueRange(ofColumn: -1))
                var (y0, s, w, g) = initial
                var y = [S](repeating: .nan, count: plan.valueCount)
                for (t, p) in place.enumerated() { y[p] = y0[t] }
                let workspace = plan.makeWorkspace()
                var done: [ScaledBlockProductPlan.Work] = []
                for (bv, active, x) in steps {
                    done.append(try update(plan, &y, &s, &w, &g, bv, active, workspace))
                    for j in 0..<blocks.n { w[j] += x[j] * s[j] }
                }
                // The deferred product added elsewhere, then folded, then the scales moved in.
                var added = [S](repeating: 0, count: blocks.rowCount)
                try y.withUnsafeBufferPointer { yv in
                    try w.withUnsafeBufferPointer { wv in
                        try added.withUnsafeMutableBufferPointer { try plan.addPending(values: yv, pendingWeights: wv, to: $0) }
                    }
                }
                try y.withUnsafeMutableBufferPointer { yv in
                    try s.withUnsafeMutableBufferPointer { sv in
                        try w.withUnsafeMutableBufferPointer { wv in
                            try g.withUnsafeMutableBufferPointer { gv in try plan.unscale(values: yv, scales: sv, pendingWeights: wv, g: gv) }
                        }
                    }
                }
                y0 = place.map { y[$0] }
                let what = "\(S.self), \(threads) threads, columns padded to \(alignment)"
                XCTAssertTrue(y0.allSatisfy { !$0.isNaN } && g.allSatisfy { !$0.isNaN } && added.allSatisfy { !$0.isNaN },
                              "no padding reaches a result: \(what)")
                if let r = reference {
                    XCTAssertEqual(y0.map { Double($0).bitPattern }, r.y.map { Double($0).bitPattern }, what)
                    XCTAssertEqual(s, r.s, what)
                    XCTAssertEqual(w, r.w, what)
                    XCTAssertEqual(g.map { Double($0).bitPattern }, r.g.map { Double($0).bitPattern }, what)
                    XCTAssertEqual(done, r.done, what)
                } else {
                    reference = (y0, s, w, g, done)
                }
                _ = added
            }
        }
    }

    // MARK: - Pending product

    /// `foldPending` gives g + P·Y·w (P placing each block's rows at its first row, overlaps
    /// added), sets w to zero and leaves Y and s alone, on every layout, Double and Float.
    func testFoldPendingMatchesDenseReference() throws {
        try checkFold(Double.self, tolerance: 1e-13)
        try checkFold(Float.self, tolerance: 1e-5)
    }

    private func checkFold<S: SparseScalar>(_: S.Type, tolerance: Double) throws {
        var random = SeededGenerator(seed: 71)
        for (name, blocks) in layouts(&random) {
            let plan = try makeProblem(blocks, &random).makePlan()
            var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
            let (y0, s0) = (y, s)
            let ym = denseX(blocks, y)
            let expected = zip(g, embed(blocks, matrixVector(ym, w.map { Double($0) }))).map { Double($0) + $1 }
            let size = deferred(blocks, g, y, w).size
            try foldPending(plan, y, &w, &g)
            assertClose(g.map { Double($0) }, expected, size: size, tolerance: tolerance, name)
            XCTAssertTrue(w.allSatisfy { $0 == 0 }, name)
            XCTAssertEqual(y, y0, name)
            XCTAssertEqual(s, s0, name)
        }
    }

    /// `addPending` adds P·Y·w to another vector and changes neither w, Y nor g.
    func testAddPendingMatchesDenseReference() throws {
        try checkAdd(Double.self, tolerance: 1e-13)
        try checkAdd(Float.self, tolerance: 1e-5)
    }

    private func checkAdd<S: SparseScalar>(_: S.Type, tolerance: Double) throws {
        var random = SeededGenerator(seed: 81)
        for (name, blocks) in layouts(&random) {
            let plan = try makeProblem(blocks, &random).makePlan()
            let (y, _, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
            var v = (0..<blocks.rowCount).map { _ in S(Double.random(in: -3...3, using: &random)) }
            let ym = denseX(blocks, y)
            let expected = zip(v, embed(blocks, matrixVector(ym, w.map { Double($0) }))).map { Double($0) + $1 }
            let size = deferred(blocks, v, y, w).size
            let (w0, g0) = (w, g)
            try addPending(plan, y, w, &v)
            assertClose(v.map { Double($0) }, expected, size: size, tolerance: tolerance, name)
            XCTAssertEqual(w, w0, name)
            XCTAssertEqual(g, g0, name)
            // Adding to g itself is folding without clearing w.
            var gAdded = g, gFolded = g, w2 = w
            try addPending(plan, y, w, &gAdded)
            try foldPending(plan, y, &w2, &gFolded)
            XCTAssertEqual(gAdded, gFolded, name)
        }
    }

    /// `unscale` folds the deferred product (g = G, w = 0) and leaves Y = X_true = Y·diag(s), s = 1;
    /// later updates continue the same product.
    func testUnscaleMatchesDenseReference() throws {
        try checkUnscale(Double.self, tolerance: 1e-13)
        try checkUnscale(Float.self, tolerance: 1e-5)
    }

    private func checkUnscale<S: SparseScalar>(_: S.Type, tolerance: Double) throws {
        var random = SeededGenerator(seed: 91)
        for (name, blocks) in layouts(&random) {
            let problem = makeProblem(blocks, &random)
            let plan = try problem.makePlan()
            let workspace = plan.makeWorkspace()
            var (y, s, w, g): ([S], [S], [S], [S]) = randomState(blocks, &random)
            // A few updates first, so the state is a genuine one.
            var xRef = denseX(blocks, y, s), bound = absolute(xRef)
            for _ in 0..<3 {
                let (bv, active): ([S], [UInt8]) = stepValues(problem, &random, activeProbability: 0.5)
                let b = denseB(problem.b, problem.index, bv)
                try update(plan, &y, &s, &w, &g, bv, active, workspace)
                xRef = multiply(xRef, b, columns: blocks.n); bound = multiply(bound, absolute(b), columns: blocks.n)
            }
            w = w.map { $0 == 0 ? S(0.75) : $0 }
            let x = denseX(blocks, y, s)
            let gBefore = deferred(blocks, g, y, w)
            try unscale(plan, &y, &s, &w, &g)
            XCTAssertTrue(s.allSatisfy { $0 == 1 }, name)
            XCTAssertTrue(w.allSatisfy { $0 == 0 }, name)
            assertClose(denseX(blocks, y), x, bound: absolute(x), tolerance: tolerance, name + " Y")
            assertClose(g.map { Double($0) }, gBefore.value, size: gBefore.size, tolerance: tolerance, name + " g")
            assertClose(denseX(blocks, y), xRef, bound: bound, tolerance: 100 * tolerance, name + " X")
            // Updating after unscaling continues the product.
            let (bv, active): ([S], [UInt8]) = stepValues(problem, &random, activeProbability: 1)
            let b = denseB(problem.b, problem.index, bv)
            try update(plan, &y, &s, &w, &g, bv, active, workspace)
            xRef = multiply(xRef, b, columns: blocks.n); bound = multiply(bound, absolute(b), columns: blocks.n)
            assertClose(denseX(blocks, y, s), xRef, bound: bound, tolerance: 100 * tolerance, name + " after")
        }
    }

    // MARK: - Bad input

    /// Two blocks (2 × 2 of 3 rows, 1 × 1 of 2 rows) and a valid B for the error tests.
    private var goodB: SparsityPattern { .identity(3) }
    private func makeGood(blockColumns: [Int] = [2, 1], blockRows: [Int] = [3, 2], blockFirstRows: [Int] = [0, 3],
                          rowCount: Int = 5, b: SparsityPattern? = nil, bValueIndex: [Int32]? = nil, bValueCount: Int = 3,
                          threads: Int = 1, memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws -> ScaledBlockProductPlan {
        let b = b ?? goodB
        return try ScaledBlockProductPlan(blockColumns: blockColumns, blockRows: blockRows, blockFirstRows: blockFirstRows,
                                          rowCount: rowCount, b: b, bValueIndex: bValueIndex ?? (0..<Int32(b.nonzeroCount)).map { $0 % 3 },
                                          bValueCount: bValueCount, threads: threads, memoryBudget: memoryBudget)
    }

    /// The good configuration builds (so the failures below are due to the one change each makes).
    func testGoodConfigurationBuilds() throws {
        XCTAssertNoThrow(try makeGood())
        XCTAssertNoThrow(try makeGood(b: pattern(3, [[0, 1], [0, 1], [2]])))
    }

    /// An entry of B outside the diagonal blocks is rejected (above, below, and in the other block).
    func testInitRejectsEntryOutsideDiagonalBlocks() {
        for columns in [[[0, 2], [1], [2]], [[0], [1], [1, 2]], [[0], [1], [0, 2]]] {
            XCTAssertThrowsError(try makeGood(b: pattern(3, columns)), "\(columns)")
        }
        // With 0-column blocks in between, an entry still must share its block.
        XCTAssertThrowsError(try makeGood(blockColumns: [1, 0, 2], blockRows: [1, 2, 1], blockFirstRows: [0, 1, 3],
                                          rowCount: 4, b: pattern(3, [[0, 1], [1], [2]])))
    }

    /// A value index outside 0..<bValueCount (negative, equal to the count, far beyond) is rejected.
    func testInitRejectsValueIndexOutOfRange() {
        for bad: Int32 in [-1, 3, 1000, .max, .min] {
            XCTAssertThrowsError(try makeGood(bValueIndex: [0, bad, 1]), "\(bad)")
            XCTAssertThrowsError(try makeGood(bValueIndex: [bad, 1, 2]), "\(bad) on the diagonal")
        }
        XCTAssertThrowsError(try makeGood(bValueCount: 0))
        XCTAssertThrowsError(try makeGood(bValueIndex: [0, 1, 2], bValueCount: 2))
    }

    /// bValueIndex shorter or longer than B's entries is rejected.
    func testInitRejectsValueIndexOfWrongLength() {
        XCTAssertThrowsError(try makeGood(bValueIndex: [0, 1]))
        XCTAssertThrowsError(try makeGood(bValueIndex: [0, 1, 2, 0]))
        XCTAssertThrowsError(try makeGood(bValueIndex: []))
    }

    /// B not n × n (n = the blocks' columns) is rejected.
    func testInitRejectsBOfWrongShape() {
        XCTAssertThrowsError(try makeGood(b: .identity(4), bValueIndex: [0, 1, 2, 0]))
        XCTAssertThrowsError(try makeGood(b: .identity(2), bValueIndex: [0, 1]))
        XCTAssertThrowsError(try makeGood(b: .empty(rowCount: 3, columnCount: 4), bValueIndex: []))
        XCTAssertThrowsError(try makeGood(b: .empty(rowCount: 4, columnCount: 3), bValueIndex: []))
        XCTAssertThrowsError(try makeGood(blockColumns: [], blockRows: [], blockFirstRows: [], b: .identity(1), bValueIndex: [0]))
    }

    /// A block whose rows do not fit rowCount, or block arrays of unequal length, or no threads,
    /// is rejected.
    func testInitRejectsBlocksNotFittingRowCount() {
        XCTAssertThrowsError(try makeGood(blockFirstRows: [0, 4]))
        XCTAssertThrowsError(try makeGood(rowCount: 4))
        XCTAssertThrowsError(try makeGood(blockRows: [3, 6]))
        XCTAssertThrowsError(try makeGood(blockFirstRows: [3, 0]))
        XCTAssertThrowsError(try makeGood(blockColumns: [2, 1, 0], blockRows: [3, 2, 1], blockFirstRows: [0, 3, 5]))
        XCTAssertThrowsError(try makeGood(blockRows: [3]))
        XCTAssertThrowsError(try makeGood(blockFirstRows: [0, 3, 0]))
        XCTAssertThrowsError(try makeGood(threads: 0))
        XCTAssertThrowsError(try makeGood(threads: -2))
        XCTAssertNoThrow(try makeGood(blockFirstRows: [2, 3]))  // overlapping rows fit
        // ... but not with several threads, which would fold into shared rows of g at once.
        XCTAssertThrowsError(try makeGood(blockFirstRows: [2, 3], threads: 2))
        XCTAssertThrowsError(try makeGood(blockFirstRows: [0, 2], threads: 2))
        XCTAssertNoThrow(try makeGood(blockFirstRows: [2, 0], threads: 2))  // rows 2..<5 and 0..<2
    }

    /// Negative columns, rows, first rows, rowCount or bValueCount are rejected.
    func testInitRejectsNegativeCounts() {
        XCTAssertThrowsError(try makeGood(blockColumns: [3, -1, 1], blockRows: [3, 1, 2], blockFirstRows: [0, 0, 3]))
        XCTAssertThrowsError(try makeGood(blockRows: [3, -1]))
        XCTAssertThrowsError(try makeGood(blockFirstRows: [0, -1]))
        XCTAssertThrowsError(try makeGood(blockRows: [-3, 2], blockFirstRows: [3, 3]))
        XCTAssertThrowsError(try makeGood(rowCount: -1))
        XCTAssertThrowsError(try makeGood(bValueCount: -1))
        XCTAssertThrowsError(try makeGood(blockColumns: [], blockRows: [], blockFirstRows: [], rowCount: -1,
                                          b: .identity(0), bValueIndex: []))
    }

    /// Each buffer of `update` one too short or too long is rejected, and nothing is written.
    func testUpdateRejectsBuffersOfWrongLength() throws {
        let plan = try makeGood()
        let workspace = plan.makeWorkspace()
        let y = [Double](repeating: 1, count: 8), s = [Double](repeating: 2, count: 3), w = [Double](repeating: 3, count: 3)
        let g = [Double](repeating: 4, count: 5), bv = [Double](repeating: 0.5, count: 3), a = [UInt8](repeating: 1, count: 3)
        var (y1, s1, w1, g1) = (y, s, w, g)
        XCTAssertNoThrow(try update(plan, &y1, &s1, &w1, &g1, bv, a, workspace))
        func resized<T>(_ x: [T], _ delta: Int) -> [T] { delta < 0 ? Array(x.dropLast()) : x + [x[0]] }
        for delta in [-1, 1] {
            for which in 0..<6 {
                var y2 = which == 0 ? resized(y, delta) : y, s2 = which == 1 ? resized(s, delta) : s
                var w2 = which == 2 ? resized(w, delta) : w, g2 = which == 3 ? resized(g, delta) : g
                let bv2 = which == 4 ? resized(bv, delta) : bv, a2 = which == 5 ? resized(a, delta) : a
                let (y0, s0, w0, g0) = (y2, s2, w2, g2)
                XCTAssertThrowsError(try update(plan, &y2, &s2, &w2, &g2, bv2, a2, workspace), "buffer \(which), \(delta)")
                XCTAssertEqual(y2, y0); XCTAssertEqual(s2, s0); XCTAssertEqual(w2, w0); XCTAssertEqual(g2, g0)
            }
        }
        // Float too.
        var (yf, sf, wf, gf) = (y.map { Float($0) }, s.map { Float($0) }, w.map { Float($0) }, g.map { Float($0) })
        XCTAssertThrowsError(try update(plan, &yf, &sf, &wf, &gf, [Float](repeating: 0.5, count: 2), a, workspace))
    }

    /// `foldPending`, `addPending` and `unscale` with a buffer of the wrong length are rejected.
    func testPendingOperationsRejectBuffersOfWrongLength() throws {
        let plan = try makeGood()
        let y = [Double](repeating: 1, count: 8)
        var s = [Double](repeating: 2, count: 3), w = [Double](repeating: 3, count: 3), g = [Double](repeating: 4, count: 5)
        var yShort = Array(y.dropLast()), wLong = w + [1], gShort = Array(g.dropLast()), sShort = Array(s.dropLast())
        XCTAssertThrowsError(try foldPending(plan, yShort, &w, &g))
        XCTAssertThrowsError(try foldPending(plan, y, &wLong, &g))
        XCTAssertThrowsError(try foldPending(plan, y, &w, &gShort))
        XCTAssertThrowsError(try addPending(plan, yShort, w, &g))
        XCTAssertThrowsError(try addPending(plan, y, wLong, &g))
        XCTAssertThrowsError(try addPending(plan, y, w, &gShort))
        var y2 = y
        XCTAssertThrowsError(try unscale(plan, &y2, &sShort, &w, &g))
        XCTAssertThrowsError(try unscale(plan, &yShort, &s, &w, &g))
        XCTAssertThrowsError(try unscale(plan, &y2, &s, &wLong, &g))
        XCTAssertThrowsError(try unscale(plan, &y2, &s, &w, &gShort))
        XCTAssertEqual(w, [3, 3, 3]); XCTAssertEqual(g, [4, 4, 4, 4, 4]); XCTAssertEqual(y2, y)
    }

    /// A workspace made by a plan with another thread count or larger blocks is rejected.
    func testUpdateRejectsWorkspaceOfAnotherPlan() throws {
        let plan = try makeGood()
        var y = [Double](repeating: 1, count: 8), s = [Double](repeating: 2, count: 3), w = [Double](repeating: 3, count: 3)
        var g = [Double](repeating: 4, count: 5)
        let bv = [Double](repeating: 0.5, count: 3), a = [UInt8](repeating: 1, count: 3)
        let twoThreads = try makeGood(threads: 2)
        XCTAssertThrowsError(try update(plan, &y, &s, &w, &g, bv, a, twoThreads.makeWorkspace()))
        XCTAssertThrowsError(try update(twoThreads, &y, &s, &w, &g, bv, a, plan.makeWorkspace()))
        let smaller = try makeGood(blockColumns: [1, 2], blockRows: [1, 1], blockFirstRows: [0, 0], rowCount: 1)
        XCTAssertThrowsError(try update(plan, &y, &s, &w, &g, bv, a, smaller.makeWorkspace()))
        let larger = try makeGood(blockColumns: [2, 1], blockRows: [5, 2], blockFirstRows: [0, 0], rowCount: 5)
        XCTAssertThrowsError(try update(plan, &y, &s, &w, &g, bv, a, larger.makeWorkspace()))
        // The same scratch size but fewer columns per block: its per-column buffers are too short.
        let narrow = try makeGood(blockColumns: [1], blockRows: [6], blockFirstRows: [0], rowCount: 6,
                                  b: .identity(1), bValueIndex: [0])
        XCTAssertThrowsError(try update(plan, &y, &s, &w, &g, bv, a, narrow.makeWorkspace()))
        XCTAssertEqual(y, [Double](repeating: 1, count: 8)); XCTAssertEqual(g, [Double](repeating: 4, count: 5))
        XCTAssertNoThrow(try update(twoThreads, &y, &s, &w, &g, bv, a, twoThreads.makeWorkspace()))
    }

    /// A memory budget below the plan's needs (10 bytes, or its `bytes` less one) throws
    /// `memoryBudgetExceeded`; exactly `bytes` is enough.
    func testInitRejectsTooSmallMemoryBudget() throws {
        func assertBudgetError(_ body: @autoclosure () throws -> ScaledBlockProductPlan, _ message: String) {
            XCTAssertThrowsError(try body(), message) { error in
                guard case .memoryBudgetExceeded = error as? SparseKernelsError else {
                    return XCTFail("\(message): \(error) is not memoryBudgetExceeded")
                }
            }
        }
        assertBudgetError(try makeGood(memoryBudget: 10), "10 bytes")
        assertBudgetError(try makeGood(memoryBudget: 0), "0 bytes")
        assertBudgetError(try makeGood(blockColumns: [], blockRows: [], blockFirstRows: [], b: .identity(0), bValueIndex: [],
                                       memoryBudget: 10), "no blocks, 10 bytes")
        let plan = try makeGood(threads: 2)
        XCTAssertGreaterThan(plan.bytes, 0)
        XCTAssertNoThrow(try makeGood(threads: 2, memoryBudget: plan.bytes))
        assertBudgetError(try makeGood(threads: 2, memoryBudget: plan.bytes - 1), "bytes - 1")
    }
}
