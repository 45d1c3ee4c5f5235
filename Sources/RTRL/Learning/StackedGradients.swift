/// Gradients of a stacked model (L ≥ 2 layers of one cell; <doc:TheModelDirectory>): within a
/// step the layers run bottom-up, layer l ≥ 1 reading layer l − 1's output of the same step, and
/// the readout reads the top layer.
///
/// Every layer is stepped by the single-layer cell code (`CellStep`, on `Model.layerModel(l)`),
/// so its record holds its own one-step Jacobian D^l and immediate Jacobian I^l in factored form;
/// the layers are joined by A^l = ∂s^l_t/∂x^l_t (`StepJacobian.inputJacobian`) and by
/// ∂x^l_t/∂s^{l−1}_t, the layer below's output scale (for the EGRU, y also depends on the layer
/// below's thresholds directly: its `thresholdOutput`).
///
/// Methods:
/// - **BPTT and TBPTT-h** (blocks or sliding, as `BackpropagationHistory`): at each stored step,
///   top layer first, the adjoint a^l collects aᵀI^l into layer l's gradient, hands
///   e = A^lᵀ a^l to the layer below (times its output scale, and to its thresholds), then runs
///   back a step through D^lᵀ.
/// - **Dense exact RTRL**: J^l (layer l's state × the parameters of layers 0 … l) follows
///   J^l_t = D^l_t J^l_{t−1} + A^l_t M^{l−1}_t + [0 | I^l_t], with
///   M^{l−1} = ∂x^l/∂θ = diag(output scale) J^{l−1}_t (+ the threshold term), the own-layer
///   columns by `DenseInfluence`, the columns of lower layers here; the gradient is
///   w^{L−1}ᵀ J^{L−1}.
/// - **Sparse exact RTRL and SnAp-n**: `StackedSparseInfluence` on a `StackedInfluencePattern`.
/// - **UORO** (`StackedUORO`), **KF-RTRL and OK-r** (`StackedKronecker`).
/// NoBackTrack refuses stacks (its per-row split would cost as much as dense RTRL here).
final class StackedGradients<Scalar: SparseScalar> {
    let layerCount: Int
    let cell: CellKind
    let hiddenSize: Int
    /// Layer l as a single-layer model; rebuilt by `refresh` when the parameters change.
    private(set) var layerModels: [Model<Scalar>] = []
    let structures: [ModelStructure]
    /// Where each layer's parameters start among the parameters of all layers (L + 1 values).
    let parameterStart: [Int]
    let thresholdParameter: [[Int32]]
    let window: Int?
    let sliding: Bool
    let isDense: Bool
    /// Sparse exact RTRL or SnAp-n (nil for the other methods).
    let sparse: StackedSparseInfluence<Scalar>?
    /// UORO (nil for the other methods).
    let uoro: StackedUORO<Scalar>?
    /// KF-RTRL or OK-r (nil for the other methods).
    let kronecker: StackedKronecker<Scalar>?

    final class Stream {
        var states: [[Scalar]]
        var isInitial = true
        var records: [StepRecord<Scalar>]
        /// Layer l's gradient, in its `ParameterLayout` order.
        var coreGradients: [[Scalar]]
        var readoutWeightGradient: [Scalar]
        var readoutBiasGradient: [Scalar]
        var outputGradient: [Scalar]
        var topStateWeights: [Scalar]
        var logits: [Double]
        var lastTarget = -1
        var loss = 0.0
        var failure: Error?
        // BPTT: records of the kept steps (layer by layer) and the top layer's loss weights.
        var history: [[StepRecord<Scalar>]] = []
        var historyWeights: [[Scalar]] = []
        var adjoints: [[Scalar]]
        var previousAdjoint: [Scalar]
        var inputAdjoint: [Scalar]
        var dynamicsTransposed: [[Scalar]]
        // Dense RTRL: layer l's columns of the layers below it (S × parameterStart[l]).
        var cross: [[Scalar]] = []
        var crossNext: [[Scalar]] = []
        var inputJacobian: [Scalar] = []
        var lowerOutput: [Scalar] = []

        init(stack: StackedGradients, model: Model<Scalar>) {
            let s = stack.cell.stateComponents * stack.hiddenSize, k = stack.hiddenSize, o = model.outputSize
            states = (0..<stack.layerCount).map { _ in [Scalar](repeating: 0, count: s) }
            records = (0..<stack.layerCount).map { l in
                StepRecord(cell: stack.cell, inputSize: l == 0 ? model.inputSize : k, hiddenSize: k,
                           selfTermCount: stack.structures[l].graph.selfTerms.count)
            }
            coreGradients = stack.structures.map { [Scalar](repeating: 0, count: $0.layout.count) }
            readoutWeightGradient = [Scalar](repeating: 0, count: o * k)
            readoutBiasGradient = [Scalar](repeating: 0, count: o)
            outputGradient = [Scalar](repeating: 0, count: k)
            topStateWeights = [Scalar](repeating: 0, count: s)
            logits = [Double](repeating: 0, count: o)
            adjoints = (0..<stack.layerCount).map { _ in [Scalar](repeating: 0, count: s) }
            previousAdjoint = [Scalar](repeating: 0, count: s)
            inputAdjoint = [Scalar](repeating: 0, count: k)
            dynamicsTransposed = stack.structures.map { [Scalar](repeating: 0, count: $0.graph.jacobianTransposed.nonzeroCount) }
            if stack.isDense {
                cross = (0..<stack.layerCount).map { [Scalar](repeating: 0, count: s * stack.parameterStart[$0]) }
                crossNext = cross
                inputJacobian = [Scalar](repeating: 0, count: s * k)
                lowerOutput = [Scalar](repeating: 0, count: k * stack.parameterStart[stack.layerCount - 1])
            }
        }
    }

