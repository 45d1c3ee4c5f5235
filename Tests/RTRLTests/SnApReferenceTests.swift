import Foundation
import RTRL
import XCTest

/// SnAp-1 and TBPTT(1) against hand-written references for the vanilla RNN.
///
/// SnAp-1 (math.md §3) keeps, for a parameter θ of unit i, only its influence on unit i, which
/// evolves as j_t = D_t[i,i] j_{t−1} + I_t[i,θ], with D_t[i,i] = (1 − h_{t,i}²) W_hh[i,i] for the
/// RNN. Without diagonal entries in W_hh, D_t[i,i] = 0 and SnAp-1 is the immediate Jacobian:
/// g = Σ_t (∂L_t/∂h_t)_i · ∂h_{t,i}/∂θ (immediate). TBPTT(1) is that same immediate gradient
/// for any RNN.
final class SnApReferenceTests: XCTestCase {
    /// The RNN's SnAp-1 gradient (or, with `immediateOnly`, the gradient keeping only immediate
    /// terms), in `Parameters.flattened` order, computed from scratch.
    static func rnnReference(_ model: Model<Double>, _ sequence: LabelledSequence, immediateOnly: Bool) -> (loss: Double, gradient: [Double]) {
        precondition(model.cell == .rnn)
        let p = model.parameters
        let k = model.hiddenSize, o = model.outputSize
        let wih = p.weightIH, whh = p.weightHH
        // Stored entries as (row, column, storage position).
        func entries(_ m: SparseMatrix<Double>) -> [(i: Int, j: Int, q: Int)] {
            var e: [(Int, Int, Int)] = []
            for j in 0..<m.columnCount {
                for q in Int(m.pattern.columnPointers[j])..<Int(m.pattern.columnPointers[j + 1]) {
                    e.append((Int(m.pattern.rowIndices[q]), j, q))
                }
            }
            return e
        }
        let ihEntries = entries(wih), hhEntries = entries(whh)
        var diagonal = [Double](repeating: 0, count: k)
        for e in hhEntries where e.i == e.j { diagonal[e.i] = whh.values[e.q] }

        // SnAp-1 influences: one scalar per parameter.
        var jIH = [Double](repeating: 0, count: ihEntries.count), jHH = [Double](repeating: 0, count: hhEntries.count)
        var jBias = [Double](repeating: 0, count: k) // b_ih[i] and b_hh[i] have the same influence
        var gIH = jIH, gHH = jHH, gBiasIH = jBias, gBiasHH = jBias
        var gReadout = [Double](repeating: 0, count: o * k), gReadoutBias = [Double](repeating: 0, count: o)
        var h = [Double](repeating: 0, count: k), loss = 0.0
        for t in 0..<sequence.count {
            let x = sequence.inputs[t]
            var pre = (0..<k).map { p.biasIH[$0] + p.biasHH[$0] }
            for e in ihEntries { pre[e.i] += wih.values[e.q] * x[e.j] }
            for e in hhEntries { pre[e.i] += whh.values[e.q] * h[e.j] }
            let hNew = pre.map { tanh($0) }
            let d = hNew.map { 1 - $0 * $0 }
            let decay = immediateOnly ? [Double](repeating: 0, count: k) : (0..<k).map { d[$0] * diagonal[$0] }
            for (a, e) in ihEntries.enumerated() { jIH[a] = decay[e.i] * jIH[a] + d[e.i] * x[e.j] }
            for (a, e) in hhEntries.enumerated() { jHH[a] = decay[e.i] * jHH[a] + d[e.i] * h[e.j] }
            for i in 0..<k { jBias[i] = decay[i] * jBias[i] + d[i] }
            h = hNew
            let target = sequence.targets[t]
            guard target >= 0 else { continue }
            // Readout: logits = W h + b, softmax cross-entropy.
            var logits = p.readoutBias
            for a in 0..<o { for i in 0..<k { logits[a] += p.readoutWeight.values[a + i * o] * h[i] } }
            let m = logits.max()!
            let lse = m + log(logits.reduce(0) { $0 + exp($1 - m) })
            loss += lse - logits[target]
            let dLogits = (0..<o).map { exp(logits[$0] - lse) - ($0 == target ? 1 : 0) }
            var w = [Double](repeating: 0, count: k) // ∂L_t/∂h_t
            for i in 0..<k {
                for a in 0..<o {
                    w[i] += p.readoutWeight.values[a + i * o] * dLogits[a]
                    gReadout[a + i * o] += dLogits[a] * h[i]
                }
            }
            for a in 0..<o { gReadoutBias[a] += dLogits[a] }
            for (a, e) in ihEntries.enumerated() { gIH[a] += w[e.i] * jIH[a] }
            for (a, e) in hhEntries.enumerated() { gHH[a] += w[e.i] * jHH[a] }
            for i in 0..<k { gBiasIH[i] += w[i] * jBias[i]; gBiasHH[i] += w[i] * jBias[i] }
        }
        // Entries were enumerated in storage order, so these arrays are in `values` order.
        return (loss, gIH + gHH + gBiasIH + gBiasHH + gReadout + gReadoutBias)
    }

