import SparseKernels
import XCTest

/// `BlockProductPlan` (X_b ← A[R_b, R_b]·X_b + additions, with weighted column sums) checked
/// against plain dense arithmetic written here, on every instruction set this processor runs and
/// every panel width, on awkward shapes.
final class BlockProductPlanTests: XCTestCase {
    /// A problem: A's pattern and values (through a value index), the blocks, the additions.
    private struct Problem {
        var a: SparsityPattern
        var valueIndex: [Int32]
        var aValues: [Double]
        var blocks: [BlockProductPlan.Block]
        var additions: [BlockProductPlan.Addition]
        var columnSumCount: Int
    }

    /// A random problem of `n` indices: blocks of random subsets (some empty, some 1×1, some
    /// with no entries), additions that overlap each other and cross panel edges.
    private func problem(seed: UInt64, n: Int, density: Double, blockShapes: [(rows: Int, columns: Int)],
                         additionsPerBlock: Int = 4) -> Problem {
        var random = RandomSparse(seed: seed)
        let a = random.pattern(n, n, density: density)
        // Values live in a longer array, in another order.
        let valueCount = a.nonzeroCount + 3
        var order = Array(0..<valueCount).shuffled(using: &random.generator)
        order.removeLast(3)
        let valueIndex = order.map { Int32($0) }
        let aValues: [Double] = random.values(valueCount)
        var blocks: [BlockProductPlan.Block] = []
        var sumStart = 0
        for shape in blockShapes {
            let rows = Array(0..<n).shuffled(using: &random.generator).prefix(shape.rows).map { Int32($0) }
            blocks.append(.init(rows: rows, columnCount: shape.columns, columnSumStart: sumStart))
            sumStart += shape.columns
        }
        var additions: [BlockProductPlan.Addition] = []
        for (b, shape) in blockShapes.enumerated() where shape.rows > 0 && shape.columns > 0 {
            for _ in 0..<additionsPerBlock {
                let column = Int.random(in: 0..<shape.columns, using: &random.generator)
                let count = Int.random(in: 0...(shape.columns - column), using: &random.generator)
                additions.append(.init(block: b, row: Int.random(in: 0..<shape.rows, using: &random.generator), column: column, count: count))
            }
        }
        // Overlapping additions: the same span twice.
        if let first = additions.first { additions.append(first) }
        return Problem(a: a, valueIndex: valueIndex, aValues: aValues, blocks: blocks, additions: additions,
                       columnSumCount: sumStart + 2)
    }

    /// A problem whose rows come in pairs with the same columns (rows 2i and 2i + 1 of A, as an
    /// LSTM unit's h and c rows in D), listed pair by pair in the blocks, some pairs split.
    private func pairedProblem(seed: UInt64, n: Int, density: Double, blockShapes: [(rows: Int, columns: Int)]) -> Problem {
        var p = problem(seed: seed, n: n, density: density, blockShapes: blockShapes)
        var random = RandomSparse(seed: seed &+ 1)
        var entries: [(row: Int, column: Int)] = []
        for pair in 0..<n / 2 {
            for j in 0..<n where Double.random(in: 0..<1, using: &random.generator) < density {
                entries.append((2 * pair, j)); entries.append((2 * pair + 1, j))
            }
        }
        p.a = try! SparsityPattern(rowCount: n, columnCount: n, entries: entries)
        p.valueIndex = (0..<Int32(p.a.nonzeroCount)).map { $0 }.shuffled(using: &random.generator)
        p.aValues = random.values(p.a.nonzeroCount)
        for b in p.blocks.indices {
            let pairs = Array(0..<n / 2).shuffled(using: &random.generator)
            var rows = pairs.flatMap { [Int32(2 * $0), Int32(2 * $0 + 1)] }.prefix(p.blocks[b].rows.count)
            if b % 3 == 2, rows.count > 3 { rows.swapAt(rows.startIndex + 1, rows.startIndex + 2) } // split two pairs
            p.blocks[b].rows = Array(rows)
        }
        return p
    }

