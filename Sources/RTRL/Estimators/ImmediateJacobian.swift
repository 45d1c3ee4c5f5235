/// The immediate Jacobian I_t's products for the rank-one estimators, with every index they
/// need precomputed once (the same numbers as `StepJacobian.immediateTransposedProduct`, in the
/// same order, but without a scan of all p parameters for the EGRU thresholds or an integer
/// division per recurrent weight, which dominated a UORO or NoBackTrack step on an EGRU).
///
/// Column θ of I_t, for a parameter of unit i and state component c, is
/// `immediateCoefficients[c·(2Gk+1) + coefficientIndex[θ]] · immediateFeatures[featureIndex[θ]]`
/// at state (c, i); an EGRU threshold ϑ_j adds `thresholdSelf[j]` at unit j and
/// `recurrentCoefficient[row]·W_hh[row, j]·thresholdPreviousOutput[j]` at unit row mod k for
/// every stored W_hh[row, j] (see `ThresholdImmediate`).
struct ImmediateJacobian: Sendable {
    let hiddenSize: Int
    let components: Int
    /// 2·G·k + 1: the per-component stride of `StepRecord.immediateCoefficients`.
    let stride: Int
    let unitStart: [Int32]
    let coefficientIndex: [Int32]
    let featureIndex: [Int32]
    /// EGRU: the parameter index of ϑ_j for every unit j, and the unit (row mod k) of every stored
    /// entry of weight_hh; empty otherwise.
    let thresholdParameter: [Int32]
    let entryUnit: [Int32]

    init(structure: ModelStructure, weightHH: SparsityPattern) {
        let layout = structure.layout, k = structure.graph.hiddenSize
        hiddenSize = k
        components = structure.graph.cell.stateComponents
        stride = 2 * weightHH.rowCount + 1
        unitStart = layout.unitStart
        coefficientIndex = layout.coefficientIndex
        featureIndex = layout.featureIndex
        thresholdParameter = EstimatorSupport.thresholdParameters(layout)
        entryUnit = structure.graph.cell == .egru ? weightHH.rowIndices.map { $0 % Int32(k) } : []
    }

    /// g += aᵀ I_t (a over the S state variables, g over θ).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func addTransposedProduct<Scalar: SparseScalar>(weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                                    _ a: UnsafeBufferPointer<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        let k = hiddenSize, components = self.components, stride = self.stride
        unitStart.withUnsafeBufferPointer { start in
            coefficientIndex.withUnsafeBufferPointer { ci in
                featureIndex.withUnsafeBufferPointer { fi in
                    r.immediateCoefficients.withUnsafeBufferPointer { coef in
                        r.immediateFeatures.withUnsafeBufferPointer { feature in
                            if components == 1 {
                                for i in 0..<k {
                                    let weight = a[i]
                                    if weight == 0 { continue }
                                    for t in Int(start[i])..<Int(start[i + 1]) {
                                        g[t] += weight * (coef[Int(ci[t])] * feature[Int(fi[t])])
                                    }
                                }
                            } else {
                                for i in 0..<k {
                                    for t in Int(start[i])..<Int(start[i + 1]) {
                                        var sum: Scalar = 0
                                        for c in 0..<components {
                                            let weight = a[c * k + i]
                                            if weight != 0 { sum += weight * (coef[c * stride + Int(ci[t])] * feature[Int(fi[t])]) }
                                        }
                                        g[t] += sum
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if thresholdParameter.isEmpty { return }
        withThresholdBuffers(weightHH: weightHH, record: r) { wp, wi, unit, wx, coefficient, previous, own, parameter in
            for j in 0..<k {
                let theta = Int(parameter[j])
                if theta < 0 { continue }
                var sum = a[j] * own[j]
                let dy = previous[j]
                for pos in Int(wp[j])..<Int(wp[j + 1]) {
                    sum += a[Int(unit[pos])] * coefficient[Int(wi[pos])] * wx[pos] * dy
                }
                g[theta] += sum
            }
        }
    }

    /// norms[q] = ‖I_t[q, :]‖² for every state variable q (accumulated in Double). `scratch`
    /// holds k zeros on entry and on return.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func rowSquaredNorms<Scalar: SparseScalar>(weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
                                               into norms: UnsafeMutableBufferPointer<Double>,
                                               scratch: UnsafeMutableBufferPointer<Double>) {
        let k = hiddenSize, stride = self.stride
        unitStart.withUnsafeBufferPointer { start in
            coefficientIndex.withUnsafeBufferPointer { ci in
                featureIndex.withUnsafeBufferPointer { fi in
                    r.immediateCoefficients.withUnsafeBufferPointer { coef in
                        r.immediateFeatures.withUnsafeBufferPointer { feature in
                            for c in 0..<components {
                                let base = c * stride
                                for i in 0..<k {
                                    var sum = 0.0
                                    for t in Int(start[i])..<Int(start[i + 1]) {
                                        let v = Double(coef[base + Int(ci[t])] * feature[Int(fi[t])])
                                        sum += v * v
                                    }
                                    norms[c * k + i] = sum
                                }
                            }
                        }
                    }
                }
            }
        }
        if thresholdParameter.isEmpty { return }
        // ϑ_j's column: gather it in `scratch`, square its entries into the norms, clear it.
        withThresholdBuffers(weightHH: weightHH, record: r) { wp, wi, unit, wx, coefficient, previous, own, parameter in
            for j in 0..<k where parameter[j] >= 0 {
                let dy = Double(previous[j])
                scratch[j] += Double(own[j])
                if dy != 0 {
                    for pos in Int(wp[j])..<Int(wp[j + 1]) {
                        scratch[Int(unit[pos])] += Double(coefficient[Int(wi[pos])] * wx[pos]) * dy
                    }
                    for pos in Int(wp[j])..<Int(wp[j + 1]) {
                        let i = Int(unit[pos])
                        norms[i] += scratch[i] * scratch[i]
                        scratch[i] = 0
                    }
                }
                norms[j] += scratch[j] * scratch[j]
                scratch[j] = 0
            }
        }
    }

    /// Calls `body` with weight_hh's arrays, the entry units, and the record's threshold terms.
    @inline(__always)
    private func withThresholdBuffers<Scalar: SparseScalar>(
        weightHH: SparseMatrix<Scalar>, record r: StepRecord<Scalar>,
        _ body: (UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Scalar>,
                 UnsafeBufferPointer<Scalar>, UnsafeBufferPointer<Scalar>, UnsafeBufferPointer<Scalar>, UnsafeBufferPointer<Int32>) -> Void
    ) {
        let w = weightHH.pattern
        w.columnPointers.withUnsafeBufferPointer { wp in
            w.rowIndices.withUnsafeBufferPointer { wi in
                entryUnit.withUnsafeBufferPointer { unit in
                    weightHH.values.withUnsafeBufferPointer { wx in
                        r.recurrentCoefficient.withUnsafeBufferPointer { coefficient in
                            r.thresholdPreviousOutput.withUnsafeBufferPointer { previous in
                                r.thresholdSelf.withUnsafeBufferPointer { own in
                                    thresholdParameter.withUnsafeBufferPointer { parameter in
                                        body(wp, wi, unit, wx, coefficient, previous, own, parameter)
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
