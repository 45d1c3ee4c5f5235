import Foundation

/// Online gradient computation for a recurrent model: feed one step (an input and a target per
/// stream), get the loss, and read the running gradient at any time.
///
/// The weights are held fixed between `setParameters` calls, so over a sequence the accumulated
/// gradient of an exact method equals BPTT's. Streams are independent sequences sharing the
/// weights (one influence state each, one plan for all). Everything a step needs is allocated
/// when the learner is built; a step allocates nothing for the influence-tracking methods (BPTT
/// stores one record per step, by nature).
///
/// Threads: with several streams, streams run in parallel; with one stream, the influence
/// update is split by panels of its blocks (or columns, in the generic layout). Each number is
/// computed by one thread in a fixed order, so results are bit-identical for any thread count.
/// The influence layouts (and the EGRU's scaled form) sum the same terms in different orders, so
/// they agree to rounding.
public final class OnlineLearner<Scalar: SparseScalar> {
    /// The model whose gradient is computed; its parameters change only by `setParameters`.
    public internal(set) var model: Model<Scalar>
    /// The gradient method the learner runs.
    public let method: GradientMethod
    /// The model's parameter numbering and dependency graph, fixed by its weight patterns (for a
    /// stacked model, its bottom layer's).
    public let structure: ModelStructure
    /// Number of independent streams.
    public let streamCount: Int
    /// The influence pattern (SnAp and sparse RTRL), nil otherwise (and for stacked models).
    public let influencePattern: InfluencePattern?
    /// A stacked model's influence pattern (SnAp and sparse RTRL), nil otherwise.
    public var stackedInfluencePattern: StackedInfluencePattern? {
        if case .stacked(let stack) = tracker { return stack.sparse?.pattern }
        return nil
    }
    /// Steps taken since the learner was built.
    public internal(set) var stepCount = 0

    /// One stream's state and accumulators (separate objects so streams run concurrently).
    final class Stream {
        var state: [Scalar]
        var isInitial = true
        var record: StepRecord<Scalar>
        var coreGradient: [Scalar]
        var readoutWeightGradient: [Scalar]
        var readoutBiasGradient: [Scalar]
        var outputGradient: [Scalar]
        var stateWeights: [Scalar]
        var logits: [Double]
        /// The target of the last step (−1: none); after a step with one, `logits` holds
        /// softmax − onehot(target).
        var lastTarget = -1
        var loss = 0.0
        var history: BackpropagationHistory<Scalar>?
        /// The error this stream's part of a threaded step threw, if any.
        var failure: Error?
        init(model: Model<Scalar>, structure: ModelStructure) {
            let k = model.hiddenSize, o = model.outputSize
            state = [Scalar](repeating: 0, count: structure.graph.stateSize)
            record = StepRecord(cell: model.cell, inputSize: model.inputSize, hiddenSize: k,
                                selfTermCount: structure.graph.selfTerms.count)
            coreGradient = [Scalar](repeating: 0, count: structure.layout.count)
            readoutWeightGradient = [Scalar](repeating: 0, count: o * k)
            readoutBiasGradient = [Scalar](repeating: 0, count: o)
            outputGradient = [Scalar](repeating: 0, count: k)
            stateWeights = [Scalar](repeating: 0, count: structure.graph.stateSize)
            logits = [Double](repeating: 0, count: o)
        }
    }

    enum Tracker {
        case sparse(any InfluenceStorage<Scalar>)
        case dense(DenseInfluence<Scalar>)
        case history
        case estimator(InfluenceEstimator<Scalar>)
        /// A stacked model (L ≥ 2): all of its layers' gradients.
        case stacked(StackedGradients<Scalar>)
    }

    let streams: [Stream]
    let tracker: Tracker
    /// Scratch for `gradient(into:)`.
    var core: [Scalar]
    let pool: WorkerPool?
    let thresholdParameter: [Int]