    /// The plain reference: dense S_b, row by row.
    private func reference(_ p: Problem, x: [Double], additions e: [Double], weights w: [Double]?,
                           sums: [Double]) -> (x: [Double], sums: [Double]) {
        let n = p.a.rowCount
        var dense = [Double](repeating: 0, count: n * n) // A(i, j) at i * n + j
        for j in 0..<n {
            for q in Int(p.a.columnPointers[j])..<Int(p.a.columnPointers[j + 1]) {
                dense[Int(p.a.rowIndices[q]) * n + j] = p.aValues[Int(p.valueIndex[q])]
            }
        }
        var out = x, sums = sums
        var start = 0
        var starts: [Int] = []
        for block in p.blocks {
            starts.append(start)
            let m = block.rows.count, c = block.columnCount
            for q in 0..<m {
                for t in 0..<c {
                    var s = 0.0
                    for j in 0..<m { s += dense[Int(block.rows[q]) * n + Int(block.rows[j])] * x[start + j * c + t] }
                    out[start + q * c + t] = s
                }
            }
            start += m * c
        }
        var source = 0
        for addition in p.additions {
            let c = p.blocks[addition.block].columnCount
            for t in 0..<addition.count { out[starts[addition.block] + addition.row * c + addition.column + t] += e[source + t] }
            source += addition.count
        }
        if let w {
            for (b, block) in p.blocks.enumerated() {
                for q in 0..<block.rows.count {
                    for t in 0..<block.columnCount {
                        sums[block.columnSumStart + t] += w[Int(block.rows[q])] * out[starts[b] + q * block.columnCount + t]
                    }
                }
            }
        }
        return (out, sums)
    }

