import Foundation
import RTRL
import XCTest

// Shared helpers for the RTRL tests: deterministic random models and sequences, an independent
// dense reference implementation of the cells and loss (contract §1–2), and error measures.

/// Random models and sequences from fixed seeds.
enum Fixtures {
    /// A random model of the given shape and weight density (`Model(random:)`).
    static func model(_ cell: CellKind, inputs n: Int = 3, hidden k: Int, outputs o: Int = 4, density: Double,
                      independentGateMasks: Bool = false, seed: UInt64) throws -> Model<Double> {
        let configuration = try ModelConfiguration(cell: cell, inputSize: n, hiddenSize: k, outputSize: o)
        return try Model<Double>(random: configuration, density: density, independentGateMasks: independentGateMasks,
                                 seed: seed)
    }

    /// T steps of inputs uniform in [−scale, scale] and targets uniform in 0..<o, about
    /// `unlabelled` of them −1 (no loss).
    static func sequence(inputs n: Int, outputs o: Int, length T: Int, seed: UInt64, scale: Double = 1.0,
                         unlabelled: Double = 0.2) throws -> LabelledSequence {
        var rng = SeededGenerator(seed: seed &+ 0x5EED)
        var inputs: [[Double]] = [], targets: [Int] = []
        for _ in 0..<T {
            inputs.append((0..<n).map { _ in Double.random(in: -scale...scale, using: &rng) })
            targets.append(Double.random(in: 0..<1, using: &rng) < unlabelled ? -1 : Int.random(in: 0..<o, using: &rng))
        }
        return try LabelledSequence(inputs: inputs, targets: targets, inputSize: n, outputSize: o)
    }

    /// A sequence that fits `model`.
    static func sequence<S>(for model: Model<S>, length T: Int, seed: UInt64, scale: Double = 1.0,
                            unlabelled: Double = 0.2) throws -> LabelledSequence {
        try sequence(inputs: model.inputSize, outputs: model.outputSize, length: T, seed: seed, scale: scale,
                     unlabelled: unlabelled)
    }

    /// The same model with different parameter values (patterns unchanged).
    static func replacing(_ model: Model<Double>, _ edit: (inout Parameters<Double>) -> Void) throws -> Model<Double> {
        var p = model.parameters
        edit(&p)
        return try Model(configuration: model.configuration, parameters: p)
    }

    /// The same model with a new `weight_hh`: `keep(row, column)` decides which stored entries stay.
    static func filteringRecurrent(_ model: Model<Double>, keep: (Int, Int) -> Bool) throws -> Model<Double> {
        let w = model.parameters.weightHH
        var rows: [Int] = [], columns: [Int] = [], values: [Double] = []
        for j in 0..<w.columnCount {
            for p in Int(w.pattern.columnPointers[j])..<Int(w.pattern.columnPointers[j + 1]) {
                let i = Int(w.pattern.rowIndices[p])
                if keep(i, j) { rows.append(i); columns.append(j); values.append(w.values[p]) }
            }
        }
        var parameters = model.parameters
        parameters.weightHH = try SparseMatrix(rowCount: w.rowCount, columnCount: w.columnCount, rows: rows,
                                               columns: columns, values: values, duplicates: .reject)
        return try Model(configuration: model.configuration, parameters: parameters)
    }

    /// Runs a whole sequence through an online learner (1 stream) and returns per-step activity:
    /// active and quiet units read from the step records, and (EGRU) the units whose new v lies
    /// within the pseudo-derivative's support, |v − ϑ| < 1/support, where H' is non-zero.
    static func activity(_ model: Model<Double>, _ sequence: LabelledSequence) throws -> [(active: Int, quiet: Int, inSupport: Int)] {
        let learner = try OnlineLearner(model: model, method: .rtrl)
        let width = 1 / (model.configuration.support ?? 1)
        var result: [(Int, Int, Int)] = []
        for t in 0..<sequence.count {
            try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            let r = learner.lastRecord(stream: 0)
            var inSupport = 0
            if model.cell == .egru {
                let v = learner.state(stream: 0)
                for i in 0..<model.hiddenSize where abs(v[i] - model.parameters.threshold[i]) < width { inSupport += 1 }
            }
            result.append((r.activeUnits, r.quietUnits, inSupport))
        }
        return result
    }
}

