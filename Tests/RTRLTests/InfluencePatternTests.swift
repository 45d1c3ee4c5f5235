import RTRL
import XCTest

/// The dependency graph A, the SnAp-n reach sets R_n(i) and the pattern statistics against
/// brute-force computations from the model's weight patterns (math.md §3).
final class InfluencePatternTests: XCTestCase {
    /// Random models: every cell, several sizes and densities, shared and independent gate masks.
    private func models() throws -> [Model<Double>] {
        var result: [Model<Double>] = []
        var seed: UInt64 = 200
        for cell in CellKind.allCases {
            for (k, density, independent) in [(1, 1.0, false), (5, 0.5, false), (12, 0.15, false), (12, 0.15, true),
                                              (30, 0.05, false), (30, 0.1, true), (40, 0.03, false)] {
                seed += 1
                result.append(try Fixtures.model(cell, inputs: 4, hidden: k, outputs: 2, density: density,
                                                 independentGateMasks: independent, seed: seed))
            }
        }
        return result
    }

    /// A as a Bool matrix, from W_hh's stored entries (rows folded onto units) plus the diagonal
    /// for cells that carry their own state.
    private func unitGraph(_ model: Model<Double>) -> [[Bool]] {
        let k = model.hiddenSize, w = model.parameters.weightHH.pattern
        var a = [[Bool]](repeating: [Bool](repeating: false, count: k), count: k)
        for j in 0..<k { for r in w.rows(inColumn: j) { a[Int(r) % k][j] = true } }
        if model.cell != .rnn { for i in 0..<k { a[i][i] = true } }
        return a
    }

    /// Boolean product x · y.
    private func product(_ x: [[Bool]], _ y: [[Bool]]) -> [[Bool]] {
        let k = x.count
        var z = [[Bool]](repeating: [Bool](repeating: false, count: k), count: k)
        for i in 0..<k { for m in 0..<k where x[i][m] { for j in 0..<k where y[m][j] { z[i][j] = true } } }
        return z
    }

    /// (I + A)^(n−1), or its fixed point for nil.
    private func bruteForceReach(_ a: [[Bool]], n: Int?) -> [[Bool]] {
        let k = a.count
        var step = a
        for i in 0..<k { step[i][i] = true }
        var m = (0..<k).map { i in (0..<k).map { $0 == i } }
        if let n {
            for _ in 0..<(n - 1) { m = product(step, m) }
        } else {
            while true {
                let next = product(step, m)
                if next == m { break }
                m = next
            }
        }
        return m
    }

    private func entries(_ p: SparsityPattern) -> [[Bool]] {
        var m = [[Bool]](repeating: [Bool](repeating: false, count: p.columnCount), count: p.rowCount)
        for j in 0..<p.columnCount { for i in p.rows(inColumn: j) { m[Int(i)][j] = true } }
        return m
    }

    func testDependencyGraphIsTheFoldedRecurrentPattern() throws {
        for model in try models() {
            let graph = ModelStructure(model).graph
            XCTAssertEqual(graph.units.rowCount, model.hiddenSize)
            XCTAssertEqual(graph.units.columnCount, model.hiddenSize)
            XCTAssertEqual(entries(graph.units), unitGraph(model), "\(model.cell) k=\(model.hiddenSize)")
        }
    }

    func testReachSetsMatchBooleanMatrixPowers() throws {
        for model in try models() {
            let structure = ModelStructure(model), k = model.hiddenSize
            let a = unitGraph(model)
            let what = "\(model.cell) k=\(k) nnz(W_hh)=\(model.parameters.weightHH.nonzeroCount)"
            for order in [InfluencePattern.Order.snap(1), .snap(2), .snap(3), .exact] {
                let pattern = try structure.influencePattern(order)
                XCTAssertEqual(pattern.order, order)
                XCTAssertEqual(pattern.reach.rowCount, k)
                XCTAssertEqual(pattern.reach.columnCount, k)
                let n: Int?
                if case .snap(let m) = order { n = m } else { n = nil }
                XCTAssertEqual(entries(pattern.reach), bruteForceReach(a, n: n), "\(order), \(what)")
                for i in 0..<k {
                    let r = pattern.reach(ofUnit: i).map(Int.init)
                    XCTAssertEqual(r, r.sorted(), "R(\(i)) unsorted")
                    XCTAssertTrue(r.contains(i), "R(\(i)) misses i itself")
                }
            }
            // snap-1 keeps each unit only; snap-n for n ≥ k is the closure.
            XCTAssertEqual(try structure.influencePattern(.snap(1)).reach, SparsityPattern.identity(k))
            XCTAssertEqual(try structure.influencePattern(.snap(k)).reach, try structure.influencePattern(.exact).reach, what)
        }
    }

    /// The same powers with the kernel layer's pattern algebra (union with I, products).
    func testReachSetsMatchPatternProducts() throws {
        for model in try models() {
            let structure = ModelStructure(model), k = model.hiddenSize
            let step = try structure.graph.units.union(.identity(k))
            var power = SparsityPattern.identity(k)
            for n in 1...4 {
                XCTAssertEqual(try structure.influencePattern(.snap(n)).reach, power, "\(model.cell) k=\(k) snap-\(n)")
                power = try step.multiplied(by: power)
            }
        }
    }