    /// Runs the plan on the problem and compares with the reference; returns the results.
    @discardableResult
    private func check<S: SparseScalar>(_ p: Problem, as _: S.Type, kernel: BlockProductPlan.Kernel, panelVectors: Int?,
                                        threads: Int, withSums: Bool, seed: UInt64, tolerance: Double,
                                        columnSumMethod: BlockProductPlan.ColumnSumMethod = .automatic,
                                        layout: BlockProductPlan.Layout = .rowMajor,
                                        file: StaticString = #filePath, line: UInt = #line) throws -> (x: [S], sums: [S]) {
        let blocks = p.blocks.map { BlockProductPlan.Block(rows: $0.rows, columnCount: $0.columnCount, columnSumStart: $0.columnSumStart,
                                                           columnSumMethod: columnSumMethod) }
        let additions = p.additions.map { BlockProductPlan.Addition(block: $0.block, row: $0.row, column: $0.column, count: $0.count) }
        let plan = try BlockProductPlan(a: p.a, aValueIndex: p.valueIndex, aValueCount: p.aValues.count, blocks: blocks,
                                        additions: additions, columnSumCount: p.columnSumCount, threads: threads,
                                        kernel: kernel, maximumPanelVectors: panelVectors, layout: layout, scalar: S.self)
        lastPlan = plan
        var random = RandomSparse(seed: seed)
        var x: [S] = random.values(plan.valueCount)
        // X in row-major blocks (the reference's order), and where the plan keeps each value, before
        // and after the call (shifting panels move them); the places no value has (gaps, padding)
        // hold NaN, which must reach no result.
        func places(_ placement: BlockProductPlan.Placement) throws -> [Int] {
            var index: [Int] = []
            for (b, block) in p.blocks.enumerated() {
                for q in 0..<block.rows.count {
                    for t in 0..<block.columnCount {
                        index.append(try XCTUnwrap(plan.valueIndex(block: b, row: q, column: t, placement: placement)))
                    }
                }
            }
            XCTAssertEqual(Set(index).count, plan.valueCount, "the layout maps every value to its own place", file: file, line: line)
            XCTAssertTrue(index.allSatisfy { $0 >= 0 && $0 < plan.storageCount }, file: file, line: line)
            return index
        }
        var placement = BlockProductPlan.Placement.upper
        let before = try places(placement)
        var stored = [S](repeating: .nan, count: plan.storageCount)
        for (r, i) in before.enumerated() { stored[i] = x[r] }
        let e: [S] = random.values(plan.additionValueCount)
        let w: [S] = random.values(p.a.rowCount)
        var sums: [S] = random.values(p.columnSumCount)
        let expected = reference(p, x: x.map { Double($0) }, additions: e.map { Double($0) }, weights: withSums ? w.map { Double($0) } : nil,
                                 sums: sums.map { Double($0) })
        let aValues = p.aValues.map { S($0) }
        let workspace = try plan.makeWorkspace()
        try aValues.withUnsafeBufferPointer { av in
            try stored.withUnsafeMutableBufferPointer { xv in
                try e.withUnsafeBufferPointer { ev in
                    try w.withUnsafeBufferPointer { wv in
                        try sums.withUnsafeMutableBufferPointer { sv in
                            try plan.execute(a: av, x: xv, additions: ev, rowWeights: withSums ? wv : nil,
                                             columnSums: withSums ? sv : nil, placement: &placement, workspace: workspace)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(placement, layout == .shiftingPanels && plan.panelCount > 0 ? .lower : .upper, file: file, line: line)
        for (r, i) in try places(placement).enumerated() { x[r] = stored[i] }
        XCTAssertClose(x.map { Double($0) }, expected.x, relative: tolerance,
                       "values, \(kernel) kernel, \(panelVectors.map { "\($0)" } ?? "automatic") vectors, \(threads) threads", file: file, line: line)
        XCTAssertClose(sums.map { Double($0) }, expected.sums, relative: tolerance,
                       "column sums (\(columnSumMethod)), \(kernel) kernel, \(panelVectors.map { "\($0)" } ?? "automatic") vectors",
                       file: file, line: line)
        return (x, sums)
    }

    /// The plan of the last `check` (to see which kernels it chose).
    private var lastPlan: BlockProductPlan?

    private let shapes: [(rows: Int, columns: Int)] = [
        (7, 93), (0, 5), (3, 0), (1, 1), (12, 31), (20, 200), (2, 3), (16, 64), (5, 17), (9, 1),
    ]

    func testEveryKernelAndPanelWidthMatchesTheReference() throws {
        // Sparse rows (tiles of one row), rows in pairs with the same columns (tiles of two), and
        // dense ones (tiles of up to six rows sharing their columns).
        for (index, p) in [problem(seed: 1, n: 24, density: 0.3, blockShapes: shapes),
                           pairedProblem(seed: 9, n: 24, density: 0.3, blockShapes: shapes),
                           problem(seed: 8, n: 24, density: 1, blockShapes: shapes)].enumerated() {
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            for vectors in [nil] + (1...15).map({ Optional($0) }) {
                try check(p, as: Double.self, kernel: kernel, panelVectors: vectors, threads: 1, withSums: true, seed: 2, tolerance: 1e-13)
                try check(p, as: Float.self, kernel: kernel, panelVectors: vectors, threads: 1,
                          withSums: true, seed: 2, tolerance: 2e-5)
            }
            try check(p, as: Double.self, kernel: kernel, panelVectors: nil, threads: 1, withSums: false, seed: 3, tolerance: 1e-13)
            // Each problem exercises the kernel it was made for.
            let plan = try XCTUnwrap(lastPlan)
            switch index {
            case 0: XCTAssertEqual(plan.pairedRows + plan.tiledRows, 0, "\(kernel)")
            case 1: XCTAssertGreaterThan(plan.pairedRows, 20, "\(kernel)")
            default: XCTAssertGreaterThan(plan.tiledRows, 50, "\(kernel)")
            }
        }
        }
    }

    func testBothFormsOfTheColumnSumsMatchTheReference() throws {
        // Each form forced on every block: sparse rows, paired rows and dense tiles, panels of one
        // vector (many panels a block) to the widest.
        for p in [problem(seed: 11, n: 24, density: 0.3, blockShapes: shapes),
                  pairedProblem(seed: 12, n: 24, density: 0.3, blockShapes: shapes),
                  problem(seed: 13, n: 24, density: 1, blockShapes: shapes)] {
            for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
                for method in [BlockProductPlan.ColumnSumMethod.rowByRow, .transposed] {
                    for vectors in [nil, 1, 2, 5, 15] {
                        try check(p, as: Double.self, kernel: kernel, panelVectors: vectors, threads: 1, withSums: true, seed: 14,
                                  tolerance: 1e-13, columnSumMethod: method)
                        let plan = try XCTUnwrap(lastPlan)
                        XCTAssertEqual(plan.transposedSumBlocks, method == .transposed ? shapes.count : 0, "\(method)")
                    }
                    try check(p, as: Float.self, kernel: kernel, panelVectors: nil, threads: 2, withSums: true, seed: 14,
                              tolerance: 2e-5, columnSumMethod: method)
                }
            }
        }
        // The automatic rule: u = S_bᵀw for a wide block with few entries (one row: one entry at
        // most, against 1 × 250 vectors), row by row for a narrow one with many.
        let p = problem(seed: 15, n: 12, density: 1, blockShapes: [(1, 1000), (12, 8)])
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            try check(p, as: Double.self, kernel: kernel, panelVectors: nil, threads: 1, withSums: true, seed: 16, tolerance: 1e-13)
            XCTAssertEqual(try XCTUnwrap(lastPlan).transposedSumBlocks, 1, "\(kernel)")
        }
    }

    func testTallBlocksTakePanelsOfAtLeastFourVectorsWithAVX2() throws {
        // 512 rows: a 4-vector panel's pack (64 KB) is over any usual L1 cache, and the plan still
        // takes 4 vectors, the two-row kernel's sub-panel, not 3 (a 3-vector panel cut an LSTM's
        // pairs into a 2-vector and a 1-vector pass and ran exact RTRL at half the speed:
        // Docs/BENCHMARKS.md). 64 columns are 16 vectors: 4 panels (6 with 3 vectors a panel).
        guard BlockProductPlan.Kernel.avx2.isAvailable else { throw XCTSkip("needs AVX2") }
        for p in [problem(seed: 21, n: 512, density: 0.01, blockShapes: [(512, 64)], additionsPerBlock: 2),
                  pairedProblem(seed: 22, n: 512, density: 0.01, blockShapes: [(512, 64)])] {
            for threads in [1, 2] {
                try check(p, as: Double.self, kernel: .avx2, panelVectors: nil, threads: threads, withSums: true, seed: 23, tolerance: 1e-13)
                XCTAssertEqual(try XCTUnwrap(lastPlan).panelCount, 4)
            }
            // Float: vectors of 8, so the same 4 panels hold 32 columns each of 128.
            let wide = Problem(a: p.a, valueIndex: p.valueIndex, aValues: p.aValues,
                               blocks: [.init(rows: p.blocks[0].rows, columnCount: 128, columnSumStart: 0)], additions: [],
                               columnSumCount: 130)
            try check(wide, as: Float.self, kernel: .avx2, panelVectors: nil, threads: 1, withSums: true, seed: 24, tolerance: 2e-5)
            XCTAssertEqual(try XCTUnwrap(lastPlan).panelCount, 4)
        }
    }

    func testDenseAndEmptySubmatrices() throws {
        // A dense (every S_b dense), and A empty (every new block is its additions alone).
        for density in [1.0, 0.0] {
            let p = problem(seed: 4, n: 30, density: density, blockShapes: [(30, 50), (10, 9), (1, 40)])
            for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
                try check(p, as: Double.self, kernel: kernel, panelVectors: nil, threads: 1, withSums: true, seed: 5, tolerance: 1e-13)
            }
        }
    }

    /// Panel-major and shifting-panel storage: the kernels address each panel as its own array
    /// (shifting: read in one place, written in another), `valueIndex` places values by the same
    /// rule (`check` stores X through it, NaN everywhere else, and reads it back), so any
    /// disagreement shows against the reference; and with the same panels the results are the
    /// row-major plan's to the bit, threads or not.
    func testPanelLayoutsGiveTheRowMajorResults() throws {
        for p in [problem(seed: 31, n: 24, density: 0.3, blockShapes: shapes),
                  pairedProblem(seed: 32, n: 24, density: 0.3, blockShapes: shapes),
                  problem(seed: 33, n: 24, density: 1, blockShapes: shapes)] {
            for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
                for vectors in [nil, 1, 3, 15] {
                    for threads in [1, 3] {
                        for method in [BlockProductPlan.ColumnSumMethod.rowByRow, .transposed] {
                            let rows = try check(p, as: Double.self, kernel: kernel, panelVectors: vectors, threads: threads,
                                                 withSums: true, seed: 34, tolerance: 1e-13, columnSumMethod: method)
                            for layout in [BlockProductPlan.Layout.panelMajor, .shiftingPanels] {
                                let other = try check(p, as: Double.self, kernel: kernel, panelVectors: vectors, threads: threads,
                                                      withSums: true, seed: 34, tolerance: 1e-13, columnSumMethod: method, layout: layout)
                                let what = "\(layout), \(method), \(kernel), \(vectors.map { "\($0)" } ?? "automatic") vectors, \(threads) threads"
                                XCTAssertEqual(rows.x, other.x, what)
                                XCTAssertEqual(rows.sums, other.sums, what)
                            }
                        }
                    }
                    for layout in [BlockProductPlan.Layout.panelMajor, .shiftingPanels] {
                        try check(p, as: Float.self, kernel: kernel, panelVectors: vectors, threads: 1, withSums: true, seed: 35,
                                  tolerance: 2e-5, layout: layout)
                    }
                }
            }
        }
    }

