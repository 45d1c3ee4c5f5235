import Foundation

/// Settings of an online training run. Checked when built; stored in checkpoints (the method and
/// layout by their command-line names).
public struct TrainingConfiguration: Codable, Hashable, Sendable {
    /// How the gradient is computed or estimated.
    public var method: GradientMethod
    /// The optimiser that applies each update.
    public var optimizer: OptimizerKind
    /// The optimiser's step size.
    public var learningRate: Double
    /// Largest Euclidean norm of an update's gradient (0: no clipping).
    public var clip: Double
    /// Steps between parameter updates.
    public var updateEvery: Int
    /// Threads the learner uses (over streams, or inside the influence update for one stream).
    public var threads: Int
    /// Seed of the stochastic estimators' random numbers.
    public var seed: UInt64
    /// How sparse influence matrices are stored (same numbers either way, to rounding).
    public var layout: InfluenceLayout
    /// The natural-gradient filter's settings (used with ``OptimizerKind/natural``). Every
    /// parameter moves, in the blocks of ``NaturalGradientBlocks`` (one per hidden unit, one per
    /// output class): with the averaging schedule (the default) by η·(F̂ + λI)⁻¹g/(t₀ + t), the
    /// Kalman filter's step; with the exponential one by η·(F̂ + λI)⁻¹g.
    public var filter: NaturalGradientPreconditioner.Options

    /// Settings for a run; throws for a method with a number below 1, a learning rate that is not
    /// a positive number, a negative or non-finite clip, `updateEvery` or `threads` below 1.
    public init(method: GradientMethod, optimizer: OptimizerKind = .adam, learningRate: Double = 1e-3, clip: Double = 1,
                updateEvery: Int = 1, threads: Int = 1, seed: UInt64 = 0, layout: InfluenceLayout = .unitBlocked,
                filter: NaturalGradientPreconditioner.Options = .init()) throws {
        try method.validate()
        guard learningRate.isFinite, learningRate > 0 else {
            throw RTRLError.invalidOption("the learning rate must be a positive number, not \(learningRate)")
        }
        guard updateEvery >= 1 else { throw RTRLError.invalidOption("--update-every must be at least 1, not \(updateEvery)") }
        guard clip.isFinite, clip >= 0 else { throw RTRLError.invalidOption("--clip must be a finite number ≥ 0, not \(clip)") }
        guard threads >= 1 else { throw RTRLError.invalidOption("threads must be at least 1, not \(threads)") }
        try filter.validate()
        self.method = method
        self.optimizer = optimizer
        self.learningRate = learningRate
        self.clip = clip
        self.updateEvery = updateEvery
        self.threads = threads
        self.seed = seed
        self.layout = layout
        self.filter = filter
    }

    private enum CodingKeys: String, CodingKey {
        case method, optimizer, learningRate, clip, updateEvery, threads, seed, layout, filter
    }

    /// Reads settings as the `Encodable` conformance writes them (a checkpoint's `trainer.json`)
    /// and checks them as ``init(method:optimizer:learningRate:clip:updateEvery:threads:seed:layout:filter:)`` does.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(method: c.decode(GradientMethod.self, forKey: .method),
                      optimizer: c.decode(OptimizerKind.self, forKey: .optimizer),
                      learningRate: c.decode(Double.self, forKey: .learningRate), clip: c.decode(Double.self, forKey: .clip),
                      updateEvery: c.decode(Int.self, forKey: .updateEvery), threads: c.decode(Int.self, forKey: .threads),
                      seed: c.decode(UInt64.self, forKey: .seed), layout: c.decode(InfluenceLayout.self, forKey: .layout),
                      filter: c.decodeIfPresent(NaturalGradientPreconditioner.Options.self, forKey: .filter)
                          // Written before the filter had settings: the exponential schedule was the only one.
                          ?? .init(decay: 0.99))
    }
}

/// A progress report of a training run.
public struct TrainingReport: Sendable {
    /// Steps taken in all when the report was made.
    public var step: Int
    /// Wall-clock seconds since this call of `Trainer.run` started.
    public var seconds: Double
    /// Steps per wall-clock second since the previous report.
    public var stepsPerSecond: Double
    /// Mean loss per step with a target (nats) since the previous report.
    public var loss: Double
    /// The name of the task's metric (`TrainingTask.metricName`).
    public var metricName: String
    /// The task's metric at this report (`TrainingTask.metricValue`).
    public var metric: Double
    /// The gradient norm of the last update, before clipping.
    public var gradientNorm: Double
    /// Task evaluations (validation) at this report.
    public var evaluations: [(name: String, value: Double)]
}

