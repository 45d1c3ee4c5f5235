import Synchronization
import SparseKernels

/// The EGRU's activity-sparse influence update (unit-blocked storage, skipping quiet units):
/// J held as Ŷ·diag(σ), the stored values and one scale per column, and updated in place by the
/// kernel layer's `ScaledBlockProductPlan`, so D's diagonal costs one multiplication per column
/// and only the open units' columns push their off-diagonal terms (quiet units' columns of D
/// are zero off the diagonal; the plan reads D's values in place). The gradient wᵀJ is deferred
/// as per-column weights π (the true gradient is g + Ŷπ); a column's term is folded into g just
/// before the column changes.
///
/// Columns hold the parameters of a group of consecutive units that share a reach set (about
/// `ScaledFormTuning.columnBytes` of them): the update touches scattered columns, and long
/// ones stream better (BENCHMARKS.md). The plan pads each column to a whole 64-byte line and the
/// values are held 64-byte aligned, so no vector the update's loops load straddles two lines
/// (about 13% faster skipping steps); every value is placed through `columnValueStart`.
///
/// Checkpoints hold the state unit by unit ("blocked-scaled-units"): for every unit, every
/// column of its group (state variable of the group's reach set) holds the unit's values, its
/// scale and its deferred weight. Units of one group share their columns' scales and weights,
/// which evolve with the column's state variable alone, so any grouping — a shard's, or another
/// column length — reads the same checkpoint, and shards of consecutive units concatenate. The
/// older order, the storage's own ("blocked-scaled"), is still read by a learner grouped alike.
final class ScaledInfluence<Scalar: SparseScalar>: InfluenceStorage {
    let pattern: InfluencePattern
    /// The groups of units sharing columns.
    let groups: [Range<Int>]
    let storage: SparsityPattern
    /// The state variable of every storage column, and its unit.
    let columnState: [Int32]
    let columnUnit: [Int32]
    let plan: ScaledBlockProductPlan
    /// Position of (state (c, i), first parameter of unit i), indexed c·k + i, and its column.
    let immediateStart: [Int32]
    let immediateColumn: [Int32]
    let thresholds: ThresholdImmediate
    /// The first parameter of every column (its rows are contiguous), where the column starts in
    /// the values (the plan pads columns to whole cache lines), and its length.
    let columnFirstRow: [Int32]
    let columnValueStart: [Int32]
    let columnLength: [Int32]

    final class Stream {
        /// The plan's values Y (`valueCount`, padding included), 64-byte aligned; owned here.
        private let storage: OwnedBuffer<Scalar>
        var values: UnsafeMutableBufferPointer<Scalar> { storage.buffer }
        var dynamics: [Scalar]
        /// Column scales σ, deferred gradient weights π, open flags.
        var scale: [Scalar]
        var pending: [Scalar]
        var open: [UInt8]
        let workspace: ScaledBlockProductPlan.Workspace
        /// Multiply-adds skipped and columns written by the last update.
        var skipped = 0
        var columnsWritten = 0
        init(values: Int, dynamics: Int, columns: Int, workspace: ScaledBlockProductPlan.Workspace) {
            storage = OwnedBuffer(count: values, zeroedAs: 0, alignment: 64)
            self.dynamics = [Scalar](repeating: 0, count: dynamics)
            scale = [Scalar](repeating: 1, count: columns)
            pending = [Scalar](repeating: 0, count: columns)
            open = [UInt8](repeating: 0, count: columns)
            self.workspace = workspace
        }
    }
    let streams: [Stream]

    var storageName: String { Self.unitOrderName }
    /// The name of checkpoints written unit by unit.
    static var unitOrderName: String { "blocked-scaled-units" }
    /// The name of checkpoints written in the storage's own order (before "blocked-scaled-units").
    static var storageOrderName: String { "blocked-scaled" }
    var multiplyAdds: Int { plan.multiplyAdds }
    var bytesPerStream: Int {
        let stride = MemoryLayout<Scalar>.stride
        return plan.valueCount * stride + columnState.count * (2 * stride + 1) + pattern.graph.jacobianTransposed.nonzeroCount * stride
    }