    /// nonzeros = Σ_i components·|R(i)|·f_i, and the multiply-adds Σ_i f_i·nnz(D[R(i), R(i)]),
    /// with f_i and D's pattern counted from the model's tensors.
    func testStatisticsMatchIndependentCounts() throws {
        for model in try models() {
            let structure = ModelStructure(model), k = model.hiddenSize, cell = model.cell
            let gates = cell.gateCount, components = cell.stateComponents
            var f = [Int](repeating: 2 * gates + (cell == .egru ? 1 : 0), count: k)
            for r in model.parameters.weightIH.pattern.rowIndices { f[Int(r) % k] += 1 }
            for r in model.parameters.weightHH.pattern.rowIndices { f[Int(r) % k] += 1 }
            XCTAssertEqual(f.reduce(0, +), structure.layout.count)
            XCTAssertEqual(structure.layout.count, model.parameters.count - model.parameters.readoutWeight.values.count
                           - model.parameters.readoutBias.count)
            for i in 0..<k { XCTAssertEqual(structure.layout.parameterCount(ofUnit: i), f[i]) }
            // Unit-level recurrent pairs (without the own-state diagonal).
            var folded = [[Bool]](repeating: [Bool](repeating: false, count: k), count: k)
            let w = model.parameters.weightHH.pattern
            for j in 0..<k { for r in w.rows(inColumn: j) { folded[Int(r) % k][j] = true } }
            for order in [InfluencePattern.Order.snap(1), .snap(2), .snap(3), .exact] {
                let pattern = try structure.influencePattern(order)
                var nonzeros = 0, pairs = 0, work = 0
                for i in 0..<k {
                    let r = pattern.reach(ofUnit: i).map(Int.init)
                    pairs += r.count
                    nonzeros += components * r.count * f[i]
                    var within = 0
                    for a in r { for b in r where folded[a][b] { within += 1 } }
                    let dEntries: Int
                    switch cell {
                    case .rnn: dEntries = within
                    case .gru, .egru: dEntries = within + r.filter { !folded[$0][$0] }.count
                    case .lstm: dEntries = 2 * within + 2 * r.count // h and c rows; ∂h'/∂c and ∂c'/∂c
                    }
                    work += f[i] * dEntries
                }
                let what = "\(cell) k=\(k) \(order)"
                XCTAssertEqual(pattern.statistics.nonzeros, nonzeros, what)
                XCTAssertEqual(pattern.statistics.reachPairs, pairs, what)
                XCTAssertEqual(pattern.statistics.multiplyAddsPerStep, work, what)
                XCTAssertEqual(pattern.statistics.bytes, 8 * nonzeros, what)
                XCTAssertEqual(pattern.description, "InfluencePattern(\(order), \(cell.rawValue) with \(k) units, \(nonzeros) entries, \(work) multiply-adds per step)", what)
                XCTAssertEqual(try InfluencePattern.statistics(graph: structure.graph, layout: structure.layout, order: order),
                               pattern.statistics, what)
                // The learner stores exactly these entries, updated in place, beside one step's D
                // and immediate term; for the EGRU (in scaled form) with a scale, a deferred weight
                // and a flag per column instead of the immediate term.
                if case .snap(let n) = order, n <= 2 {
                    let learner = try OnlineLearner(model: model, method: .snap(n))
                    XCTAssertEqual(learner.influencePattern?.reach, pattern.reach, what)
                    let dValues = structure.graph.jacobianTransposed.nonzeroCount
                    if cell == .egru {
                        // Units sharing a reach set may share columns: at most one per reach pair,
                        // each padded to a whole 64-byte line (at most 7 Doubles more).
                        XCTAssertGreaterThan(learner.influenceBytes, 8 * (nonzeros + dValues), what)
                        XCTAssertLessThanOrEqual(learner.influenceBytes, 8 * (nonzeros + dValues) + (17 + 56) * components * pairs, what)
                    } else {
                        XCTAssertEqual(learner.influenceBytes, 8 * (nonzeros + components * structure.layout.count + dValues), what)
                    }
                }
            }
            // Exact RTRL on a dense graph keeps the full k × p influence.
            if model.parameters.weightHH.nonzeroCount == gates * k * k {
                XCTAssertEqual(try structure.influencePattern(.exact).statistics.nonzeros, components * k * structure.layout.count)
            }
        }
    }

    /// A dense recurrent block: SnAp-2 already equals RTRL (math.md §3).
    func testDenseGraphSnAp2IsExact() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 7, density: 1.0, seed: 250)
            let structure = ModelStructure(model)
            XCTAssertEqual(try structure.influencePattern(.snap(2)).reach, try structure.influencePattern(.exact).reach)
            XCTAssertEqual(try structure.influencePattern(.exact).reach, try SparsityPattern.dense(rowCount: 7, columnCount: 7))
        }
    }
}
