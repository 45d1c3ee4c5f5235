import Foundation

/// Random initialisation of new models (`rtrl init`).
///
/// Masks: each weight block keeps every entry independently with probability `density`. By
/// default one mask is drawn per matrix and shared by all of its gate blocks, so the one-step
/// Jacobian is as sparse as one block (the union of independent per-gate masks is much denser);
/// `independentGateMasks` draws each block separately. Every unit keeps at least one recurrent
/// input (one is added at random where the draw left a row empty).
///
/// Values: PyTorch's default for `RNNCell`/`GRUCell`/`LSTMCell`, U(−1/√k, 1/√k) for weights and
/// biases, with k replaced by the expected fan-in of the sparse recurrent block (density · k, at
/// least 1) so that a sparse layer keeps the scale of a dense one; the readout is PyTorch's
/// `Linear` default, U(−1/√k, 1/√k). EGRU thresholds are drawn from Beta(3, 7) (mean 0.3, as the
/// EGRU authors initialise them).
extension Model {
    /// A new model with random masks of the given density and random values (see above), drawn
    /// from `seed`. Refuses, before drawing, a model whose weights would not fit in memory.
    ///
    /// Values are drawn in `Double` and rounded to `Scalar`, so a `Float` model is the `Double`
    /// model of the same seed, rounded.
    public init(random configuration: ModelConfiguration, density: Double, independentGateMasks: Bool = false,
                seed: UInt64) throws {
        guard density.isFinite, density > 0, density <= 1 else {
            throw RTRLError.invalidOption("the density must be in (0, 1], not \(density)")
        }
        let k = configuration.hiddenSize, n = configuration.inputSize, gates = configuration.cell.gateCount
        // Refuse, before drawing anything, a model whose weights would not fit: about
        // density · G·k·(k + n) stored entries of 8 bytes plus 4-byte indices.
        let layers = configuration.layerCount
        let expected = density * Double(gates * k) * (Double(k + n) + Double(layers - 1) * Double(2 * k))
        let bytes = expected * 12 + Double(configuration.outputSize * k) * 8
        let budget = Double(MaskedProductPlan.defaultMemoryBudget)
        guard expected < Double(Int32.max), bytes <= budget else {
            throw RTRLError.tooLarge(what: "a \(configuration.cell.rawValue) with \(k) units at density \(density) (about \(Int(expected)) weights)",
                                     neededBytes: Int(min(bytes, Double(Int.max / 2))), budgetBytes: Int(budget))
        }
        var rng = SeededGenerator(seed: seed)
        let scale = 1 / max(1, density * Double(k)).squareRoot()

        func mask(rows: Int, columns: Int, atLeastOnePerRow: Bool) -> [[Int]] {
            (0..<rows).map { _ in
                var kept = (0..<columns).filter { _ in Double.random(in: 0..<1, using: &rng) < density }
                if kept.isEmpty && atLeastOnePerRow { kept = [Int.random(in: 0..<columns, using: &rng)] }
                return kept
            }
        }
        func stacked(columns: Int, atLeastOnePerRow: Bool) throws -> SparseMatrix<Double> {
            let shared = mask(rows: k, columns: columns, atLeastOnePerRow: atLeastOnePerRow)
            var rows: [Int] = [], cols: [Int] = [], values: [Double] = []
            for g in 0..<gates {
                let block = independentGateMasks && g > 0 ? mask(rows: k, columns: columns, atLeastOnePerRow: atLeastOnePerRow) : shared
                for i in 0..<k {
                    for j in block[i] {
                        rows.append(g * k + i); cols.append(j)
                        values.append(Double.random(in: -scale...scale, using: &rng))
                    }
                }
            }
            return try SparseMatrix(rowCount: gates * k, columnCount: columns, rows: rows, columns: cols,
                                    values: values, duplicates: .reject)
        }
        let weightHH = try stacked(columns: k, atLeastOnePerRow: true)
        let weightIH = try stacked(columns: n, atLeastOnePerRow: false)
        let bias = { (count: Int) in (0..<count).map { _ in Double.random(in: -scale...scale, using: &rng) } }
        let biasIH = bias(gates * k), biasHH = bias(gates * k)
        let readoutScale = 1 / Double(k).squareRoot()
        let readout = try DenseMatrix(rowCount: configuration.outputSize, columnCount: k,
                                      values: (0..<configuration.outputSize * k).map { _ in Double.random(in: -readoutScale...readoutScale, using: &rng) })
        let readoutBias = (0..<configuration.outputSize).map { _ in Double.random(in: -readoutScale...readoutScale, using: &rng) }
        let threshold = configuration.cell == .egru ? (0..<k).map { _ in rng.nextBeta(3, 7) } : []
        // Layers 1 … L − 1 after everything a single layer draws (so layer 0 and the readout are
        // the single-layer model's), each as layer 0 is, its input weights reading k outputs.
        var upperLayers: [RecurrentLayerParameters<Double>] = []
        for _ in 1..<max(1, layers) {
            let weightHH = try stacked(columns: k, atLeastOnePerRow: true)
            let weightIH = try stacked(columns: k, atLeastOnePerRow: false)
            let biasIH = bias(gates * k), biasHH = bias(gates * k)
            let threshold = configuration.cell == .egru ? (0..<k).map { _ in rng.nextBeta(3, 7) } : []
            upperLayers.append(RecurrentLayerParameters(weightIH: weightIH, weightHH: weightHH, biasIH: biasIH, biasHH: biasHH,
                                                        threshold: threshold))
        }
        try self.init(configuration: configuration, parameters: Parameters<Double>(
            weightIH: weightIH, weightHH: weightHH, biasIH: biasIH, biasHH: biasHH,
            readoutWeight: readout, readoutBias: readoutBias, threshold: threshold,
            upperLayers: upperLayers).converted(to: Scalar.self))
    }
}

extension SeededGenerator {
    /// A Gamma(shape, 1) draw (Marsaglia and Tsang's method; shape ≥ 1).
    mutating func nextGamma(_ shape: Double) -> Double {
        let d = shape - 1.0 / 3.0, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat { x = nextGaussian(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = Double.random(in: 0..<1, using: &self)
            if u < 1 - 0.0331 * x * x * x * x || Foundation.log(u) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) {
                return d * v
            }
        }
    }

    /// A Beta(a, b) draw (a, b ≥ 1).
    mutating func nextBeta(_ a: Double, _ b: Double) -> Double {
        let x = nextGamma(a), y = nextGamma(b)
        return x / (x + y)
    }
}
