/// D's values for one step, assembled from a `StepRecord` in O(nnz(W_hh) + k).
enum StepJacobian {
    /// Writes Dᵀ's values (on `graph.jacobianTransposed`).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func dynamicsTransposed<Scalar: SparseScalar>(graph: DependencyGraph, weightHH: SparseMatrix<Scalar>,
                                                         record r: StepRecord<Scalar>, into dt: UnsafeMutableBufferPointer<Scalar>) {
        for t in 0..<dt.count { dt[t] = 0 }
        let w = weightHH.pattern, nnz = w.nonzeroCount, gk = weightHH.rowCount
        let components = graph.cell.stateComponents
        graph.recurrentTarget.withUnsafeBufferPointer { target in
            w.columnPointers.withUnsafeBufferPointer { wp in
                w.rowIndices.withUnsafeBufferPointer { wi in
                    weightHH.values.withUnsafeBufferPointer { wx in
                        r.recurrentCoefficient.withUnsafeBufferPointer { coef in
                            for j in 0..<w.columnCount {
                                let scale = r.columnScale[j]
                                if scale == 0 { continue }
                                for p in Int(wp[j])..<Int(wp[j + 1]) {
                                    let row = Int(wi[p]), value = wx[p] * scale
                                    for c in 0..<components {
                                        dt[Int(target[c * nnz + p])] += coef[c * gk + row] * value
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let k = graph.hiddenSize
        for s in 0..<graph.selfTerms.count {
            for i in 0..<k { dt[Int(graph.selfTarget[s * k + i])] += r.selfTerm[s * k + i] }
        }
    }

    /// Writes the entries of Dᵀ's values that `subset` lists (the others are left as they are):
    /// what an influence update that reads only part of D (SnAp-1 reads its diagonal) needs.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func dynamicsTransposed<Scalar: SparseScalar>(graph: DependencyGraph, weightHH: SparseMatrix<Scalar>,
                                                         record r: StepRecord<Scalar>, subset: DynamicsSubset,
                                                         into dt: UnsafeMutableBufferPointer<Scalar>) {
        subset.targets.withUnsafeBufferPointer { targets in
            for t in targets { dt[Int(t)] = 0 }
        }
        subset.recurrent.withUnsafeBufferPointer { recurrent in
            subset.recurrentEntry.withUnsafeBufferPointer { entry in
                subset.recurrentCoefficient.withUnsafeBufferPointer { coefficientBase in
                    graph.recurrentTarget.withUnsafeBufferPointer { target in
                        weightHH.pattern.rowIndices.withUnsafeBufferPointer { wi in
                            weightHH.values.withUnsafeBufferPointer { wx in
                                r.recurrentCoefficient.withUnsafeBufferPointer { coef in
                                    r.columnScale.withUnsafeBufferPointer { scale in
                                        subset.recurrentColumn.withUnsafeBufferPointer { column in
                                            for t in 0..<recurrent.count {
                                                let columnScale = scale[Int(column[t])]
                                                if columnScale == 0 { continue } // as the full computation skips it
                                                let p = Int(entry[t])
                                                dt[Int(target[Int(recurrent[t])])]
                                                    += coef[Int(coefficientBase[t]) + Int(wi[p])] * (wx[p] * columnScale)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for si in subset.selfTerms {
            dt[Int(graph.selfTarget[Int(si)])] += r.selfTerm[Int(si)]
        }
    }

    /// `out = D · v` (both of length S) from Dᵀ's values `dt`.
    static func dynamicsProduct<Scalar: SparseScalar>(graph: DependencyGraph, dt: UnsafeBufferPointer<Scalar>,
                                                      _ v: UnsafeBufferPointer<Scalar>, into out: UnsafeMutableBufferPointer<Scalar>) {
        out.update(repeating: 0)
        graph.jacobianTransposed.transposedMultiplyAdd(values: dt, v, into: out)
    }

    /// `out = Dᵀ · v` (both of length S) from Dᵀ's values `dt`.
    static func transposedDynamicsProduct<Scalar: SparseScalar>(graph: DependencyGraph, dt: UnsafeBufferPointer<Scalar>,
                                                                _ v: UnsafeBufferPointer<Scalar>, into out: UnsafeMutableBufferPointer<Scalar>) {
        out.update(repeating: 0)
        graph.jacobianTransposed.multiplyAdd(values: dt, v, into: out)
    }

    /// `g += aᵀ I_t` (a over state variables, g over θ): the immediate Jacobian's vector-Jacobian
    /// product, thresholds included.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func immediateTransposedProduct<Scalar: SparseScalar>(structure: ModelStructure, weightHH: SparseMatrix<Scalar>,
                                                                 record r: StepRecord<Scalar>, _ a: UnsafeBufferPointer<Scalar>,
                                                                 into g: UnsafeMutableBufferPointer<Scalar>) {
        let graph = structure.graph, layout = structure.layout, k = graph.hiddenSize
        let gateRows = weightHH.rowCount, components = graph.cell.stateComponents
        for i in 0..<k {
            for theta in Int(layout.unitStart[i])..<Int(layout.unitStart[i + 1]) {
                var sum: Scalar = 0
                for c in 0..<components {
                    let weight = a[c * k + i]
                    if weight != 0 { sum += weight * immediate(layout, theta, component: c, gateRows: gateRows, r) }
                }
                g[theta] += sum
            }
        }
        if graph.cell == .egru {
            let w = weightHH.pattern
            for theta in 0..<layout.count where layout.source[theta] == .threshold {
                let j = Int(layout.storage[theta])
                var sum = a[j] * r.thresholdSelf[j]
                for pos in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                    let row = Int(w.rowIndices[pos])
                    sum += a[row % k] * r.recurrentCoefficient[row] * weightHH.values[pos] * r.thresholdPreviousOutput[j]
                }
                g[theta] += sum
            }
        }
    }

    /// The immediate Jacobian entry of parameter t for state component c of its own unit (0 for
    /// a threshold, whose column reaches beyond its unit: see `ThresholdImmediate`).
    @inline(__always)
    static func immediate<Scalar: SparseScalar>(_ layout: ParameterLayout, _ t: Int, component c: Int, gateRows: Int,
                                                _ r: StepRecord<Scalar>) -> Scalar {
        r.immediateCoefficients[c * (2 * gateRows + 1) + Int(layout.coefficientIndex[t])]
            * r.immediateFeatures[Int(layout.featureIndex[t])]
    }
}

/// The part of D an influence update reads, as the terms that make it up: the products
/// (component c, stored entry p of weight_hh) and the own-state terms whose target entry of Dᵀ is
/// read, in the order the full computation adds them (so the entries come out with the same bits).
struct DynamicsSubset: Sendable {
    /// The Dᵀ positions written.
    let targets: [Int32]
    /// For every product term: c · nnz(W_hh) + p (its index in `recurrentTarget`), p, c · G·k
    /// (where its coefficients start) and the column of p.
    let recurrent: [Int32]
    let recurrentEntry: [Int32]
    let recurrentCoefficient: [Int32]
    let recurrentColumn: [Int32]
    /// s · k + i for every own-state term.
    let selfTerms: [Int32]
    /// Of all of D's terms, the fraction this subset computes.
    let fraction: Double

    /// The terms of D's entries at the Dᵀ positions `used`.
    init(graph: DependencyGraph, weightHH w: SparsityPattern, used: [Bool]) {
        let nnz = w.nonzeroCount, components = graph.cell.stateComponents
        var recurrent: [Int32] = [], recurrentEntry: [Int32] = [], recurrentCoefficient: [Int32] = []
        var recurrentColumn: [Int32] = [], selfTerms: [Int32] = []
        // The full computation's order: column by column of weight_hh, entry, component; then
        // the own-state terms.
        for j in 0..<w.columnCount {
            for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                for c in 0..<components where used[Int(graph.recurrentTarget[c * nnz + p])] {
                    recurrent.append(Int32(c * nnz + p))
                    recurrentEntry.append(Int32(p))
                    recurrentCoefficient.append(Int32(c * w.rowCount))
                    recurrentColumn.append(Int32(j))
                }
            }
        }
        for s in 0..<graph.selfTerms.count * graph.hiddenSize where used[Int(graph.selfTarget[s])] { selfTerms.append(Int32(s)) }
        targets = used.indices.filter { used[$0] }.map { Int32($0) }
        self.recurrent = recurrent
        self.recurrentEntry = recurrentEntry
        self.recurrentCoefficient = recurrentCoefficient
        self.recurrentColumn = recurrentColumn
        self.selfTerms = selfTerms
        let all = components * nnz + graph.selfTerms.count * graph.hiddenSize
        fraction = all == 0 ? 1 : Double(recurrent.count + selfTerms.count) / Double(all)
    }
}

/// The EGRU thresholds' immediate Jacobian: ϑ_j moves y_{t−1,j} and h_{t−1,j}, so its column is
/// D's column j without the column scale, times ∂y_{t−1,j}/∂ϑ_j, plus ∂v'_j/∂ϑ_j through h on
/// unit j itself.
struct ThresholdImmediate: Sendable {
    /// For every stored entry p of weight_hh: the storage position of (state of p's unit,
    /// ϑ of p's column), or −1 where the influence pattern drops it.
    let recurrentTarget: [Int32]
    /// For every unit j: the storage position of (state j, ϑ_j).
    let selfTarget: [Int32]
    /// The storage columns of those positions (for the scaled form).
    let recurrentColumn: [Int32]
    let selfColumn: [Int32]

    /// Builds the targets with `column(state, parameter)` and `position(state, parameter)` of the
    /// storage (nil: not in the pattern).
    init(layout: ParameterLayout, weightHH: SparsityPattern, hiddenSize k: Int, column: (Int, Int) -> Int?,
         position: (Int, Int) -> Int?) {
        var thresholdParameter = [Int](repeating: -1, count: k)
        for t in 0..<layout.count where layout.source[t] == .threshold { thresholdParameter[Int(layout.storage[t])] = t }
        var rt = [Int32](repeating: -1, count: weightHH.nonzeroCount), rc = rt
        for j in 0..<weightHH.columnCount {
            for p in Int(weightHH.columnPointers[j])..<Int(weightHH.columnPointers[j + 1]) {
                let state = Int(weightHH.rowIndices[p]) % k
                rt[p] = Int32(position(state, thresholdParameter[j]) ?? -1)
                if rt[p] >= 0 { rc[p] = Int32(column(state, thresholdParameter[j])!) }
            }
        }
        recurrentTarget = rt
        recurrentColumn = rc
        let st = (0..<k).map { Int32(position($0, thresholdParameter[$0]) ?? -1) }
        selfTarget = st
        selfColumn = (0..<k).map { st[$0] >= 0 ? Int32(column($0, thresholdParameter[$0])!) : -1 }
    }

    /// Adds the thresholds' immediate terms into influence values `j`.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func add<Scalar: SparseScalar>(weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                   into j: UnsafeMutableBufferPointer<Scalar>) {
        let w = weightHH.pattern
        for col in 0..<w.columnCount {
            let dy = r.thresholdPreviousOutput[col]
            if dy == 0 { continue }
            for p in Int(w.columnPointers[col])..<Int(w.columnPointers[col + 1]) where recurrentTarget[p] >= 0 {
                j[Int(recurrentTarget[p])] += r.recurrentCoefficient[Int(w.rowIndices[p])] * weightHH.values[p] * dy
            }
        }
        for u in 0..<selfTarget.count where selfTarget[u] >= 0 { j[Int(selfTarget[u])] += r.thresholdSelf[u] }
    }

    /// The same terms into influence values held in scaled form (J = Ŷ·diag(σ), deferred gradient
    /// g + Ŷπ): each term is divided by its column's scale, and g is corrected so that g + Ŷπ is
    /// unchanged by the addition.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func addScaled<Scalar: SparseScalar>(weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                         into j: UnsafeMutableBufferPointer<Scalar>, scales: UnsafeBufferPointer<Scalar>,
                                         pending: UnsafeBufferPointer<Scalar>, columnStart: [Int32], columnFirstRow: [Int32],
                                         gradient g: UnsafeMutableBufferPointer<Scalar>) {
        func add(_ position: Int, _ column: Int, _ term: Scalar) {
            let delta = term / scales[column]
            j[position] += delta
            let weight = pending[column]
            // The value's row: its column's first, plus how far into the column it lies.
            if weight != 0 { g[Int(columnFirstRow[column]) + position - Int(columnStart[column])] -= weight * delta }
        }
        let w = weightHH.pattern
        for col in 0..<w.columnCount {
            let dy = r.thresholdPreviousOutput[col]
            if dy == 0 { continue }
            for p in Int(w.columnPointers[col])..<Int(w.columnPointers[col + 1]) where recurrentTarget[p] >= 0 {
                add(Int(recurrentTarget[p]), Int(recurrentColumn[p]), r.recurrentCoefficient[Int(w.rowIndices[p])] * weightHH.values[p] * dy)
            }
        }
        for u in 0..<selfTarget.count where selfTarget[u] >= 0 { add(Int(selfTarget[u]), Int(selfColumn[u]), r.thresholdSelf[u]) }
    }
}
