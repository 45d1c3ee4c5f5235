/// The structure of one step of a cell: which unit depends on which (the unit graph A of
/// <doc:SnApPatterns>), and the fixed pattern of the one-step Jacobian D = ∂s_t/∂s_{t−1} over state
/// variables.
///
/// State variables are numbered component-major: for the LSTM, h_0 … h_{k−1} then
/// c_0 … c_{k−1}; for the other cells the k unit states. D's pattern is the union of the
/// recurrent gate blocks' patterns (for every output component) plus the cell's own-state terms
/// (GRU's and EGRU's z ⊙ h, LSTM's f ⊙ c and its effect on h).
public struct DependencyGraph: Sendable {
    /// The cell whose step the graph describes.
    public let cell: CellKind
    /// k: the number of units.
    public let hiddenSize: Int
    /// State variables, S = components · k.
    public let stateSize: Int
    /// Unit-level graph A (k × k): A(i, j) stored iff unit i's new state depends on unit j's old
    /// state. Column j lists the units that depend on j.
    public let units: SparsityPattern
    /// Pattern of Dᵀ (S × S): column q lists the state variables row q of D depends on. (The
    /// influence update multiplies by Dᵀ; its values are computed on this pattern.)
    public let jacobianTransposed: SparsityPattern
    /// For every stored entry p of `weight_hh` and output component c: the position in Dᵀ's
    /// values of D((c, unit of p's row), (h, p's column)). Indexed `c * nnz(W_hh) + p`.
    public let recurrentTarget: [Int32]
    /// Own-state terms: (output component, input component) pairs the cell has.
    public let selfTerms: [(output: Int, input: Int)]
    /// For every self term s and unit i: the position in Dᵀ's values. Indexed `s * k + i`.
    public let selfTarget: [Int32]

    /// The graph and D's pattern for a cell with the given `weight_hh` pattern.
    public init(cell: CellKind, recurrentPattern w: SparsityPattern, hiddenSize k: Int) {
        self.cell = cell
        self.hiddenSize = k
        let components = cell.stateComponents
        self.stateSize = components * k
        let selfTerms: [(output: Int, input: Int)]
        switch cell {
        case .rnn: selfTerms = []
        case .gru, .egru: selfTerms = [(0, 0)]
        case .lstm: selfTerms = [(0, 1), (1, 1)] // ∂h'/∂c and ∂c'/∂c
        }
        self.selfTerms = selfTerms

        // Unit-level A: W_hh rows folded onto units, plus the diagonal for cells that carry state.
        var unitEntries: [(row: Int, column: Int)] = []
        for j in 0..<w.columnCount { for r in w.rows(inColumn: j) { unitEntries.append((Int(r) % k, j)) } }
        if cell.carriesOwnState { for i in 0..<k { unitEntries.append((i, i)) } }
        self.units = try! SparsityPattern(rowCount: k, columnCount: k, entries: unitEntries)

        // Dᵀ: entry (q_in, q_out) for D(q_out, q_in).
        var entries: [(row: Int, column: Int)] = []
        for j in 0..<w.columnCount {
            for r in w.rows(inColumn: j) {
                for c in 0..<components { entries.append((j, c * k + Int(r) % k)) } // input h_j
            }
        }
        for (o, i) in selfTerms { for u in 0..<k { entries.append((i * k + u, o * k + u)) } }
        let dt = try! SparsityPattern(rowCount: stateSize, columnCount: stateSize, entries: entries)
        self.jacobianTransposed = dt

        var recurrentTarget = [Int32](repeating: 0, count: components * w.nonzeroCount)
        for j in 0..<w.columnCount {
            for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                let i = Int(w.rowIndices[p]) % k
                for c in 0..<components {
                    recurrentTarget[c * w.nonzeroCount + p] = Int32(dt.position(row: j, column: c * k + i)!)
                }
            }
        }
        self.recurrentTarget = recurrentTarget
        var selfTarget = [Int32](repeating: 0, count: selfTerms.count * k)
        for (s, term) in selfTerms.enumerated() {
            for u in 0..<k {
                selfTarget[s * k + u] = Int32(dt.position(row: term.input * k + u, column: term.output * k + u)!)
            }
        }
        self.selfTarget = selfTarget
    }

    /// The unit a state variable belongs to.
    @inlinable public func unit(ofState q: Int) -> Int { q % hiddenSize }
}
