import ArgumentParser
@_spi(Benchmarks) import RTRL

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
    @Option(help: "Scale of the random inputs (standard deviation).")
    var inputScale: Double = 1
    @Flag(help: "EGRU: time steps with and without skipping quiet units in one run (alternating steps on the same inputs).")
    var compareSkipping = false
    @Option(help: ArgumentHelp("EGRU skipping: the column length in bytes its storage aims for by grouping units (1: one unit per block).",
                               visibility: .hidden))
    var egruColumnBytes: Int?

    func run() throws {
        try reporting {
            guard steps >= 1, warmup >= 0, batch >= 1 else { throw CommandFailure("--steps and --batch must be at least 1, --warmup at least 0") }
            let method = try GradientMethod(parsing: self.method)
            guard let layout = InfluenceLayout(rawValue: layout) else {
                throw CommandFailure("--layout must be blocked or generic, not '\(self.layout)'")
            }
            let model = try source.load()
            switch precision {
            case .float64: try run(model, method, layout, as: Double.self)
            case .float32: try run(model.converted(to: Float.self), method, layout, as: Float.self)
            }
        }
    }

    private func run<S: SparseScalar>(_ model: Model<S>, _ method: GradientMethod, _ layout: InfluenceLayout, as: S.Type) throws {
        if let egruColumnBytes {
            guard egruColumnBytes >= 1 else { throw CommandFailure("--egru-column-bytes must be at least 1, not \(egruColumnBytes)") }
            ScaledFormTuning.columnBytes = egruColumnBytes
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
        var activity = 0.0, open = 0.0, workFraction = 0.0, written = 0.0
        for step in 0..<(warmup + steps) {
            for t in inputs.indices { inputs[t] = S(rng.nextGaussian() * inputScale) }
            for b in targets.indices { targets[b] = Int.random(in: 0..<o, using: &rng) }
            let seconds = try Stopwatch.time { try learner.step(inputs: inputs, targets: targets) }
            let referenceSeconds = try reference.map { r in try Stopwatch.time { try r.step(inputs: inputs, targets: targets) } }
            if step >= warmup {
                times.add(seconds)
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
        } else if method == .rtrlDense {
            nonzeros = stateSize * p
            flops = stateSize * stateSize * p
        }
        if nonzeros > 0 { bytes = batch * (2 * nonzeros + dNonzeros) * scalar }
        let median = times.quantile(0.5)
        var line = [
            ("method", method.description as Any), ("batch", batch), ("threads", threads), ("precision", S.precisionName),
            ("seconds_per_step", median), ("p10", times.quantile(0.1)), ("p90", times.quantile(0.9)),
            ("influence_nonzeros", nonzeros), ("flops_per_step", batch * flops), ("bytes_per_step", bytes),
        ]
        if flops > 0 {
            // The roofline, measured now in this process: the GEMM multiply-add rate and the copy
            // bandwidth with the same threads and precision, and the fraction of it this run reached.
            let roof = try Roofline.measure(threads: threads, single: S.self == Float.self)
            line += [("gemm_rate_g", roof.gemmRate.map { $0 / 1e9 } as Any), ("copy_bandwidth_gbs", roof.copyBandwidth / 1e9),
                     ("roofline_seconds", roof.seconds(multiplyAdds: batch * flops, bytes: bytes) as Any),
                     ("roofline_fraction", roof.seconds(multiplyAdds: batch * flops, bytes: bytes).map { $0 / median } as Any),
                     ("roofline_bound", roof.bound(multiplyAdds: batch * flops, bytes: bytes)), ("gemm", roof.gemmSource)]
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
            if flops == 0 { line += [("copy_bandwidth_gbs", try MemoryBandwidth.measure(threads: threads))] }
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