    /// Builds a learner.
    ///
    /// - Parameters:
    ///   - model: the model to train; its weight patterns and sizes are fixed for the learner's
    ///     life (its values change by `setParameters`).
    ///   - method: the gradient method (refused if its number is below 1, e.g. SnAp-0).
    ///   - streams: the number of independent streams (≥ 1), each with its own state.
    ///   - threads: threads (1 to 256): across streams with several streams, else within the
    ///     influence update of the one stream (for a stacked model, in its sparse update: rtrl
    ///     and snap-N).
    ///   - layout: storage of a sparse influence matrix (both give the same numbers).
    ///   - skipsQuietUnits: skip the influence terms of units whose column of D is zero this step
    ///     (EGRU activity sparsity; exact, on by default).
    ///   - memoryBudget: the most bytes the influence state may take; beyond it the initialiser
    ///     throws with the bytes needed.
    ///   - seed: the random stream of stochastic methods (stream b draws from its own generator
    ///     seeded from `seed` and b).
    ///   - slidingTruncation: for TBPTT(h), keep a sliding window of h steps and backpropagate
    ///     each loss through it when the gradient is read (online training), instead of blocks
    ///     of h steps (the default, as `rtrl grad` uses it).
    ///   - units: a shard (model parallelism): hold the influence blocks of these hidden units
    ///     only (a non-empty range; nil: all). The memory budget applies to the shard. The
    ///     gradient of the shard's units' parameters and of the readout is exact, the same
    ///     numbers as the whole learner's; other units' core parameters get only their direct
    ///     terms (exactly 0, except an EGRU threshold's direct path), and their true values come
    ///     from the shard that holds them. Only rtrl and snap-N, on one layer, in the
    ///     unit-blocked layout.
    ///   - firstStream: the learner's streams are streams firstStream, firstStream + 1, … of a
    ///     larger run (data parallelism): the stochastic methods' stream b draws what that run's
    ///     stream firstStream + b draws. One layer only.
    public init(model: Model<Scalar>, method: GradientMethod, streams: Int = 1, threads: Int = 1,
                layout: InfluenceLayout = .unitBlocked, skipsQuietUnits: Bool = true,
                memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget, seed: UInt64 = 0,
                slidingTruncation: Bool = false, units: Range<Int>? = nil, firstStream: Int = 0) throws {
        try method.validate()
        guard firstStream >= 0, firstStream == 0 || !model.configuration.isStacked else {
            throw RTRLError.invalidOption("the first stream must be ≥ 0, and 0 for a stacked model, not \(firstStream)")
        }
        if units != nil {
            switch method {
            case .rtrl, .snap: break
            default: throw RTRLError.invalidOption("only rtrl and snap-N hold their influence matrix in shards, not \(method)")
            }
            guard !model.configuration.isStacked else {
                throw RTRLError.invalidOption("a stacked model's influence matrices are not split into shards")
            }
            guard layout == .unitBlocked else {
                throw RTRLError.invalidOption("shards need the unit-blocked influence layout, not \(layout.rawValue)")
            }
        }
        guard streams >= 1 else { throw RTRLError.invalidOption("the number of streams must be at least 1, not \(streams)") }
        guard threads >= 1 && threads <= 256 else { throw RTRLError.invalidOption("threads must be between 1 and 256, not \(threads)") }
        self.model = model
        self.method = method
        self.streamCount = streams
        let structure = ModelStructure(model)
        self.structure = structure
        let planThreads = streams == 1 ? threads : 1
        var pattern: InfluencePattern? = nil
        if model.configuration.isStacked {
            tracker = .stacked(try StackedGradients(model: model, method: method, streams: streams, threads: planThreads,
                                                    skipsQuietUnits: skipsQuietUnits, memoryBudget: memoryBudget,
                                                    slidingTruncation: slidingTruncation, seed: seed))
        } else {
        switch method {
        case .rtrl, .snap:
            let order: InfluencePattern.Order
            if case .snap(let n) = method { order = .snap(n) } else { order = .exact }
            let p = try structure.influencePattern(order, units: units, memoryBudget: memoryBudget)
            pattern = p
            let weightHH = model.parameters.weightHH.pattern
            switch layout {
            case .unitBlocked where model.cell == .egru && skipsQuietUnits:
                tracker = .sparse(try ScaledInfluence<Scalar>(pattern: p, streams: streams, threads: planThreads, weightHH: weightHH,
                                                              memoryBudget: memoryBudget))
            case .unitBlocked:
                tracker = .sparse(try BlockedInfluence<Scalar>(pattern: p, streams: streams, threads: planThreads, weightHH: weightHH,
                                                               memoryBudget: memoryBudget))
            case .stateMajor:
                tracker = .sparse(try StateMajorInfluence<Scalar>(pattern: p, streams: streams, threads: planThreads, weightHH: weightHH,
                                                                  memoryBudget: memoryBudget, skipsQuietUnits: skipsQuietUnits))
            }
        case .rtrlDense:
            tracker = .dense(try DenseInfluence(structure: structure, streams: streams, memoryBudget: memoryBudget))
        case .bptt, .tbptt:
            tracker = .history
        case .uoro, .noBackTrack, .kfRTRL, .ok:
            tracker = .estimator(try makeEstimator(method: method, model: model, structure: structure, streams: streams,
                                                   seed: EstimatorSupport.seed(seed, firstStream: firstStream),
                                                   memoryBudget: memoryBudget))
        }
        }
        self.influencePattern = pattern
        self.streams = (0..<streams).map { _ in Stream(model: model, structure: structure) }
        if case .history = tracker {
            let window: Int?
            if case .tbptt(let h) = method { window = h } else { window = nil }
            for s in self.streams {
                s.history = BackpropagationHistory(structure: structure, window: window, sliding: slidingTruncation)
            }
        }
        self.pool = streams > 1 && threads > 1 ? try WorkerPool(threads: threads) : nil
        var thresholdParameter = [Int](repeating: -1, count: model.hiddenSize)
        for t in 0..<structure.layout.count where structure.layout.source[t] == .threshold {
            thresholdParameter[Int(structure.layout.storage[t])] = t
        }
        self.thresholdParameter = thresholdParameter
        self.core = [Scalar](repeating: 0, count: structure.layout.count)
    }

