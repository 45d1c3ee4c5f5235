/// Sparse exact RTRL and SnAp-n on a stacked model: J on a `StackedInfluencePattern`, one dense
/// block per unit (its kept rows × its parameters, row-major), updated up the layers:
///
///     v^m = D^m J^m_old + A^m x̃^{m−1} + I^m,    x̃^{m−1} = Σ_c (output scale) ⊙ v^{m−1} (+ ∂y/∂ϑ),
///
/// over the column's work units, then masked to its kept rows. D^m's values come from each
/// layer's record (`StepJacobian.dynamicsTransposed`, D by rows); A^m's from its input
/// coefficients and `weight_ih` entries, row by row. The gradient w^{L−1}ᵀ J^{L−1} is taken in
/// the same pass. Correct and allocation-free per step; not yet the blocked kernels of the
/// single-layer update.
final class StackedSparseInfluence<Scalar: SparseScalar> {
    let pattern: StackedInfluencePattern
    let structures: [ModelStructure]
    /// Where each unit group's block starts in the values.
    let valueStart: [Int]
    /// Per layer (≥ 1), per unit: the `weight_ih` entries of its gate rows.
    let input: StackedInputEntries
    /// Where each layer's Dᵀ values start in a stream's `dynamics`.
    let dynamicsStart: [Int]
    /// The most parameters of one unit: the width of the scratch rows.
    let width: Int
    /// Skip D's zero entries (a quiet EGRU unit's column): exact either way; off for comparison.
    let skipsQuietUnits: Bool

    /// Scratch rows of `width` values over all layers' state variables (the old and new block)
    /// and units (x̃); marks of the rows that hold values (state variables, then units); the
    /// gradient's column sums. One per thread of a stream (raw buffers, allocated once: the inner
    /// loops index them without the checks of class-held arrays).
    final class Scratch {
        let old: UnsafeMutableBufferPointer<Scalar>, new: UnsafeMutableBufferPointer<Scalar>, feature: UnsafeMutableBufferPointer<Scalar>
        let rowMark: UnsafeMutableBufferPointer<UInt8>, sum: UnsafeMutableBufferPointer<Scalar>
        init(states: Int, units: Int, width: Int) {
            old = .zeroed(states * width)
            new = .zeroed(states * width)
            feature = .zeroed(units * width)
            sum = .zeroed(width)
            rowMark = .allocate(capacity: states + units)
            rowMark.initialize(repeating: 0)
        }
        deinit {
            for b in [old, new, feature, sum] { b.deallocate() }
            rowMark.deallocate()
        }
    }

    /// One stream's values, D's values (every layer's, one after another: `dynamicsStart`), its
    /// gradient of the step (all layers' parameters) and its threads' scratch.
    final class Stream {
        let values: UnsafeMutableBufferPointer<Scalar>
        let dynamics: UnsafeMutableBufferPointer<Scalar>
        let gradient: UnsafeMutableBufferPointer<Scalar>
        let scratch: [Scratch]
        init(values: Int, dynamics: Int, parameters: Int, scratch: [Scratch]) {
            self.values = .zeroed(values)
            self.dynamics = .zeroed(dynamics)
            gradient = .zeroed(parameters)
            self.scratch = scratch
        }
        deinit {
            for b in [values, dynamics, gradient] { b.deallocate() }
        }
        /// The values as an array (checkpoints).
        var valueArray: [Scalar] {
            get { Array(values) }
            set { precondition(newValue.count == values.count); _ = values.update(fromContentsOf: newValue) }
        }
    }
    let streams: [Stream]
    /// Threads for one stream's update (units' blocks dealt in turn; nil: one thread).
    let pool: WorkerPool?
    let parameterStart: [Int]

    /// Values held by all streams, in bytes.
    var bytes: Int {
        streams.count * StackedSparseInfluence.scalarsPerStream(pattern, structures, width: width, threads: streams[0].scratch.count)
            * MemoryLayout<Scalar>.stride
    }

