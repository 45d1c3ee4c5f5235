import SparseKernels

/// The influence matrix stored as Jᵀ (p × S), one column per state variable, updated by the
/// kernel layer's generic masked product: Jᵀ ← (Jᵀ · Dᵀ) on Jᵀ's pattern, double-buffered, then
/// the immediate term, then g += Jᵀ w (`InfluenceLayout.stateMajor`). A unit's parameters are
/// adjacent, so every run of the product has length f_i; but a unit's block is re-read for every
/// state variable that uses it, which is why the unit-blocked storage is the default.
final class StateMajorInfluence<Scalar: SparseScalar>: InfluenceStorage {
    let pattern: InfluencePattern
    let storage: SparsityPattern
    let plan: MaskedProductPlan
    /// Position of (state (c, i), first parameter of unit i), indexed c·k + i: that unit's
    /// parameters follow contiguously in column c·k + i.
    let immediateStart: [Int32]
    let thresholds: ThresholdImmediate?
    /// Skip terms whose D factor is exactly zero (EGRU activity sparsity; exact).
    let skipsQuietUnits: Bool

    final class Stream {
        var current: [Scalar]
        var next: [Scalar]
        var dynamics: [Scalar]
        var skipped = 0
        init(values: Int, dynamics: Int) {
            current = [Scalar](repeating: 0, count: values)
            next = current
            self.dynamics = [Scalar](repeating: 0, count: dynamics)
        }
    }
    let streams: [Stream]

    var storageName: String { InfluenceLayout.stateMajor.rawValue }
    var multiplyAdds: Int { plan.multiplyAdds }
    var bytesPerStream: Int { (2 * storage.nonzeroCount + pattern.graph.jacobianTransposed.nonzeroCount) * MemoryLayout<Scalar>.stride }

    init(pattern: InfluencePattern, streams: Int, threads: Int, weightHH: SparsityPattern, memoryBudget: Int,
         skipsQuietUnits: Bool) throws {
        let graph = pattern.graph, k = graph.hiddenSize, layout = pattern.layout
        let values = pattern.statistics.nonzeros, dynamics = graph.jacobianTransposed.nonzeroCount
        let needed = streams * (2 * values + dynamics) * MemoryLayout<Scalar>.stride
        guard needed <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each, double-buffered)",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        let storage = pattern.stateMajorPattern()
        plan = try MaskedProductPlan(a: storage, b: graph.jacobianTransposed, mask: storage, layout: .runs, threads: threads,
                                     memoryBudget: max(0, memoryBudget - needed))
        func position(_ state: Int, _ parameter: Int) -> Int? { storage.position(row: parameter, column: state) }
        var immediateStart = [Int32](repeating: -1, count: graph.stateSize)
        for c in 0..<graph.cell.stateComponents {
            for i in 0..<k { immediateStart[c * k + i] = Int32(position(c * k + i, Int(layout.unitStart[i])) ?? -1) }
        }
        self.pattern = pattern
        self.storage = storage
        self.immediateStart = immediateStart
        self.skipsQuietUnits = skipsQuietUnits
        thresholds = graph.cell == .egru
            ? ThresholdImmediate(layout: layout, weightHH: weightHH, hiddenSize: k, column: { state, _ in state }, position: position)
            : nil
        self.streams = (0..<streams).map { _ in Stream(values: values, dynamics: dynamics) }
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                stateWeights w: UnsafeBufferPointer<Scalar>, gradient g: UnsafeMutableBufferPointer<Scalar>) throws {
        let stream = streams[b], graph = pattern.graph, layout = pattern.layout, k = graph.hiddenSize
        try stream.dynamics.withUnsafeMutableBufferPointer { dt in
            StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: r, into: dt)
            try stream.current.withUnsafeBufferPointer { a in
                try stream.next.withUnsafeMutableBufferPointer { c in
                    stream.skipped = try plan.execute(a: a, b: UnsafeBufferPointer(dt), into: c, skippingZeroFactors: skipsQuietUnits)
                    for component in 0..<graph.cell.stateComponents {
                        layout.withImmediateRow(r, component: component, gateRows: weightHH.rowCount) { row in
                            for i in 0..<k {
                                let first = Int(layout.unitStart[i])
                                row.add(first: first, count: Int(layout.unitStart[i + 1]) - first,
                                        into: c.baseAddress! + Int(immediateStart[component * k + i]), times: 1)
                            }
                        }
                    }
                    thresholds?.add(weightHH: weightHH, record: r, into: c)
                }
            }
        }
        swap(&stream.current, &stream.next)
        stream.current.withUnsafeBufferPointer { j in storage.multiplyAdd(values: j, w, into: g) }
    }

    func reset(stream b: Int, gradient: UnsafeMutableBufferPointer<Scalar>) {
        streams[b].current.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    func saveState(stream b: Int) -> InfluenceState<Scalar> { InfluenceState(values: streams[b].current) }

    func restoreState(stream b: Int, _ state: InfluenceState<Scalar>) throws {
        streams[b].current = try checkedCount(state.values, streams[b].current.count, "influence matrix")
    }

    func skippedWorkFraction(stream b: Int) -> Double {
        plan.multiplyAdds == 0 ? 0 : Double(streams[b].skipped) / Double(plan.multiplyAdds)
    }
}
