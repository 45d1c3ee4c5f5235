import CSparseKernels

/// The influence matrix on a SnAp-n (or exact) pattern for a batch of streams, updated every
/// step as a masked sparse–sparse product through one `MaskedProductPlan` built once:
///
///     J_t = (D_t J_{t−1} + I_t) ⊙ M
///
/// Storage (`InfluenceLayout`): unit-blocked (Ĵ, B = Δ gathered from D) or state-major (Jᵀ,
/// B = Dᵀ). Both sum the same terms in the same order, so they give the same bits. For the EGRU
/// with skipping, the unit-blocked storage is held in scaled form instead and updated in place
/// through a `ScaledBlockProductPlan`, whose work follows the open units (see `blockPlan`).
final class SparseInfluence<Scalar: SparseScalar> {
    let pattern: InfluencePattern
    let layout: InfluenceLayout
    let storage: SparsityPattern
    /// The state variable of every storage column, and its unit.
    let columnState: [Int32]
    let columnUnit: [Int32]
    /// Unit-blocked only: the groups of units sharing blocks (single units but in scaled form),
    /// and every column's group.
    let unitGroups: [Range<Int>]
    let columnGroup: [Int32]
    /// The masked product (every path but the scaled form).
    let plan: MaskedProductPlan?
    /// Unit-blocked only: position in Dᵀ's values of every entry of Δ.
    let deltaSource: [Int32]
    /// Position of (state (c, i), first parameter of unit i), indexed c·k + i: that unit's
    /// parameters follow contiguously.
    let immediateStart: [Int32]
    let thresholds: ThresholdImmediate?
    /// Unit-blocked only: the first parameter of every column (its rows are contiguous).
    let columnFirstRow: [Int32]
    /// The activity-sparse update (EGRU, unit-blocked, skipping on): Ĵ held as Y·diag(σ) with a
    /// scale per column, so D's diagonal costs one multiplication per column, and only the open
    /// units' columns push their off-diagonal terms (`ScaledBlockProductPlan`, reading D's values
    /// in place). The gradient wᵀJ is deferred as per-column weights π (g_true = g + Ŷπ).
    let blockPlan: ScaledBlockProductPlan?
    /// Scaled form: the column holding each immediate target (state (c, i), unit i's parameters).
    let immediateColumn: [Int32]
    /// One stream's buffers (a separate object per stream, so streams update concurrently).
    final class Stream {
        /// Current influence values and the buffer the next step writes (empty in scaled form,
        /// which updates in place).
        var current: [Scalar]
        var next: [Scalar]
        /// D's values (on Dᵀ's pattern) and B's values (Δ, unit-blocked only, not in scaled form).
        var dynamics: [Scalar]
        var factor: [Scalar]
        /// w gathered onto the storage's columns (for the gradient; empty in scaled form, which
        /// defers it into `pending`).
        var columnWeights: [Scalar]
        /// Multiply-adds skipped by the last update (quiet units).
        var skipped = 0
        /// Columns of the storage written by the last update (all of them but in scaled form).
        var columnsWritten = 0
        /// Scaled form: column scales σ, deferred gradient weights π, open flags, workspace.
        var scale: [Scalar] = []
        var pending: [Scalar] = []
        var open: [UInt8] = []
        var workspace: ScaledBlockProductPlan.Workspace?
        init(values: Int, inPlace: Bool, dynamics: Int, factor: Int, columns: Int) {
            columnWeights = [Scalar](repeating: 0, count: inPlace ? 0 : columns)
            current = [Scalar](repeating: 0, count: values)
            next = inPlace ? [] : current
            self.dynamics = [Scalar](repeating: 0, count: dynamics)
            self.factor = [Scalar](repeating: 0, count: factor)
        }
    }
    let streams: [Stream]
    /// Skip terms whose D factor is exactly zero (EGRU activity sparsity; exact).
    let skipsQuietUnits: Bool
    /// Multiply-adds of one update that skipped nothing.
    let multiplyAdds: Int

