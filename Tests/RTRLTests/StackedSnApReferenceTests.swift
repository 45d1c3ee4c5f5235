import RTRL
import XCTest

/// SnAp-n and exact sparse RTRL on stacked models against a masked dense reference built from the
/// tests' own forward pass (contract §1b): the stack's state is every layer's state, layer 0
/// first; D_t (including the paths up the stack within the step) and I_t (a lower layer's
/// parameter's same-step effect on the layers above included) by central finite differences of
/// one stacked `ReferenceNetwork` step; Ĵ_t = (D_t Ĵ_{t−1} + I_t) ⊙ M_n with M_n from reach
/// sets found by brute force on the weight patterns (R_1: the parameter's unit and the units it
/// feeds up the stack within the step; each hop: a unit's readers through `weight_hh` or its own
/// state, then up the stack); g = Σ_t (∂L_t/∂s^{L−1}_t) Ĵ_t plus the readout's exact gradient.
final class StackedSnApReferenceTests: XCTestCase {
    private struct Stack {
        let layers: [ReferenceNetwork]
        let cell: CellKind, k: Int
        var components: Int { cell.stateComponents }
        var size: Int { components * k }

        func state(_ v: [Double], _ l: Int) -> ReferenceNetwork.State {
            let s = Array(v[(l * size)..<((l + 1) * size)])
            return ReferenceNetwork.State(h: Array(s[..<k]), c: cell == .lstm ? Array(s[k...]) : [Double](repeating: 0, count: k),
                                          y: [Double](repeating: 0, count: k))
        }
        /// One step of every layer, bottom-up; returns the new stacked state vector.
        func step(_ v: [Double], _ x: [Double]) -> [Double] {
            var input = x, out: [Double] = []
            for l in layers.indices {
                let next = layers[l].step(state(v, l), input)
                out += cell == .lstm ? next.h + next.c : next.h
                input = layers[l].output(next)
            }
            return out
        }
    }

    private func stack(_ model: Model<Double>, flat: [Double]) throws -> Stack {
        var p = model.parameters
        try p.setFlattened(flat)
        let m = try Model(configuration: model.configuration, parameters: p)
        return Stack(layers: try (0..<m.layerCount).map { ReferenceNetwork(try Fixtures.layer(of: m, $0)) }, cell: m.cell, k: m.hiddenSize)
    }

    /// For every flat parameter: its layer and unit (nil for the readout's).
    private func units(_ model: Model<Double>) -> [(layer: Int, unit: Int)?] {
        let p = model.parameters, k = model.hiddenSize
        func recurrent(_ l: Int, _ w: SparseMatrix<Double>, _ h: SparseMatrix<Double>, _ gk: Int) -> [(layer: Int, unit: Int)?] {
            w.pattern.rowIndices.map { (l, Int($0) % k) } + h.pattern.rowIndices.map { (l, Int($0) % k) }
                + (0..<2 * gk).map { (l, $0 % k) }
        }
        let gk = p.biasIH.count
        var result = recurrent(0, p.weightIH, p.weightHH, gk)
        result += [(layer: Int, unit: Int)?](repeating: nil, count: p.readoutWeight.values.count + p.readoutBias.count)
        for (index, layer) in p.upperLayers.enumerated() { result += recurrent(index + 1, layer.weightIH, layer.weightHH, gk) }
        XCTAssertEqual(result.count, p.count)
        return result
    }