    init(pattern: InfluencePattern, streams: Int, threads: Int, weightHH: SparsityPattern, memoryBudget: Int) throws {
        let graph = pattern.graph, k = graph.hiddenSize, layout = pattern.layout
        precondition(graph.cell == .egru, "the scaled form is the EGRU's")
        let values = pattern.statistics.nonzeros, stride = MemoryLayout<Scalar>.stride
        let columns = pattern.statistics.reachPairs * graph.cell.stateComponents
        let dynamics = graph.jacobianTransposed.nonzeroCount
        let needed = streams * (values * stride + columns * (2 * stride + 1) + dynamics * stride)
        guard needed <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each)",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        let groups = pattern.unitGroups(minimumRows: ScaledFormTuning.columnBytes.load(ordering: .relaxed) / stride)
        let blocked = pattern.groupedBlockedPattern(groups: groups)
        self.groups = groups
        storage = blocked.pattern
        columnState = blocked.state
        columnUnit = blocked.state.map { $0 % Int32(k) }
        let delta = pattern.unitBlockedJacobian(columnState: blocked.state, columnUnit: blocked.unit)
        // One block per group g: its columns (g, q ∈ R(g)), each holding g's parameters.
        plan = try ScaledBlockProductPlan(
            blockColumns: groups.map { graph.cell.stateComponents * pattern.reach(ofUnit: $0.lowerBound).count },
            blockRows: groups.map { Int(layout.unitStart[$0.upperBound] - layout.unitStart[$0.lowerBound]) },
            blockFirstRows: groups.map { Int(layout.unitStart[$0.lowerBound]) }, rowCount: layout.count,
            b: delta.pattern, bValueIndex: delta.source, bValueCount: dynamics, threads: threads,
            columnAlignment: 64 / stride, memoryBudget: max(0, memoryBudget - needed))
        // The padding of the columns is held too.
        let held = needed + streams * (plan.valueCount - values) * stride
        guard held <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each, \(plan.valueCount) stored)",
                                     neededBytes: held, budgetBytes: memoryBudget)
        }
        // Where each storage column's values lie among the plan's (its columns are the storage's).
        var valueStart: [Int32] = [], length: [Int32] = []
        for c in 0..<storage.columnCount {
            let range = self.plan.valueRange(ofColumn: c)!
            precondition(range.count == Int(storage.columnPointers[c + 1] - storage.columnPointers[c]),
                         "a plan column holds its storage column's parameters")
            valueStart.append(Int32(range.lowerBound))
            length.append(Int32(range.count))
        }
        columnValueStart = valueStart
        columnLength = length
        // Where each (state, parameter) lives.
        var groupOfUnit = [Int](repeating: 0, count: k)
        for (g, group) in groups.enumerated() { for i in group { groupOfUnit[i] = g } }
        var columnOf = [Int: Int]() // group · S + state → column
        for c in 0..<storage.columnCount { columnOf[Int(blocked.unit[c]) * graph.stateSize + Int(blocked.state[c])] = c }
        let storage = self.storage
        func column(_ state: Int, _ parameter: Int) -> Int? {
            let unit = layout.unitStart.lastIndex(where: { $0 <= Int32(parameter) })!
            guard pattern.units.contains(unit) else { return nil } // another shard's
            return columnOf[groupOfUnit[unit] * graph.stateSize + state]
        }
        /// Where (state, parameter) lives among the plan's values.
        func position(_ state: Int, _ parameter: Int) -> Int? {
            column(state, parameter).flatMap { c in
                storage.position(row: parameter, column: c).map { Int(valueStart[c]) + $0 - Int(storage.columnPointers[c]) }
            }
        }
        var immediateStart = [Int32](repeating: -1, count: graph.stateSize)
        var immediateColumn = [Int32](repeating: -1, count: graph.stateSize)
        for i in pattern.units {
            let first = Int(layout.unitStart[i])
            immediateStart[i] = Int32(position(i, first) ?? -1)
            immediateColumn[i] = Int32(column(i, first) ?? -1)
        }
        self.pattern = pattern
        self.immediateStart = immediateStart
        self.immediateColumn = immediateColumn
        columnFirstRow = (0..<storage.columnCount).map { c in
            storage.columnPointers[c] < storage.columnPointers[c + 1] ? storage.rowIndices[Int(storage.columnPointers[c])] : 0
        }
        thresholds = ThresholdImmediate(layout: layout, weightHH: weightHH, hiddenSize: k, column: column, position: position)
        let plan = self.plan, columnCount = columnState.count
        self.streams = (0..<streams).map { _ in
            Stream(values: plan.valueCount, dynamics: dynamics, columns: columnCount, workspace: plan.makeWorkspace())
        }
    }

    /// D's diagonal into the column scales, the off-diagonal terms of the open units' columns
    /// only, then the immediate terms divided by their column's scale; last, the deferred
    /// gradient: X·x = Ŷ·(σ ⊙ x), kept as weights until a column changes or is read. The same
    /// product as the plain update, to rounding (the terms are summed in another order).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                stateWeights w: UnsafeBufferPointer<Scalar>, gradient g: UnsafeMutableBufferPointer<Scalar>) throws {
        let stream = streams[b], graph = pattern.graph
        stream.dynamics.withUnsafeMutableBufferPointer { dt in
            StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: r, into: dt)
        }
        r.columnScale.withUnsafeBufferPointer { scale in
            columnUnit.withUnsafeBufferPointer { unit in
                stream.open.withUnsafeMutableBufferPointer { open in
                    for c in 0..<open.count { open[c] = scale[Int(unit[c])] != 0 ? 1 : 0 }
                }
            }
        }
        let y = stream.values
        do {
            try stream.scale.withUnsafeMutableBufferPointer { s in
                try stream.pending.withUnsafeMutableBufferPointer { pending in
                    let done = try stream.dynamics.withUnsafeBufferPointer { dt in
                        try stream.open.withUnsafeBufferPointer { open in
                            try plan.update(values: y, scales: s, pendingWeights: pending, g: g, bValues: dt, activeRows: open,
                                            workspace: stream.workspace)
                        }
                    }
                    stream.skipped = plan.multiplyAdds - done.multiplyAdds
                    stream.columnsWritten = done.columnsWritten
                    addImmediate(r, into: y, weightHH: weightHH, scales: UnsafeBufferPointer(s), pending: pending, gradient: g)
                    columnState.withUnsafeBufferPointer { state in
                        for c in 0..<pending.count { pending[c] += w[Int(state[c])] * s[c] }
                    }
                }
            }
        }
    }

    /// Adds the immediate terms I_t: each target column's deferred gradient is folded in first,
    /// and the terms are divided by the column's scale.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func addImmediate(_ r: StepRecord<Scalar>, into j: UnsafeMutableBufferPointer<Scalar>, weightHH: SparseMatrix<Scalar>,
                              scales: UnsafeBufferPointer<Scalar>, pending: UnsafeMutableBufferPointer<Scalar>,
                              gradient: UnsafeMutableBufferPointer<Scalar>) {
        let layout = pattern.layout
        columnValueStart.withUnsafeBufferPointer { pointers in
            columnFirstRow.withUnsafeBufferPointer { firstRow in
                layout.withImmediateRow(r, component: 0, gateRows: weightHH.rowCount) { row in
                    for i in pattern.units {
                        let column = Int(immediateColumn[i])
                        let weight = pending[column]
                        if weight != 0 {
                            // Fold the whole column (its group's parameters) before it changes.
                            let start = Int(pointers[column]), first = Int(firstRow[column])
                            for t in 0..<Int(columnLength[column]) { gradient[first + t] += weight * j[start + t] }
                            pending[column] = 0
                        }
                        let first = Int(layout.unitStart[i])
                        row.add(first: first, count: Int(layout.unitStart[i + 1]) - first,
                                into: j.baseAddress! + Int(immediateStart[i]), times: 1 / scales[column])
                    }
                }
            }
        }
        thresholds.addScaled(weightHH: weightHH, record: r, into: j, scales: scales, pending: UnsafeBufferPointer(pending),
                             columnStart: columnValueStart, columnFirstRow: columnFirstRow, gradient: gradient)
    }

    /// Folds the deferred gradient into `gradient`, then zeroes J (σ = 1).
    func reset(stream b: Int, gradient g: UnsafeMutableBufferPointer<Scalar>) {
        let stream = streams[b]
        stream.pending.withUnsafeMutableBufferPointer { w in
            try! plan.foldPending(values: UnsafeBufferPointer(stream.values), pendingWeights: w, g: g)
        }
        stream.scale.withUnsafeMutableBufferPointer { $0.update(repeating: 1) }
        stream.values.update(repeating: 0)
    }

    func resetDeferredGradient() {
        for stream in streams { stream.pending.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
    }

    func addDeferredGradient(stream b: Int, into g: UnsafeMutableBufferPointer<Scalar>) {
        let stream = streams[b]
        stream.pending.withUnsafeBufferPointer { w in try! plan.addPending(values: UnsafeBufferPointer(stream.values), pendingWeights: w, to: g) }
    }

    /// Calls `body(column, valueStart, count)` for every unit (in order) and every column of its
    /// group: the unit's `count` values in that column start at `valueStart` of the plan's values.
    private func forEachUnitColumn(_ body: (Int, Int, Int) -> Void) {
        let layout = pattern.layout, components = pattern.graph.cell.stateComponents
        var firstColumn = 0
        for group in groups {
            let columns = components * pattern.reach(ofUnit: group.lowerBound).count
            let first = Int(layout.unitStart[group.lowerBound])
            for i in group {
                let offset = Int(layout.unitStart[i]) - first, count = layout.parameterCount(ofUnit: i)
                for j in firstColumn..<(firstColumn + columns) { body(j, Int(columnValueStart[j]) + offset, count) }
            }
            firstColumn += columns
        }
    }

    func saveState(stream b: Int) -> InfluenceState<Scalar> {
        let stream = streams[b]
        var values: [Scalar] = [], scales: [Scalar] = [], pending: [Scalar] = []
        values.reserveCapacity(storage.nonzeroCount)
        forEachUnitColumn { j, start, count in
            values.append(contentsOf: stream.values[start..<(start + count)])
            scales.append(stream.scale[j])
            pending.append(stream.pending[j])
        }
        return InfluenceState(values: values, scales: scales, pending: pending)
    }

    func restoreState(stream b: Int, _ state: InfluenceState<Scalar>) throws {
        if state.order == Self.storageOrderName { return try restoreStorageOrder(stream: b, state) }
        let stream = streams[b]
        let unitColumns = pattern.statistics.reachPairs * pattern.graph.cell.stateComponents
        let saved = try checkedCount(state.values, storage.nonzeroCount, "influence matrix")
        guard let scales = state.scales, let pending = state.pending else {
            throw RTRLError.invalidInput("the checkpoint's scaled influence matrix has no column scales or deferred gradient")
        }
        _ = try checkedCount(scales, unitColumns, "influence scales")
        _ = try checkedCount(pending, unitColumns, "deferred gradient")
        // Everything checked: now written in place.
        let values = stream.values
        var scale = stream.scale, weights = stream.pending
        var from = 0, t = 0
        forEachUnitColumn { j, start, count in
            for r in 0..<count { values[start + r] = saved[from + r] }
            from += count
            scale[j] = scales[t]
            weights[j] = pending[t]
            t += 1
        }
        stream.scale = scale
        stream.pending = weights
    }

    /// A checkpoint in the storage's own order (written by a learner grouped alike).
    private func restoreStorageOrder(stream b: Int, _ state: InfluenceState<Scalar>) throws {
        let stream = streams[b], n = columnState.count
        let values = try checkedCount(state.values, storage.nonzeroCount, "influence matrix")
        let scales = try state.scales.map { try checkedCount($0, n, "influence scales") } ?? [Scalar](repeating: 1, count: n)
        let pending = try state.pending.map { try checkedCount($0, n, "deferred gradient") } ?? [Scalar](repeating: 0, count: n)
        // The storage's order is its columns one after another, unpadded.
        for c in 0..<n {
            let from = Int(storage.columnPointers[c]), to = Int(columnValueStart[c])
            for r in 0..<Int(columnLength[c]) { stream.values[to + r] = values[from + r] }
        }
        stream.scale = scales
        stream.pending = pending
    }

    func writtenFraction(stream b: Int) -> Double {
        columnState.isEmpty ? 0 : Double(streams[b].columnsWritten) / Double(columnState.count)
    }

    func skippedWorkFraction(stream b: Int) -> Double {
        plan.multiplyAdds == 0 ? 0 : Double(streams[b].skipped) / Double(plan.multiplyAdds)
    }
}

/// Tuning of the EGRU's scaled form, for benchmarks and tests (not a stable API).
package enum ScaledFormTuning {
    /// The length, in bytes, the scaled form aims for in a column by grouping units that share a
    /// reach set (see BENCHMARKS.md for the measurement behind 8 KB). Read when a learner is
    /// built; 1 gives one unit per block.
    package static let columnBytes = Atomic<Int>(8192)
}
