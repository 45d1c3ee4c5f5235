import ArgumentParser
import RTRL

/// `rtrl bench step` (contract §5): whole online steps — forward, influence update, gradient —
/// on random inputs, timed one by one after a warm-up.
struct BenchStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step", abstract: "Time online steps (forward, influence update, gradient) of a method.")

    @OptionGroup var source: ModelSource
    @Option(help: "Gradient method.") var method: String
    @Option(help: "Independent streams.") var batch: Int = 1
    @Option(help: "Threads.") var threads: Int = 1
    @Option(parsing: .unconditional, help: "Timed steps.") var steps: Int = 200
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 20
    @Option(help: "float64 or float32.") var precision: Precision = .float64
    @Option(help: "Influence storage for sparse methods: blocked (default) or generic.") var layout: String = "blocked"
    @Flag(help: "Do not skip the influence terms of quiet EGRU units (for comparison).") var noSkip = false
    @Flag(inversion: .prefixedNo, help: "Measure the roofline (a GEMM and a copy) between rounds of steps and report the fraction reached.")
    var roofline = true
    @Option(help: "Scale of the random inputs (standard deviation).")
    var inputScale: Double = 1
    @Flag(help: "EGRU: time steps with and without skipping quiet units in one run (alternating steps on the same inputs).")
    var compareSkipping = false
    @Option(help: ArgumentHelp("EGRU skipping: the column length in bytes its storage aims for by grouping units (1: one unit per block).",
                               visibility: .hidden))
    var egruColumnBytes: Int?
    @Flag(help: "Also time the natural-gradient filter on each step's gradient, in the trainer's blocks (observe, refactorise every --fisher-refactor-every steps, solve), as --optimizer natural applies it.")
    var natural = false
    @Option(help: "With --natural: refactorise the Fisher estimate every this many steps.") var fisherRefactorEvery: Int = 10
    @Option(help: "Run as one process of an MPI job (mpirun -np R rtrl bench step --distributed …): time each process's part (units: its units' influence blocks; streams: its streams) and the exchange of an update. Float64, one thread per process; needs a build with the MPI trait.")
    var distributed: DistributedSplit?

    func run() throws {
        try reporting {
            guard steps >= 1, warmup >= 0, batch >= 1 else { throw CommandFailure("--steps and --batch must be at least 1, --warmup at least 0") }
            let method = try GradientMethod(parsing: self.method)
            guard let layout = InfluenceLayout(rawValue: layout) else {
                throw CommandFailure("--layout must be blocked or generic, not '\(self.layout)'")
            }
            let model = try source.load()
            if let distributed {
                guard precision == .float64, threads == 1, layout == .unitBlocked else {
                    throw CommandFailure("--distributed times Float64 steps on one thread per process in the blocked layout")
                }
                return try runDistributed(distributed, model, method)
            }
            switch precision {
            case .float64: try run(model, method, layout, as: Double.self)
            case .float32: try run(model.converted(to: Float.self), method, layout, as: Float.self)
            }
        }
    }

    private func run<S: SparseScalar>(_ model: Model<S>, _ method: GradientMethod, _ layout: InfluenceLayout, as: S.Type) throws {
        if let egruColumnBytes {
            guard egruColumnBytes >= 1 else { throw CommandFailure("--egru-column-bytes must be at least 1, not \(egruColumnBytes)") }
            ScaledFormTuning.columnBytes.store(egruColumnBytes, ordering: .relaxed)
        }
        let learner = try OnlineLearner(model: model, method: method, streams: batch, threads: threads, layout: layout,
                                        skipsQuietUnits: !noSkip)
        // With --compare-skipping, a second learner without skipping takes the same steps.
        let reference = compareSkipping
            ? try OnlineLearner(model: model, method: method, streams: batch, threads: threads, layout: layout, skipsQuietUnits: false)
            : nil
        var rng = SeededGenerator(seed: source.seed &+ 99)
        let n = model.inputSize, o = model.outputSize, k = model.hiddenSize
        var inputs = [S](repeating: 0, count: batch * n)
        var targets = [Int](repeating: 0, count: batch)
        // Fixed-size histograms: the benchmark's memory does not grow with the number of steps.
        var times = DurationHistogram(), referenceTimes = DurationHistogram()
        // The roof, measured between rounds of steps (a GEMM and a copy), each round set against
        // the roof next to it; two untimed steps after each measurement refill the caches.
        let influenceWork = learner.influencePattern != nil || learner.stackedInfluencePattern != nil || method == .rtrlDense
            || learner.estimatorWorkPerStep != nil
        let probe = influenceWork && roofline ? try RooflineProbe(threads: threads, single: S.self == Float.self) : nil
        var samples: [RooflineSample] = [], round = DurationHistogram()
        let roundSteps = 5
        var activity = 0.0, open = 0.0, workFraction = 0.0, written = 0.0
        // The filter, on every parameter in the trainer's blocks (as it applies it), timed apart from the step.
        let blocks = natural ? learner.naturalGradientBlocks() : nil
        let filter = try blocks.map {
            try NaturalGradientPreconditioner(blockStarts: $0.blockStarts, options: .init(refactorInterval: fisherRefactorEvery))
        }
        var flatGradient = [S](repeating: 0, count: natural ? learner.flatParameterCount : 0)
        var filterTimes = DurationHistogram(), filterTotal = 0.0
        var gathered = [S](repeating: 0, count: filter?.parameterCount ?? 0), direction = gathered
        for step in 0..<(warmup + steps) {
            if let probe, step >= warmup, (step - warmup) % roundSteps == 0 {
                if round.count > 0 {
                    samples.append(RooflineSample(gemmRate: probe.gemmRate(), copyBandwidth: probe.copyBandwidth(),
                                                  stepSeconds: round.quantile(0.5)))
                    round = DurationHistogram()
                }
                for _ in 0..<2 { try learner.step(inputs: inputs, targets: targets) }
            }
            for t in inputs.indices { inputs[t] = S(rng.nextGaussian() * inputScale) }
            for b in targets.indices { targets[b] = Int.random(in: 0..<o, using: &rng) }
            let seconds = try Stopwatch.time { try learner.step(inputs: inputs, targets: targets) }
            let referenceSeconds = try reference.map { r in try Stopwatch.time { try r.step(inputs: inputs, targets: targets) } }
            if let filter, let blocks {
                try flatGradient.withUnsafeMutableBufferPointer { try learner.gradient(into: $0) }   // untimed
                learner.resetGradient()
                for t in blocks.flatIndex.indices { gathered[t] = flatGradient[blocks.flatIndex[t]] }
                let filterSeconds = try gathered.withUnsafeBufferPointer { g in
                    try direction.withUnsafeMutableBufferPointer { d in try Stopwatch.time { try filter.direction(for: g, into: d) } }
                }
                if step >= warmup { filterTimes.add(filterSeconds); filterTotal += filterSeconds }
            }
            if step >= warmup {
                times.add(seconds)
                round.add(seconds)
                if let referenceSeconds { referenceTimes.add(referenceSeconds) }
                if model.cell == .egru {
                    for b in 0..<batch {
                        let record = learner.lastRecord(stream: b)
                        activity += Double(record.activeUnits) / Double(k)
                        open += 1 - Double(record.quietUnits) / Double(k)
                    }
                    workFraction += 1 - learner.skippedWorkFraction()
                    written += learner.writtenInfluenceFraction()
                }
            }
            if case .bptt = method, (step + 1) % 100 == 0 { learner.resetState(); reference?.resetState() } // bounded history
        }
        let scalar = MemoryLayout<S>.stride
        var nonzeros = 0, flops = 0, bytes = 0
        let stateSize = learner.structure.graph.stateSize, p = learner.structure.layout.count
        let dNonzeros = learner.structure.graph.jacobianTransposed.nonzeroCount
        if let pattern = learner.influencePattern {
            nonzeros = pattern.statistics.nonzeros
            flops = pattern.statistics.multiplyAddsPerStep
        } else if let pattern = learner.stackedInfluencePattern {
            nonzeros = pattern.nonzeros
            flops = pattern.multiplyAddsPerStep
        } else if method == .rtrlDense && learner.model.layerCount > 1 {
            // Layer l's J covers the parameters of layers 0 … l: D^l times all of them, plus A^l
            // (S × k) times the k-row derivative of its input for those of the layers below.
            let parameters = learner.model.parameters, s = learner.model.configuration.stateSize, k = learner.model.hiddenSize
            var below = 0
            for l in 0..<learner.model.layerCount {
                let own = l == 0 ? parameters.weightIH.nonzeroCount + parameters.weightHH.nonzeroCount + parameters.biasIH.count
                    + parameters.biasHH.count + parameters.threshold.count : parameters.upperLayers[l - 1].count
                nonzeros += s * (below + own)
                flops += s * s * (below + own) + s * k * below
                below += own
            }
        } else if method == .rtrlDense {
            nonzeros = stateSize * p
            flops = stateSize * stateSize * p
        }
        if nonzeros > 0 { bytes = batch * (2 * nonzeros + dNonzeros) * scalar }
        if let work = learner.estimatorWorkPerStep { (flops, bytes) = (work.multiplyAdds / batch, work.bytes) }
        let median = times.quantile(0.5)
        var line = [
            ("method", method.description as Any), ("batch", batch), ("threads", threads), ("precision", S.precisionName),
            ("seconds_per_step", median), ("p10", times.quantile(0.1)), ("p90", times.quantile(0.9)),
            ("influence_nonzeros", nonzeros), ("flops_per_step", batch * flops), ("bytes_per_step", bytes),
            ("influence_bytes", learner.influenceBytes),
        ]
        if let probe, flops > 0 {
            if round.count > 0 {
                samples.append(RooflineSample(gemmRate: probe.gemmRate(), copyBandwidth: probe.copyBandwidth(),
                                              stepSeconds: round.quantile(0.5)))
            }
            // The roofline: the GEMM multiply-add rate and the copy bandwidth with the same threads
            // and precision (medians over the rounds), and the median over rounds of the fraction
            // each round reached of the roof measured next to it.
            let work = batch * flops
            let roofs = samples.compactMap { $0.roof(multiplyAdds: work, bytes: bytes) }
            let fractions = samples.compactMap { s in s.roof(multiplyAdds: work, bytes: bytes).map { $0 / s.stepSeconds } }
            let gemm = samples.compactMap { $0.gemmRate }, copy = samples.map { $0.copyBandwidth }
            let computeBound = samples.filter { s in s.gemmRate.map { Double(work) / $0 >= Double(bytes) / s.copyBandwidth } ?? false }
            line += [("gemm_rate_g", gemm.isEmpty ? Any?.none as Any : Statistics.median(gemm) / 1e9),
                     ("copy_bandwidth_gbs", Statistics.median(copy) / 1e9),
                     ("roofline_seconds", roofs.isEmpty ? Any?.none as Any : Statistics.median(roofs)),
                     ("roofline_fraction", fractions.isEmpty ? Any?.none as Any : Statistics.median(fractions)),
                     ("roofline_bound", 2 * computeBound.count >= samples.count ? "compute" : "memory"),
                     ("roofline_rounds", samples.count), ("gemm", probe.gemmSource)]
        }
        if model.cell == .egru {
            // activity: units that emitted an event; open: units whose column of D is not zero
            // (active, or silent within the pseudo-derivative's support); work_fraction: share of
            // the influence product's multiply-adds done.
            // written_fraction: share of the influence matrix's columns rewritten (the rest change
            // only through their scale); copy_bandwidth_gbs: the machine's copy bandwidth, measured
            // after the timed steps, against which the traffic of the written columns compares.
            line += [("activity", activity / Double(steps * batch)), ("open_fraction", open / Double(steps * batch)),
                     ("work_fraction", workFraction / Double(steps)), ("written_fraction", written / Double(steps)),
                     ("skipping", !noSkip)]
            if probe == nil { line += [("copy_bandwidth_gbs", try MemoryBandwidth.measure(threads: threads))] }
        }
        if let filter {
            // The filter's cost per step: the mean (its refactorisation amortised over the interval),
            // and the median (a step without one).
            line += [("filter_seconds_per_step", filterTotal / Double(steps)), ("filter_median", filterTimes.quantile(0.5)),
                     ("filter_parameters", filter.parameterCount), ("filter_entries", filter.pattern.nonzeroCount),
                     ("filter_refactor_every", fisherRefactorEvery)]
        }
        if let reference {
            let referenceMedian = referenceTimes.quantile(0.5)
            let a = learner.gradient().flattened.map { Double($0) }, b = reference.gradient().flattened.map { Double($0) }
            let scale = max(b.map { abs($0) }.max() ?? 0, 1e-300)
            line += [("seconds_per_step_without_skipping", referenceMedian), ("speedup_from_skipping", referenceMedian / median),
                     ("max_relative_difference", (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / scale)]
        }
        print("{" + line.map { "\"\($0.0)\": \(jsonValue($0.1))" }.joined(separator: ", ") + "}")
    }
}