    /// The RNN with every diagonal entry removed from W_hh.
    private func rnnWithoutDiagonal(hidden k: Int, density: Double, seed: UInt64) throws -> Model<Double> {
        let model = try Fixtures.filteringRecurrent(try Fixtures.model(.rnn, hidden: k, density: density, seed: seed)) { $0 != $1 }
        let w = model.parameters.weightHH.pattern
        for i in 0..<k { XCTAssertFalse(w.contains(row: i, column: i)) }
        return model
    }

    func testSnAp1WithoutDiagonalIsTheImmediateGradient() throws {
        for (k, density, T, seed) in [(2, 1.0, 10, 81 as UInt64), (6, 1.0, 30, 82), (10, 0.5, 40, 83), (16, 0.15, 40, 84)] {
            let model = try rnnWithoutDiagonal(hidden: k, density: density, seed: seed)
            XCTAssertGreaterThan(model.parameters.weightHH.nonzeroCount, 0)
            let sequence = try Fixtures.sequence(for: model, length: T, seed: seed, scale: 1.5)
            let reference = Self.rnnReference(model, sequence, immediateOnly: true)
            for layout in InfluenceLayout.allCases {
                let snap1 = try sequenceGradient(model, sequence, .snap(1), layout: layout)
                XCTAssertRelativelyClose(snap1.gradient, reference.gradient, tolerance: 1e-12, "k=\(k) d=\(density) \(layout)")
                XCTAssertLossesClose(snap1.loss, reference.loss, "k=\(k) d=\(density)")
            }
            // Not a trivial agreement: the exact gradient differs (W_hh carries influence between units).
            let exact = try sequenceGradient(model, sequence, .rtrl)
            XCTAssertGreaterThan(relativeError(exact.gradient, reference.gradient), 1e-6, "k=\(k): rtrl equals the immediate gradient")
        }
    }

    /// With diagonal entries, SnAp-1 uses D_t[i,i] (and only it): compare with the scalar recursion.
    func testSnAp1WithDiagonalUsesOnlyTheDiagonalOfD() throws {
        for (k, density, seed) in [(5, 1.0, 91 as UInt64), (12, 0.5, 92)] {
            // Make sure every unit has a self-connection (the diagonal then matters).
            var model = try Fixtures.model(.rnn, hidden: k, density: density, seed: seed)
            let w = model.parameters.weightHH
            var rows: [Int] = [], columns: [Int] = [], values: [Double] = []
            for j in 0..<k {
                for q in Int(w.pattern.columnPointers[j])..<Int(w.pattern.columnPointers[j + 1]) {
                    rows.append(Int(w.pattern.rowIndices[q])); columns.append(j); values.append(w.values[q])
                }
                if !w.pattern.contains(row: j, column: j) { rows.append(j); columns.append(j); values.append(0.8) }
            }
            var parameters = model.parameters
            parameters.weightHH = try SparseMatrix(rowCount: k, columnCount: k, rows: rows, columns: columns, values: values,
                                                   duplicates: .reject)
            model = try Model(configuration: model.configuration, parameters: parameters)
            let sequence = try Fixtures.sequence(for: model, length: 30, seed: seed, scale: 1.5)
            let reference = Self.rnnReference(model, sequence, immediateOnly: false)
            let immediate = Self.rnnReference(model, sequence, immediateOnly: true)
            XCTAssertGreaterThan(relativeError(reference.gradient, immediate.gradient), 1e-6)
            for layout in InfluenceLayout.allCases {
                let snap1 = try sequenceGradient(model, sequence, .snap(1), layout: layout)
                XCTAssertRelativelyClose(snap1.gradient, reference.gradient, tolerance: 1e-12, "k=\(k) d=\(density) \(layout)")
            }
        }
    }

