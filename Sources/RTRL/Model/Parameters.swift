/// The recurrent tensors of one layer above the bottom one in a stacked model (files with the
/// suffix `_l{l}`, l ≥ 1): its input is the layer below's output, so `weightIH` is G·k × k.
public struct RecurrentLayerParameters<Scalar: SparseScalar>: Sendable, Hashable {
    /// Input weights, G·k × k (they read the layer below), gate blocks stacked.
    public var weightIH: SparseMatrix<Scalar>
    /// Recurrent weights, G·k × k, gate blocks stacked.
    public var weightHH: SparseMatrix<Scalar>
    /// Input bias, G·k.
    public var biasIH: [Scalar]
    /// Recurrent bias, G·k.
    public var biasHH: [Scalar]
    /// Event thresholds ϑ, k (egru only; empty otherwise).
    public var threshold: [Scalar]

    /// A layer from its tensors (shapes are checked when they become part of a `Model`).
    public init(weightIH: SparseMatrix<Scalar>, weightHH: SparseMatrix<Scalar>, biasIH: [Scalar], biasHH: [Scalar],
                threshold: [Scalar]) {
        self.weightIH = weightIH
        self.weightHH = weightHH
        self.biasIH = biasIH
        self.biasHH = biasHH
        self.threshold = threshold
    }

    /// Every value: weight_ih, weight_hh, bias_ih, bias_hh, threshold.
    public var flattened: [Scalar] { weightIH.values + weightHH.values + biasIH + biasHH + threshold }
    /// Number of values in `flattened`.
    public var count: Int { weightIH.nonzeroCount + weightHH.nonzeroCount + biasIH.count + biasHH.count + threshold.count }
}

/// Every trainable tensor of a model, in the layouts of the model directory
/// (<doc:TheModelDirectory>).
/// A gradient has the same shape and is stored in the same type.
///
/// The unsuffixed tensors are the bottom layer's (layer 0, the only one of a single-layer model)
/// and the readout's; a stacked model's layers 1 … L − 1 are ``upperLayers``.
public struct Parameters<Scalar: SparseScalar>: Sendable, Hashable {
    /// Input weights, G·k × n, gate blocks stacked; the stored entries are the parameters.
    public var weightIH: SparseMatrix<Scalar>
    /// Recurrent weights, G·k × k, gate blocks stacked; the stored entries are the parameters.
    public var weightHH: SparseMatrix<Scalar>
    /// Input bias, G·k.
    public var biasIH: [Scalar]
    /// Recurrent bias, G·k.
    public var biasHH: [Scalar]
    /// Readout weights, o × k (dense).
    public var readoutWeight: DenseMatrix<Scalar>
    /// Readout bias, o.
    public var readoutBias: [Scalar]
    /// Event thresholds ϑ, k (egru only; empty otherwise).
    public var threshold: [Scalar]
    /// A stacked model's layers 1 … L − 1, bottom to top (empty for a single layer).
    public var upperLayers: [RecurrentLayerParameters<Scalar>]

    /// Parameters from their tensors (shapes are checked when they become a `Model`).
    public init(weightIH: SparseMatrix<Scalar>, weightHH: SparseMatrix<Scalar>, biasIH: [Scalar], biasHH: [Scalar],
                readoutWeight: DenseMatrix<Scalar>, readoutBias: [Scalar], threshold: [Scalar],
                upperLayers: [RecurrentLayerParameters<Scalar>] = []) {
        self.upperLayers = upperLayers
        self.weightIH = weightIH
        self.weightHH = weightHH
        self.biasIH = biasIH
        self.biasHH = biasHH
        self.readoutWeight = readoutWeight
        self.readoutBias = readoutBias
        self.threshold = threshold
    }