    /// reach[(l·k + u)][(m·k + i)]: unit i of layer m is in R_n of unit u of layer l (nil order: closure).
    private func reach(_ model: Model<Double>, order n: Int?) -> [[Bool]] {
        let k = model.hiddenSize, L = model.layerCount, p = model.parameters
        var readers = [[Int]](repeating: [], count: L * k), upward = [[Int]](repeating: [], count: L * k)
        for l in 0..<L {
            let hh = l == 0 ? p.weightHH : p.upperLayers[l - 1].weightHH
            for j in 0..<k {
                for r in hh.pattern.rows(inColumn: j) { readers[l * k + j].append(l * k + Int(r) % k) }
                if model.cell != .rnn { readers[l * k + j].append(l * k + j) }
            }
            if l > 0 {
                let ih = p.upperLayers[l - 1].weightIH
                for j in 0..<k { for r in ih.pattern.rows(inColumn: j) { upward[(l - 1) * k + j].append(l * k + Int(r) % k) } }
            }
        }
        func up(_ set: inout [Bool]) {
            for v in 0..<L * k where set[v] { for w in upward[v] { set[w] = true } } // layer-major: one sweep closes
        }
        return (0..<L * k).map { start in
            var set = [Bool](repeating: false, count: L * k)
            set[start] = true
            up(&set)
            var hops = 0
            while n == nil || hops < n! - 1 {
                var next = set
                for v in 0..<L * k where set[v] { for w in readers[v] { next[w] = true } }
                up(&next)
                if next == set { break }
                set = next
                hops += 1
            }
            return set
        }
    }

    private func reference(_ model: Model<Double>, _ sequence: LabelledSequence, order n: Int?) throws -> [Double] {
        let k = model.hiddenSize, o = model.outputSize, L = model.layerCount, p = model.parameters, theta = p.flattened
        let unitOf = units(model), reached = reach(model, order: n)
        let base = try stack(model, flat: theta), S = L * base.size, top = (L - 1) * base.size
        let core = theta.indices.filter { unitOf[$0] != nil }
        let eps = 1e-6
        let perturbed = try core.map { q -> (Stack, Stack) in
            var plus = theta, minus = theta
            plus[q] += eps
            minus[q] -= eps
            return (try stack(model, flat: plus), try stack(model, flat: minus))
        }
        var J = [[Double]](repeating: [Double](repeating: 0, count: core.count), count: S)
        var gradient = [Double](repeating: 0, count: theta.count)
        var s = [Double](repeating: 0, count: S)
        let readoutStart = p.weightIH.nonzeroCount + p.weightHH.nonzeroCount + 2 * p.biasIH.count
        for t in 0..<sequence.count {
            let x = sequence.inputs[t]
            var D = [[Double]](repeating: [Double](repeating: 0, count: S), count: S)
            for b in 0..<S {
                var plus = s, minus = s
                plus[b] += eps
                minus[b] -= eps
                let a1 = base.step(plus, x), a2 = base.step(minus, x)
                for a in 0..<S { D[a][b] = (a1[a] - a2[a]) / (2 * eps) }
            }
            var next = J
            for (c, q) in core.enumerated() {
                let up = perturbed[c].0.step(s, x), down = perturbed[c].1.step(s, x)
                let owner = unitOf[q]!
                for a in 0..<S {
                    let unit = (a / base.size) * k + a % k
                    guard reached[owner.layer * k + owner.unit][unit] else { next[a][c] = 0; continue }
                    var sum = (up[a] - down[a]) / (2 * eps)
                    for b in 0..<S where D[a][b] != 0 { sum += D[a][b] * J[b][c] }
                    next[a][c] = sum
                }
            }
            J = next
            s = base.step(s, x)
            let target = sequence.targets[t]
            guard target >= 0 else { continue }
            let h = Array(s[top..<(top + k)])
            let dLogits = ReferenceNetwork.logitGradient(base.layers[L - 1].logits(h), target)
            for i in 0..<k {
                var w = 0.0
                for a in 0..<o {
                    w += p.readoutWeight.values[a + i * o] * dLogits[a]
                    gradient[readoutStart + a + i * o] += dLogits[a] * h[i]
                }
                for (c, q) in core.enumerated() { gradient[q] += w * J[top + i][c] }
            }
            for a in 0..<o { gradient[readoutStart + o * k + a] += dLogits[a] }
        }
        return gradient
    }

