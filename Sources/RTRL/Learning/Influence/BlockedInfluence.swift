import Synchronization
import SparseKernels

/// The influence matrix in unit blocks (<doc:TheInfluenceUpdate>), updated by one `BlockProductPlan`:
///
///     B_g ← D[R(g), R(g)] · B_g + I_g,      g += wᵀ B   (one pass over J per step)
///
/// Every parameter of unit i has the same reach set R(i), so J's columns for unit i form a dense
/// block J[R(i), params of i]; consecutive units with the same reach set share one block (for
/// exact RTRL on a connected graph, all of them), whose row for state variable q holds the
/// group's parameters contiguously. D[R, R] is read straight from D's values by the plan's value
/// index. The immediate term — unit i's row (c, i), and the EGRU thresholds' entries — is written
/// to a small buffer first and added by the plan as the panel is written, and the gradient wᵀJ
/// rides in the same pass, so J is read once and written once per step. The blocks are stored
/// panel by panel, each panel one stretch of memory (`BlockProductPlan.Layout.panelMajor`); when J
/// outgrows the L2 cache (`BlockedStorageTuning.shiftingFromBytes`), with a gap as well
/// (`shiftingPanels`): each panel is then read where it is while its new values go into the gap,
/// so J moves between two placements step to step (each stream keeps its own) and no panel is
/// copied aside, for a few percent more memory (the gap, and rows padded to whole vectors).
///
/// Checkpoints hold the values in the ungrouped unit-blocked order ("blocked": unit by unit, then
/// state variable of R(i) component-major, then parameter), whatever the grouping and the row
/// order of the blocks (unit-major, so that an LSTM unit's h and c rows are adjacent).
final class BlockedInfluence<Scalar: SparseScalar>: InfluenceStorage {
    let pattern: InfluencePattern
    let plan: BlockProductPlan
    /// The groups of units sharing a block.
    let groups: [Range<Int>]
    /// EGRU: the thresholds' immediate terms, in the plan's addition order after the unit rows.
    let thresholds: ThresholdAdditions?
    /// The entries of D the blocks read, where that is well under all of them (SnAp-1 reads
    /// the diagonal): D is then computed there only.
    let dynamicsSubset: DynamicsSubset?

    /// One stream's buffers (separate objects, so streams update concurrently).
    final class Stream {
        /// J's values in the plan's storage (`storageCount`: gaps and padding included), 64-byte
        /// aligned as the shifting panels need to be read at speed; zero-filled, owned here.
        private let storage: OwnedBuffer<Scalar>
        var values: UnsafeMutableBufferPointer<Scalar> { storage.buffer }
        var dynamics: [Scalar]
        var additions: [Scalar]
        /// Where J's values are in `values` this step.
        var placement = BlockProductPlan.Placement.upper
        let workspace: BlockProductPlan.Workspace
        init(values: Int, dynamics: Int, additions: Int, workspace: BlockProductPlan.Workspace) {
            storage = OwnedBuffer(count: values, zeroedAs: 0, alignment: 64)
            self.dynamics = [Scalar](repeating: 0, count: dynamics)
            self.additions = [Scalar](repeating: 0, count: additions)
            self.workspace = workspace
        }
    }
    let streams: [Stream]

    var storageName: String { InfluenceLayout.unitBlocked.rawValue }
    var multiplyAdds: Int { plan.multiplyAdds }
    var bytesPerStream: Int {
        (plan.storageCount + plan.additionValueCount + pattern.graph.jacobianTransposed.nonzeroCount) * MemoryLayout<Scalar>.stride
    }