    /// Values and scratch of one stream, in scalars (the marks counted as scalars).
    static func scalarsPerStream(_ pattern: StackedInfluencePattern, _ structures: [ModelStructure], width: Int, threads: Int) -> Int {
        let states = pattern.layerCount * structures[0].graph.stateSize, units = pattern.layerCount * pattern.hiddenSize
        let dynamics = structures.reduce(0) { $0 + $1.graph.jacobianTransposed.nonzeroCount }
        let parameters = structures.reduce(0) { $0 + $1.layout.count }
        return pattern.nonzeros + dynamics + parameters + threads * ((2 * states + units + 1) * width + states + units)
    }

    init(structures: [ModelStructure], weightIH: [SparsityPattern], order: InfluencePattern.Order, streams: Int, threads: Int,
         skipsQuietUnits: Bool = true, memoryBudget: Int) throws {
        self.skipsQuietUnits = skipsQuietUnits
        let pattern = try StackedInfluencePattern(structures: structures, weightIH: weightIH, order: order,
                                                  scalarBytes: streams * MemoryLayout<Scalar>.stride, memoryBudget: memoryBudget)
        self.pattern = pattern
        self.structures = structures
        let k = pattern.hiddenSize, layers = pattern.layerCount
        var valueStart = [0]
        for unit in 0..<layers * k {
            let rows = pattern.rowStart[unit + 1] - pattern.rowStart[unit]
            valueStart.append(valueStart.last! + rows * structures[unit / k].layout.parameterCount(ofUnit: unit % k))
        }
        self.valueStart = valueStart
        input = StackedInputEntries(weightIH: weightIH, hiddenSize: k)
        let stateSize = structures[0].graph.stateSize
        var width = 1
        for unit in 0..<layers * k { width = max(width, structures[unit / k].layout.parameterCount(ofUnit: unit % k)) }
        self.width = width
        let needed = streams * StackedSparseInfluence.scalarsPerStream(pattern, structures, width: width, threads: threads)
            * MemoryLayout<Scalar>.stride
        guard needed <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the \(order) influence of \(layers) stacked layers (\(pattern.nonzeros) entries and scratch, \(streams) stream(s))",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        var dynamicsStart = [0]
        for st in structures { dynamicsStart.append(dynamicsStart.last! + st.graph.jacobianTransposed.nonzeroCount) }
        self.dynamicsStart = dynamicsStart
        var parameterStart = [0]
        for st in structures { parameterStart.append(parameterStart.last! + st.layout.count) }
        self.parameterStart = parameterStart
        self.streams = (0..<streams).map { _ in
            Stream(values: pattern.nonzeros, dynamics: dynamicsStart.last!, parameters: parameterStart.last!,
                   scratch: (0..<threads).map { _ in Scratch(states: layers * stateSize, units: layers * k, width: width) })
        }
        pool = threads > 1 ? try WorkerPool(threads: threads) : nil
    }

    func reset(stream b: Int) { streams[b].values.update(repeating: 0) }

