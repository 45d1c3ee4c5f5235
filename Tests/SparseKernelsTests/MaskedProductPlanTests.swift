import CSparseKernels
import SparseKernels
import XCTest

final class MaskedProductPlanTests: XCTestCase {
    /// The masked product by dense arithmetic: (diag(r) A B diag(s)) at the mask's entries.
    private func reference<S: SparseScalar>(_ a: SparseMatrix<S>, _ b: SparseMatrix<S>, mask: SparsityPattern,
                                            rowScale: [S]? = nil, columnScale: [S]? = nil) -> [Double] {
        let full = DenseReference.multiply(a.denseColumnMajor(), a.rowCount, a.columnCount, b.denseColumnMajor(), b.columnCount)
        var out: [Double] = []
        for j in 0..<mask.columnCount {
            for i in mask.rows(inColumn: j) {
                var v = full[Int(i) + j * a.rowCount]
                if let rowScale { v *= Double(rowScale[Int(i)]) }
                if let columnScale { v *= Double(columnScale[j]) }
                out.append(v)
            }
        }
        return out
    }

    /// CXSparse multiply, then the mask applied by lookup.
    private func cxsparseThenMask(_ a: SparseMatrix<Double>, _ b: SparseMatrix<Double>, mask: SparsityPattern) throws -> [Double] {
        let full = try a.withCSparse { av in
            try b.withCSparse { bv -> SparseMatrix<Double> in
                let c = cs_di_multiply(av, bv)!
                defer { cs_di_spfree(c) }
                return try SparseMatrix<Double>(copying: c)
            }
        }
        var out: [Double] = []
        for j in 0..<mask.columnCount { for i in mask.rows(inColumn: j) { out.append(full[Int(i), j]) } }
        return out
    }

    /// The CXSparse baseline of the benchmarks (`cxsparseMaskedProduct`) against dense arithmetic,
    /// on awkward shapes; a shape that does not fit is an error.
    func testCXSparseBaselineMatchesDenseArithmetic() throws {
        var random = RandomSparse(seed: 77)
        for (m, k, n) in [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (9, 5, 7), (30, 30, 30)] {
            for density in [0.1, 0.5, 1.0] {
                let a: SparseMatrix<Double> = random.matrix(m, k, density: density)
                let b: SparseMatrix<Double> = random.matrix(k, n, density: density)
                let mask = random.pattern(m, n, density: 0.4)
                var out = [Double](repeating: .nan, count: mask.nonzeroCount), work = [Double](repeating: 0, count: m)
                try a.cxsparseMaskedProduct(b, mask: mask, into: &out, work: &work)
                XCTAssertClose(out, reference(a, b, mask: mask), relative: 1e-14, "\(m)×\(k)×\(n) at \(density)")
                XCTAssertEqual(work, [Double](repeating: 0, count: m), "work left zeroed")
            }
        }
        let a: SparseMatrix<Double> = random.matrix(3, 4, density: 0.5)
        var out: [Double] = [], work = [Double](repeating: 0, count: 3)
        XCTAssertThrowsError(try a.cxsparseMaskedProduct(a, mask: random.pattern(3, 4, density: 0), into: &out, work: &work))
    }

    /// Sparse matrices compare by pattern and values.
    func testSparseMatricesCompareByValue() throws {
        var random = RandomSparse(seed: 78)
        let a: SparseMatrix<Double> = random.matrix(6, 5, density: 0.5)
        var b = a
        XCTAssertEqual(a, b)
        b.values[0] += 1
        XCTAssertNotEqual(a, b)
        XCTAssertThrowsError(try b.replaceValues(with: [1, 2]), "a wrong count is an error")
        XCTAssertNotEqual(a, b, "and changes nothing")
        try b.replaceValues(with: a.values)
        XCTAssertEqual(a, b)
        var dense = try DenseMatrix<Double>(rowCount: 2, columnCount: 3, values: [1, 2, 3, 4, 5, 6])
        XCTAssertThrowsError(try dense.replaceValues(with: [1, 2, 3, 4, 5]))
        try dense.replaceValues(with: [6, 5, 4, 3, 2, 1])
        XCTAssertEqual(dense[1, 2], 1)
        XCTAssertNotEqual(dense, try DenseMatrix<Double>(rowCount: 3, columnCount: 2, values: [6, 5, 4, 3, 2, 1]), "shapes differ")
        let zeros = SparseMatrix<Double>(zerosOn: a.pattern)
        XCTAssertNotEqual(zeros, SparseMatrix<Double>(zerosOn: random.pattern(6, 5, density: 0.5)), "patterns differ")
    }

