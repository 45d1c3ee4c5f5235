/// Sparse exact RTRL and SnAp-n on a stacked model: J on a `StackedInfluencePattern`, one dense
/// block per unit (its kept rows × its parameters), updated column by column up the layers:
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

    final class Stream {
        var values: [Scalar]
        var dynamicsTransposed: [[Scalar]]
        /// Scratch over all layers' state variables (old column, new column) and units (x̃).
        var old: [Scalar], new: [Scalar], feature: [Scalar]
        init(values: Int, dynamics: [Int], states: Int, units: Int) {
            self.values = [Scalar](repeating: 0, count: values)
            dynamicsTransposed = dynamics.map { [Scalar](repeating: 0, count: $0) }
            old = [Scalar](repeating: 0, count: states)
            new = old
            feature = [Scalar](repeating: 0, count: units)
        }
    }
    let streams: [Stream]

    /// Values held by all streams, in bytes.
    var bytes: Int { streams.count * (pattern.nonzeros + 2 * pattern.layerCount * structures[0].graph.stateSize) * MemoryLayout<Scalar>.stride }

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
        self.streams = (0..<streams).map { _ in
            Stream(values: pattern.nonzeros, dynamics: structures.map { $0.graph.jacobianTransposed.nonzeroCount },
                   states: layers * stateSize, units: layers * k)
        }
    }

    func reset(stream b: Int) { streams[b].values.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }

    /// One step: J ← (D J + I) on the pattern, and g += w^{L−1}ᵀ J into each layer's gradient.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func update(stream b: Int, models: [Model<Scalar>], records: [StepRecord<Scalar>], topStateWeights: [Scalar],
                gradients: inout [[Scalar]]) {
        let st = streams[b], k = pattern.hiddenSize, layers = pattern.layerCount, components = pattern.components
        let size = components * k, top = layers - 1
        for m in 0..<layers {
            st.dynamicsTransposed[m].withUnsafeMutableBufferPointer { dt in
                StepJacobian.dynamicsTransposed(graph: structures[m].graph, weightHH: models[m].parameters.weightHH, record: records[m], into: dt)
            }
        }
        for group in 0..<layers * k {
            let l = group / k, u = group % k, layout = structures[l].layout
            let rows = pattern.rows[pattern.rowStart[group]..<pattern.rowStart[group + 1]]
            let work = pattern.work[pattern.workStart[group]..<pattern.workStart[group + 1]]
            let first = Int(layout.unitStart[u]), count = Int(layout.unitStart[u + 1]) - first, height = rows.count
            let own = records[l], gateRows = models[l].parameters.weightHH.rowCount
            for column in 0..<count {
                let t = first + column, base = valueStart[group] + column * height
                let threshold = layout.source[t] == .threshold
                for (r, q) in rows.enumerated() { st.old[Int(q)] = st.values[base + r] }
                var w = work.startIndex
                for m in l..<layers {
                    let layerStart = w
                    let dtp = structures[m].graph.jacobianTransposed, record = records[m]
                    let gk = models[m].parameters.weightIH.rowCount, wx = models[m].parameters.weightIH.values
                    while w < work.endIndex && Int(work[w]) / k == m {
                        let i = Int(work[w]) % k
                        for c in 0..<components {
                            let q = c * k + i
                            var sum: Scalar = 0
                            for p in Int(dtp.columnPointers[q])..<Int(dtp.columnPointers[q + 1]) {
                                sum += st.dynamicsTransposed[m][p] * st.old[m * size + Int(dtp.rowIndices[p])]
                            }
                            if m > l {
                                for e in inputStart[m][i]..<inputStart[m][i + 1] {
                                    let x = st.feature[(m - 1) * k + Int(inputColumn[m][e])]
                                    if x != 0 {
                                        sum += record.inputCoefficient[c * gk + Int(inputRow[m][e])] * wx[Int(inputPosition[m][e])] * x
                                    }
                                }
                            } else if i == u {
                                sum += StepJacobian.immediate(layout, t, component: c, gateRows: gateRows, own)
                            }
                            st.new[m * size + q] = sum
                        }
                        w += 1
                    }
                    if m == l && threshold {
                        // ϑ_u's immediate column beyond its unit: through y_{t−1,u} into the units
                        // reading u, and through h_{t−1,u} into u itself (one component).
                        let hh = models[l].parameters.weightHH, pattern = hh.pattern
                        for p in Int(pattern.columnPointers[u])..<Int(pattern.columnPointers[u + 1]) {
                            let row = Int(pattern.rowIndices[p])
                            st.new[l * size + row % k] += own.recurrentCoefficient[row] * hh.values[p] * own.thresholdPreviousOutput[u]
                        }
                        st.new[l * size + u] += own.thresholdSelf[u]
                    }
                    // x̃ for the layer above: this layer's outputs' derivatives over its work units.
                    if m < top {
                        for x in layerStart..<w {
                            let i = Int(work[x]) % k
                            var sum: Scalar = 0
                            for c in 0..<components { sum += record.outputScale[c * k + i] * st.new[m * size + c * k + i] }
                            if m == l && threshold && i == u { sum += record.thresholdOutput[i] }
                            st.feature[m * k + i] = sum
                        }
                    }
                }
                var g: Scalar = 0
                for (r, q) in rows.enumerated() {
                    let value = st.new[Int(q)]
                    st.values[base + r] = value
                    if Int(q) >= top * size { g += topStateWeights[Int(q) - top * size] * value }
                    st.old[Int(q)] = 0
                }
                gradients[l][t] += g
                // Clear the scratch this column wrote (only work units were written).
                for x in work {
                    let m = Int(x) / k, i = Int(x) % k
                    for c in 0..<components { st.new[m * size + c * k + i] = 0 }
                    st.feature[Int(x)] = 0
                }
                if threshold {
                    let pattern = models[l].parameters.weightHH.pattern
                    for p in Int(pattern.columnPointers[u])..<Int(pattern.columnPointers[u + 1]) { st.new[l * size + Int(pattern.rowIndices[p]) % k] = 0 }
                }
            }
        }
    }
}