    /// TBPTT(1) backpropagates each step's loss through that step only: the immediate gradient,
    /// whatever the recurrent pattern.
    func testTBPTT1IsTheImmediateGradientForRNN() throws {
        for (k, density, seed) in [(5, 1.0, 101 as UInt64), (12, 0.5, 102), (16, 0.15, 103)] {
            let model = try Fixtures.model(.rnn, hidden: k, density: density, seed: seed)
            let sequence = try Fixtures.sequence(for: model, length: 25, seed: seed, scale: 1.5)
            let reference = Self.rnnReference(model, sequence, immediateOnly: true)
            let tbptt = try sequenceGradient(model, sequence, .tbptt(1))
            XCTAssertRelativelyClose(tbptt.gradient, reference.gradient, tolerance: 1e-12, "k=\(k) d=\(density)")
            XCTAssertLossesClose(tbptt.loss, reference.loss)
        }
    }
}

/// SnAp-n for the gated cells against a masked dense reference built from the test's own forward
/// pass: D_t and I_t by central finite differences of one `ReferenceNetwork` step, then
/// Ĵ_t = (D_t Ĵ_{t−1} + I_t) ⊙ M_n with M_n from the brute-force reach sets (entry (q, θ) kept iff
/// q's unit is within n − 1 hops of θ's unit; for the LSTM both h and c), and
/// g = Σ_t (∂L_t/∂s_t) Ĵ_t plus the readout's exact gradient.
final class SnApMaskedReferenceTests: XCTestCase {
    private func stateVector(_ s: ReferenceNetwork.State, _ cell: CellKind) -> [Double] { cell == .lstm ? s.h + s.c : s.h }

    private func state(_ v: [Double], _ cell: CellKind, k: Int) -> ReferenceNetwork.State {
        ReferenceNetwork.State(h: Array(v[..<k]), c: cell == .lstm ? Array(v[k...]) : [Double](repeating: 0, count: k),
                               y: [Double](repeating: 0, count: k))
    }

