/// The Jacobian of a layer's new state with respect to its input, A = ∂s'/∂x (S × n): what joins
/// the layers of a stacked model within a step. With inputCoefficient (`StepRecord`),
/// A((c, i), j) = Σ_g inputCoefficient[c·G·k + g·k + i] · weight_ih[g·k + i, j].
extension StepJacobian {
    /// `e += Aᵀ a` (a over the layer's S state variables, e over its n inputs).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func inputTransposedProduct<Scalar: SparseScalar>(weightIH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                                             components: Int, _ a: UnsafeBufferPointer<Scalar>,
                                                             into e: UnsafeMutableBufferPointer<Scalar>) {
        let w = weightIH.pattern, gk = weightIH.rowCount, k = a.count / components
        weightIH.values.withUnsafeBufferPointer { wx in
            r.inputCoefficient.withUnsafeBufferPointer { coef in
                for j in 0..<w.columnCount {
                    var sum: Scalar = 0
                    for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                        let row = Int(w.rowIndices[p]), i = row % k
                        var weight: Scalar = 0
                        for c in 0..<components { weight += coef[c * gk + row] * a[c * k + i] }
                        sum += weight * wx[p]
                    }
                    e[j] += sum
                }
            }
        }
    }

    /// Writes A in full, column-major (S × n, `dense[q + j·S]`).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func inputJacobian<Scalar: SparseScalar>(weightIH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                                    components: Int, hiddenSize k: Int, into dense: UnsafeMutableBufferPointer<Scalar>) {
        dense.update(repeating: 0)
        let w = weightIH.pattern, gk = weightIH.rowCount, s = components * k
        for j in 0..<w.columnCount {
            for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                let row = Int(w.rowIndices[p]), i = row % k
                for c in 0..<components { dense[c * k + i + j * s] += r.inputCoefficient[c * gk + row] * weightIH.values[p] }
            }
        }
    }
}

extension StepJacobian {
    /// `out += A x` (x over the layer's n inputs, out over its S state variables).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func inputProduct<Scalar: SparseScalar>(weightIH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>, components: Int,
                                                   hiddenSize k: Int, _ x: UnsafeBufferPointer<Scalar>,
                                                   into out: UnsafeMutableBufferPointer<Scalar>) {
        let w = weightIH.pattern, gk = weightIH.rowCount
        weightIH.values.withUnsafeBufferPointer { wx in
            r.inputCoefficient.withUnsafeBufferPointer { coef in
                for j in 0..<w.columnCount {
                    let xj = x[j]
                    if xj == 0 { continue }
                    for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                        let row = Int(w.rowIndices[p]), i = row % k, v = wx[p] * xj
                        for c in 0..<components { out[c * k + i] += coef[c * gk + row] * v }
                    }
                }
            }
        }
    }
}

/// The entries of each layer's `weight_ih` listed by the unit whose gate rows hold them, for
/// computing A = ∂s'/∂x row by row: for layer m and unit i, entries `start[m][i] ..< start[m][i+1]`
/// of `column` (the input j), `position` (the entry's index in the values) and `row` (its gate
/// row). Layer 0 (which reads x, not a layer) has empty lists.
struct StackedInputEntries: Sendable {
    let start: [[Int]], column: [[Int32]], position: [[Int32]], row: [[Int32]]

    init(weightIH: [SparsityPattern], hiddenSize k: Int) {
        var start: [[Int]] = [], column: [[Int32]] = [], position: [[Int32]] = [], row: [[Int32]] = []
        for (m, w) in weightIH.enumerated() {
            var lists = [[(Int32, Int32, Int32)]](repeating: [], count: k)
            if m > 0 {
                for j in 0..<w.columnCount {
                    for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                        lists[Int(w.rowIndices[p]) % k].append((Int32(j), Int32(p), w.rowIndices[p]))
                    }
                }
            }
            start.append([0] + lists.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1.count) })
            column.append(lists.flatMap { $0.map(\.0) })
            position.append(lists.flatMap { $0.map(\.1) })
            row.append(lists.flatMap { $0.map(\.2) })
        }
        self.start = start
        self.column = column
        self.position = position
        self.row = row
    }
}

extension StepJacobian {
    /// Hands a layer's adjoint `a` to the layer below within the step: with e = Aᵀ a (`scratch`,
    /// k values, overwritten), `below[c·k + j] += e_j · ∂(output_j)/∂s_(c,j)` of the layer below,
    /// and for the EGRU `belowGradient[thresholdParameter[j]] += e_j · ∂y_j/∂ϑ_j` (its thresholds'
    /// direct path into the layer above).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func handDown<Scalar: SparseScalar>(weightIH: SparseMatrix<Scalar>, record: StepRecord<Scalar>, below belowRecord: StepRecord<Scalar>,
                                               components: Int, thresholdParameter: [Int32], _ a: UnsafeBufferPointer<Scalar>,
                                               scratch e: UnsafeMutableBufferPointer<Scalar>, into below: UnsafeMutableBufferPointer<Scalar>,
                                               belowGradient: UnsafeMutableBufferPointer<Scalar>) {
        let k = e.count
        e.update(repeating: 0)
        inputTransposedProduct(weightIH: weightIH, record: record, components: components, a, into: e)
        for c in 0..<components {
            for j in 0..<k { below[c * k + j] += e[j] * belowRecord.outputScale[c * k + j] }
        }
        for j in 0..<thresholdParameter.count { belowGradient[Int(thresholdParameter[j])] += e[j] * belowRecord.thresholdOutput[j] }
    }
}