    private func check<S: SparseScalar>(_ type: S.Type, seed: UInt64, tolerance: Double) throws {
        var random = RandomSparse(seed: seed)
        let shapes = [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (5, 7, 3), (20, 20, 20), (17, 40, 9), (40, 11, 60)]
        for (m, k, n) in shapes {
            for density in [0.05, 0.3, 1.0] {
                let a: SparseMatrix<S> = random.matrix(m, k, density: density)
                let b: SparseMatrix<S> = random.matrix(k, n, density: 0.3)
                let product = try! a.pattern.multiplied(by: b.pattern)
                let masks: [(String, SparsityPattern)] = [
                    ("random", random.pattern(m, n, density: 0.4)),
                    ("empty", .empty(rowCount: m, columnCount: n)),
                    ("full", try SparsityPattern.dense(rowCount: m, columnCount: n)),
                    ("product", product),
                    ("disjoint", try SparsityPattern.dense(rowCount: m, columnCount: n).subtracting(product)),
                ]
                for (name, mask) in masks {
                    var results: [[S]] = []
                    var a2 = a, b2 = b
                    a2.values = random.values(a.nonzeroCount)
                    b2.values = random.values(b.nonzeroCount)
                    let r: [S] = random.values(m), s: [S] = random.values(n)
                    for layout in MaskedProductPlan.Layout.allCases {
                        for threads in [1, 2] {
                            let plan = try MaskedProductPlan(a: a.pattern, b: b.pattern, mask: mask, layout: layout, threads: threads)
                            XCTAssertEqual(plan.layout, layout)
                            let c = try plan.product(a, b)
                            let context = "\(m)x\(k)x\(n) d=\(density) mask=\(name) \(layout) threads=\(threads)"
                            XCTAssertClose(c.values.map { Double($0) }, reference(a, b, mask: mask), relative: tolerance, context)
                            if name == "disjoint" { XCTAssertTrue(c.values.allSatisfy { $0 == 0 }, context) }
                            // Rerun with new values and scalings on the same plan.
                            var c2 = c
                            try plan.execute(a2, b2, into: &c2, rowScale: r, columnScale: s)
                            XCTAssertClose(c2.values.map { Double($0) },
                                           reference(a2, b2, mask: mask, rowScale: r, columnScale: s),
                                           relative: tolerance, context + " rerun")
                            results.append(c2.values)
                        }
                    }
                    // Same bits whatever the thread count (per layout).
                    XCTAssertEqual(results[0], results[1], "\(m)x\(k)x\(n) \(name) runs")
                    XCTAssertEqual(results[2], results[3], "\(m)x\(k)x\(n) \(name) accumulator")
                }
            }
        }
    }

    func testDoubleAgainstDenseReference() throws { try check(Double.self, seed: 10, tolerance: 1e-13) }

    func testFloatAgainstDenseReference() throws { try check(Float.self, seed: 11, tolerance: 2e-6) }

    func testAgainstCXSparseMultiplyThenMask() throws {
        var random = RandomSparse(seed: 12)
        for (m, k, n) in [(30, 20, 25), (1, 50, 1), (64, 64, 200), (9, 0, 9)] {
            let a: SparseMatrix<Double> = random.matrix(m, k, density: 0.2)
            let b: SparseMatrix<Double> = random.matrix(k, n, density: 0.2)
            let mask = random.pattern(m, n, density: 0.5)
            let expected = try cxsparseThenMask(a, b, mask: mask)
            for layout in MaskedProductPlan.Layout.allCases {
                let plan = try MaskedProductPlan(a: a.pattern, b: b.pattern, mask: mask, layout: layout, threads: 2)
                XCTAssertClose(try plan.product(a, b).values, expected, relative: 1e-14, "\(m)x\(k)x\(n) \(layout)")
            }
        }
    }

