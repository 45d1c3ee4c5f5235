/// The recurrent cells the package implements, with PyTorch's gate order and equations
/// (<doc:TheModelDirectory>).
public enum CellKind: String, Codable, CaseIterable, Sendable {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    case rnn
    /// PyTorch's GRU (gates r, z, n; reset applied after the recurrent product).
    case gru
    /// PyTorch's LSTM (gates i, f, g, o); state (h, c).
    case lstm
    /// Event-based GRU: gates read the emitted output y = o ⊙ v; trainable thresholds ϑ.
    case egru

    /// Gate blocks stacked in the weight matrices (G).
    public var gateCount: Int {
        switch self {
        case .rnn: return 1
        case .gru, .egru: return 3
        case .lstm: return 4
        }
    }

    /// State variables per unit: 2 for the LSTM (h and c), 1 otherwise.
    public var stateComponents: Int { self == .lstm ? 2 : 1 }

    /// Whether a unit's new state depends on its own old state directly (not through the
    /// recurrent weights), which puts the diagonal into the one-step dependency graph.
    public var carriesOwnState: Bool { self != .rnn }
}