    /// One call of a plan on arrays.
    private func run(_ plan: BlockProductPlan, _ a: [Double], _ x: inout [Double], _ e: [Double], _ w: [Double], _ sums: inout [Double],
                     _ placement: inout BlockProductPlan.Placement, _ workspace: BlockProductPlan.Workspace) throws {
        try a.withUnsafeBufferPointer { av in
            try x.withUnsafeMutableBufferPointer { xv in
                try e.withUnsafeBufferPointer { ev in
                    try w.withUnsafeBufferPointer { wv in
                        try sums.withUnsafeMutableBufferPointer { sv in
                            try plan.execute(a: av, x: xv, additions: ev, rowWeights: wv, columnSums: sv, placement: &placement,
                                             workspace: workspace)
                        }
                    }
                }
            }
        }
    }

    /// Shifting panels over several calls: the values move between the two placements and stay
    /// the row-major plan's to the bit, call after call, on every kernel, with one and two
    /// threads (a gap each); the plain `execute` refuses such a plan.
    func testShiftingPanelsFollowTheRowMajorPlanCallAfterCall() throws {
        let p = problem(seed: 37, n: 40, density: 0.25, blockShapes: [(40, 300), (12, 77), (0, 4), (30, 129), (1, 5), (7, 9)])
        let blocks = p.blocks.map { BlockProductPlan.Block(rows: $0.rows, columnCount: $0.columnCount, columnSumStart: $0.columnSumStart) }
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            for threads in [1, 2] {
                func plan(_ layout: BlockProductPlan.Layout) throws -> BlockProductPlan {
                    try BlockProductPlan(a: p.a, aValueIndex: p.valueIndex, aValueCount: p.aValues.count, blocks: blocks,
                                         additions: p.additions, columnSumCount: p.columnSumCount, threads: threads, kernel: kernel,
                                         maximumPanelVectors: 3, layout: layout)
                }
                let rows = try plan(.rowMajor), shifting = try plan(.shiftingPanels)
                XCTAssertGreaterThan(shifting.storageCount, shifting.valueCount, "gaps and padding")
                var random = RandomSparse(seed: 38)
                var x: [Double] = random.values(rows.valueCount)
                let w: [Double] = random.values(p.a.rowCount)
                var sums = [Double](repeating: 0, count: p.columnSumCount), shiftedSums = sums
                var y = [Double](repeating: .nan, count: shifting.storageCount)
                var placement = BlockProductPlan.Placement.upper
                func index(_ b: Int, _ q: Int, _ t: Int) -> Int { shifting.valueIndex(block: b, row: q, column: t, placement: placement)! }
                var r = 0
                for (b, block) in p.blocks.enumerated() {
                    for q in 0..<block.rows.count { for t in 0..<block.columnCount { y[index(b, q, t)] = x[r]; r += 1 } }
                }
                let rowsWorkspace = try rows.makeWorkspace(), shiftingWorkspace = try shifting.makeWorkspace()
                for call in 0..<4 {
                    let a: [Double] = random.values(p.aValues.count), e: [Double] = random.values(rows.additionValueCount)
                    var unmoved = BlockProductPlan.Placement.upper
                    try run(rows, a, &x, e, w, &sums, &unmoved, rowsWorkspace)
                    XCTAssertEqual(unmoved, .upper, "a row-major plan leaves the placement alone")
                    let from = placement
                    try run(shifting, a, &y, e, w, &shiftedSums, &placement, shiftingWorkspace)
                    XCTAssertEqual(placement, from.other)
                    var moved: [Double] = []
                    for (b, block) in p.blocks.enumerated() {
                        for q in 0..<block.rows.count { for t in 0..<block.columnCount { moved.append(y[index(b, q, t)]) } }
                    }
                    XCTAssertEqual(moved, x, "\(kernel), \(threads) threads, call \(call)")
                    XCTAssertEqual(shiftedSums, sums, "\(kernel), \(threads) threads, call \(call)")
                }
                let e = [Double](repeating: 0, count: rows.additionValueCount)
                XCTAssertThrowsError(try p.aValues.withUnsafeBufferPointer { av in
                    try y.withUnsafeMutableBufferPointer { yv in
                        try e.withUnsafeBufferPointer { ev in try shifting.execute(a: av, x: yv, additions: ev, workspace: shiftingWorkspace) }
                    }
                })
            }
        }
    }

    /// `panels(ofBlock:)` cuts each block's columns left to right into panels no wider than asked,
    /// and `valueIndex` follows the documented layouts: row-major blocks; each panel an m × width
    /// row-major array after the block's earlier panels; or (shifting, one thread) each panel an
    /// m × (width in whole vectors) array after the earlier panels, all after a gap as large as
    /// the largest panel (the upper placement) or before it (the lower). Out-of-range places are nil.
    func testValueIndexFollowsTheDocumentedLayouts() throws {
        let p = problem(seed: 36, n: 30, density: 0.2, blockShapes: [(7, 93), (0, 5), (3, 0), (1, 1), (30, 200), (4, 17)])
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            for vectors in [1, 3, 15] {
                for layout in BlockProductPlan.Layout.allCases {
                    let plan = try BlockProductPlan(a: p.a, aValueIndex: p.valueIndex, aValueCount: p.aValues.count, blocks: p.blocks,
                                                    columnSumCount: p.columnSumCount, kernel: kernel, maximumPanelVectors: vectors,
                                                    layout: layout)
                    XCTAssertEqual(plan.layout, layout)
                    let lanes = kernel == .avx2 ? 4 : 8 // Double: AVX2 vectors of 4, AVX-512 and generic of 8
                    var start = 0, panelCount = 0
                    // Shifting: the panels' padded sizes, in order, and the gap (the largest).
                    var panelStart: [Int] = [], shiftedStart = 0
                    for (b, block) in p.blocks.enumerated() {
                        for panel in try XCTUnwrap(plan.panels(ofBlock: b)) {
                            panelStart.append(shiftedStart)
                            shiftedStart += block.rows.count * ((panel.count + lanes - 1) / lanes * lanes)
                        }
                    }
                    var largest = 0
                    for (b, block) in p.blocks.enumerated() {
                        for panel in try XCTUnwrap(plan.panels(ofBlock: b)) {
                            largest = max(largest, block.rows.count * ((panel.count + lanes - 1) / lanes * lanes))
                        }
                    }
                    XCTAssertEqual(plan.storageCount, layout == .shiftingPanels ? shiftedStart + largest : plan.valueCount)
                    for (b, block) in p.blocks.enumerated() {
                        let m = block.rows.count, n = block.columnCount
                        let panels = try XCTUnwrap(plan.panels(ofBlock: b))
                        panelCount += panels.count
                        if m == 0 || n == 0 {
                            XCTAssertEqual(panels, [], "block \(b)")
                        } else {
                            XCTAssertEqual(panels.first?.lowerBound, 0, "block \(b)")
                            XCTAssertEqual(panels.last?.upperBound, n, "block \(b)")
                            for (left, right) in zip(panels, panels.dropFirst()) { XCTAssertEqual(left.upperBound, right.lowerBound) }
                            for panel in panels {
                                XCTAssertFalse(panel.isEmpty)
                                XCTAssertLessThanOrEqual(panel.count, vectors * lanes, "\(kernel), \(vectors) vectors")
                            }
                        }
                        for q in 0..<m {
                            for t in 0..<n {
                                let which = try XCTUnwrap(panels.firstIndex { $0.contains(t) }), panel = panels[which]
                                switch layout {
                                case .rowMajor:
                                    XCTAssertEqual(plan.valueIndex(block: b, row: q, column: t), start + q * n + t)
                                case .panelMajor:
                                    XCTAssertEqual(plan.valueIndex(block: b, row: q, column: t),
                                                   start + panel.lowerBound * m + q * panel.count + (t - panel.lowerBound), "block \(b) (\(q), \(t))")
                                case .shiftingPanels:
                                    let lower = panelStart[panelCount - panels.count + which] + q * ((panel.count + lanes - 1) / lanes * lanes)
                                        + (t - panel.lowerBound)
                                    XCTAssertEqual(plan.valueIndex(block: b, row: q, column: t, placement: .lower), lower, "block \(b) (\(q), \(t))")
                                    XCTAssertEqual(plan.valueIndex(block: b, row: q, column: t, placement: .upper), lower + largest)
                                }
                                if layout != .shiftingPanels {
                                    XCTAssertEqual(plan.valueIndex(block: b, row: q, column: t, placement: .lower),
                                                   plan.valueIndex(block: b, row: q, column: t), "the placement matters to shifting panels only")
                                }
                            }
                        }
                        XCTAssertNil(plan.valueIndex(block: b, row: m, column: 0))
                        XCTAssertNil(plan.valueIndex(block: b, row: 0, column: n))
                        XCTAssertNil(plan.valueIndex(block: b, row: -1, column: 0))
                        XCTAssertNil(plan.valueIndex(block: b, row: 0, column: -1))
                        start += m * n
                    }
                    XCTAssertEqual(panelCount, plan.panelCount)
                    XCTAssertNil(plan.panels(ofBlock: p.blocks.count))
                    XCTAssertNil(plan.panels(ofBlock: -1))
                    XCTAssertNil(plan.valueIndex(block: p.blocks.count, row: 0, column: 0))
                }
            }
        }
    }

    func testResultsAreBitIdenticalForAnyThreadCount() throws {
        let p = problem(seed: 6, n: 40, density: 0.2, blockShapes: [(40, 300), (12, 77), (30, 129), (1, 5)])
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            let one = try check(p, as: Double.self, kernel: kernel, panelVectors: 3, threads: 1, withSums: true, seed: 7, tolerance: 1e-13)
            for threads in [2, 3, 5] {
                let many = try check(p, as: Double.self, kernel: kernel, panelVectors: 3, threads: threads, withSums: true, seed: 7,
                                     tolerance: 1e-13)
                XCTAssertEqual(one.x, many.x, "\(kernel), \(threads) threads")
                XCTAssertEqual(one.sums, many.sums, "\(kernel), \(threads) threads")
            }
        }
    }

    func testCuttingABlocksColumnsChangesNoValue() throws {
        // A model-parallel run gives each process some of an exact-RTRL block's columns: every
        // column's new values and sums must be the whole block's, bit for bit, however its
        // columns are cut into panels (3 columns are one vector with AVX2 and AVX-512 in Float64;
        // 20 columns a narrow panel beside the whole block's widest ones).
        let p = problem(seed: 31, n: 24, density: 0.5, blockShapes: [(12, 200)], additionsPerBlock: 0)
        for kernel in BlockProductPlan.Kernel.allCases where kernel.isAvailable {
            try assertCutsAgree(p, as: Double.self, kernel: kernel)
            try assertCutsAgree(p, as: Float.self, kernel: kernel)
        }
    }

    /// Runs the one block of `p` whole and cut into blocks of consecutive columns (the same rows),
    /// and asserts that every value and column sum is the same.
    private func assertCutsAgree<S: SparseScalar>(_ p: Problem, as _: S.Type, kernel: BlockProductPlan.Kernel,
                                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let rows = p.blocks[0].rows, m = rows.count, width = p.blocks[0].columnCount
        var random = RandomSparse(seed: 32)
        let whole: [S] = random.values(m * width)
        let w: [S] = random.values(p.a.rowCount)
        let sums0: [S] = random.values(width)
        let aValues = p.aValues.map { S($0) }
        var first: (x: [S], sums: [S])?
        for cut in [[width], [20, width - 20], [3, 90, width - 93], [width - 1, 1]] {
            var blocks: [BlockProductPlan.Block] = [], start = 0
            for columns in cut {
                // The column sums' form set, as such a caller must (the automatic rule looks at columns).
                blocks.append(.init(rows: rows, columnCount: columns, columnSumStart: start, columnSumMethod: .rowByRow))
                start += columns
            }
            let plan = try BlockProductPlan(a: p.a, aValueIndex: p.valueIndex, aValueCount: p.aValues.count, blocks: blocks,
                                            additions: [], columnSumCount: width, threads: 1, kernel: kernel, scalar: S.self)
            // The whole block's values, block by block (each row-major over its own columns).
            var x: [S] = []
            start = 0
            for columns in cut {
                for q in 0..<m { x += whole[(q * width + start)..<(q * width + start + columns)] }
                start += columns
            }
            var sums = sums0
            let none: [S] = []
            try aValues.withUnsafeBufferPointer { av in
                try x.withUnsafeMutableBufferPointer { xv in
                    try w.withUnsafeBufferPointer { wv in
                        try sums.withUnsafeMutableBufferPointer { sv in
                            try none.withUnsafeBufferPointer { ev in
                                try plan.execute(a: av, x: xv, additions: ev, rowWeights: wv, columnSums: sv,
                                                 workspace: try plan.makeWorkspace())
                            }
                        }
                    }
                }
            }
            // Back to the whole block's layout.
            var result = [S](repeating: 0, count: m * width), offset = 0
            start = 0
            for columns in cut {
                for q in 0..<m {
                    for t in 0..<columns { result[q * width + start + t] = x[offset + q * columns + t] }
                }
                offset += m * columns
                start += columns
            }
            if let first {
                XCTAssertEqual(result, first.x, "\(kernel), \(S.self), columns cut \(cut)", file: file, line: line)
                XCTAssertEqual(sums, first.sums, "\(kernel), \(S.self), column sums, columns cut \(cut)", file: file, line: line)
            } else {
                first = (result, sums)
            }
        }
    }

    func testCountsAndSizes() throws {
        // A 3×3 with a known pattern: S for rows [2, 0] is A[[2,0],[2,0]].
        let a = try SparsityPattern(rowCount: 3, columnCount: 3,
                                    entries: [(row: 0, column: 0), (row: 2, column: 0), (row: 1, column: 1), (row: 0, column: 2), (row: 2, column: 2)])
        let plan = try BlockProductPlan(a: a, blocks: [.init(rows: [2, 0], columnCount: 5, columnSumStart: 0),
                                                               .init(rows: [1], columnCount: 2, columnSumStart: 5)],
                                                additions: [.init(block: 0, row: 1, column: 2, count: 3)], columnSumCount: 7)
        XCTAssertEqual(plan.multiplyAdds, 4 * 5 + 1 * 2)
        XCTAssertEqual(plan.valueCount, 2 * 5 + 1 * 2)
        XCTAssertEqual(plan.additionValueCount, 3)
        XCTAssertEqual(plan.blockCount, 2)
        // A 2 × 2 block worked by hand: A = [[1, 0, 2], [0, 3, 0], [4, 0, 5]] (values in storage order).
        let values: [Double] = [1, 4, 3, 2, 5]
        var x: [Double] = [1, 2, 3, 4, 5, /* row of index 0: */ 10, 20, 30, 40, 50, /* block 1: */ 7, 8]
        let e: [Double] = [100, 200, 300]
        let w: [Double] = [1, 2, 3]
        var sums = [Double](repeating: 0, count: 7)
        try values.withUnsafeBufferPointer { av in try x.withUnsafeMutableBufferPointer { xv in try e.withUnsafeBufferPointer { ev in
            try w.withUnsafeBufferPointer { wv in try sums.withUnsafeMutableBufferPointer { sv in
                try plan.execute(a: av, x: xv, additions: ev, rowWeights: wv, columnSums: sv, workspace: plan.makeWorkspace())
            } }
        } } }
        // Row of index 2: 5·x2 + 4·x0; row of index 0: 2·x2 + 1·x0, plus the addition.
        let old2: [Double] = [1, 2, 3, 4, 5], old0: [Double] = [10, 20, 30, 40, 50]
        let row2: [Double] = (0..<5).map { (t: Int) -> Double in 5 * old2[t] + 4 * old0[t] }
        var row0: [Double] = (0..<5).map { (t: Int) -> Double in 2 * old2[t] + 1 * old0[t] }
        row0[2] += 100; row0[3] += 200; row0[4] += 300
        XCTAssertEqual(Array(x[0..<5]), row2)
        XCTAssertEqual(Array(x[5..<10]), row0)
        XCTAssertEqual(Array(x[10..<12]), [21, 24])
        let expectedSums: [Double] = (0..<5).map { (t: Int) -> Double in 3 * row2[t] + 1 * row0[t] }
        XCTAssertEqual(Array(sums[0..<5]), expectedSums)
        XCTAssertEqual(Array(sums[5..<7]), [2 * 21, 2 * 24])
    }

    func testBadInputsAreRefusedWithAReason() throws {
        let a = try SparsityPattern(rowCount: 3, columnCount: 3, entries: [(row: 0, column: 0), (row: 1, column: 2)])
        func refuses(_ build: () throws -> Void, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try build(), line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)", line: line)
            }
        }
        let rect = try SparsityPattern(rowCount: 3, columnCount: 2, entries: [])
        refuses({ _ = try BlockProductPlan(a: rect, blocks: [], columnSumCount: 0) }, "square")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [.init(rows: [0, 3], columnCount: 1, columnSumStart: 0)], columnSumCount: 1) },
                "outside")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [.init(rows: [1, 1], columnCount: 1, columnSumStart: 0)], columnSumCount: 1) },
                "twice")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [.init(rows: [1], columnCount: 4, columnSumStart: 0)], columnSumCount: 3) },
                "do not fit")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [.init(rows: [1], columnCount: 4, columnSumStart: 0)],
                                                   additions: [.init(block: 0, row: 0, column: 2, count: 3)], columnSumCount: 4) },
                "does not fit")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [], additions: [.init(block: 1, row: 0, column: 0, count: 1)], columnSumCount: 0) },
                "blocks")
        refuses({ _ = try BlockProductPlan(a: a, aValueIndex: [0, 5], aValueCount: 3, blocks: [], columnSumCount: 0) }, "outside")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [], columnSumCount: 0, maximumPanelVectors: 16) }, "1 to 15")
        refuses({ _ = try BlockProductPlan(a: a, blocks: [.init(rows: [0, 1, 2], columnCount: 1000, columnSumStart: 0)],
                                                   columnSumCount: 1000, memoryBudget: 10) }, "budget")
        let plan = try BlockProductPlan(a: a, blocks: [.init(rows: [0, 1], columnCount: 3, columnSumStart: 0)], columnSumCount: 3)
        let other = try BlockProductPlan(a: a, blocks: [.init(rows: [0, 1], columnCount: 3, columnSumStart: 0)], columnSumCount: 3)
        let values = [Double](repeating: 1, count: 2)
        var x = [Double](repeating: 1, count: 6)
        var sums = [Double](repeating: 0, count: 3)
        values.withUnsafeBufferPointer { av in
            x.withUnsafeMutableBufferPointer { xv in
                refuses({ try plan.execute(a: av, x: UnsafeMutableBufferPointer(rebasing: xv[0..<5]), additions: .init(start: nil, count: 0),
                                           workspace: plan.makeWorkspace()) }, "6 of X")
                refuses({ try plan.execute(a: av, x: xv, additions: .init(start: nil, count: 0), workspace: other.makeWorkspace()) }, "another plan")
                sums.withUnsafeMutableBufferPointer { sv in
                    refuses({ try plan.execute(a: av, x: xv, additions: .init(start: nil, count: 0), rowWeights: nil, columnSums: sv,
                                               workspace: plan.makeWorkspace()) }, "both or neither")
                }
            }
        }
    }
}