/// max |a − b| / max(max |a|, max |b|) (0 when both are zero).
func relativeError<S: BinaryFloatingPoint>(_ a: [S], _ b: [S]) -> Double {
    precondition(a.count == b.count, "relativeError: \(a.count) values against \(b.count)")
    var scale = 0.0, error = 0.0
    for (x, y) in zip(a, b) {
        scale = max(scale, abs(Double(x)), abs(Double(y)))
        error = max(error, abs(Double(x) - Double(y)))
    }
    return scale == 0 ? error : error / scale
}

func XCTAssertRelativelyClose<S: BinaryFloatingPoint>(_ a: [S], _ b: [S], tolerance: Double, _ message: @autoclosure () -> String = "",
                                                      file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        XCTFail("value counts differ: \(a.count) vs \(b.count) \(message())", file: file, line: line)
        return
    }
    XCTAssertTrue(a.allSatisfy { $0.isFinite } && b.allSatisfy { $0.isFinite }, "non-finite values \(message())",
                  file: file, line: line)
    let e = relativeError(a, b)
    XCTAssertLessThanOrEqual(e, tolerance, "relative error \(e) > \(tolerance) \(message())", file: file, line: line)
}

func XCTAssertLossesClose(_ a: Double, _ b: Double, tolerance: Double = 1e-12, _ message: @autoclosure () -> String = "",
                          file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(a.isFinite && b.isFinite, "non-finite loss \(a) / \(b) \(message())", file: file, line: line)
    XCTAssertLessThanOrEqual(abs(a - b), tolerance * max(1, abs(a), abs(b)), "losses \(a) vs \(b) \(message())",
                             file: file, line: line)
}

/// The gradient of a whole sequence, as a flat array in `Parameters.flattened` order.
func sequenceGradient<S: SparseScalar>(_ model: Model<S>, _ sequence: LabelledSequence, _ method: GradientMethod,
                                       threads: Int = 1, layout: InfluenceLayout = .unitBlocked,
                                       skipsQuietUnits: Bool = true) throws -> (loss: Double, gradient: [S]) {
    let g = try SequenceGradient(model: model, sequence: sequence, method: method, threads: threads, layout: layout,
                                 skipsQuietUnits: skipsQuietUnits)
    return (g.loss, g.gradient.flattened)
}

/// An independent, dense, plain-loop implementation of the forward pass and loss of contract
/// §1–2 (no code shared with the library beyond reading the parameter tensors).
struct ReferenceNetwork {
    let cell: CellKind
    let n: Int, k: Int, o: Int, gates: Int
    /// Dense column-major G·k × n and G·k × k.
    let wih: [Double], whh: [Double]
    let bih: [Double], bhh: [Double]
    /// Dense column-major o × k.
    let wro: [Double]
    let bro: [Double]
    let theta: [Double]
    let dampening: Double, support: Double

    init(_ model: Model<Double>) {
        let p = model.parameters
        cell = model.cell
        n = model.inputSize; k = model.hiddenSize; o = model.outputSize; gates = model.cell.gateCount
        wih = ReferenceNetwork.dense(p.weightIH)
        whh = ReferenceNetwork.dense(p.weightHH)
        bih = p.biasIH; bhh = p.biasHH
        wro = p.readoutWeight.values; bro = p.readoutBias; theta = p.threshold
        dampening = model.configuration.dampening ?? 0
        support = model.configuration.support ?? 1
    }

