import Foundation

/// The `config.json` of a model directory (<doc:TheModelDirectory>): the cell, the three sizes
/// and, for the EGRU, its pseudo-derivative.
public struct ModelConfiguration: Codable, Hashable, Sendable {
    /// The recurrent cell (`cell`).
    public var cell: CellKind
    /// n: the length of an input vector (`input_size`).
    public var inputSize: Int
    /// k: the number of units (`hidden_size`).
    public var hiddenSize: Int
    /// o: the number of readout outputs, the classes of the loss (`output_size`).
    public var outputSize: Int
    /// EGRU pseudo-derivative height (default 0.7).
    public var dampening: Double?
    /// EGRU pseudo-derivative inverse width (default 1.0).
    public var support: Double?

    enum CodingKeys: String, CodingKey {
        case cell
        case inputSize = "input_size"
        case hiddenSize = "hidden_size"
        case outputSize = "output_size"
        case dampening, support
    }

    /// A configuration after checking its sizes (1 to `maximumSize`) and, for the EGRU, its
    /// pseudo-derivative (defaults: dampening 0.7, support 1.0).
    public init(cell: CellKind, inputSize: Int, hiddenSize: Int, outputSize: Int,
                dampening: Double? = nil, support: Double? = nil) throws {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.outputSize = outputSize
        self.dampening = cell == .egru ? (dampening ?? 0.7) : nil
        self.support = cell == .egru ? (support ?? 1.0) : nil
        try validate()
    }

    /// Reads `config.json`, with the same checks and defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cell = try c.decode(CellKind.self, forKey: .cell)
        inputSize = try c.decode(Int.self, forKey: .inputSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        outputSize = try c.decode(Int.self, forKey: .outputSize)
        dampening = cell == .egru ? (try c.decodeIfPresent(Double.self, forKey: .dampening) ?? 0.7) : nil
        support = cell == .egru ? (try c.decodeIfPresent(Double.self, forKey: .support) ?? 1.0) : nil
        try validate()
    }

    /// The largest sizes accepted: every weight block must fit 32-bit indices.
    public static let maximumSize = 1 << 24

    func validate() throws {
        for (name, value) in [("input_size", inputSize), ("hidden_size", hiddenSize), ("output_size", outputSize)] {
            guard value >= 1, value <= ModelConfiguration.maximumSize else {
                throw RTRLError.invalidModel("\(name) must be between 1 and \(ModelConfiguration.maximumSize), not \(value)")
            }
        }
        if cell == .egru {
            guard let d = dampening, d.isFinite, d >= 0, let s = support, s.isFinite, s > 0 else {
                throw RTRLError.invalidModel("egru needs a finite dampening ≥ 0 and a finite support > 0")
            }
        }
    }

    /// G · k: rows of the stacked weight matrices.
    public var gateRows: Int { cell.gateCount * hiddenSize }
    /// State variables (k, or 2k for the LSTM).
    public var stateSize: Int { cell.stateComponents * hiddenSize }
}
