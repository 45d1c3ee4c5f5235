/// A recurrent model: configuration, parameters, and the checks that tie them together.
public struct Model<Scalar: SparseScalar>: Sendable, Hashable {
    /// The cell and sizes (`config.json`). Assignment is not rechecked against `parameters`.
    public var configuration: ModelConfiguration
    /// Every trainable tensor, in the shapes `configuration` gives. Assignment is not rechecked:
    /// keep the shapes (and finite values) when changing them.
    public var parameters: Parameters<Scalar>

    /// Wraps parameters after checking every shape against the configuration and that every
    /// value is finite.
    public init(configuration: ModelConfiguration, parameters: Parameters<Scalar>) throws {
        self.configuration = configuration
        self.parameters = parameters
        try validate()
    }

    /// The recurrent cell (the configuration's).
    public var cell: CellKind { configuration.cell }
    /// k: the number of units (the configuration's).
    public var hiddenSize: Int { configuration.hiddenSize }
    /// n: the length of an input vector (the configuration's).
    public var inputSize: Int { configuration.inputSize }
    /// o: the number of readout outputs (the configuration's).
    public var outputSize: Int { configuration.outputSize }
    /// L: the number of stacked layers (the configuration's).
    public var layerCount: Int { configuration.layerCount }

    /// Layer l of a stacked model as a single-layer model (its input is layer l − 1's output for
    /// l ≥ 1; the readout is the model's): what one layer's step and Jacobians are computed from.
    func layerModel(_ l: Int) -> Model<Scalar> {
        var c = configuration
        c.layerCount = 1
        if l > 0 { c.inputSize = c.hiddenSize }
        let layer = parameters.layer(l)
        return try! Model(uncheckedConfiguration: c, parameters: Parameters(
            weightIH: layer.weightIH, weightHH: layer.weightHH, biasIH: layer.biasIH, biasHH: layer.biasHH,
            readoutWeight: parameters.readoutWeight, readoutBias: parameters.readoutBias, threshold: layer.threshold))
    }

    func validate() throws {
        let c = configuration, p = parameters
        let rows = c.gateRows
        func check(_ name: String, _ r: Int, _ cols: Int, _ er: Int, _ ec: Int) throws {
            guard r == er, cols == ec else {
                throw RTRLError.invalidModel("\(name) is \(r) × \(cols) but a \(c.cell.rawValue) with input_size \(c.inputSize), hidden_size \(c.hiddenSize) and output_size \(c.outputSize) needs \(er) × \(ec)")
            }
        }
        try check("weight_ih", p.weightIH.rowCount, p.weightIH.columnCount, rows, c.inputSize)
        try check("weight_hh", p.weightHH.rowCount, p.weightHH.columnCount, rows, c.hiddenSize)
        try check("bias_ih", p.biasIH.count, 1, rows, 1)
        try check("bias_hh", p.biasHH.count, 1, rows, 1)
        try check("readout_weight", p.readoutWeight.rowCount, p.readoutWeight.columnCount, c.outputSize, c.hiddenSize)
        try check("readout_bias", p.readoutBias.count, 1, c.outputSize, 1)
        if c.cell == .egru {
            try check("threshold", p.threshold.count, 1, c.hiddenSize, 1)
        } else if !p.threshold.isEmpty {
            throw RTRLError.invalidModel("only an egru has thresholds, but this \(c.cell.rawValue) has \(p.threshold.count)")
        }
        guard p.upperLayers.count == c.layerCount - 1 else {
            throw RTRLError.invalidModel("num_layers is \(c.layerCount) but the parameters hold \(p.upperLayers.count + 1) layers")
        }
        var tensors: [(String, [Scalar])] = [("weight_ih", p.weightIH.values), ("weight_hh", p.weightHH.values),
                                            ("bias_ih", p.biasIH), ("bias_hh", p.biasHH),
                                            ("readout_weight", p.readoutWeight.values), ("readout_bias", p.readoutBias),
                                            ("threshold", p.threshold)]
        for (index, layer) in p.upperLayers.enumerated() {
            let l = index + 1
            try check("weight_ih_l\(l)", layer.weightIH.rowCount, layer.weightIH.columnCount, rows, c.hiddenSize)
            try check("weight_hh_l\(l)", layer.weightHH.rowCount, layer.weightHH.columnCount, rows, c.hiddenSize)
            try check("bias_ih_l\(l)", layer.biasIH.count, 1, rows, 1)
            try check("bias_hh_l\(l)", layer.biasHH.count, 1, rows, 1)
            if c.cell == .egru {
                try check("threshold_l\(l)", layer.threshold.count, 1, c.hiddenSize, 1)
            } else if !layer.threshold.isEmpty {
                throw RTRLError.invalidModel("only an egru has thresholds, but layer \(l) of this \(c.cell.rawValue) has \(layer.threshold.count)")
            }
            tensors += [("weight_ih_l\(l)", layer.weightIH.values), ("weight_hh_l\(l)", layer.weightHH.values),
                        ("bias_ih_l\(l)", layer.biasIH), ("bias_hh_l\(l)", layer.biasHH), ("threshold_l\(l)", layer.threshold)]
        }
        for (name, values) in tensors {
            if let k = values.firstIndex(where: { !$0.isFinite }) {
                throw RTRLError.invalidModel("\(name) holds a non-finite value (\(values[k])) at position \(k)")
            }
        }
    }

    /// The same model in another precision.
    public func converted<Other: SparseScalar>(to: Other.Type = Other.self) -> Model<Other> {
        // Shapes are unchanged; values stay finite unless Float overflows, which validation reports.
        try! Model<Other>(uncheckedConfiguration: configuration, parameters: parameters.converted())
    }

    init(uncheckedConfiguration configuration: ModelConfiguration, parameters: Parameters<Scalar>) throws {
        self.configuration = configuration
        self.parameters = parameters
    }
}
