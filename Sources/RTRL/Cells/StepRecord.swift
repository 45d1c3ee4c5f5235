/// Everything one step of a cell leaves behind for the gradient methods: the new state, the
/// readout input, and the step's Jacobians in factored form. Buffers are allocated once and
/// overwritten every step.
///
/// With G gates, k units, C state components (2 for the LSTM) and gate row r = g·k + i:
/// - `inputCoefficient[c·G·k + r]` = ∂s'_(c,i) / ∂(input pre-activation of gate g at unit i):
///   the immediate Jacobian of `weight_ih[r, j]` is this times x_j, of `bias_ih[r]` this alone;
/// - `recurrentCoefficient[c·G·k + r]` = ∂s'_(c,i) / ∂(recurrent pre-activation of gate g at i):
///   the immediate Jacobian of `weight_hh[r, j]` is this times `recurrentFeature[j]`, of
///   `bias_hh[r]` this alone; and D((c,i), (0,j)) = Σ_g this · weight_hh[r, j] · `columnScale[j]`;
/// - `selfTerm[s·k + i]`: D's own-state entries (DependencyGraph.selfTerms[s]) at unit i.
/// The EGRU (state v) adds the threshold terms: `thresholdPreviousOutput[j]` = ∂y_{t−1,j}/∂ϑ_j,
/// `thresholdSelf[j]` = ∂v'_j/∂ϑ_j through h_{t−1,j}, and `thresholdOutput[j]` = ∂y_{t,j}/∂ϑ_j.
public struct StepRecord<Scalar: SparseScalar>: Sendable, Codable, Hashable {
    /// The step's input x_t (n values).
    public internal(set) var input: [Scalar]
    /// What `weight_hh` multiplies this step (k values): h_{t−1}, or for the EGRU its previous
    /// output y_{t−1} (zero at t = 1).
    public internal(set) var recurrentFeature: [Scalar]
    /// `weight_ih · x + bias_ih`, gate row by gate row (G·k values).
    public internal(set) var inputPreactivation: [Scalar]
    /// `weight_hh · recurrentFeature + bias_hh`, gate row by gate row (G·k values).
    public internal(set) var recurrentPreactivation: [Scalar]
    /// ∂s'_(c,i) / ∂(input pre-activation of gate row r), at `[c·G·k + r]` (C·G·k values).
    public internal(set) var inputCoefficient: [Scalar]
    /// ∂s'_(c,i) / ∂(recurrent pre-activation of gate row r), at `[c·G·k + r]` (C·G·k values).
    public internal(set) var recurrentCoefficient: [Scalar]
    /// D's own-state entries, `[s·k + i]` for self term s at unit i (one block of k values per
    /// entry of `DependencyGraph.selfTerms`).
    public internal(set) var selfTerm: [Scalar]
    /// ∂(recurrent feature j)/∂(previous state j) (k values): 1 except for the EGRU, where it is
    /// ∂y_{t−1,j}/∂v_{t−1,j} (0 at t = 1).
    public internal(set) var columnScale: [Scalar]
    /// The new state s_t.
    public internal(set) var state: [Scalar]
    /// What the readout reads: h_t (y_t for the EGRU).
    public internal(set) var output: [Scalar]
    /// ∂output_i/∂s_(c,i) for every state variable (c, i).
    public internal(set) var outputScale: [Scalar]
    /// EGRU only: ∂y_{t−1,j}/∂ϑ_j (k values; empty for the other cells).
    public internal(set) var thresholdPreviousOutput: [Scalar]
    /// EGRU only: ∂v'_j/∂ϑ_j through h_{t−1,j} (k values; empty for the other cells).
    public internal(set) var thresholdSelf: [Scalar]
    /// EGRU only: ∂y_{t,j}/∂ϑ_j (k values; empty for the other cells).
    public internal(set) var thresholdOutput: [Scalar]
    /// Per component c, `[inputCoefficient (G·k) | recurrentCoefficient (G·k) | 0]`
    /// (C·(2·G·k + 1) values): the immediate Jacobian of parameter t for component c is
    /// `immediateCoefficients[c·(2·G·k+1) + coefficientIndex[t]] · immediateFeatures[featureIndex[t]]`
    /// (`ParameterLayout`).
    public internal(set) var immediateCoefficients: [Scalar]
    /// The features `[x | recurrentFeature | 1]` (n + k + 1 values) that `immediateCoefficients`
    /// multiply.
    public internal(set) var immediateFeatures: [Scalar]
    /// Units that emitted an event (EGRU) or all units.
    public internal(set) var activeUnits: Int = 0
    /// Units whose recurrent column of D and immediate recurrent terms vanish this step (EGRU:
    /// silent at t−1 and outside the pseudo-derivative's support).
    public internal(set) var quietUnits: Int = 0

    /// Buffers for one step of a cell, all zero (allocated once, overwritten every step).
    public init(cell: CellKind, inputSize n: Int, hiddenSize k: Int, selfTermCount: Int) {
        let gk = cell.gateCount * k, c = cell.stateComponents
        input = .init(repeating: 0, count: n)
        recurrentFeature = .init(repeating: 0, count: k)
        inputPreactivation = .init(repeating: 0, count: gk)
        recurrentPreactivation = .init(repeating: 0, count: gk)
        inputCoefficient = .init(repeating: 0, count: c * gk)
        recurrentCoefficient = .init(repeating: 0, count: c * gk)
        selfTerm = .init(repeating: 0, count: selfTermCount * k)
        columnScale = .init(repeating: 1, count: k)
        state = .init(repeating: 0, count: c * k)
        output = .init(repeating: 0, count: k)
        outputScale = .init(repeating: 0, count: c * k)
        immediateCoefficients = .init(repeating: 0, count: c * (2 * gk + 1))
        immediateFeatures = .init(repeating: 1, count: n + k + 1)
        let t = cell == .egru ? k : 0
        thresholdPreviousOutput = .init(repeating: 0, count: t)
        thresholdSelf = .init(repeating: 0, count: t)
        thresholdOutput = .init(repeating: 0, count: t)
    }
}
