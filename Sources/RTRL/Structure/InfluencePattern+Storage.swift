import SparseKernels

/// The storage orders of an influence matrix on a pattern, as the kernel layer's plans see them.
extension InfluencePattern {
    /// The unit blocks for the kernel layer's `BlockProductPlan`, with D as its matrix A: the
    /// maximal runs of consecutive units that share a reach set (`groups`), and for each group a
    /// block whose rows are the state variables of R, unit by unit (increasing) and, within a
    /// unit, component by component (`row(ofState:inGroup:)`: an LSTM unit's h and c rows, which
    /// share their columns in D, are adjacent), and whose columns are the group's parameters
    /// (their column sums are the θ-ordered gradient).
    public func unitBlocks() -> (groups: [Range<Int>], blocks: [BlockProductPlan.Block]) {
        let k = graph.hiddenSize, components = graph.cell.stateComponents
        let groups = unitGroups(minimumRows: Int.max)
        let blocks = groups.map { group -> BlockProductPlan.Block in
            let reach = reach(ofUnit: group.lowerBound)
            var rows: [Int32] = []
            rows.reserveCapacity(components * reach.count)
            for u in reach { for c in 0..<components { rows.append(Int32(c * k) + u) } }
            let first = Int(layout.unitStart[group.lowerBound])
            return .init(rows: rows, columnCount: Int(layout.unitStart[group.upperBound]) - first, columnSumStart: first)
        }
        return (groups, blocks)
    }

    /// The row of state variable q in the unit block of a group (`unitBlocks`), or nil if q's unit
    /// is outside the group's reach set.
    public func row(ofState q: Int, inGroup group: Range<Int>) -> Int? {
        let k = graph.hiddenSize, reach = reach(ofUnit: group.lowerBound)
        let unit = Int32(q % k)
        var lower = reach.startIndex, upper = reach.endIndex
        while lower < upper {
            let middle = (lower + upper) / 2
            if reach[middle] < unit { lower = middle + 1 } else { upper = middle }
        }
        guard lower < reach.endIndex, reach[lower] == unit else { return nil }
        return (lower - reach.startIndex) * graph.cell.stateComponents + q / k
    }

    /// Jᵀ (p × S) in state-major order: column q lists, increasing, the parameters θ whose reach
    /// includes q's unit. Since a unit's parameters are adjacent, each column is a sequence of
    /// whole unit blocks, and the update Jᵀ ← Jᵀ · Dᵀ has runs of length f_i.
    public func stateMajorPattern() -> SparsityPattern {
        let k = graph.hiddenSize, components = graph.cell.stateComponents
        let reachedBy = reach.transposed() // column u: units i with u ∈ R(i)
        var pointers = [Int32](repeating: 0, count: components * k + 1)
        var rows: [Int32] = []
        rows.reserveCapacity(statistics.nonzeros)
        for c in 0..<components {
            for u in 0..<k {
                for i in reachedBy.rows(inColumn: u) {
                    for t in layout.unitStart[Int(i)]..<layout.unitStart[Int(i) + 1] { rows.append(t) }
                }
                pointers[c * k + u + 1] = Int32(rows.count)
            }
        }
        return SparsityPattern(uncheckedInfluence: layout.count, components * k, pointers, rows)
    }

    /// The unit-blocked order Ĵ (p × N, N = components · Σ|R(i)|): for each unit i and each state
    /// variable q of a unit in R(i) (component-major, increasing), one column holding unit i's
    /// parameters. Unit i's block — J[R(i), params of i] — is then contiguous.
    /// Returns the pattern and, for each column, the state variable it carries and its unit.
    public func unitBlockedPattern() -> (pattern: SparsityPattern, state: [Int32], unit: [Int32]) {
        groupedBlockedPattern(groups: (0..<graph.hiddenSize).map { $0..<$0 + 1 })
    }