    /// Densifies by walking the compressed columns directly (independent of library helpers).
    static func dense(_ m: SparseMatrix<Double>) -> [Double] {
        var d = [Double](repeating: 0, count: m.rowCount * m.columnCount)
        let pattern = m.pattern
        for j in 0..<m.columnCount {
            for q in Int(pattern.columnPointers[j])..<Int(pattern.columnPointers[j + 1]) {
                d[Int(pattern.rowIndices[q]) + j * m.rowCount] = m.values[q]
            }
        }
        return d
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// The step's state: h (and c for the LSTM, y for the EGRU).
    struct State {
        var h: [Double]
        var c: [Double]
        var y: [Double]
    }

    func initialState() -> State {
        State(h: [Double](repeating: 0, count: k), c: [Double](repeating: 0, count: k), y: [Double](repeating: 0, count: k))
    }

    /// One step of contract §2's equations.
    func step(_ s: State, _ x: [Double]) -> State {
        let rows = gates * k
        var pi = bih, ph = bhh
        let feature = cell == .egru ? s.y : s.h
        for r in 0..<rows {
            for j in 0..<n { pi[r] += wih[r + j * rows] * x[j] }
            for j in 0..<k { ph[r] += whh[r + j * rows] * feature[j] }
        }
        var next = s
        for i in 0..<k {
            switch cell {
            case .rnn:
                next.h[i] = tanh(pi[i] + ph[i])
            case .gru, .egru:
                let r = ReferenceNetwork.sigmoid(pi[i] + ph[i])
                let z = ReferenceNetwork.sigmoid(pi[k + i] + ph[k + i])
                let nn = tanh(pi[2 * k + i] + r * ph[2 * k + i])
                let v = (1 - z) * nn + z * s.h[i]
                if cell == .gru {
                    next.h[i] = v
                } else {
                    let fire: Double = v - theta[i] > 0 ? 1 : 0
                    next.h[i] = v - fire * theta[i]
                    next.y[i] = fire * v
                }
            case .lstm:
                let ig = ReferenceNetwork.sigmoid(pi[i] + ph[i])
                let fg = ReferenceNetwork.sigmoid(pi[k + i] + ph[k + i])
                let gg = tanh(pi[2 * k + i] + ph[2 * k + i])
                let og = ReferenceNetwork.sigmoid(pi[3 * k + i] + ph[3 * k + i])
                next.c[i] = fg * s.c[i] + ig * gg
                next.h[i] = og * tanh(next.c[i])
            }
        }
        return next
    }

    /// What the readout reads: y for the EGRU, h otherwise.
    func output(_ s: State) -> [Double] { cell == .egru ? s.y : s.h }

    /// logits = W s + b.
    func logits(_ out: [Double]) -> [Double] {
        var l = bro
        for a in 0..<o { for i in 0..<k { l[a] += wro[a + i * o] * out[i] } }
        return l
    }

    /// Cross-entropy (natural log) of softmax(logits) at `target`.
    static func crossEntropy(_ logits: [Double], _ target: Int) -> Double {
        let m = logits.max()!
        let lse = m + log(logits.reduce(0) { $0 + exp($1 - m) })
        return lse - logits[target]
    }

    /// softmax(logits) − onehot(target).
    static func logitGradient(_ logits: [Double], _ target: Int) -> [Double] {
        let m = logits.max()!
        let e = logits.map { exp($0 - m) }
        let total = e.reduce(0, +)
        return e.enumerated().map { $0.element / total - ($0.offset == target ? 1 : 0) }
    }

    /// Total loss over the sequence from the zero state.
    func loss(_ sequence: LabelledSequence) -> Double {
        var s = initialState(), total = 0.0
        for t in 0..<sequence.count {
            s = step(s, sequence.inputs[t])
            if sequence.targets[t] >= 0 { total += ReferenceNetwork.crossEntropy(logits(output(s)), sequence.targets[t]) }
        }
        return total
    }
}

/// The loss of `sequence` under parameters given as a flat array (reference forward pass).
func referenceLoss(_ model: Model<Double>, flat: [Double], _ sequence: LabelledSequence) throws -> Double {
    var p = model.parameters
    try p.setFlattened(flat)
    return ReferenceNetwork(try Model(configuration: model.configuration, parameters: p)).loss(sequence)
}

extension Fixtures {
    /// Layer l of a stacked model as a single-layer model of its own (input size k for l ≥ 1).
    static func layer(of model: Model<Double>, _ l: Int) throws -> Model<Double> {
        let c = model.configuration, p = model.parameters
        let configuration = try ModelConfiguration(cell: c.cell, inputSize: l == 0 ? c.inputSize : c.hiddenSize, hiddenSize: c.hiddenSize,
                                                   outputSize: c.outputSize, dampening: c.dampening, support: c.support)
        let weights = l == 0 ? RecurrentLayerParameters(weightIH: p.weightIH, weightHH: p.weightHH, biasIH: p.biasIH, biasHH: p.biasHH,
                                                        threshold: p.threshold) : p.upperLayers[l - 1]
        return try Model(configuration: configuration, parameters: Parameters(
            weightIH: weights.weightIH, weightHH: weights.weightHH, biasIH: weights.biasIH, biasHH: weights.biasHH,
            readoutWeight: p.readoutWeight, readoutBias: p.readoutBias, threshold: weights.threshold))
    }
}
