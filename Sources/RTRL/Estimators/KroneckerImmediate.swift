/// A cell's immediate Jacobian as one Kronecker product, I_t = ĥ_tᵀ ⊗ Δ_t, the form the
/// Kronecker-sum estimators (KF-RTRL, OK) take in.
///
/// Every parameter θ except an EGRU threshold writes one gate row r of one unit i, and its
/// immediate Jacobian is `immediateFeatures[featureIndex[θ]]` times the coefficient column of r
/// (`StepRecord.immediateCoefficients`): non-zero at unit i of every state component. So with
/// ĥ = `immediateFeatures` ([x; recurrent feature; 1], F values) and Δ the S × m matrix whose
/// column e holds the coefficients of one coefficient family at its unit,
/// I_t[q, θ] = ĥ[f(θ)] · Δ[q, column(θ)]. A pair (feature, column) that is no parameter (a masked
/// weight, an input feature paired with a recurrent column) is simply never read.
///
/// Columns: one per gate row for the input weights and biases (G·k), and one more per gate row
/// whose recurrent coefficient differs from its input one (G·k + …). Only the GRU's and EGRU's
/// candidate gate differs (the reset gate multiplies W_hn h + b_hn), so m is k for the rnn, 4k for
/// the lstm (S = 2k: h and c), and 4k for the gru and egru; every other recurrent coefficient is the
/// input one and shares its column (`CellStep` sets them equal; OK's exactness tests on the gated
/// cells fail if a column is merged wrongly).
///
/// The EGRU's thresholds ϑ_j are not of this form (ϑ_j moves y_{t−1,j}, so its column reaches every
/// unit j feeds): the estimators keep their k columns of J exactly, adding their immediate terms
/// with `ThresholdImmediate`.
struct KroneckerImmediate: Sendable {
    /// S: state variables (C·k).
    let stateCount: Int
    let hiddenSize: Int
    let components: Int
    /// m: columns of Δ.
    let columnCount: Int
    /// For every column: its unit, and its coefficient's index in a component's block of
    /// `StepRecord.immediateCoefficients` (stride 2·G·k + 1).
    let columnUnit: [Int32]
    let columnCoefficient: [Int32]
    /// For every parameter: its column, or −1 for a threshold.
    let columnOfParameter: [Int32]
    /// The coefficient stride 2·G·k + 1.
    let stride: Int
    /// EGRU: for every unit j the parameter index of ϑ_j; empty for the other cells.
    let thresholdParameter: [Int32]

    init(structure: ModelStructure) {
        let layout = structure.layout, cell = structure.graph.cell, k = layout.hiddenSize
        let gates = cell.gateCount, gk = gates * k
        hiddenSize = k
        components = cell.stateComponents
        stateCount = components * k
        stride = 2 * gk + 1
        // Coefficient index → column: input rows keep their index; a recurrent row shares its
        // input row's column unless its gate's recurrent coefficient differs.
        var columnOf = [Int32](repeating: -1, count: 2 * gk)
        var unit: [Int32] = [], coefficient: [Int32] = []
        for r in 0..<gk {
            columnOf[r] = Int32(r); unit.append(Int32(r % k)); coefficient.append(Int32(r))
        }
        for r in 0..<gk {
            if cell.recurrentCoefficientDiffers(gate: r / k) {
                columnOf[gk + r] = Int32(unit.count); unit.append(Int32(r % k)); coefficient.append(Int32(gk + r))
            } else {
                columnOf[gk + r] = Int32(r)
            }
        }
        columnCount = unit.count
        columnUnit = unit
        columnCoefficient = coefficient
        columnOfParameter = (0..<layout.count).map { t in
            layout.source[t] == .threshold ? -1 : columnOf[Int(layout.coefficientIndex[t])]
        }
        thresholdParameter = EstimatorSupport.thresholdParameters(layout)
    }

    /// out += scale · Δ_t (S × m, row-major).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func addCoefficients<Scalar: SparseScalar>(_ record: StepRecord<Scalar>, scale: Scalar, into out: UnsafeMutableBufferPointer<Scalar>) {
        let m = columnCount, k = hiddenSize, stride = self.stride
        columnUnit.withUnsafeBufferPointer { unit in
            columnCoefficient.withUnsafeBufferPointer { ci in
                record.immediateCoefficients.withUnsafeBufferPointer { coef in
                    for e in 0..<columnCount {
                        for c in 0..<components { out[(c * k + Int(unit[e])) * m + e] += scale * coef[c * stride + Int(ci[e])] }
                    }
                }
            }
        }
    }

    /// ‖Δ_t‖_F², accumulated in Double.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func coefficientSquaredNorm<Scalar: SparseScalar>(_ record: StepRecord<Scalar>) -> Double {
        var sum = 0.0
        for e in 0..<columnCount {
            for c in 0..<components {
                let v = Double(record.immediateCoefficients[c * stride + Int(columnCoefficient[e])])
                sum += v * v
            }
        }
        return sum
    }
}

extension CellKind {
    /// Whether gate g's coefficient for its recurrent pre-activation differs from the one for its
    /// input pre-activation: only the GRU's and EGRU's candidate gate n, whose recurrent part is
    /// multiplied by the reset gate.
    func recurrentCoefficientDiffers(gate g: Int) -> Bool {
        switch self {
        case .rnn, .lstm: return false
        case .gru, .egru: return g == 2
        }
    }
}