    /// The same structure with every value zero (a gradient accumulator).
    public func zeros() -> Parameters {
        Parameters(weightIH: SparseMatrix(zerosOn: weightIH.pattern), weightHH: SparseMatrix(zerosOn: weightHH.pattern),
                   biasIH: biasIH.map { _ in 0 }, biasHH: biasHH.map { _ in 0 },
                   readoutWeight: DenseMatrix(zeros: readoutWeight.rowCount, readoutWeight.columnCount),
                   readoutBias: readoutBias.map { _ in 0 }, threshold: threshold.map { _ in 0 },
                   upperLayers: upperLayers.map {
                       RecurrentLayerParameters(weightIH: SparseMatrix(zerosOn: $0.weightIH.pattern), weightHH: SparseMatrix(zerosOn: $0.weightHH.pattern),
                                                biasIH: $0.biasIH.map { _ in 0 }, biasHH: $0.biasHH.map { _ in 0 }, threshold: $0.threshold.map { _ in 0 })
                   })
    }

    /// The same values in another precision.
    public func converted<Other: SparseScalar>(to: Other.Type = Other.self) -> Parameters<Other> {
        Parameters<Other>(weightIH: weightIH.converted(), weightHH: weightHH.converted(),
                          biasIH: biasIH.map { Other($0) }, biasHH: biasHH.map { Other($0) },
                          readoutWeight: readoutWeight.converted(), readoutBias: readoutBias.map { Other($0) },
                          threshold: threshold.map { Other($0) },
                          upperLayers: upperLayers.map {
                              RecurrentLayerParameters<Other>(weightIH: $0.weightIH.converted(), weightHH: $0.weightHH.converted(),
                                                              biasIH: $0.biasIH.map { Other($0) }, biasHH: $0.biasHH.map { Other($0) },
                                                              threshold: $0.threshold.map { Other($0) })
                          })
    }

    /// Every value, tensor after tensor (weight_ih, weight_hh, bias_ih, bias_hh, readout weight,
    /// readout bias, threshold; then each upper layer's weight_ih, weight_hh, bias_ih, bias_hh,
    /// threshold): for norms, comparisons and optimisers.
    public var flattened: [Scalar] {
        weightIH.values + weightHH.values + biasIH + biasHH + readoutWeight.values + readoutBias + threshold
            + upperLayers.flatMap(\.flattened)
    }

    /// Number of values in `flattened`.
    public var count: Int {
        weightIH.nonzeroCount + weightHH.nonzeroCount + biasIH.count + biasHH.count
            + readoutWeight.values.count + readoutBias.count + threshold.count + upperLayers.reduce(0) { $0 + $1.count }
    }

    /// Replaces every value from a flat array in the order of `flattened`.
    ///
    /// Throws, changing nothing, unless `values` holds exactly ``count`` values.
    public mutating func setFlattened(_ values: [Scalar]) throws {
        guard values.count == count else {
            throw RTRLError.invalidInput("a flat parameter array for these parameters has \(count) values, not \(values.count)")
        }
        var offset = 0
        func take(_ n: Int) -> [Scalar] { defer { offset += n }; return Array(values[offset..<offset + n]) }
        weightIH.values = take(weightIH.nonzeroCount)
        weightHH.values = take(weightHH.nonzeroCount)
        biasIH = take(biasIH.count)
        biasHH = take(biasHH.count)
        readoutWeight.values = take(readoutWeight.values.count)
        readoutBias = take(readoutBias.count)
        threshold = take(threshold.count)
        for l in upperLayers.indices {
            upperLayers[l].weightIH.values = take(upperLayers[l].weightIH.nonzeroCount)
            upperLayers[l].weightHH.values = take(upperLayers[l].weightHH.nonzeroCount)
            upperLayers[l].biasIH = take(upperLayers[l].biasIH.count)
            upperLayers[l].biasHH = take(upperLayers[l].biasHH.count)
            upperLayers[l].threshold = take(upperLayers[l].threshold.count)
        }
    }

    /// Layer l's recurrent tensors (l = 0 is the bottom layer).
    func layer(_ l: Int) -> RecurrentLayerParameters<Scalar> {
        l == 0 ? RecurrentLayerParameters(weightIH: weightIH, weightHH: weightHH, biasIH: biasIH, biasHH: biasHH, threshold: threshold)
            : upperLayers[l - 1]
    }

    /// The named tensors with their values, for reports and file output.
    public var isFinite: Bool { flattened.allSatisfy { $0.isFinite } }
}