    private(set) var streams: [Stream] = []
    /// Where each layer's tensors start in `Parameters.flattened` (indexed by
    /// `ParameterLayout.Source.rawValue`), and the readout's.
    let flatOffsets: [[Int]]
    let flatReadout: (weight: Int, bias: Int)
    /// A gradient per layer: scratch for reading a gradient with a history's losses added.
    var scratch: [[Scalar]]
    /// Dense RTRL: each layer's own columns (one `DenseInfluence` per layer, all streams).
    let ownInfluence: [DenseInfluence<Scalar>]

    /// The memory dense RTRL on a stack needs for `streams` streams, in bytes.
    static func denseBytes(structures: [ModelStructure], streams: Int) -> Int {
        var values = 0, start = 0
        for st in structures {
            let s = st.graph.stateSize
            values += 2 * s * st.layout.count + s * s + 2 * s * start
            start += st.layout.count
        }
        return streams * values * MemoryLayout<Scalar>.stride
    }

    /// `threads`: threads for one stream's sparse update (1 when the streams run in parallel).
    init(model: Model<Scalar>, method: GradientMethod, streams: Int, threads: Int, skipsQuietUnits: Bool = true, memoryBudget: Int,
         slidingTruncation: Bool, seed: UInt64) throws {
        layerCount = model.layerCount
        cell = model.cell
        hiddenSize = model.hiddenSize
        let views = (0..<model.layerCount).map { model.layerModel($0) }
        structures = views.map { ModelStructure($0) }
        var start = [0]
        for st in structures { start.append(start.last! + st.layout.count) }
        parameterStart = start
        thresholdParameter = structures.map { EstimatorSupport.thresholdParameters($0.layout) }
        scratch = structures.map { [Scalar](repeating: 0, count: $0.layout.count) }
        // Parameters.flattened: layer 0's weight_ih, weight_hh, bias_ih, bias_hh, the readout's weight
        // and bias, layer 0's thresholds; then each upper layer's weight_ih, weight_hh, biases, thresholds.
        var offsets: [[Int]] = [], next = 0, readout = (weight: 0, bias: 0)
        for l in 0..<model.layerCount {
            let layer = model.parameters.layer(l)
            let ih = next, hh = ih + layer.weightIH.nonzeroCount, bih = hh + layer.weightHH.nonzeroCount, bhh = bih + layer.biasIH.count
            var th = bhh + layer.biasHH.count
            if l == 0 {
                readout = (th, th + model.parameters.readoutWeight.values.count)
                th = readout.bias + model.parameters.readoutBias.count
            }
            offsets.append([ih, hh, bih, bhh, th])
            next = th + layer.threshold.count
        }
        flatOffsets = offsets
        flatReadout = readout
        var order: InfluencePattern.Order?, isUORO = false, kroneckerRank: (optimal: Bool, rank: Int)?
        switch method {
        case .kfRTRL: window = nil; isDense = false; kroneckerRank = (false, 1)
        case .ok(let r): window = nil; isDense = false; kroneckerRank = (true, r)
        case .uoro: window = nil; isDense = false; isUORO = true
        case .bptt: window = nil; isDense = false
        case .tbptt(let h): window = h; isDense = false
        case .rtrlDense: window = nil; isDense = true
        case .rtrl: window = nil; isDense = false; order = .exact
        case .snap(let n): window = nil; isDense = false; order = .snap(n)
        case .noBackTrack:
            throw RTRLError.invalidOption("nobacktrack does not run on stacked models (num_layers \(model.layerCount)): its split of I_t by state variable needs each row's norm, and on a stack a row spans every lower layer's parameters (O(S·p) a step, the cost of dense RTRL); stacked models take every other method")

        }
        let layerStructures = structures
        if let order {
            sparse = try StackedSparseInfluence(structures: layerStructures, weightIH: views.map(\.parameters.weightIH.pattern), order: order,
                                                streams: streams, threads: threads, skipsQuietUnits: skipsQuietUnits,
                                                memoryBudget: memoryBudget)
        } else {
            sparse = nil
        }
        kronecker = try kroneckerRank.map {
            try StackedKronecker(optimal: $0.optimal, rank: $0.rank, models: views, structures: layerStructures, streams: streams, seed: seed,
                                 memoryBudget: memoryBudget)
        }
        uoro = isUORO ? try StackedUORO(structures: layerStructures, parameterStart: start, thresholdParameter: thresholdParameter,
                                        streams: streams, seed: seed, memoryBudget: memoryBudget) : nil
        sliding = slidingTruncation && window != nil
        if isDense {
            let needed = StackedGradients.denseBytes(structures: structures, streams: streams)
            guard needed <= memoryBudget else {
                throw RTRLError.tooLarge(what: "dense RTRL on \(model.layerCount) stacked layers (\(start.last!) parameters)",
                                         neededBytes: needed, budgetBytes: memoryBudget)
            }
            ownInfluence = try structures.map { try DenseInfluence(structure: $0, streams: streams, memoryBudget: memoryBudget) }
        } else {
            ownInfluence = []
        }
        layerModels = views
        self.streams = (0..<streams).map { _ in Stream(stack: self, model: model) }
    }

    /// Rebuilds the layer views after the model's parameters changed.
    func refresh(from model: Model<Scalar>) {
        layerModels.removeAll(keepingCapacity: true)
        for l in 0..<layerCount { layerModels.append(model.layerModel(l)) }
    }

    /// Drops the layer views, so that the model's arrays can be changed in place (then `refresh`).
    func releaseViews() { layerModels.removeAll(keepingCapacity: true) }
}