    /// One step: J ← (D J + I) on the pattern, and g += w^{L−1}ᵀ J into each layer's gradient.
    /// A unit's parameters share their rows, so each row of its block is computed for all of its
    /// columns at once (scratch rows of `width` values: the loops over columns vectorise). With
    /// threads, the units' blocks are dealt in turn; each block is computed the same way by any
    /// thread, so results do not depend on the thread count.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, models: [Model<Scalar>], records: [StepRecord<Scalar>], topStateWeights: [Scalar],
                gradients: inout [[Scalar]]) {
        let st = streams[b], layers = pattern.layerCount, groups = layers * pattern.hiddenSize
        for m in 0..<layers {
            StepJacobian.dynamicsTransposed(graph: structures[m].graph, weightHH: models[m].parameters.weightHH, record: records[m],
                                            into: UnsafeMutableBufferPointer(rebasing: st.dynamics[dynamicsStart[m]..<dynamicsStart[m + 1]]))
        }
        topStateWeights.withUnsafeBufferPointer { topWeight in
            if let pool, st.scratch.count > 1 {
                pool.run { thread, count in
                    for group in stride(from: thread, to: groups, by: count) {
                        self.update(group: group, st, st.scratch[thread], models, records, topWeight)
                    }
                }
            } else {
                for group in 0..<groups { update(group: group, st, st.scratch[0], models, records, topWeight) }
            }
        }
        for l in 0..<layers {
            gradients[l].withUnsafeMutableBufferPointer { g in
                for t in 0..<g.count { g[t] += st.gradient[parameterStart[l] + t] }
            }
        }
    }

    /// One unit's block: its new values, and its parameters' gradient of the step into
    /// `st.gradient` (written, not added: each parameter belongs to one block).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func update(group: Int, _ st: Stream, _ scratch: Scratch, _ models: [Model<Scalar>], _ records: [StepRecord<Scalar>],
                        _ topWeight: UnsafeBufferPointer<Scalar>) {
        let k = pattern.hiddenSize, layers = pattern.layerCount, components = pattern.components
        let size = components * k, top = layers - 1, F = width, skips = skipsQuietUnits
        let values = st.values.baseAddress!, dynamics = st.dynamics.baseAddress!
        let old = scratch.old.baseAddress!, new = scratch.new.baseAddress!, feature = scratch.feature.baseAddress!
        let rowMark = scratch.rowMark.baseAddress!, sum = scratch.sum.baseAddress!
        pattern.rows.withUnsafeBufferPointer { allRows in
        pattern.work.withUnsafeBufferPointer { allWork in
            let l = group / k, u = group % k, layout = structures[l].layout
            let rowFirst = pattern.rowStart[group], height = pattern.rowStart[group + 1] - rowFirst
            let workFirst = pattern.workStart[group], workEnd = pattern.workStart[group + 1]
            let first = Int(layout.unitStart[u]), f = Int(layout.unitStart[u + 1]) - first
            if f == 0 { return }
            let own = records[l], gateRows = models[l].parameters.weightHH.rowCount
            let block = values + valueStart[group] // row-major: height × f
            // Scatter the old block into rows of the scratch (marked, so empty rows are skipped).
            for r in 0..<height {
                let q = Int(allRows[rowFirst + r])
                rowMark[q] = 1
                (old + q * F).update(from: block + r * f, count: f)
            }
            var w = workFirst
            for m in l..<layers {
                let layerStart = w, record = records[m], dStart = dynamicsStart[m]
                let layerWork = (w..<workEnd).firstIndex { Int(allWork[$0]) / k != m } ?? workEnd
                structures[m].graph.jacobianTransposed.columnPointers.withUnsafeBufferPointer { dp in
                structures[m].graph.jacobianTransposed.rowIndices.withUnsafeBufferPointer { di in
                models[m].parameters.weightIH.values.withUnsafeBufferPointer { wx in
                record.inputCoefficient.withUnsafeBufferPointer { coefficient in
                input.start[m].withUnsafeBufferPointer { inStart in
                input.column[m].withUnsafeBufferPointer { inColumn in
                input.position[m].withUnsafeBufferPointer { inPosition in
                input.row[m].withUnsafeBufferPointer { inRow in
                    let gk = models[m].parameters.weightIH.rowCount
                    while w < layerWork {
                        let i = Int(allWork[w]) % k
                        for c in 0..<components {
                            let q = c * k + i, out = new + (m * size + q) * F
                            for col in 0..<f { out[col] = 0 }
                            for p in Int(dp[q])..<Int(dp[q + 1]) {
                                let source = m * size + Int(di[p])
                                if rowMark[source] == 0 { continue }
                                let d = dynamics[dStart + p]
                                if d == 0 && skips { continue } // a quiet EGRU unit's column of D (activity sparsity)
                                let x = old + source * F
                                for col in 0..<f { out[col] += d * x[col] }
                            }
                            if m > l {
                                for e in inStart[i]..<inStart[i + 1] {
                                    let j = (m - 1) * k + Int(inColumn[e])
                                    if rowMark[layers * size + j] == 0 { continue }
                                    let a = coefficient[c * gk + Int(inRow[e])] * wx[Int(inPosition[e])], x = feature + j * F
                                    for col in 0..<f { out[col] += a * x[col] }
                                }
                            } else if i == u {
                                for col in 0..<f {
                                    out[col] += StepJacobian.immediate(layout, first + col, component: c, gateRows: gateRows, own)
                                }
                            }
                        }
                        w += 1
                    }
                }}}}}}}}
                let newLayer = new + m * size * F
                if m == l && layout.source[first + f - 1] == .threshold {
                    // ϑ_u (a unit's last parameter) reaches beyond its unit within the step:
                    // through y_{t−1,u} into the units reading u, through h_{t−1,u} into u itself.
                    let col = f - 1, hh = models[l].parameters.weightHH, pattern = hh.pattern
                    for p in Int(pattern.columnPointers[u])..<Int(pattern.columnPointers[u + 1]) {
                        let row = Int(pattern.rowIndices[p]) % k
                        if !isWorkUnit(l * k + row, allWork, workFirst, workEnd) { continue }
                        newLayer[row * F + col] += own.recurrentCoefficient[Int(pattern.rowIndices[p])] * hh.values[p] * own.thresholdPreviousOutput[u]
                    }
                    newLayer[u * F + col] += own.thresholdSelf[u]
                }
                // x̃ for the layer above: this layer's outputs' derivatives over its work units.
                if m < top {
                    record.outputScale.withUnsafeBufferPointer { scale in
                        for x in layerStart..<w {
                            let i = Int(allWork[x]) % k, out = feature + (m * k + i) * F
                            rowMark[layers * size + m * k + i] = 1
                            for col in 0..<f { out[col] = 0 }
                            for c in 0..<components {
                                let sc = scale[c * k + i], v = newLayer + (c * k + i) * F
                                for col in 0..<f { out[col] += sc * v[col] }
                            }
                            if m == l && i == u && layout.source[first + f - 1] == .threshold { out[f - 1] += record.thresholdOutput[i] }
                        }
                    }
                }
            }
            // Gather the kept rows, take the gradient from the top layer's, clear the marks.
            for col in 0..<f { sum[col] = 0 }
            for r in 0..<height {
                let q = Int(allRows[rowFirst + r]), row = new + q * F
                (block + r * f).update(from: row, count: f)
                if q >= top * size {
                    let weight = topWeight[q - top * size]
                    for col in 0..<f { sum[col] += weight * row[col] }
                }
                rowMark[q] = 0
            }
            for col in 0..<f { st.gradient[parameterStart[l] + first + col] = sum[col] }
            for x in workFirst..<workEnd { rowMark[layers * size + Int(allWork[x])] = 0 }
        }}
    }

    /// Whether `unit` is among a group's work units (sorted).
    @inline(__always)
    private func isWorkUnit(_ unit: Int, _ work: UnsafeBufferPointer<Int32>, _ first: Int, _ end: Int) -> Bool {
        var lo = first, hi = end
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int(work[mid]) < unit { lo = mid + 1 } else { hi = mid }
        }
        return lo < end && Int(work[lo]) == unit
    }
}

extension UnsafeMutableBufferPointer where Element: SparseScalar {
    /// A new buffer of `count` zeros (at least one element is allocated).
    fileprivate static func zeroed(_ count: Int) -> UnsafeMutableBufferPointer<Element> {
        let b = UnsafeMutableBufferPointer<Element>.allocate(capacity: Swift.max(count, 1))
        b.initialize(repeating: 0)
        return UnsafeMutableBufferPointer(start: b.baseAddress, count: count)
    }
}