    init(pattern: InfluencePattern, streams: Int, threads: Int, weightHH: SparsityPattern, memoryBudget: Int) throws {
        let graph = pattern.graph, layout = pattern.layout, k = graph.hiddenSize, components = graph.cell.stateComponents
        let stride = MemoryLayout<Scalar>.stride
        let values = pattern.statistics.nonzeros
        let perStream = (values + components * layout.count + graph.jacobianTransposed.nonzeroCount) * stride
        guard streams * perStream <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each)",
                                     neededBytes: streams * perStream, budgetBytes: memoryBudget)
        }
        let (groups, unitBlocks) = pattern.unitBlocks()
        // Column sums: through u = S_bᵀw for a block whose rows are every state (exact RTRL's, or a
        // SnAp-n block whose reach closed), row by row for the narrower blocks of SnAp (4–6%
        // faster on rnn k = 512 SnAp-2, Docs/BENCHMARKS.md). Decided by the rows alone, which a
        // model-parallel split by units leaves whole, so every piece of a block takes the form
        // the unsplit run takes and the gradients stay bit-identical.
        let blocks = unitBlocks.map { block in
            var block = block
            block.columnSumMethod = block.rows.count == graph.stateSize ? .transposed : .rowByRow
            return block
        }
        var groupOf = [Int](repeating: 0, count: k)
        for (g, group) in groups.enumerated() { for i in group { groupOf[i] = g } }
        // Additions: every unit's immediate rows (component-major), then the thresholds' terms.
        var additions: [BlockProductPlan.Addition] = []
        for c in 0..<components {
            for i in pattern.units {
                let g = groupOf[i], first = Int(layout.unitStart[groups[g].lowerBound])
                additions.append(.init(block: g, row: pattern.row(ofState: c * k + i, inGroup: groups[g])!, column: Int(layout.unitStart[i]) - first,
                                       count: layout.parameterCount(ofUnit: i)))
            }
        }
        var thresholds: ThresholdAdditions? = nil
        if graph.cell == .egru {
            let terms = ThresholdAdditions(layout: layout, weightHH: weightHH, hiddenSize: k) { state, parameter in
                let unit = Int(layout.storage[parameter]) // ϑ_j's unit is j
                guard pattern.units.contains(unit) else { return nil }
                let g = groupOf[unit]
                return pattern.row(ofState: state, inGroup: groups[g]).map { (g, $0, parameter - Int(layout.unitStart[groups[g].lowerBound])) }
            }
            for term in terms.targets { additions.append(.init(block: term.block, row: term.row, column: term.column, count: 1)) }
            thresholds = terms
        }
        // Which entries of D the blocks read: (q, j) with q and j in one block's rows.
        let dt = graph.jacobianTransposed
        var used = [Bool](repeating: false, count: dt.nonzeroCount), inBlock = [Bool](repeating: false, count: graph.stateSize)
        for block in blocks {
            for q in block.rows { inBlock[Int(q)] = true }
            for q in block.rows {
                for p in Int(dt.columnPointers[Int(q)])..<Int(dt.columnPointers[Int(q) + 1]) where inBlock[Int(dt.rowIndices[p])] {
                    used[p] = true
                }
            }
            for q in block.rows { inBlock[Int(q)] = false }
        }
        let subset = DynamicsSubset(graph: graph, weightHH: weightHH, used: used)
        dynamicsSubset = subset.fraction < 0.5 ? subset : nil
        let (d, position) = graph.jacobianTransposed.transposedWithPositions()
        plan = try BlockProductPlan(a: d, aValueIndex: position, aValueCount: graph.jacobianTransposed.nonzeroCount,
                                    blocks: blocks, additions: additions, columnSumCount: layout.count, threads: threads,
                                    layout: values * stride >= BlockedStorageTuning.shiftingFromBytes.load(ordering: .relaxed)
                                        ? .shiftingPanels : .panelMajor,
                                    memoryBudget: max(0, memoryBudget - streams * perStream), scalar: Scalar.self)
        precondition(plan.valueCount == values, "the blocks hold every entry of the pattern")
        // The storage holds the gaps and the rows' padding besides J's entries (a few percent).
        let stored = streams * (perStream + (plan.storageCount - values) * stride)
        guard stored <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each, \(plan.storageCount) stored)",
                                     neededBytes: stored, budgetBytes: memoryBudget)
        }
        self.pattern = pattern
        self.groups = groups
        self.thresholds = thresholds
        let plan = self.plan
        self.streams = try (0..<streams).map { _ in
            Stream(values: plan.storageCount, dynamics: graph.jacobianTransposed.nonzeroCount, additions: plan.additionValueCount,
                   workspace: try plan.makeWorkspace())
        }
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                stateWeights w: UnsafeBufferPointer<Scalar>, gradient g: UnsafeMutableBufferPointer<Scalar>) throws {
        let stream = streams[b], graph = pattern.graph, layout = pattern.layout
        stream.dynamics.withUnsafeMutableBufferPointer { dt in
            if let dynamicsSubset {
                StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: r, subset: dynamicsSubset, into: dt)
            } else {
                StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: r, into: dt)
            }
        }
        // The immediate rows, in the plan's addition order (component, unit), then the thresholds.
        stream.additions.withUnsafeMutableBufferPointer { e in
            var offset = 0
            for c in 0..<graph.cell.stateComponents {
                layout.withImmediateRow(r, component: c, gateRows: weightHH.rowCount) { row in
                    for i in pattern.units {
                        let first = Int(layout.unitStart[i]), count = Int(layout.unitStart[i + 1]) - first
                        row.write(first: first, count: count, into: e.baseAddress! + offset)
                        offset += count
                    }
                }
            }
            thresholds?.write(weightHH: weightHH, record: r, into: UnsafeMutableBufferPointer(rebasing: e[offset...]))
        }
        // A step without a loss (w = 0) needs no gradient pass.
        let weighted = w.contains { $0 != 0 }
        try stream.dynamics.withUnsafeBufferPointer { dt in
            try stream.additions.withUnsafeBufferPointer { e in
                try plan.execute(a: dt, x: stream.values, additions: e, rowWeights: weighted ? w : nil, columnSums: weighted ? g : nil,
                                 placement: &stream.placement, workspace: stream.workspace)
            }
        }
    }

    func reset(stream b: Int, gradient: UnsafeMutableBufferPointer<Scalar>) {
        streams[b].values.update(repeating: 0)
    }

    /// Calls `body(storage, canonical)` for every value: where it lives in the plan's storage (in
    /// the given placement), and its place in the ungrouped order (unit by unit, then component,
    /// then state variable of the reach set, then the unit's parameters). Block rows are
    /// unit-major: row u · components + c of a group's block is component c of the u-th state
    /// variable of its reach set.
    private func forEachValue(placement: BlockProductPlan.Placement, _ body: (Int, Int) -> Void) {
        let layout = pattern.layout, components = pattern.graph.cell.stateComponents
        var canonical = 0
        for (g, group) in groups.enumerated() {
            let reached = pattern.reach(ofUnit: group.lowerBound).count
            let first = Int(layout.unitStart[group.lowerBound])
            for i in group {
                let f = layout.parameterCount(ofUnit: i), column = Int(layout.unitStart[i]) - first
                for c in 0..<components {
                    for u in 0..<reached {
                        for t in 0..<f {
                            body(plan.valueIndex(block: g, row: u * components + c, column: column + t, placement: placement)!, canonical)
                            canonical += 1
                        }
                    }
                }
            }
        }
    }

    func saveState(stream b: Int) -> InfluenceState<Scalar> {
        let values = streams[b].values
        var canonical = [Scalar](repeating: 0, count: plan.valueCount)
        forEachValue(placement: streams[b].placement) { from, to in canonical[to] = values[from] }
        return InfluenceState(values: canonical)
    }

    func restoreState(stream b: Int, _ state: InfluenceState<Scalar>) throws {
        let canonical = try checkedCount(state.values, plan.valueCount, "influence matrix")
        let values = streams[b].values
        forEachValue(placement: streams[b].placement) { to, from in values[to] = canonical[from] }
    }
}