/// Online training: every step feeds each stream's next input to the learner; every
/// `updateEvery` steps the accumulated gradient (summed over steps, averaged over streams) is
/// clipped and applied by the optimiser. The influence state carries on across updates (the
/// usual online approximation) and is reset only where the task starts a new sequence. The
/// readout is trained with its exact gradient.
///
/// `Scalar` is the precision of the model, the learner and the optimiser; tasks write their
/// inputs in `Double`, converted as they are fed.
public final class Trainer<Scalar: SparseScalar> {
    /// The run's settings.
    public let configuration: TrainingConfiguration
    /// Where the inputs and targets come from.
    public let task: TrainingTask
    /// The online learner that carries the model, its state and the gradient.
    public let learner: OnlineLearner<Scalar>
    /// The optimiser, with its state (Adam's moments).
    public internal(set) var optimizer: Optimizer<Scalar>
    /// Steps taken so far (every stream advances once per step).
    public internal(set) var step = 0
    var stepsSinceUpdate = 0
    var lossSum = 0.0, lossCount = 0
    /// EGRU: the fraction of units emitting an event, summed over steps and streams since the last report.
    var activitySum = 0.0, activityCount = 0
    var lastGradientNorm = 0.0
    /// The task's inputs (Double), and the same in the learner's precision.
    private var taskInputs: [Double]
    private var inputs: [Scalar]
    private var targets: [Int]
    private var theta: [Scalar]
    private var gradient: [Scalar]
    /// For the natural-gradient optimiser: the preconditioner, the flat index of each parameter
    /// it covers (in its block order), and scratch in that order.
    var preconditioner: NaturalGradientPreconditioner?
    private var preconditionedIndex: [Int] = []
    private var preconditioned: [Scalar] = []
    /// For tests: called after each file of a checkpoint is written (a throw interrupts it).
    var afterCheckpointFile: ((String) throws -> Void)?
    /// This process's part of a split run, and how the parts are combined (nil: the whole run).
    public let partition: TrainingPartition
    let exchange: (any TrainingExchange<Scalar>)?
    /// The task's streams this process steps (all of them unless data-parallel).
    let ownStreams: Range<Int>
    /// Every stream's targets, and the loss and prediction of this process's streams and of all.
    private var allTargets: [Int]
    private var ownResults: [Double]
    private var allResults: [Double]

