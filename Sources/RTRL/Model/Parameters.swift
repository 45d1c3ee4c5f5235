/// Every trainable tensor of a model, in the layouts of the model directory
/// (<doc:TheModelDirectory>).
/// A gradient has the same shape and is stored in the same type.
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

    /// Parameters from their tensors (shapes are checked when they become a `Model`).
    public init(weightIH: SparseMatrix<Scalar>, weightHH: SparseMatrix<Scalar>, biasIH: [Scalar], biasHH: [Scalar],
                readoutWeight: DenseMatrix<Scalar>, readoutBias: [Scalar], threshold: [Scalar]) {
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
                   readoutBias: readoutBias.map { _ in 0 }, threshold: threshold.map { _ in 0 })
    }

    /// The same values in another precision.
    public func converted<Other: SparseScalar>(to: Other.Type = Other.self) -> Parameters<Other> {
        Parameters<Other>(weightIH: weightIH.converted(), weightHH: weightHH.converted(),
                          biasIH: biasIH.map { Other($0) }, biasHH: biasHH.map { Other($0) },
                          readoutWeight: readoutWeight.converted(), readoutBias: readoutBias.map { Other($0) },
                          threshold: threshold.map { Other($0) })
    }

    /// Every value, tensor after tensor (weight_ih, weight_hh, bias_ih, bias_hh, readout weight,
    /// readout bias, threshold): for norms, comparisons and optimisers.
    public var flattened: [Scalar] {
        weightIH.values + weightHH.values + biasIH + biasHH + readoutWeight.values + readoutBias + threshold
    }

    /// Number of values in `flattened`.
    public var count: Int {
        weightIH.nonzeroCount + weightHH.nonzeroCount + biasIH.count + biasHH.count
            + readoutWeight.values.count + readoutBias.count + threshold.count
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
    }

    /// The named tensors with their values, for reports and file output.
    public var isFinite: Bool { flattened.allSatisfy { $0.isFinite } }
}