/// Tuning of the unit-blocked storage, for benchmarks and tests (not a stable API).
package enum BlockedStorageTuning {
    /// The size of one stream's J, in bytes, from which its blocks are stored as shifting panels
    /// instead of copied panel by panel: 1 MiB, this machine's L2 cache. Below it J stays in the L2
    /// between steps, the copy costs little, and the gaps and padding would be a larger share of
    /// a small J; above it the shifting panels measured 8% faster than the copy on gru k = 256
    /// SnAp-2 (13 MB; Docs/BENCHMARKS.md). Read when a learner is built; 0 makes every storage shift.
    package static let shiftingFromBytes = Atomic<Int>(1 << 20)
}

/// The EGRU thresholds' immediate terms as a list of single entries, in a fixed order: for every
/// stored entry p of weight_hh (column j, row r): ∂(state of r's unit)/∂ϑ_j through y_{t−1,j},
/// `recurrentCoefficient[r] · weight_hh[p] · thresholdPreviousOutput[j]`; then for every unit j,
/// `thresholdSelf[j]`. Entries the influence pattern drops are left out.
struct ThresholdAdditions: Sendable {
    /// Where each term lands: block, row and column, from the caller's `place(state, parameter)`.
    let targets: [(block: Int, row: Int, column: Int)]
    /// For each term: p ≥ 0 (a recurrent entry) or −1 − j (unit j's own term), and its column j.
    let source: [Int32]
    let column: [Int32]

    init(layout: ParameterLayout, weightHH: SparsityPattern, hiddenSize k: Int,
         place: (_ state: Int, _ parameter: Int) -> (Int, Int, Int)?) {
        var thresholdParameter = [Int](repeating: -1, count: k)
        for t in 0..<layout.count where layout.source[t] == .threshold { thresholdParameter[Int(layout.storage[t])] = t }
        var targets: [(block: Int, row: Int, column: Int)] = [], source: [Int32] = [], column: [Int32] = []
        for j in 0..<weightHH.columnCount {
            for p in Int(weightHH.columnPointers[j])..<Int(weightHH.columnPointers[j + 1]) {
                if let target = place(Int(weightHH.rowIndices[p]) % k, thresholdParameter[j]) {
                    targets.append(target)
                    source.append(Int32(p))
                    column.append(Int32(j))
                }
            }
        }
        for j in 0..<k {
            if let target = place(j, thresholdParameter[j]) {
                targets.append(target)
                source.append(-1 - Int32(j))
                column.append(Int32(j))
            }
        }
        self.targets = targets
        self.source = source
        self.column = column
    }

    /// Writes this step's terms, in order, to the front of `e`.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func write<Scalar: SparseScalar>(weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                     into e: UnsafeMutableBufferPointer<Scalar>) {
        let w = weightHH.pattern
        w.rowIndices.withUnsafeBufferPointer { rows in
            weightHH.values.withUnsafeBufferPointer { values in
                r.recurrentCoefficient.withUnsafeBufferPointer { coefficient in
                    r.thresholdPreviousOutput.withUnsafeBufferPointer { dy in
                        r.thresholdSelf.withUnsafeBufferPointer { own in
                            for t in 0..<source.count {
                                let s = Int(source[t]), j = Int(column[t])
                                e[t] = s >= 0 ? coefficient[Int(rows[s])] * values[s] * dy[j] : own[j]
                            }
                        }
                    }
                }
            }
        }
    }
}