    /// A trainer that starts from `model`; throws if the model's input or output size differs
    /// from the task's, or if the learner cannot be built (memory budget, method and cell).
    ///
    /// With a `partition` and an `exchange`, the trainer is one process's part of a run split over
    /// several (``TrainingPartition``); every process must build its trainer with the same model,
    /// task and configuration. Data parallelism takes every method on one layer (a stochastic
    /// method's stream draws what it would in one process); model parallelism takes rtrl and
    /// snap-N (`OnlineLearner.init(…units:)`).
    ///
    /// `memoryBudget` bounds the learner's influence state (of this process's part), in bytes;
    /// beyond it the trainer is refused with the bytes needed.
    public init(model: Model<Scalar>, task: TrainingTask, configuration: TrainingConfiguration,
                partition: TrainingPartition = .whole, exchange: (any TrainingExchange<Scalar>)? = nil,
                memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        guard model.inputSize == task.inputSize, model.outputSize == task.outputSize else {
            throw RTRLError.invalidModel("the model takes \(model.inputSize) inputs and \(model.outputSize) classes but the \(task.name) task has \(task.inputSize) and \(task.outputSize)")
        }
        let method = configuration.method
        var sliding = false
        if case .tbptt = method { sliding = true }
        guard partition.units == nil || partition.streams == nil else {
            throw RTRLError.invalidOption("a process holds either a range of units or a range of streams, not both")
        }
        guard partition == .whole || exchange != nil else {
            throw RTRLError.invalidOption("a part of a split run needs an exchange with the other parts")
        }
        let ownStreams = partition.streams ?? 0..<task.streamCount
        guard !ownStreams.isEmpty, ownStreams.lowerBound >= 0, ownStreams.upperBound <= task.streamCount else {
            throw RTRLError.invalidOption("a process's streams must be a non-empty range within the task's 0..<\(task.streamCount), not \(ownStreams)")
        }
        if partition.streams != nil {
            guard !model.configuration.isStacked else {
                throw RTRLError.invalidOption("a stacked model's streams are not split over processes")
            }
        }
        self.configuration = configuration
        self.task = task
        self.partition = partition
        self.exchange = exchange
        self.ownStreams = ownStreams
        learner = try OnlineLearner(model: model, method: method, streams: ownStreams.count, threads: configuration.threads,
                                    layout: configuration.layout,
                                    memoryBudget: memoryBudget, seed: configuration.seed, slidingTruncation: sliding,
                                    units: partition.units, firstStream: ownStreams.lowerBound)
        optimizer = try Optimizer(kind: configuration.optimizer, learningRate: configuration.learningRate,
                                  parameterCount: model.parameters.count)
        taskInputs = [Double](repeating: 0, count: task.streamCount * task.inputSize)
        inputs = [Scalar](repeating: 0, count: ownStreams.count * task.inputSize)
        targets = [Int](repeating: -1, count: ownStreams.count)
        allTargets = [Int](repeating: -1, count: task.streamCount)
        ownResults = [Double](repeating: 0, count: 2 * ownStreams.count)
        allResults = [Double](repeating: 0, count: 2 * task.streamCount)
        theta = model.parameters.flattened
        gradient = [Scalar](repeating: 0, count: theta.count)
        if configuration.optimizer == .natural {
            let blocks = learner.naturalGradientBlocks()
            preconditioner = try NaturalGradientPreconditioner(blockStarts: blocks.blockStarts, options: configuration.filter)
            preconditionedIndex = blocks.flatIndex
            preconditioned = [Scalar](repeating: 0, count: blocks.flatIndex.count)
        }
    }

    /// The model as trained so far.
    public var model: Model<Scalar> { learner.model }

