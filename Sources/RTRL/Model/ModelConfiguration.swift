import Foundation

/// The `config.json` of a model directory (<doc:TheModelDirectory>): the cell, the three sizes,
/// the number of stacked layers and, for the EGRU, its pseudo-derivative.
public struct ModelConfiguration: Codable, Hashable, Sendable {
    /// The recurrent cell (`cell`).
    public var cell: CellKind
    /// n: the length of an input vector (`input_size`).
    public var inputSize: Int
    /// k: the number of units (`hidden_size`).
    public var hiddenSize: Int
    /// o: the number of readout outputs, the classes of the loss (`output_size`).
    public var outputSize: Int
    /// L: the number of stacked layers (`num_layers`, default 1), each of `hiddenSize` units.
    /// Layer 0 reads the input, layer l ≥ 1 reads layer l − 1's output of the same step, and the
    /// readout reads the top layer.
    public var layerCount: Int
    /// EGRU pseudo-derivative height (default 0.7).
    public var dampening: Double?
    /// EGRU pseudo-derivative inverse width (default 1.0).
    public var support: Double?

    enum CodingKeys: String, CodingKey {
        case cell
        case inputSize = "input_size"
        case hiddenSize = "hidden_size"
        case outputSize = "output_size"
        case layerCount = "num_layers"
        case dampening, support
    }

    /// A configuration after checking its sizes (1 to `maximumSize`), its layers (1 to
    /// `maximumLayers`) and, for the EGRU, its pseudo-derivative (defaults: dampening 0.7,
    /// support 1.0).
    public init(cell: CellKind, inputSize: Int, hiddenSize: Int, outputSize: Int, layerCount: Int = 1,
                dampening: Double? = nil, support: Double? = nil) throws {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.outputSize = outputSize
        self.layerCount = layerCount
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
        layerCount = try c.decodeIfPresent(Int.self, forKey: .layerCount) ?? 1
        dampening = cell == .egru ? (try c.decodeIfPresent(Double.self, forKey: .dampening) ?? 0.7) : nil
        support = cell == .egru ? (try c.decodeIfPresent(Double.self, forKey: .support) ?? 1.0) : nil
        try validate()
    }

    /// Writes `config.json`; `num_layers` only for a stacked model, so a single-layer model's
    /// file is unchanged.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cell, forKey: .cell)
        try c.encode(inputSize, forKey: .inputSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(outputSize, forKey: .outputSize)
        if layerCount != 1 { try c.encode(layerCount, forKey: .layerCount) }
        try c.encodeIfPresent(dampening, forKey: .dampening)
        try c.encodeIfPresent(support, forKey: .support)
    }

    /// The largest sizes accepted: every weight block must fit 32-bit indices.
    public static let maximumSize = 1 << 24
    /// The most stacked layers accepted.
    public static let maximumLayers = 64

    func validate() throws {
        for (name, value) in [("input_size", inputSize), ("hidden_size", hiddenSize), ("output_size", outputSize)] {
            guard value >= 1, value <= ModelConfiguration.maximumSize else {
                throw RTRLError.invalidModel("\(name) must be between 1 and \(ModelConfiguration.maximumSize), not \(value)")
            }
        }
        guard layerCount >= 1, layerCount <= ModelConfiguration.maximumLayers else {
            throw RTRLError.invalidModel("num_layers must be between 1 and \(ModelConfiguration.maximumLayers), not \(layerCount)")
        }
        if cell == .egru {
            guard let d = dampening, d.isFinite, d >= 0, let s = support, s.isFinite, s > 0 else {
                throw RTRLError.invalidModel("egru needs a finite dampening ≥ 0 and a finite support > 0")
            }
        }
    }

    /// G · k: rows of the stacked weight matrices.
    public var gateRows: Int { cell.gateCount * hiddenSize }
    /// State variables of one layer (k, or 2k for the LSTM).
    public var stateSize: Int { cell.stateComponents * hiddenSize }
    /// Whether the model stacks more than one layer.
    public var isStacked: Bool { layerCount > 1 }
}