    /// One step for every stream. `inputs` holds streamCount rows of n values (stream after
    /// stream); `targets` one class per stream, or −1 for no loss at this step. Returns the sum
    /// of the streams' losses.
    @discardableResult
    public func step(inputs: [Scalar], targets: [Int]) throws -> Double {
        let n = model.inputSize, o = model.outputSize
        guard inputs.count == streamCount * n else {
            throw RTRLError.invalidInput("a step needs \(streamCount) × \(n) inputs, not \(inputs.count)")
        }
        guard targets.count == streamCount else {
            throw RTRLError.invalidInput("a step needs \(streamCount) targets, not \(targets.count)")
        }
        if let bad = inputs.firstIndex(where: { !$0.isFinite }) {
            throw RTRLError.invalidInput("input \(bad % n) of stream \(bad / n) is not finite (\(inputs[bad]))")
        }
        if let bad = targets.firstIndex(where: { $0 < -1 || $0 >= o }) {
            throw RTRLError.invalidInput("target \(targets[bad]) of stream \(bad) is outside 0..<\(o) (or −1 for none)")
        }
        try inputs.withUnsafeBufferPointer { x in
            if let pool {
                // Each stream is stepped by one thread, which records its own failure; the first
                // stream's failure is thrown after all threads have finished.
                pool.run { thread, count in
                    for b in stride(from: thread, to: self.streamCount, by: count) {
                        let stream = self.streams[b]
                        stream.failure = nil
                        do { try self.step(stream: b, input: UnsafeBufferPointer(rebasing: x[b * n..<(b + 1) * n]), target: targets[b]) }
                        catch { stream.failure = error }
                    }
                }
                if let failure = streams.lazy.compactMap(\.failure).first { throw failure }
            } else {
                for b in 0..<streamCount {
                    try step(stream: b, input: UnsafeBufferPointer(rebasing: x[b * n..<(b + 1) * n]), target: targets[b])
                }
            }
        }
        stepCount += 1
        return streams.reduce(0) { $0 + $1.loss }
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func step(stream b: Int, input: UnsafeBufferPointer<Scalar>, target: Int) throws {
        let s = streams[b], p = model.parameters, k = model.hiddenSize
        if case .stacked(let stack) = tracker {
            stack.step(stream: b, input: input, target: target)
            let t = stack.streams[b]
            s.loss = t.loss
            s.lastTarget = t.lastTarget
            for a in 0..<s.logits.count { s.logits[a] = t.logits[a] }
            return
        }
        s.state.withUnsafeBufferPointer { previous in
            CellStep.run(model, previous: previous, isInitial: s.isInitial, input: input, record: &s.record)
        }
        for q in 0..<s.state.count { s.state[q] = s.record.state[q] }
        s.isInitial = false

        // The readout and w = ∂L_t/∂s_t first: the sparse influence update takes the gradient
        // wᵀJ_t in the same pass as J_t.
        s.lastTarget = target
        s.loss = s.logits.withUnsafeMutableBufferPointer { logits in
            s.outputGradient.withUnsafeMutableBufferPointer { og in
                s.readoutWeightGradient.withUnsafeMutableBufferPointer { wg in
                    s.readoutBiasGradient.withUnsafeMutableBufferPointer { bg in
                        Readout.step(weight: p.readoutWeight, bias: p.readoutBias, output: s.record.output, target: target,
                                     logits: logits, outputGradient: og, weightGradient: wg, biasGradient: bg)
                    }
                }
            }
        }
        // ∂L_t/∂s_t, and the EGRU's direct path from ϑ to y_t.
        for c in 0..<model.cell.stateComponents {
            for i in 0..<k { s.stateWeights[c * k + i] = s.outputGradient[i] * s.record.outputScale[c * k + i] }
        }
        if model.cell == .egru {
            for i in 0..<k { s.coreGradient[thresholdParameter[i]] += s.outputGradient[i] * s.record.thresholdOutput[i] }
        }
        try s.stateWeights.withUnsafeBufferPointer { w in
            try s.coreGradient.withUnsafeMutableBufferPointer { g in
                switch tracker {
                case .sparse(let influence):
                    try influence.update(stream: b, weightHH: p.weightHH, record: s.record, stateWeights: w, gradient: g)
                case .dense(let influence):
                    influence.update(stream: b, weightHH: p.weightHH, record: s.record)
                    influence.accumulate(stream: b, stateWeights: w, into: g)
                case .estimator(let estimator):
                    try estimator.update(stream: b, model: model, record: s.record)
                    estimator.accumulate(stream: b, stateWeights: w, into: g)
                case .history, .stacked: break
                }
            }
        }
        if let history = s.history {
            history.append(s.record, stateWeights: s.stateWeights)
            if let window = history.window, !history.sliding, history.records.count == window {
                s.coreGradient.withUnsafeMutableBufferPointer { g in history.backpropagate(weightHH: p.weightHH, into: g) }
                history.clear()
            }
        }
    }

    /// The gradient accumulated since the last `resetGradient` (summed over streams), shaped like
    /// the model's parameters. For BPTT it includes the steps of the current sequence; for
    /// TBPTT(h), the current window even if it has fewer than h steps.
    public func gradient() -> Parameters<Scalar> {
        if case .stacked(let stack) = tracker { return stack.gradient(zeros: model.parameters.zeros()) }
        var result = model.parameters.zeros()
        var core = [Scalar](repeating: 0, count: structure.layout.count)
        for (b, s) in streams.enumerated() {
            for t in core.indices { core[t] += s.coreGradient[t] }
            if case .sparse(let influence) = tracker {
                core.withUnsafeMutableBufferPointer { influence.addDeferredGradient(stream: b, into: $0) }
            }
            // Losses still waiting in the history: the whole sequence for BPTT, the current
            // (possibly shorter) window for TBPTT.
            if let history = s.history, !history.records.isEmpty {
                core.withUnsafeMutableBufferPointer { history.backpropagate(weightHH: model.parameters.weightHH, into: $0) }
            }
            result.readoutWeight.values.withUnsafeMutableBufferPointer { w in
                for t in w.indices { w[t] += s.readoutWeightGradient[t] }
            }
            for a in result.readoutBias.indices { result.readoutBias[a] += s.readoutBiasGradient[a] }
        }
        core.withUnsafeBufferPointer { structure.layout.scatterAdd($0, into: &result) }
        return result
    }

    /// Zeroes the accumulated gradient; the state and influence carry on.
    public func resetGradient() {
        for s in streams {
            s.coreGradient.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            s.readoutWeightGradient.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            s.readoutBiasGradient.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            s.history?.forgetLosses()
        }
        if case .sparse(let influence) = tracker { influence.resetDeferredGradient() }
        if case .stacked(let stack) = tracker { stack.resetGradient() }
    }

    /// Starts a new sequence on one stream (or all): zero state and zero influence. For BPTT and
    /// TBPTT, the losses still waiting (the sequence, or the last window) are banked first.
    public func resetState(stream: Int? = nil) {
        for b in stream.map({ [$0] }) ?? Array(0..<streamCount) {
            let s = streams[b]
            if case .stacked(let stack) = tracker { stack.resetState(stream: b); continue }
            if let history = s.history {
                if !history.records.isEmpty {
                    s.coreGradient.withUnsafeMutableBufferPointer { history.backpropagate(weightHH: model.parameters.weightHH, into: $0) }
                }
                history.clear()
            }
            s.state.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            s.isInitial = true
            switch tracker {
            case .sparse(let influence): s.coreGradient.withUnsafeMutableBufferPointer { influence.reset(stream: b, gradient: $0) }
            case .dense(let influence): influence.reset(stream: b)
            case .estimator(let estimator): estimator.reset(stream: b)
            case .history, .stacked: break
            }
        }
    }

    /// Replaces the parameters (same patterns), keeping state and influence: the online update.
    public func setParameters(_ parameters: Parameters<Scalar>) throws {
        guard parameters.weightIH.pattern == model.parameters.weightIH.pattern,
              parameters.weightHH.pattern == model.parameters.weightHH.pattern,
              parameters.upperLayers.count == model.parameters.upperLayers.count,
              zip(parameters.upperLayers, model.parameters.upperLayers).allSatisfy({
                  $0.weightIH.pattern == $1.weightIH.pattern && $0.weightHH.pattern == $1.weightHH.pattern }) else {
            throw RTRLError.invalidInput("new parameters must keep the model's weight patterns")
        }
        model = try Model(configuration: model.configuration, parameters: parameters)
        if case .stacked(let stack) = tracker { stack.refresh(from: model) }
    }

    /// The current state of a stream (h, c for the LSTM; v for the EGRU; a stacked model's
    /// layers one after another, layer 0 first).
    public func state(stream b: Int) -> [Scalar] {
        if case .stacked(let stack) = tracker { return stack.state(stream: b) }
        return streams[b].state
    }

    /// The last step's record of a stream (activity, Jacobian factors): for a stacked model, its
    /// top layer's.
    public func lastRecord(stream b: Int) -> StepRecord<Scalar> {
        if case .stacked(let stack) = tracker { return stack.streams[b].records[stack.layerCount - 1] }
        return streams[b].record
    }

    /// The fraction of influence-update work skipped at the last step (EGRU activity), averaged
    /// over streams; 0 for methods without a sparse influence matrix.
    public func skippedWorkFraction() -> Double {
        guard case .sparse(let influence) = tracker else { return 0 }
        return (0..<streamCount).reduce(0) { $0 + influence.skippedWorkFraction(stream: $1) } / Double(streamCount)
    }

    /// The fraction of the influence matrix's columns the last step's update wrote, averaged
    /// over streams: 1 for the plain update, which rewrites every value; for the EGRU with
    /// skipping, the columns with an open input (the rest change only through their scale).
    /// 0 for methods without a sparse influence matrix.
    public func writtenInfluenceFraction() -> Double {
        guard case .sparse(let influence) = tracker else { return 0 }
        return (0..<streamCount).reduce(0) { $0 + influence.writtenFraction(stream: $1) } / Double(streamCount)
    }

    /// Bytes held by the influence state of all streams: the values (updated in place, but
    /// double-buffered in the generic layout; for the EGRU's scaled form with a scale, a deferred
    /// weight and a flag per column), and the per-stream buffers of D and the immediate term.
    public var influenceBytes: Int {
        switch tracker {
        case .sparse(let influence): return streamCount * influence.bytesPerStream
        case .dense(let influence): return streamCount * 2 * influence.stateSize * influence.parameterCount * MemoryLayout<Scalar>.stride
        case .history: return streams.reduce(0) { $0 + ($1.history?.records.count ?? 0) } * MemoryLayout<StepRecord<Scalar>>.stride
        case .estimator(let estimator): return estimator.bytes
        case .stacked(let stack): return stack.bytes
        }
    }
}

extension OnlineLearner {
    /// The Kronecker-sum estimators' work per step, all streams (nil for the other methods, whose
    /// work the influence pattern counts): multiply-adds of the products D·A_j, the reduction to r
    /// terms and the gradient, and the bytes of the least traffic (every term read and written once,
    /// D read once). `rtrl bench step` sets it against the roofline.
    public var estimatorWorkPerStep: (multiplyAdds: Int, bytes: Int)? {
        guard case .estimator(let estimator) = tracker, let work = estimator.workPerStep else { return nil }
        return (streamCount * work.multiplyAdds, streamCount * work.bytes)
    }
}

/// A learner's state, influence and gradient change with every step: it may move to another task, but two tasks must not use one learner at once, so it is not `Sendable`.
@available(*, unavailable)
extension OnlineLearner: Sendable {}