    init(pattern: InfluencePattern, layout: InfluenceLayout, streams: Int, threads: Int, weightHH: SparsityPattern,
         memoryBudget: Int, skipsQuietUnits: Bool) throws {
        let graph = pattern.graph, k = graph.hiddenSize
        let values = pattern.statistics.nonzeros
        let scaled = skipsQuietUnits && layout == .unitBlocked && graph.cell == .egru
        let stride = MemoryLayout<Scalar>.stride
        // Values (double-buffered unless updated in place), plus scales and weights per column.
        let columns = layout == .unitBlocked ? pattern.statistics.reachPairs * graph.cell.stateComponents : graph.stateSize
        let needed = streams * ((scaled ? 1 : 2) * values * stride + (scaled ? columns * (2 * stride + 1) : 0))
        guard needed <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the influence matrices of \(streams) stream(s) (\(values) entries each\(scaled ? "" : ", double-buffered"))",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        self.pattern = pattern
        self.layout = layout
        self.skipsQuietUnits = skipsQuietUnits
        let bPattern: SparsityPattern, blockSource: [Int32]
        switch layout {
        case .unitBlocked:
            // The scaled form groups units that share a reach set, for longer columns: its update
            // touches scattered columns, and long ones stream better (BENCHMARKS.md).
            let groups = scaled ? pattern.unitGroups(minimumRows: ScaledFormTuning.columnBytes / stride)
                                : (0..<k).map { $0..<$0 + 1 }
            let blocked = pattern.groupedBlockedPattern(groups: groups)
            unitGroups = groups
            storage = blocked.pattern
            columnGroup = blocked.unit
            columnState = blocked.state
            let delta = pattern.unitBlockedJacobian(columnState: blocked.state, columnUnit: blocked.unit)
            bPattern = delta.pattern
            blockSource = delta.source
            deltaSource = scaled ? [] : delta.source // the scaled form's plan keeps its own copy
        case .stateMajor:
            storage = pattern.stateMajorPattern()
            unitGroups = []
            columnGroup = []
            columnState = (0..<Int32(graph.stateSize)).map { $0 }
            bPattern = graph.jacobianTransposed
            blockSource = []
            deltaSource = []
        }
        columnUnit = columnState.map { $0 % Int32(k) }
        let layoutOfParameters = pattern.layout
        if scaled {
            // One block per group g: its columns (g, q ∈ R(g)), each holding g's parameters.
            let groups = unitGroups
            let blockColumns = groups.map { graph.cell.stateComponents * pattern.reach(ofUnit: $0.lowerBound).count }
            let blockRows = groups.map { Int(layoutOfParameters.unitStart[$0.upperBound] - layoutOfParameters.unitStart[$0.lowerBound]) }
            let blockFirst = groups.map { Int(layoutOfParameters.unitStart[$0.lowerBound]) }
            let blockPlan = try ScaledBlockProductPlan(
                blockColumns: blockColumns, blockRows: blockRows, blockFirstRows: blockFirst, rowCount: layoutOfParameters.count,
                b: bPattern, bValueIndex: blockSource, bValueCount: graph.jacobianTransposed.nonzeroCount, threads: threads,
                memoryBudget: max(0, memoryBudget - needed))
            self.blockPlan = blockPlan
            plan = nil
            multiplyAdds = blockPlan.multiplyAdds
        } else {
            let plan = try MaskedProductPlan(a: storage, b: bPattern, mask: storage, layout: .runs, threads: threads,
                                             memoryBudget: max(0, memoryBudget - needed))
            self.plan = plan
            blockPlan = nil
            multiplyAdds = plan.multiplyAdds
        }
        // Where each (state, parameter) lives.
        let storage = self.storage, columnState = self.columnState
        var columnOf = [Int: Int]() // (group of parameter) * S + state → column, unit-blocked only
        var groupOfUnit = [Int](repeating: 0, count: k)
        if layout == .unitBlocked {
            for (g, group) in unitGroups.enumerated() { for i in group { groupOfUnit[i] = g } }
            for c in 0..<storage.columnCount { columnOf[Int(columnGroup[c]) * graph.stateSize + Int(columnState[c])] = c }
        }
        func column(_ state: Int, _ parameter: Int) -> Int? {
            switch layout {
            case .stateMajor:
                return state
            case .unitBlocked:
                let unit = layoutOfParameters.unitStart.lastIndex(where: { $0 <= Int32(parameter) })!
                return columnOf[groupOfUnit[unit] * graph.stateSize + state]
            }
        }
        func position(_ state: Int, _ parameter: Int) -> Int? {
            guard let c = column(state, parameter) else { return nil }
            return storage.position(row: parameter, column: c)
        }
        var immediateStart = [Int32](repeating: 0, count: graph.stateSize)
        var immediateColumn = [Int32](repeating: -1, count: graph.stateSize)
        for c in 0..<graph.cell.stateComponents {
            for i in 0..<k {
                let first = Int(layoutOfParameters.unitStart[i])
                immediateStart[c * k + i] = Int32(position(c * k + i, first) ?? -1)
                if immediateStart[c * k + i] >= 0 { immediateColumn[c * k + i] = Int32(column(c * k + i, first)!) }
            }
        }
        self.immediateStart = immediateStart
        self.immediateColumn = immediateColumn
        columnFirstRow = layout == .unitBlocked
            ? (0..<storage.columnCount).map { c in
                storage.columnPointers[c] < storage.columnPointers[c + 1] ? storage.rowIndices[Int(storage.columnPointers[c])] : 0 }
            : []
        thresholds = graph.cell == .egru
            ? ThresholdImmediate(layout: layoutOfParameters, weightHH: weightHH, hiddenSize: k, column: column, position: position)
            : nil
        let blockPlan = self.blockPlan
        self.streams = (0..<streams).map { _ in
            let stream = Stream(values: values, inPlace: scaled, dynamics: graph.jacobianTransposed.nonzeroCount,
                                factor: layout == .unitBlocked && !scaled ? bPattern.nonzeroCount : 0, columns: columnState.count)
            if let blockPlan {
                stream.scale = [Scalar](repeating: 1, count: columnState.count)
                stream.pending = [Scalar](repeating: 0, count: columnState.count)
                stream.open = [UInt8](repeating: 0, count: columnState.count)
                stream.workspace = blockPlan.makeWorkspace()
            }
            return stream
        }
    }

