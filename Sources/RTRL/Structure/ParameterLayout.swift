/// The core parameters θ of a model (every stored entry of `weight_ih` and `weight_hh`, both
/// biases, and the EGRU thresholds) numbered so that the parameters writing one unit are
/// adjacent: unit 0's parameters, then unit 1's, and so on. Within a unit, gate by gate: the
/// stored entries of that gate's `weight_ih` row (by column), of its `weight_hh` row (by column),
/// its `bias_ih` entry and its `bias_hh` entry; the EGRU threshold last.
///
/// Every parameter of unit i has the same influence pattern (<doc:SnApPatterns>), so this numbering
/// makes those columns of the influence matrix one contiguous block.
public struct ParameterLayout: Sendable {
    /// Where a parameter lives and what multiplies it in the immediate Jacobian.
    public enum Source: UInt8, Sendable {
        /// A stored entry of `weight_ih`; its immediate Jacobian is an input coefficient times x_j.
        case inputWeight = 0
        /// A stored entry of `weight_hh`; its immediate Jacobian is a recurrent coefficient times
        /// the recurrent feature j.
        case recurrentWeight
        /// An entry of `bias_ih`; its immediate Jacobian is an input coefficient alone.
        case inputBias
        /// An entry of `bias_hh`; its immediate Jacobian is a recurrent coefficient alone.
        case recurrentBias
        /// An EGRU threshold ϑ_i; its immediate Jacobian comes from the step's threshold terms.
        case threshold
    }

    /// The cell whose parameters are numbered.
    public let cell: CellKind
    /// k: the number of units.
    public let hiddenSize: Int
    /// n: the length of an input vector (`weight_ih`'s column count).
    public let inputSize: Int
    /// Number of core parameters, p.
    public let count: Int
    /// Parameters of unit i are `unitStart[i] ..< unitStart[i + 1]`.
    public let unitStart: [Int32]
    /// For every parameter: its source tensor.
    public let source: [Source]
    /// For every parameter: its gate row g·k + i in the stacked tensors (the unit for thresholds).
    public let gateRow: [Int32]
    /// For every parameter: the feature index it multiplies (input column, or recurrent column);
    /// −1 for biases and thresholds.
    public let feature: [Int32]
    /// For every parameter: its position in its tensor's value array (a sparse matrix's storage
    /// position, or a vector index).
    public let storage: [Int32]
    /// For every parameter: where its immediate-Jacobian coefficient sits in a component's block
    /// of `StepRecord.immediateCoefficients` (2·G·k + 1 values: r for input weights and biases of
    /// gate row r, G·k + r for recurrent ones, 2·G·k, the 0, for thresholds). With `featureIndex`,
    /// the immediate term is a branch-free gather.
    public let coefficientIndex: [Int32]
    /// For every parameter: where the feature it multiplies sits in
    /// `StepRecord.immediateFeatures` (`[x | recurrentFeature | 1]`): j for `weight_ih[·, j]`,
    /// n + j for `weight_hh[·, j]`, and n + k (the constant 1) for biases and thresholds.
    public let featureIndex: [Int32]

    /// Builds the numbering from the weight patterns.
    public init(cell: CellKind, inputPattern: SparsityPattern, recurrentPattern: SparsityPattern, hiddenSize k: Int) {
        self.cell = cell
        self.hiddenSize = k
        self.inputSize = inputPattern.columnCount
        let gates = cell.gateCount
        let ihRows = RowListing(inputPattern), hhRows = RowListing(recurrentPattern)
        var unitStart = [Int32](repeating: 0, count: k + 1)
        var source: [Source] = [], gateRow: [Int32] = [], feature: [Int32] = [], storage: [Int32] = []
        let total = inputPattern.nonzeroCount + recurrentPattern.nonzeroCount + 2 * gates * k + (cell == .egru ? k : 0)
        source.reserveCapacity(total); gateRow.reserveCapacity(total); feature.reserveCapacity(total); storage.reserveCapacity(total)
        for i in 0..<k {
            for g in 0..<gates {
                let r = g * k + i
                for (column, position) in ihRows.entries(ofRow: r) {
                    source.append(.inputWeight); gateRow.append(Int32(r)); feature.append(column); storage.append(position)
                }
                for (column, position) in hhRows.entries(ofRow: r) {
                    source.append(.recurrentWeight); gateRow.append(Int32(r)); feature.append(column); storage.append(position)
                }
                source.append(.inputBias); gateRow.append(Int32(r)); feature.append(-1); storage.append(Int32(r))
                source.append(.recurrentBias); gateRow.append(Int32(r)); feature.append(-1); storage.append(Int32(r))
            }
            if cell == .egru {
                source.append(.threshold); gateRow.append(Int32(i)); feature.append(-1); storage.append(Int32(i))
            }
            unitStart[i + 1] = Int32(source.count)
        }
        // Coefficients: [input rows (G·k) | recurrent rows (G·k) | 0]; features: [x (n) | φ (k) | 1].
        let gk = gates * k, n = inputPattern.columnCount
        coefficientIndex = (0..<source.count).map { t in
            switch source[t] {
            case .inputWeight, .inputBias: return gateRow[t]
            case .recurrentWeight, .recurrentBias: return Int32(gk) + gateRow[t]
            case .threshold: return Int32(2 * gk)
            }
        }
        featureIndex = (0..<source.count).map { t in
            switch source[t] {
            case .inputWeight: return feature[t]
            case .recurrentWeight: return Int32(n) + feature[t]
            case .inputBias, .recurrentBias, .threshold: return Int32(n + k)
            }
        }
        self.count = source.count
        self.unitStart = unitStart
        self.source = source
        self.gateRow = gateRow
        self.feature = feature
        self.storage = storage
    }