    /// One step of every stream, and an update when one is due. Returns the summed loss.
    @discardableResult
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func trainStep() throws -> Double {
        let n = task.inputSize, first = ownStreams.lowerBound
        // Every stream draws its inputs (so every process's task stays the same); this process
        // steps its own.
        taskInputs.withUnsafeMutableBufferPointer { x in
            for b in 0..<task.streamCount {
                let next = task.next(stream: b, input: UnsafeMutableBufferPointer(rebasing: x[(b * n)..<((b + 1) * n)]))
                if next.startsSequence && step > 0 && ownStreams.contains(b) { learner.resetState(stream: b - first) }
                allTargets[b] = next.target
            }
        }
        for t in 0..<inputs.count { inputs[t] = Scalar(taskInputs[first * n + t]) }
        for b in 0..<targets.count { targets[b] = allTargets[first + b] }
        try learner.step(inputs: inputs, targets: targets)
        for b in 0..<ownStreams.count {
            ownResults[2 * b] = learner.lastLoss(stream: b)
            ownResults[2 * b + 1] = Double(learner.lastPrediction(stream: b))
            if learner.model.cell == .egru {
                activitySum += Double(learner.lastRecord(stream: b).activeUnits) / Double(learner.model.hiddenSize)
                activityCount += 1
            }
        }
        if partition.streams != nil, let exchange {
            try ownResults.withUnsafeBufferPointer { local in
                try allResults.withUnsafeMutableBufferPointer { try exchange.gatherStreamValues(local, valuesPerStream: 2, into: $0) }
            }
        } else {
            for t in 0..<ownResults.count { allResults[t] = ownResults[t] }
        }
        var total = 0.0
        for b in 0..<task.streamCount {
            let loss = allResults[2 * b]
            total += loss
            task.observe(stream: b, loss: loss, hadTarget: allTargets[b] >= 0, prediction: Int(allResults[2 * b + 1]))
            if allTargets[b] >= 0 { lossSum += loss; lossCount += 1 }
        }
        step += 1
        stepsSinceUpdate += 1
        if stepsSinceUpdate == configuration.updateEvery { try update() }
        return total
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func update() throws {
        let streams = Double(task.streamCount)
        try gradient.withUnsafeMutableBufferPointer { g in
            if let exchange { try exchange.gradient(of: learner, into: g) } else { try learner.gradient(into: g) }
            for t in 0..<g.count { g[t] /= Scalar(streams) }
            lastGradientNorm = clipGradientNorm(g, maximum: configuration.clip)
        }
        if let preconditioner {
            // Every parameter moves along (F̂ + λI)⁻¹ g, block by block.
            let index = preconditionedIndex
            for t in 0..<index.count { preconditioned[t] = gradient[index[t]] }
            try preconditioned.withUnsafeMutableBufferPointer { c in try preconditioner.direction(for: UnsafeBufferPointer(c), into: c) }
            if case .averaging(let priorWeight) = preconditioner.options.schedule {
                // The Kalman filter's gain: 1/(t₀ + t) after t observations.
                let gain = Scalar(1 / (priorWeight + Double(preconditioner.observations)))
                for t in 0..<preconditioned.count { preconditioned[t] *= gain }
            }
            for t in 0..<index.count { gradient[index[t]] = preconditioned[t] }
        }
        theta.withUnsafeMutableBufferPointer { th in
            gradient.withUnsafeBufferPointer { g in optimizer.apply(gradient: g, to: th) }
        }
        try theta.withUnsafeBufferPointer { try learner.setParameters(flat: $0) }
        learner.resetGradient()
        stepsSinceUpdate = 0
    }

    /// Runs until `steps` steps have been taken in all, calling `report` every `reportEvery`
    /// steps and at the end, and `checkpoint` every `checkpointEvery` steps (0: never).
    public func run(until steps: Int, reportEvery: Int, checkpointEvery: Int = 0,
                    checkpoint: ((Trainer) throws -> Void)? = nil, report: (TrainingReport) throws -> Void) throws {
        guard steps >= 0 else { throw RTRLError.invalidOption("the number of steps must be ≥ 0") }
        let start = Stopwatch.now()
        var lastTime = start, lastStep = step
        while step < steps {
            try trainStep()
            if step % max(1, reportEvery) == 0 || step == steps {
                let now = Stopwatch.now()
                try report(makeReport(seconds: now - start, rate: Double(step - lastStep) / max(now - lastTime, 1e-9)))
                lastTime = now; lastStep = step
            }
            if checkpointEvery > 0, step % checkpointEvery == 0, let checkpoint { try checkpoint(self) }
        }
    }

    func makeReport(seconds: Double, rate: Double) throws -> TrainingReport {
        var evaluations = try task.evaluate(model: model.converted(to: Double.self))
        if learner.model.cell == .egru {
            // Events per unit and step since the last report, and the influence work skipped at the last step.
            evaluations.append(("activity", activityCount > 0 ? activitySum / Double(activityCount) : .nan))
            evaluations.append(("work_fraction", 1 - learner.skippedWorkFraction()))
            activitySum = 0; activityCount = 0
        }
        let report = TrainingReport(step: step, seconds: seconds, stepsPerSecond: rate,
                                    loss: lossCount > 0 ? lossSum / Double(lossCount) : .nan,
                                    metricName: task.metricName, metric: task.metricValue, gradientNorm: lastGradientNorm,
                                    evaluations: evaluations)
        lossSum = 0; lossCount = 0
        return report
    }
}

extension OnlineLearner {
    /// The loss stream b had at the last step (nats; 0 without a target).
    public func lastLoss(stream b: Int) -> Double { streams[b].loss }

    /// The most likely class at stream b's last step (the first of equal ones), or −1 if that
    /// step had no target (the readout is evaluated only at steps with one).
    public func lastPrediction(stream b: Int) -> Int {
        let s = streams[b]
        guard s.lastTarget >= 0 else { return -1 }
        // `logits` holds softmax − onehot(target): add the one back.
        func probability(_ c: Int) -> Double { s.logits[c] + (c == s.lastTarget ? 1 : 0) }
        var best = 0
        for c in 1..<max(s.logits.count, 1) where probability(c) > probability(best) { best = c }
        return best
    }
}

/// A trainer owns a learner and a task that change with every step; it is not `Sendable`.
@available(*, unavailable)
extension Trainer: Sendable {}