    private func check(_ cell: CellKind) throws {
        for (layers, k, density, seed) in [(2, 4, 0.4, 151 as UInt64), (3, 3, 0.5, 152)] {
            let configuration = try ModelConfiguration(cell: cell, inputSize: 2, hiddenSize: k, outputSize: 3, layerCount: layers)
            let model = try Model<Double>(random: configuration, density: density, seed: seed)
            let sequence = try Fixtures.sequence(for: model, length: 8, seed: seed, scale: 1.5)
            var references: [[Double]] = []
            for n in [1, 2, nil] as [Int?] {
                let method: GradientMethod = n.map { .snap($0) } ?? .rtrl
                let expected = try reference(model, sequence, order: n)
                references.append(expected)
                let got = try SequenceGradient(model: model, sequence: sequence, method: method).gradient.flattened
                XCTAssertRelativelyClose(got, expected, tolerance: 1e-7, "\(cell) L=\(layers) k=\(k) \(method)")
                // The pattern's size against the brute-force reach sets.
                let order: InfluencePattern.Order = n.map { .snap($0) } ?? .exact
                let pattern = try StackedInfluencePattern(model: model, order: order)
                let reached = reach(model, order: n), unitOf = units(model)
                let count = unitOf.compactMap { $0 }.reduce(0) { $0 + cell.stateComponents * reached[$1.layer * k + $1.unit].filter { $0 }.count }
                XCTAssertEqual(pattern.nonzeros, count, "\(cell) L=\(layers) \(order): entries")
            }
            XCTAssertGreaterThan(relativeError(references[0], references[1]), 1e-5, "\(cell) L=\(layers): snap-1 = snap-2")
            XCTAssertGreaterThan(relativeError(references[1], references[2]), 1e-6, "\(cell) L=\(layers): snap-2 = rtrl")
        }
    }

    func testRNNStackSnApMatchesMaskedReference() throws { try check(.rnn) }
    func testGRUStackSnApMatchesMaskedReference() throws { try check(.gru) }
    func testLSTMStackSnApMatchesMaskedReference() throws { try check(.lstm) }

    /// With one layer, the stacked pattern is the single-layer one.
    func testSingleLayerPatternIsTheSingleLayerOne() throws {
        for cell in [CellKind.rnn, .gru, .lstm, .egru] {
            let model = try Fixtures.model(cell, hidden: 9, density: 0.2, seed: 153)
            for order in [InfluencePattern.Order.snap(1), .snap(2), .snap(3), .exact] {
                let single = try ModelStructure(model).influencePattern(order)
                XCTAssertEqual(try StackedInfluencePattern(model: model, order: order).nonzeros, single.statistics.nonzeros, "\(cell) \(order)")
            }
        }
    }

    /// The pattern's entries and multiply-adds on a stack small enough to count by hand: two rnn
    /// layers of one unit, every weight stored. Layer 0's four parameters keep both units (R_1
    /// reaches up) and per column the update runs 5 multiply-adds: D at each layer (2), A into
    /// layer 1 (1), layer 0's output derivative handed up (1), the gradient at the top (1). Layer
    /// 1's four keep their own unit: D (1) and the gradient (1).
    func testPatternCountedByHand() throws {
        let configuration = try ModelConfiguration(cell: .rnn, inputSize: 1, hiddenSize: 1, outputSize: 2, layerCount: 2)
        let model = try Model<Double>(random: configuration, density: 1, seed: 154)
        for order in [InfluencePattern.Order.snap(1), .snap(2), .exact] {
            let pattern = try StackedInfluencePattern(model: model, order: order)
            XCTAssertEqual(pattern.nonzeros, 4 * 2 + 4 * 1, "\(order)")
            XCTAssertEqual(pattern.multiplyAddsPerStep, 4 * 5 + 4 * 2, "\(order)")
        }
    }
}