    /// Consecutive units with the same reach set, gathered into groups of at least `minimumRows`
    /// parameters where the reach sets allow (the last group of a run may be smaller). Grouping
    /// changes only the storage order: a group's units share their columns (one per state
    /// variable of the common reach set), which are longer.
    /// A shard's groups cover its own units only.
    public func unitGroups(minimumRows: Int) -> [Range<Int>] {
        let k = units.upperBound
        var groups: [Range<Int>] = []
        var start = units.lowerBound
        while start < k {
            var end = start + 1
            var rows = Int(layout.unitStart[end] - layout.unitStart[start])
            while end < k && rows < minimumRows && reach(ofUnit: end).elementsEqual(reach(ofUnit: start)) {
                rows += Int(layout.unitStart[end + 1] - layout.unitStart[end])
                end += 1
            }
            groups.append(start..<end)
            start = end
        }
        return groups
    }

    /// The unit-blocked order with units grouped (each group's units must share one reach set):
    /// for each group g and each state variable q of a unit in R(g) (component-major,
    /// increasing), one column holding the parameters of g's units (contiguous). Group g's block
    /// J[R(g), params of g] is contiguous, column-major. Returns the pattern and, for each column,
    /// its state variable and its group.
    public func groupedBlockedPattern(groups: [Range<Int>]) -> (pattern: SparsityPattern, state: [Int32], unit: [Int32]) {
        let k = graph.hiddenSize, components = graph.cell.stateComponents
        var pointers: [Int32] = [0], rows: [Int32] = [], state: [Int32] = [], unit: [Int32] = []
        rows.reserveCapacity(statistics.nonzeros)
        for (g, group) in groups.enumerated() {
            let first = layout.unitStart[group.lowerBound], end = layout.unitStart[group.upperBound]
            for c in 0..<components {
                for u in reach(ofUnit: group.lowerBound) {
                    for t in first..<end { rows.append(t) }
                    pointers.append(Int32(rows.count))
                    state.append(Int32(c * k + Int(u)))
                    unit.append(Int32(g))
                }
            }
        }
        return (SparsityPattern(uncheckedInfluence: layout.count, state.count, pointers, rows), state, unit)
    }
}

extension SparsityPattern {
    fileprivate init(uncheckedInfluence rows: Int, _ columns: Int, _ pointers: [Int32], _ rowIndices: [Int32]) {
        try! self.init(rowCount: rows, columnCount: columns, columnPointers: pointers, rowIndices: rowIndices)
    }
}

extension InfluencePattern {
    /// The block-diagonal Δ = ⊕_i D[R(i), R(i)]ᵀ (N × N) that updates the unit-blocked order:
    /// Ĵ ← Ĵ · Δ is, block by block, J[R(i), params of i] ← D[R(i), R(i)] · J[R(i), params of i].
    /// `source[t]` is the position in Dᵀ's values (on `graph.jacobianTransposed`) of Δ's entry t,
    /// so Δ's values are gathered from D's each step.
    public func unitBlockedJacobian(columnState: [Int32], columnUnit: [Int32]) -> (pattern: SparsityPattern, source: [Int32]) {
        let dt = graph.jacobianTransposed, k = graph.hiddenSize
        var local = [Int32](repeating: -1, count: graph.stateSize)
        var pointers: [Int32] = [0], rows: [Int32] = [], source: [Int32] = []
        var start = 0
        while start < columnState.count {
            // Columns start ..< end belong to one unit; map their states to local indices.
            var end = start
            while end < columnState.count && columnUnit[end] == columnUnit[start] { end += 1 }
            for c in start..<end { local[Int(columnState[c])] = Int32(c) }
            for c in start..<end {
                let q = Int(columnState[c])
                for p in Int(dt.columnPointers[q])..<Int(dt.columnPointers[q + 1]) {
                    let r = local[Int(dt.rowIndices[p])]
                    if r >= 0 { rows.append(r); source.append(Int32(p)) }
                }
                pointers.append(Int32(rows.count))
            }
            for c in start..<end { local[Int(columnState[c])] = -1 }
            start = end
        }
        _ = k
        return (try! SparsityPattern(rowCount: columnState.count, columnCount: columnState.count,
                                     columnPointers: pointers, rowIndices: rows), source)
    }
}
