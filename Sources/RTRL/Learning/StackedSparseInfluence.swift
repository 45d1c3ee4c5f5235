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
    /// Per layer (≥ 1), per unit i: the `weight_ih` entries of unit i's gate rows, as (column,
    /// position, row); layer 0's lists are empty.
    let inputStart: [[Int]], inputColumn: [[Int32]], inputPosition: [[Int32]], inputRow: [[Int32]]
    /// Where each layer's Dᵀ values start in a stream's `dynamics`.
    let dynamicsStart: [Int]
    /// The most parameters of one unit: the width of the scratch rows.
    let width: Int

    /// One stream's values and scratch, allocated once (raw buffers: the update's inner loops
    /// index them without the checks of class-held arrays).
    final class Stream {
        let values: UnsafeMutableBufferPointer<Scalar>
        /// Dᵀ's values of every layer, one after another (`dynamicsStart`).
        let dynamics: UnsafeMutableBufferPointer<Scalar>
        /// Scratch rows of `width` values over all layers' state variables (the old and new
        /// block) and units (x̃); marks of the rows that hold values (state variables, then
        /// units); the gradient's column sums.
        let old: UnsafeMutableBufferPointer<Scalar>, new: UnsafeMutableBufferPointer<Scalar>, feature: UnsafeMutableBufferPointer<Scalar>
        let rowMark: UnsafeMutableBufferPointer<UInt8>, sum: UnsafeMutableBufferPointer<Scalar>
        init(values: Int, dynamics: Int, states: Int, units: Int, width: Int) {
            func zeros(_ n: Int) -> UnsafeMutableBufferPointer<Scalar> {
                let b = UnsafeMutableBufferPointer<Scalar>.allocate(capacity: max(n, 1))
                b.initialize(repeating: 0)
                return UnsafeMutableBufferPointer(rebasing: b[0..<n])
            }
            self.values = zeros(values)
            self.dynamics = zeros(dynamics)
            old = zeros(states * width)
            new = zeros(states * width)
            feature = zeros(units * width)
            sum = zeros(width)
            rowMark = .allocate(capacity: states + units)
            rowMark.initialize(repeating: 0)
        }
        deinit {
            for b in [values, dynamics, old, new, feature, sum] { b.baseAddress?.deallocate() }
            rowMark.deallocate()
        }
        /// The values as an array (checkpoints).
        var valueArray: [Scalar] {
            get { Array(values) }
            set { precondition(newValue.count == values.count); _ = values.update(fromContentsOf: newValue) }
        }
    }
    let streams: [Stream]

    /// Values held by all streams, in bytes.
    var bytes: Int { streams.count * StackedSparseInfluence.scalarsPerStream(pattern, structures, width: width) * MemoryLayout<Scalar>.stride }

    /// Values and scratch of one stream, in scalars.
    static func scalarsPerStream(_ pattern: StackedInfluencePattern, _ structures: [ModelStructure], width: Int) -> Int {
        let states = pattern.layerCount * structures[0].graph.stateSize, units = pattern.layerCount * pattern.hiddenSize
        let dynamics = structures.reduce(0) { $0 + $1.graph.jacobianTransposed.nonzeroCount }
        return pattern.nonzeros + dynamics + (2 * states + units + 1) * width
    }

    init(structures: [ModelStructure], weightIH: [SparsityPattern], order: InfluencePattern.Order, streams: Int,
         memoryBudget: Int) throws {
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
        var inputStart: [[Int]] = [], inputColumn: [[Int32]] = [], inputPosition: [[Int32]] = [], inputRow: [[Int32]] = []
        for m in 0..<layers {
            var lists = [[(Int32, Int32, Int32)]](repeating: [], count: k)
            if m > 0 {
                let w = weightIH[m]
                for j in 0..<w.columnCount {
                    for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                        let row = w.rowIndices[p]
                        lists[Int(row) % k].append((Int32(j), Int32(p), row))
                    }
                }
            }
            inputStart.append([0] + lists.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1.count) })
            inputColumn.append(lists.flatMap { $0.map(\.0) })
            inputPosition.append(lists.flatMap { $0.map(\.1) })
            inputRow.append(lists.flatMap { $0.map(\.2) })
        }
        self.inputStart = inputStart
        self.inputColumn = inputColumn
        self.inputPosition = inputPosition
        self.inputRow = inputRow
        let stateSize = structures[0].graph.stateSize
        var width = 1
        for unit in 0..<layers * k { width = max(width, structures[unit / k].layout.parameterCount(ofUnit: unit % k)) }
        self.width = width
        let needed = streams * StackedSparseInfluence.scalarsPerStream(pattern, structures, width: width) * MemoryLayout<Scalar>.stride
        guard needed <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the \(order) influence of \(layers) stacked layers (\(pattern.nonzeros) entries and scratch, \(streams) stream(s))",
                                     neededBytes: needed, budgetBytes: memoryBudget)
        }
        var dynamicsStart = [0]
        for st in structures { dynamicsStart.append(dynamicsStart.last! + st.graph.jacobianTransposed.nonzeroCount) }
        self.dynamicsStart = dynamicsStart
        self.streams = (0..<streams).map { _ in
            Stream(values: pattern.nonzeros, dynamics: dynamicsStart.last!, states: layers * stateSize, units: layers * k, width: width)
        }
    }

    func reset(stream b: Int) { streams[b].values.update(repeating: 0) }

    /// One step: J ← (D J + I) on the pattern, and g += w^{L−1}ᵀ J into each layer's gradient.
    /// A unit's parameters share their rows, so each row of its block is computed for all of its
    /// columns at once (scratch rows of `width` values: the loops over columns vectorise).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, models: [Model<Scalar>], records: [StepRecord<Scalar>], topStateWeights: [Scalar],
                gradients: inout [[Scalar]]) {
        let st = streams[b], k = pattern.hiddenSize, layers = pattern.layerCount, components = pattern.components
        let size = components * k, top = layers - 1, F = width
        let values = st.values.baseAddress!, dynamics = st.dynamics.baseAddress!
        let old = st.old.baseAddress!, new = st.new.baseAddress!, feature = st.feature.baseAddress!
        let rowMark = st.rowMark.baseAddress!, sum = st.sum.baseAddress!
        for m in 0..<layers {
            StepJacobian.dynamicsTransposed(graph: structures[m].graph, weightHH: models[m].parameters.weightHH, record: records[m],
                                            into: UnsafeMutableBufferPointer(rebasing: st.dynamics[dynamicsStart[m]..<dynamicsStart[m + 1]]))
        }
        pattern.rows.withUnsafeBufferPointer { allRows in
        pattern.work.withUnsafeBufferPointer { allWork in
        topStateWeights.withUnsafeBufferPointer { topWeight in
        for group in 0..<layers * k {
            let l = group / k, u = group % k, layout = structures[l].layout
            let rowFirst = pattern.rowStart[group], height = pattern.rowStart[group + 1] - rowFirst
            let workFirst = pattern.workStart[group], workEnd = pattern.workStart[group + 1]
            let first = Int(layout.unitStart[u]), f = Int(layout.unitStart[u + 1]) - first
            if f == 0 { continue }
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
                inputStart[m].withUnsafeBufferPointer { inStart in
                inputColumn[m].withUnsafeBufferPointer { inColumn in
                inputPosition[m].withUnsafeBufferPointer { inPosition in
                inputRow[m].withUnsafeBufferPointer { inRow in
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
                                if d == 0 { continue } // a quiet EGRU unit's column of D (activity sparsity)
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
            gradients[l].withUnsafeMutableBufferPointer { g in for col in 0..<f { g[first + col] += sum[col] } }
            for x in workFirst..<workEnd { rowMark[layers * size + Int(allWork[x])] = 0 }
        }
        }}}
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