    /// Whether the influence is held in scaled form (see `blockPlan`).
    var isScaled: Bool { blockPlan != nil }

    /// Memory held per stream by the influence values (both buffers, or one with its scales).
    var bytesPerStream: Int {
        let stride = MemoryLayout<Scalar>.stride
        return isScaled ? storage.nonzeroCount * stride + columnState.count * (2 * stride + 1) : 2 * storage.nonzeroCount * stride
    }

    /// Starts stream b afresh (zero influence). In scaled form the deferred gradient is first
    /// folded into `gradient`.
    func reset(stream b: Int, gradient g: UnsafeMutableBufferPointer<Scalar>) {
        let stream = streams[b]
        if let blockPlan {
            stream.current.withUnsafeBufferPointer { y in
                stream.pending.withUnsafeMutableBufferPointer { w in
                    try! blockPlan.foldPending(values: y, pendingWeights: w, g: g)
                }
            }
            stream.scale.withUnsafeMutableBufferPointer { $0.update(repeating: 1) }
        }
        stream.current.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// Drops the deferred gradient of every stream (with the learner's `resetGradient`).
    func resetDeferredGradient() {
        for stream in streams where isScaled { stream.pending.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
    }

    /// Adds stream b's deferred gradient (scaled form) to a θ-ordered gradient, leaving it deferred.
    func addDeferredGradient(stream b: Int, into g: UnsafeMutableBufferPointer<Scalar>) {
        guard let blockPlan else { return }
        let stream = streams[b]
        stream.current.withUnsafeBufferPointer { y in
            stream.pending.withUnsafeBufferPointer { w in try! blockPlan.addPending(values: y, pendingWeights: w, to: g) }
        }
    }

    /// Replaces stream b's influence by saved values, with the scaled form's scales and deferred
    /// gradient weights (nil: σ = 1, π = 0).
    func restore(stream b: Int, values: [Scalar], scales: [Scalar]?, pending: [Scalar]?) {
        let stream = streams[b], n = columnState.count
        stream.current = values
        if isScaled {
            stream.scale = scales ?? [Scalar](repeating: 1, count: n)
            stream.pending = pending ?? [Scalar](repeating: 0, count: n)
        }
    }

    /// The storage order's name in checkpoints: the layout's, or "blocked-scaled" for the scaled
    /// form (whose grouped columns order the values differently).
    var storageName: String { isScaled ? "blocked-scaled" : layout.rawValue }

    /// One influence update for stream b from its step record. `gradient` is the stream's
    /// θ-ordered gradient, which the scaled form's deferred product folds into.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, weightHH: SparseMatrix<Scalar>, record: StepRecord<Scalar>,
                gradient: UnsafeMutableBufferPointer<Scalar>) throws {
        let graph = pattern.graph, stream = streams[b]
        if let blockPlan {
            try scaledUpdate(stream, plan: blockPlan, weightHH: weightHH, record: record, gradient: gradient)
            return
        }
        guard let plan else { return }
        try stream.dynamics.withUnsafeMutableBufferPointer { dt in
            StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: record, into: dt)
            try stream.factor.withUnsafeMutableBufferPointer { f in
                let bValues: UnsafeBufferPointer<Scalar>
                if layout == .unitBlocked {
                    deltaSource.withUnsafeBufferPointer { src in
                        for t in 0..<src.count { f[t] = dt[Int(src[t])] }
                    }
                    bValues = UnsafeBufferPointer(f)
                } else {
                    bValues = UnsafeBufferPointer(dt)
                }
                try stream.current.withUnsafeBufferPointer { a in
                    try stream.next.withUnsafeMutableBufferPointer { c in
                        stream.skipped = try plan.execute(a: a, b: bValues, into: c, skippingZeroFactors: skipsQuietUnits)
                        stream.columnsWritten = columnState.count
                        addImmediate(record, into: c, weightHH: weightHH)
                    }
                }
            }
        }
        swap(&stream.current, &stream.next)
    }