    /// Parameters writing unit i (f_i).
    @inlinable public func parameterCount(ofUnit i: Int) -> Int { Int(unitStart[i + 1] - unitStart[i]) }

    /// Gathers θ from a model's tensors.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func gather<Scalar>(_ p: Parameters<Scalar>) -> [Scalar] {
        let ih = p.weightIH.values, hh = p.weightHH.values
        return [Scalar](unsafeUninitializedCapacity: count) { theta, initialised in
            for t in 0..<count {
                let s = Int(storage[t])
                switch source[t] {
                case .inputWeight: theta[t] = ih[s]
                case .recurrentWeight: theta[t] = hh[s]
                case .inputBias: theta[t] = p.biasIH[s]
                case .recurrentBias: theta[t] = p.biasHH[s]
                case .threshold: theta[t] = p.threshold[s]
                }
            }
            initialised = count
        }
    }

    /// Adds θ-ordered values (a core gradient) into a model-shaped accumulator.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func scatterAdd<Scalar>(_ theta: UnsafeBufferPointer<Scalar>, into p: inout Parameters<Scalar>) {
        // Each tensor's storage is reached once: an element-wise `values[s] +=` through the
        // matrices' observed `values` property would copy the array at every write.
        p.weightIH.values.withUnsafeMutableBufferPointer { ih in
            p.weightHH.values.withUnsafeMutableBufferPointer { hh in
                p.biasIH.withUnsafeMutableBufferPointer { bih in
                    p.biasHH.withUnsafeMutableBufferPointer { bhh in
                        p.threshold.withUnsafeMutableBufferPointer { th in
                            for t in 0..<count {
                                let s = Int(storage[t])
                                switch source[t] {
                                case .inputWeight: ih[s] += theta[t]
                                case .recurrentWeight: hh[s] += theta[t]
                                case .inputBias: bih[s] += theta[t]
                                case .recurrentBias: bhh[s] += theta[t]
                                case .threshold: th[s] += theta[t]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Row-wise access to a compressed-column pattern: the (column, storage position) pairs of a row.
struct RowListing {
    let rowStart: [Int32]
    let columns: [Int32]
    let positions: [Int32]

    init(_ pattern: SparsityPattern) {
        var start = [Int32](repeating: 0, count: pattern.rowCount + 1)
        for i in pattern.rowIndices { start[Int(i) + 1] += 1 }
        for i in 0..<pattern.rowCount { start[i + 1] += start[i] }
        var next = start
        var columns = [Int32](repeating: 0, count: pattern.nonzeroCount)
        var positions = [Int32](repeating: 0, count: pattern.nonzeroCount)
        for j in 0..<pattern.columnCount {
            for p in Int(pattern.columnPointers[j])..<Int(pattern.columnPointers[j + 1]) {
                let i = Int(pattern.rowIndices[p])
                columns[Int(next[i])] = Int32(j)
                positions[Int(next[i])] = Int32(p)
                next[i] += 1
            }
        }
        rowStart = start
        self.columns = columns
        self.positions = positions
    }

    func entries(ofRow r: Int) -> Zip2Sequence<ArraySlice<Int32>, ArraySlice<Int32>> {
        let range = Int(rowStart[r])..<Int(rowStart[r + 1])
        return zip(columns[range], positions[range])
    }
}

extension ParameterLayout {
    /// Where parameter t lies in a flat vector of a model's tensors (`Parameters.flattened`)
    /// whose tensor of source s starts at `offsets[s.rawValue]`.
    @inline(__always)
    func flatIndex(_ t: Int, offsets: [Int]) -> Int { offsets[Int(source[t].rawValue)] + Int(storage[t]) }
}
