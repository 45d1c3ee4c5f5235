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