    /// The activity-sparse update in scaled form: D's diagonal into the column scales, the
    /// off-diagonal terms of the open units' columns only (quiet units' columns of D are zero off
    /// the diagonal), then the immediate terms divided by their column's scale. The same product
    /// as the plain update, to rounding (the terms are summed in another order).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func scaledUpdate(_ stream: Stream, plan: ScaledBlockProductPlan, weightHH: SparseMatrix<Scalar>,
                              record r: StepRecord<Scalar>, gradient g: UnsafeMutableBufferPointer<Scalar>) throws {
        let graph = pattern.graph, k = graph.hiddenSize
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
        try stream.current.withUnsafeMutableBufferPointer { y in
            try stream.scale.withUnsafeMutableBufferPointer { s in
                try stream.pending.withUnsafeMutableBufferPointer { w in
                    let done = try stream.dynamics.withUnsafeBufferPointer { dt in
                        try stream.open.withUnsafeBufferPointer { open in
                            try plan.update(values: y, scales: s, pendingWeights: w, g: g, bValues: dt, activeRows: open,
                                            workspace: stream.workspace!)
                        }
                    }
                    stream.skipped = plan.multiplyAdds - done.multiplyAdds
                    stream.columnsWritten = done.columnsWritten
                    addImmediate(r, into: y, weightHH: weightHH,
                                 scaled: ScaledTarget(scales: UnsafeBufferPointer(s), pending: w, gradient: g))
                }
            }
        }
    }

    /// The scaled form's state that adding into the values must respect: the column scales, the
    /// deferred gradient weights and the gradient they fold into.
    private struct ScaledTarget {
        let scales: UnsafeBufferPointer<Scalar>
        let pending: UnsafeMutableBufferPointer<Scalar>
        let gradient: UnsafeMutableBufferPointer<Scalar>
    }

    /// Adds the immediate terms I_t. In scaled form each target column's deferred gradient is
    /// folded in first and the terms are divided by the column's scale (the plain form multiplies
    /// by 1, which changes no bit).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func addImmediate(_ r: StepRecord<Scalar>, into j: UnsafeMutableBufferPointer<Scalar>, weightHH: SparseMatrix<Scalar>,
                              scaled: ScaledTarget? = nil) {
        let layout = pattern.layout, k = pattern.graph.hiddenSize, stride = 2 * weightHH.rowCount + 1
        storage.columnPointers.withUnsafeBufferPointer { pointers in
        columnFirstRow.withUnsafeBufferPointer { firstRow in
        layout.coefficientIndex.withUnsafeBufferPointer { ci in
            layout.featureIndex.withUnsafeBufferPointer { fi in
                r.immediateCoefficients.withUnsafeBufferPointer { coefficients in
                    r.immediateFeatures.withUnsafeBufferPointer { features in
                        for c in 0..<pattern.graph.cell.stateComponents {
                            let coefficient = coefficients.baseAddress! + c * stride
                            for i in 0..<k {
                                let target = j.baseAddress! + Int(immediateStart[c * k + i])
                                let first = Int(layout.unitStart[i]), count = Int(layout.unitStart[i + 1]) - first
                                var inverse: Scalar = 1
                                if let scaled {
                                    let column = Int(immediateColumn[c * k + i])
                                    let weight = scaled.pending[column]
                                    if weight != 0 {
                                        // Fold the whole column (its group's parameters) before it changes.
                                        let start = Int(pointers[column]), row = Int(firstRow[column])
                                        for t in 0..<Int(pointers[column + 1]) - start { scaled.gradient[row + t] += weight * j[start + t] }
                                        scaled.pending[column] = 0
                                    }
                                    inverse = 1 / scaled.scales[column]
                                }
                                for t in 0..<count {
                                    target[t] += coefficient[Int(ci[first + t])] * features[Int(fi[first + t])] * inverse
                                }
                            }
                        }
                    }
                }
            }
        }
        }
        }
        if let scaled {
            thresholds?.addScaled(weightHH: weightHH, record: r, into: j, scales: scaled.scales,
                                  pending: UnsafeBufferPointer(scaled.pending), rowOf: storage.rowIndices, gradient: scaled.gradient)
        } else {
            thresholds?.add(weightHH: weightHH, record: r, into: j)
        }
    }

    /// Adds wᵀ J (w over state variables) into a θ-ordered gradient.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func accumulate(stream b: Int, stateWeights w: UnsafeBufferPointer<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        let stream = streams[b]
        if isScaled {
            // Deferred: X·x = Ŷ·(σ ⊙ x), kept as weights until a column changes or is read.
            columnState.withUnsafeBufferPointer { state in
                stream.scale.withUnsafeBufferPointer { scale in
                    stream.pending.withUnsafeMutableBufferPointer { pending in
                        for c in 0..<pending.count { pending[c] += w[Int(state[c])] * scale[c] }
                    }
                }
            }
            return
        }
        for c in 0..<columnState.count { stream.columnWeights[c] = w[Int(columnState[c])] }
        stream.current.withUnsafeBufferPointer { j in
            stream.columnWeights.withUnsafeBufferPointer { x in
                if layout == .unitBlocked {
                    // Every column holds one unit's parameters: one contiguous axpy per column.
                    storage.columnPointers.withUnsafeBufferPointer { cp in
                        columnFirstRow.withUnsafeBufferPointer { first in
                            if Scalar.self == Double.self {
                                sk_block_gaxpy_f64(Int32(columnState.count), cp.baseAddress, first.baseAddress,
                                                   rebind(j, Double.self), rebind(x, Double.self), rebindMutable(g, Double.self))
                            } else {
                                sk_block_gaxpy_f32(Int32(columnState.count), cp.baseAddress, first.baseAddress,
                                                   rebind(j, Float.self), rebind(x, Float.self), rebindMutable(g, Float.self))
                            }
                        }
                    }
                } else {
                    storage.multiplyAdd(values: j, x, into: g)
                }
            }
        }
    }

    /// The fraction of the storage's columns the last update of stream b wrote.
    func writtenFraction(stream b: Int) -> Double {
        columnState.isEmpty ? 0 : Double(streams[b].columnsWritten) / Double(columnState.count)
    }

    /// The fraction of the product's multiply-adds skipped in the last update of stream b
    /// (terms whose D factor was zero).
    func skippedWorkFraction(stream b: Int) -> Double {
        multiplyAdds == 0 ? 0 : Double(streams[b].skipped) / Double(multiplyAdds)
    }
}

/// Tuning of the EGRU's scaled form, for benchmarks and tests (not a stable API).
@_spi(Benchmarks) public enum ScaledFormTuning {
    /// The length, in bytes, the scaled form aims for in a column by grouping units that share a
    /// reach set (see BENCHMARKS.md for the measurement behind 8 KB). Read when a learner is
    /// built; 1 gives one unit per block.
    nonisolated(unsafe) public static var columnBytes = 8192
}

@inline(__always)
func rebind<S, T>(_ b: UnsafeBufferPointer<S>, _: T.Type) -> UnsafePointer<T> {
    UnsafeRawPointer(b.baseAddress!).assumingMemoryBound(to: T.self)
}

@inline(__always)
func rebindMutable<S, T>(_ b: UnsafeMutableBufferPointer<S>, _: T.Type) -> UnsafeMutablePointer<T> {
    UnsafeMutableRawPointer(b.baseAddress!).assumingMemoryBound(to: T.self)
}