    private func reference(_ model: Model<Double>, _ sequence: LabelledSequence, order n: Int?) throws -> [Double] {
        let cell = model.cell, k = model.hiddenSize, o = model.outputSize
        let p = model.parameters, theta = p.flattened
        let components = cell.stateComponents, S = components * k
        let core = p.weightIH.nonzeroCount + p.weightHH.nonzeroCount + p.biasIH.count + p.biasHH.count
        // The unit every core parameter writes.
        var unitOf = p.weightIH.pattern.rowIndices.map { Int($0) % k } + p.weightHH.pattern.rowIndices.map { Int($0) % k }
        unitOf += (0..<p.biasIH.count).map { $0 % k } + (0..<p.biasHH.count).map { $0 % k }
        XCTAssertEqual(unitOf.count, core)
        // Brute-force reach: BFS over A (W_hh folded onto units, plus the diagonal for gated cells).
        var dependents = [[Int]](repeating: [], count: k) // dependents[j]: units i with A(i, j)
        for j in 0..<k {
            for r in p.weightHH.pattern.rows(inColumn: j) { dependents[j].append(Int(r) % k) }
            if cell != .rnn { dependents[j].append(j) }
        }
        var reach = [[Bool]](repeating: [Bool](repeating: false, count: k), count: k) // reach[i][u]: u ∈ R(i)
        for i in 0..<k {
            var frontier = [i], hops = 0
            reach[i][i] = true
            while !frontier.isEmpty && (n == nil || hops < n! - 1) {
                var next: [Int] = []
                for u in frontier { for v in dependents[u] where !reach[i][v] { reach[i][v] = true; next.append(v) } }
                frontier = next
                hops += 1
            }
        }
        func network(_ flat: [Double]) throws -> ReferenceNetwork {
            var q = p
            try q.setFlattened(flat)
            return ReferenceNetwork(try Model(configuration: model.configuration, parameters: q))
        }
        let base = ReferenceNetwork(model), eps = 1e-6
        let perturbed = try (0..<core).map { q -> (ReferenceNetwork, ReferenceNetwork) in
            var plus = theta, minus = theta
            plus[q] += eps
            minus[q] -= eps
            return (try network(plus), try network(minus))
        }
        var J = [[Double]](repeating: [Double](repeating: 0, count: core), count: S)
        var gradient = [Double](repeating: 0, count: theta.count)
        var s = [Double](repeating: 0, count: S)
        for t in 0..<sequence.count {
            let x = sequence.inputs[t]
            // D_t (S × S) and I_t (S × core) by central differences.
            var D = [[Double]](repeating: [Double](repeating: 0, count: S), count: S)
            for b in 0..<S {
                var plus = s, minus = s
                plus[b] += eps
                minus[b] -= eps
                let up = stateVector(base.step(state(plus, cell, k: k), x), cell)
                let down = stateVector(base.step(state(minus, cell, k: k), x), cell)
                for a in 0..<S { D[a][b] = (up[a] - down[a]) / (2 * eps) }
            }
            var next = J
            for q in 0..<core {
                let up = stateVector(perturbed[q].0.step(state(s, cell, k: k), x), cell)
                let down = stateVector(perturbed[q].1.step(state(s, cell, k: k), x), cell)
                for a in 0..<S {
                    guard reach[unitOf[q]][a % k] else { next[a][q] = 0; continue }
                    var sum = (up[a] - down[a]) / (2 * eps)
                    for b in 0..<S where D[a][b] != 0 { sum += D[a][b] * J[b][q] }
                    next[a][q] = sum
                }
            }
            J = next
            s = stateVector(base.step(state(s, cell, k: k), x), cell)
            let target = sequence.targets[t]
            guard target >= 0 else { continue }
            let h = Array(s[..<k])
            let dLogits = ReferenceNetwork.logitGradient(base.logits(h), target)
            let readoutStart = core
            for i in 0..<k {
                var w = 0.0 // ∂L_t/∂h_i
                for a in 0..<o {
                    w += p.readoutWeight.values[a + i * o] * dLogits[a]
                    gradient[readoutStart + a + i * o] += dLogits[a] * h[i]
                }
                for q in 0..<core { gradient[q] += w * J[i][q] }
            }
            for a in 0..<o { gradient[readoutStart + o * k + a] += dLogits[a] }
        }
        return gradient
    }

    private func check(_ cell: CellKind) throws {
        for (k, density, seed) in [(5, 0.3, 141 as UInt64), (7, 0.2, 142)] {
            let model = try Fixtures.model(cell, inputs: 2, hidden: k, outputs: 3, density: density, seed: seed)
            let sequence = try Fixtures.sequence(for: model, length: 10, seed: seed, scale: 1.5)
            var references: [[Double]] = []
            for n in [1, 2, 3, nil] as [Int?] {
                let method: GradientMethod = n.map { .snap($0) } ?? .rtrl
                let expected = try reference(model, sequence, order: n)
                references.append(expected)
                for layout in InfluenceLayout.allCases {
                    let got = try sequenceGradient(model, sequence, method, layout: layout)
                    XCTAssertRelativelyClose(got.gradient, expected, tolerance: 1e-7, "\(cell) k=\(k) d=\(density) \(method) \(layout)")
                }
            }
            // The orders really differ on these models (else the comparison could not tell them apart).
            XCTAssertGreaterThan(relativeError(references[0], references[1]), 1e-5, "\(cell) k=\(k): snap-1 = snap-2")
            XCTAssertGreaterThan(relativeError(references[0], references[3]), 1e-5, "\(cell) k=\(k): snap-1 = rtrl")
        }
    }

    func testRNNSnApMatchesMaskedReference() throws { try check(.rnn) }
    func testGRUSnApMatchesMaskedReference() throws { try check(.gru) }
    func testLSTMSnApMatchesMaskedReference() throws { try check(.lstm) }
}
