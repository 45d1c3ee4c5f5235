import ArgumentParser
import RTRL

/// `rtrl bench product` (contract §5b): the influence update's product alone, on a model's own
/// structure.
///
/// A has the pattern of the one-step Jacobian D (S × S), B the SnAp-N influence pattern J
/// (S × p), M = pattern(B); all values random. The package computes C⟨M⟩ = A·B in one of its
/// storages: `block` (the default, what the learner runs: `BlockProductPlan` on the unit blocks,
/// in place), `unit` (the masked product on the unit-blocked order) or `state` (the masked
/// product on Jᵀ, one compressed column per state variable) — the same product with the same
/// multiply-adds. CXSparse computes `cs_di_multiply(D, J)` in the natural orientation and the
/// mask is then applied; both results are compared.
struct BenchProductCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "product", abstract: "Time the masked sparse–sparse product against CXSparse and memory bandwidth.")

    @OptionGroup var source: ModelSource
    @Option(parsing: .unconditional, help: "SnAp order N of the influence pattern (0 or inf: exact closure).") var n: String = "2"
    @Option(help: "float64 or float32.") var precision: Precision = .float64
    @Option(help: "Threads for the numeric phase and the bandwidth probe.") var threads: Int = 1
    @Option(help: "Timed repetitions of the numeric phase.") var reps: Int = 30
    @Option(help: "Plan layout: runs or accumulator (default: the plan's choice).") var layout: String?
    @Option(help: "Influence storage: block (the block product the learner uses), unit (unit-blocked masked product) or state (state-major).")
    var storage: String = "block"

    func run() throws {
        try reporting {
            guard reps >= 1 else { throw CommandFailure("--reps must be at least 1") }
            guard threads >= 1 && threads <= 256 else { throw CommandFailure("--threads must be between 1 and 256") }
            let requested: MaskedProductPlan.Layout?
            if let layout {
                guard let l = MaskedProductPlan.Layout(rawValue: layout) else {
                    throw CommandFailure("--layout must be runs or accumulator, not '\(layout)'")
                }
                requested = l
            } else { requested = nil }
            let model = try source.load()
            let structure = ModelStructure(model)
            let pattern = try structure.influencePattern(try parseOrder(n), memoryBudget: MaskedProductPlan.defaultMemoryBudget)
            guard storage == "unit" || storage == "state" || storage == "block" else {
                throw CommandFailure("--storage must be block, unit or state, not '\(storage)'")
            }
            let jt = pattern.stateMajorPattern()          // Jᵀ, p × S
            let dt = structure.graph.jacobianTransposed   // Dᵀ, S × S
            var rng = SeededGenerator(seed: source.seed &+ 17)
            let jValues = (0..<jt.nonzeroCount).map { _ in Double.random(in: -1...1, using: &rng) }
            let dValues = (0..<dt.nonzeroCount).map { _ in Double.random(in: -1...1, using: &rng) }

            // The operands in the chosen storage: (A, B, their values, and the map back to Jᵀ).
            var aPattern = jt, bPattern = dt, aValues = jValues, bValues = dValues
            var toStateMajor: [Int]? = nil
            if storage == "unit" {
                let blocked = pattern.unitBlockedPattern()
                let delta = pattern.unitBlockedJacobian(columnState: blocked.state, columnUnit: blocked.unit)
                aPattern = blocked.pattern
                bPattern = delta.pattern
                bValues = delta.source.map { dValues[Int($0)] }
                // Entry (θ, column c) of Ĵ is entry (θ, state[c]) of Jᵀ.
                var map = [Int](repeating: 0, count: aPattern.nonzeroCount)
                for c in 0..<aPattern.columnCount {
                    let q = Int(blocked.state[c])
                    for p in Int(aPattern.columnPointers[c])..<Int(aPattern.columnPointers[c + 1]) {
                        map[p] = jt.position(row: Int(aPattern.rowIndices[p]), column: q)!
                    }
                }
                aValues = map.map { jValues[$0] }
                toStateMajor = map
            }

            if storage == "block" {
                guard layout == nil else {
                    throw CommandFailure("--layout chooses the masked product's layout: use it with --storage unit or state")
                }
                try runBlockProduct(pattern: pattern, jt: jt, dt: dt, jValues: jValues, dValues: dValues)
                return
            }
            var plan: MaskedProductPlan!
            let planSeconds = try Stopwatch.time {
                plan = try MaskedProductPlan(a: aPattern, b: bPattern, mask: aPattern, layout: requested, threads: threads)
            }
            let bandwidth = try MemoryBandwidth.measure(threads: threads)
            let timing: [Double]
            let ours: [Double]
            switch precision {
            case .float64: (timing, ours) = try time(plan, aValues, bValues, as: Double.self)
            case .float32: (timing, ours) = try time(plan, aValues, bValues, as: Float.self)
            }
            var oursStateMajor = ours
            if let toStateMajor {
                for (p, q) in toStateMajor.enumerated() { oursStateMajor[q] = ours[p] }
            }

            // CXSparse in the natural orientation: C = D · J, then the mask.
            let d = try SparseMatrix<Double>(pattern: dt, values: dValues).transposed()
            let j = try SparseMatrix<Double>(pattern: jt, values: jValues).transposed()
            let mask = j.pattern
            var reference = [Double](repeating: 0, count: mask.nonzeroCount)
            var work = [Double](repeating: 0, count: mask.rowCount)
            let cxReps = max(3, reps / 10)
            var cxTimes: [Double] = []
            for _ in 0...cxReps {
                let t = try Stopwatch.time {
                    try d.cxsparseMaskedProduct(j, mask: mask, into: &reference, work: &work)
                }
                cxTimes.append(t)
            }
            cxTimes.removeFirst() // warm-up
            // Ours is Jᵀ's values; compare with (D·J) masked, transposed to Jᵀ order.
            let oursNatural = try SparseMatrix<Double>(pattern: jt, values: oursStateMajor).transposed().values
            let scale = max(reference.map { abs($0) }.max() ?? 0, 1e-300)
            let difference = zip(oursNatural, reference).map { abs($0 - $1) }.max() ?? 0

            let scalarBytes = precision == .float64 ? 8 : 4
            let bytes = scalarBytes * (dt.nonzeroCount + 2 * jt.nonzeroCount)
            let numeric = Statistics.median(timing), cxsparse = Statistics.median(cxTimes)
            printJSONLine([
                "rows": jt.columnCount, "cols": jt.rowCount, "nnz_a": dt.nonzeroCount, "nnz_b": jt.nonzeroCount,
                "multiply_adds": plan.multiplyAdds, "plan_seconds": planSeconds, "numeric_seconds": numeric,
                "cxsparse_seconds": cxsparse, "bytes": bytes, "bandwidth_gbs": bandwidth,
                "numeric_p10": Statistics.quantile(timing, 0.1), "numeric_p90": Statistics.quantile(timing, 0.9),
                "speedup_vs_cxsparse": cxsparse / numeric,
                "bandwidth_fraction": Double(bytes) / numeric / 1e9 / bandwidth,
                "layout": plan.layout.rawValue, "runs": plan.runCount, "plan_bytes": plan.bytes,
                "threads": threads, "precision": precision.rawValue, "n": n, "storage": storage,
                "max_relative_difference": difference / scale,
            ])
        }
    }

    /// The block product (`BlockProductPlan`, what the learner's default storage runs): D[R, R]
    /// times every unit block, in place, no additions or column sums.
    private func runBlockProduct(pattern: InfluencePattern, jt: SparsityPattern, dt: SparsityPattern, jValues: [Double],
                                 dValues: [Double]) throws {
        let (_, blocks) = pattern.unitBlocks()
        let (d, position) = dt.transposedWithPositions()
        var plan: BlockProductPlan!
        let single = precision == .float32
        // The blocks stored as the learner stores them: shifting panels once J outgrows the L2
        // cache, else copied panel by panel.
        let layout: BlockProductPlan.Layout = jt.nonzeroCount * (single ? 4 : 8) >= BlockedStorageTuning.shiftingFromBytes.load(ordering: .relaxed)
            ? .shiftingPanels : .panelMajor
        let planSeconds = try Stopwatch.time {
            plan = single
                ? try BlockProductPlan(a: d, aValueIndex: position, aValueCount: dt.nonzeroCount, blocks: blocks,
                                       columnSumCount: jt.rowCount, threads: threads, layout: layout, scalar: Float.self)
                : try BlockProductPlan(a: d, aValueIndex: position, aValueCount: dt.nonzeroCount, blocks: blocks,
                                       columnSumCount: jt.rowCount, threads: threads, layout: layout, scalar: Double.self)
        }
        // Each block value's place in the storage, in either placement, and its position in Jᵀ.
        var upper: [Int] = [], lower: [Int] = [], positionInJt: [Int] = []
        for (b, block) in blocks.enumerated() {
            for (q, r) in block.rows.enumerated() {
                for t in 0..<block.columnCount {
                    upper.append(plan.valueIndex(block: b, row: q, column: t, placement: .upper)!)
                    lower.append(plan.valueIndex(block: b, row: q, column: t, placement: .lower)!)
                    positionInJt.append(jt.position(row: block.columnSumStart + t, column: Int(r))!)
                }
            }
        }
        let bandwidth = try MemoryBandwidth.measure(threads: threads)
        func time<S: SparseScalar>(_: S.Type) throws -> [Double] {
            let workspace = try plan.makeWorkspace()
            let a = dValues.map { S($0) }
            var original = [S](repeating: 0, count: plan.storageCount)
            for (i, p) in upper.enumerated() { original[p] = S(jValues[positionInJt[i]]) }
            // X 64-byte aligned, as the learner holds it.
            let storage = OwnedBuffer<S>(count: plan.storageCount, zeroedAs: 0, alignment: 64)
            let xv = storage.buffer
            var times: [Double] = []
            var placement = BlockProductPlan.Placement.upper
            try a.withUnsafeBufferPointer { av in
                for rep in 0..<(reps + 3) {
                    _ = original.withUnsafeBufferPointer { xv.update(fromContentsOf: $0) }
                    placement = .upper
                    let t = try Stopwatch.time {
                        try plan.execute(a: av, x: xv, additions: .init(start: nil, count: 0), placement: &placement, workspace: workspace)
                    }
                    if rep >= 3 { times.append(t) }
                }
            }
            var result = [Double](repeating: 0, count: jt.nonzeroCount)
            for (i, q) in positionInJt.enumerated() { result[q] = Double(xv[placement == .upper ? upper[i] : lower[i]]) }
            withExtendedLifetime(storage) {} // xv points into it
            return [Statistics.median(times), Statistics.quantile(times, 0.1), Statistics.quantile(times, 0.9)] + result
        }
        let out = single ? try time(Float.self) : try time(Double.self)
        let numeric = out[0], ours = Array(out[3...])
        let reference = try maskedReference(jt: jt, dt: dt, jValues: jValues, dValues: dValues)
        let oursNatural = try SparseMatrix<Double>(pattern: jt, values: ours).transposed().values
        let scale = max(reference.values.map { abs($0) }.max() ?? 0, 1e-300)
        let difference = zip(oursNatural, reference.values).map { abs($0 - $1) }.max() ?? 0
        let bytes = (single ? 4 : 8) * (dt.nonzeroCount + 2 * jt.nonzeroCount)
        printJSONLine([
            "rows": jt.columnCount, "cols": jt.rowCount, "nnz_a": dt.nonzeroCount, "nnz_b": jt.nonzeroCount,
            "multiply_adds": plan.multiplyAdds, "plan_seconds": planSeconds, "numeric_seconds": numeric,
            "cxsparse_seconds": reference.seconds, "bytes": bytes, "bandwidth_gbs": bandwidth,
            "numeric_p10": out[1], "numeric_p90": out[2], "speedup_vs_cxsparse": reference.seconds / numeric,
            "bandwidth_fraction": Double(bytes) / numeric / 1e9 / bandwidth, "multiply_add_rate_g": Double(plan.multiplyAdds) / numeric / 1e9,
            "layout": "block", "kernel": plan.kernel.rawValue, "blocks": plan.blockCount, "panels": plan.panelCount,
            "plan_bytes": plan.bytes, "threads": threads, "precision": precision.rawValue, "n": n, "storage": storage,
            "max_relative_difference": difference / scale,
        ])
    }

    /// CXSparse's D · J masked to J's pattern (in the natural orientation, J's storage order), and its median time.
    private func maskedReference(jt: SparsityPattern, dt: SparsityPattern, jValues: [Double], dValues: [Double]) throws -> (values: [Double], seconds: Double) {
        let d = try SparseMatrix<Double>(pattern: dt, values: dValues).transposed()
        let j = try SparseMatrix<Double>(pattern: jt, values: jValues).transposed()
        let mask = j.pattern
        var reference = [Double](repeating: 0, count: mask.nonzeroCount)
        var work = [Double](repeating: 0, count: mask.rowCount)
        var times: [Double] = []
        for _ in 0...max(3, reps / 10) {
            times.append(try Stopwatch.time {
                try d.cxsparseMaskedProduct(j, mask: mask, into: &reference, work: &work)
            })
        }
        times.removeFirst() // warm-up
        return (reference, Statistics.median(times))
    }

    private func time<S: SparseScalar>(_ plan: MaskedProductPlan, _ j: [Double], _ d: [Double], as: S.Type) throws -> ([Double], [Double]) {
        let a = j.map { S($0) }, b = d.map { S($0) }
        var c = [S](repeating: 0, count: j.count)
        var times: [Double] = []
        try a.withUnsafeBufferPointer { av in
            try b.withUnsafeBufferPointer { bv in
                try c.withUnsafeMutableBufferPointer { cv in
                    for rep in 0..<(reps + 3) {
                        let t = try Stopwatch.time { try plan.execute(a: av, b: bv, into: cv) }
                        if rep >= 3 { times.append(t) }
                    }
                }
            }
        }
        return (times, c.map { Double($0) })
    }
}