    /// An influence-shaped product (columns of A and M sharing contiguous blocks) has long runs,
    /// and the work counts match a direct count.
    func testStructuredProductHasLongRunsAndExactCounts() throws {
        // A: 4 blocks of 5 consecutive rows per column (like parameters of 4 units), B sparse.
        let blocks = 4, width = 5, columns = 12
        var entries: [(row: Int, column: Int)] = []
        var random = RandomSparse(seed: 13)
        for j in 0..<columns {
            for blk in 0..<blocks where Double.random(in: 0..<1, using: &random.generator) < 0.6 {
                for t in 0..<width { entries.append((blk * width + t, j)) }
            }
        }
        let aPattern = try SparsityPattern(rowCount: blocks * width, columnCount: columns, entries: entries)
        let a = try SparseMatrix<Double>(pattern: aPattern, values: random.values(aPattern.nonzeroCount))
        let b: SparseMatrix<Double> = random.matrix(columns, columns, density: 0.3)
        let mask = aPattern
        let plan = try MaskedProductPlan(a: a.pattern, b: b.pattern, mask: mask, layout: .runs)
        var flops = 0
        for j in 0..<columns {
            for k in b.pattern.rows(inColumn: j) {
                for i in a.pattern.rows(inColumn: Int(k)) where mask.contains(row: Int(i), column: j) { flops += 1 }
            }
        }
        XCTAssertEqual(plan.multiplyAdds, flops)
        // Each run covers whole blocks (adjacent blocks present in both merge into one run).
        XCTAssertLessThanOrEqual(plan.runCount * width, flops)
        XCTAssertGreaterThanOrEqual(plan.runCount * width * blocks, flops)
        XCTAssertEqual(plan.bytes, 16 * plan.runCount + 8 * (columns + 1) + 4 * 2)
        XCTAssertClose(try plan.product(a, b).values, reference(a, b, mask: mask), relative: 1e-14)
    }

    func testShapeErrorsAndBudget() throws {
        let p3 = SparsityPattern.identity(3), p4 = SparsityPattern.identity(4)
        XCTAssertThrowsError(try MaskedProductPlan(a: p3, b: p4, mask: p3))
        XCTAssertThrowsError(try MaskedProductPlan(a: p3, b: p3, mask: p4))
        XCTAssertThrowsError(try MaskedProductPlan(a: p3, b: p3, mask: p3, threads: 0))
        let plan = try MaskedProductPlan(a: p3, b: p3, mask: p3)
        let a = SparseMatrix<Double>(zerosOn: p3), wrong = SparseMatrix<Double>(zerosOn: p4)
        var c = SparseMatrix<Double>(zerosOn: p3)
        XCTAssertThrowsError(try plan.execute(wrong, a, into: &c))
        XCTAssertThrowsError(try plan.execute(a, a, into: &c, rowScale: [1, 2]))
        XCTAssertThrowsError(try plan.execute(a, a, into: &c, columnScale: [1, 2, 3, 4]))
        let dense = try SparsityPattern.dense(rowCount: 40, columnCount: 40)
        XCTAssertThrowsError(try MaskedProductPlan(a: dense, b: dense, mask: dense, layout: .runs, memoryBudget: 10_000)) { error in
            guard case SparseKernelsError.memoryBudgetExceeded(_, let needed, 10_000) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(needed, 16 * 40 * 40 + 8 * 41 + 4 * 2, "one run per (k, j): a dense column of A lands on a dense column of M")
            XCTAssertTrue("\(error)".contains("would need"))
        }
        // The automatic choice falls back to the accumulator within the budget.
        let fallback = try MaskedProductPlan(a: dense, b: dense, mask: dense, memoryBudget: 10_000)
        XCTAssertEqual(fallback.layout, .accumulator)
        XCTAssertLessThanOrEqual(fallback.bytes, 10_000)
    }
}
