import Foundation

/// One forward step of a cell (the equations of `CellKind`) with its factored Jacobians (see
/// `StepRecord`).
///
/// `previous` is s_{t−1} (all zero and `isInitial` at t = 1). The EGRU's state is v (k values):
/// h_{t−1} = v − o ⊙ ϑ and y_{t−1} = o ⊙ v with o = H(v − ϑ), except at t = 1 where h_0 = y_0 = 0
/// by definition. Its pseudo-derivative H'(u) = dampening · max(0, 1 − support · |u|) stands in
/// for H's derivative wherever H appears.
enum CellStep {
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func run<Scalar: SparseScalar>(_ model: Model<Scalar>, previous: UnsafeBufferPointer<Scalar>, isInitial: Bool,
                                          input: UnsafeBufferPointer<Scalar>, record r: inout StepRecord<Scalar>) {
        let k = model.hiddenSize, cell = model.cell, gk = cell.gateCount * k
        let p = model.parameters
        for j in 0..<input.count { r.input[j] = input[j] }

        // The recurrent feature the gates read, and for the EGRU the previous output's derivatives.
        let damp = Scalar(model.configuration.dampening ?? 0), support = Scalar(model.configuration.support ?? 1)
        var active = 0, quiet = 0
        if cell == .egru {
            for j in 0..<k {
                if isInitial {
                    r.recurrentFeature[j] = 0
                    r.columnScale[j] = 0
                    r.thresholdPreviousOutput[j] = 0
                    quiet += 1
                    continue
                }
                let v = previous[j], theta = p.threshold[j], u = v - theta
                let o: Scalar = u > 0 ? 1 : 0
                let dH = damp * max(0, 1 - support * abs(u))
                r.recurrentFeature[j] = o * v                      // y_{t−1}
                r.columnScale[j] = dH * v + o                      // ∂y_{t−1}/∂v_{t−1}
                r.thresholdPreviousOutput[j] = -dH * v             // ∂y_{t−1}/∂ϑ
                if o == 0 && dH == 0 { quiet += 1 }
            }
        } else {
            for j in 0..<k { r.recurrentFeature[j] = previous[j] } // h_{t−1}
        }

        // Pre-activations: W_ih x + b_ih and W_hh φ + b_hh.
        for q in 0..<gk { r.inputPreactivation[q] = p.biasIH[q]; r.recurrentPreactivation[q] = p.biasHH[q] }
        p.weightIH.values.withUnsafeBufferPointer { w in
            r.input.withUnsafeBufferPointer { x in
                r.inputPreactivation.withUnsafeMutableBufferPointer { y in p.weightIH.pattern.multiplyAdd(values: w, x, into: y) }
            }
        }
        p.weightHH.values.withUnsafeBufferPointer { w in
            r.recurrentFeature.withUnsafeBufferPointer { x in
                r.recurrentPreactivation.withUnsafeMutableBufferPointer { y in p.weightHH.pattern.multiplyAdd(values: w, x, into: y) }
            }
        }

        switch cell {
        case .rnn:
            for i in 0..<k {
                let h = Scalar(Foundation.tanh(Double(r.inputPreactivation[i] + r.recurrentPreactivation[i])))
                let d = 1 - h * h
                r.inputCoefficient[i] = d
                r.recurrentCoefficient[i] = d
                r.state[i] = h
                r.output[i] = h
                r.outputScale[i] = 1
            }
            active = k
        case .gru, .egru:
            for i in 0..<k {
                let ir = i, iz = k + i, ing = 2 * k + i
                let rg = sigmoid(r.inputPreactivation[ir] + r.recurrentPreactivation[ir])
                let z = sigmoid(r.inputPreactivation[iz] + r.recurrentPreactivation[iz])
                let hn = r.recurrentPreactivation[ing]
                let n = Scalar(Foundation.tanh(Double(r.inputPreactivation[ing] + rg * hn)))
                // h_{t−1} and its derivatives with respect to the previous state and ϑ.
                var hPrevious = previous[i], dhdv: Scalar = 1, dhdTheta: Scalar = 0
                if cell == .egru {
                    if isInitial {
                        hPrevious = 0; dhdv = 0
                    } else {
                        let theta = p.threshold[i], u = previous[i] - theta
                        let o: Scalar = u > 0 ? 1 : 0
                        let dH = damp * max(0, 1 - support * abs(u))
                        hPrevious = previous[i] - o * theta
                        dhdv = 1 - dH * theta
                        dhdTheta = dH * theta - o
                    }
                }
                let dn = 1 - n * n, oneMinusZ = 1 - z
                let hNew = oneMinusZ * n + z * hPrevious
                r.inputCoefficient[ir] = oneMinusZ * dn * hn * rg * (1 - rg)
                r.recurrentCoefficient[ir] = r.inputCoefficient[ir]
                r.inputCoefficient[iz] = (hPrevious - n) * z * (1 - z)
                r.recurrentCoefficient[iz] = r.inputCoefficient[iz]
                r.inputCoefficient[ing] = oneMinusZ * dn
                r.recurrentCoefficient[ing] = oneMinusZ * dn * rg
                r.selfTerm[i] = z * dhdv
                r.state[i] = hNew
                if cell == .egru {
                    let theta = p.threshold[i], u = hNew - theta
                    let o: Scalar = u > 0 ? 1 : 0
                    let dH = damp * max(0, 1 - support * abs(u))
                    r.output[i] = o * hNew
                    r.outputScale[i] = dH * hNew + o
                    r.thresholdOutput[i] = -dH * hNew
                    r.thresholdSelf[i] = z * dhdTheta
                    if o != 0 { active += 1 }
                } else {
                    r.output[i] = hNew
                    r.outputScale[i] = 1
                }
            }
            if cell == .gru { active = k }
        case .lstm:
            for i in 0..<k {
                let ii = i, iff = k + i, ig = 2 * k + i, io = 3 * k + i
                let inGate = sigmoid(r.inputPreactivation[ii] + r.recurrentPreactivation[ii])
                let forget = sigmoid(r.inputPreactivation[iff] + r.recurrentPreactivation[iff])
                let g = Scalar(Foundation.tanh(Double(r.inputPreactivation[ig] + r.recurrentPreactivation[ig])))
                let out = sigmoid(r.inputPreactivation[io] + r.recurrentPreactivation[io])
                let cPrevious = previous[k + i]
                let c = forget * cPrevious + inGate * g
                let tc = Scalar(Foundation.tanh(Double(c)))
                let h = out * tc
                let dhdc = out * (1 - tc * tc)
                let dcI = g * inGate * (1 - inGate), dcF = cPrevious * forget * (1 - forget), dcG = inGate * (1 - g * g)
                // Component 0 is h, component 1 is c; the gates' coefficients are the same for
                // the input and the recurrent pre-activation.
                func set(_ row: Int, _ dh: Scalar, _ dc: Scalar) {
                    r.inputCoefficient[row] = dh; r.recurrentCoefficient[row] = dh
                    r.inputCoefficient[gk + row] = dc; r.recurrentCoefficient[gk + row] = dc
                }
                set(ii, dhdc * dcI, dcI)
                set(iff, dhdc * dcF, dcF)
                set(ig, dhdc * dcG, dcG)
                set(io, tc * out * (1 - out), 0)
                r.selfTerm[i] = dhdc * forget      // ∂h'/∂c
                r.selfTerm[k + i] = forget         // ∂c'/∂c
                r.state[i] = h
                r.state[k + i] = c
                r.output[i] = h
                r.outputScale[i] = 1
                r.outputScale[k + i] = 0
            }
            active = k
        }
        r.activeUnits = active
        r.quietUnits = quiet
        let stride = 2 * gk + 1, n = input.count
        for c in 0..<cell.stateComponents {
            for q in 0..<gk {
                r.immediateCoefficients[c * stride + q] = r.inputCoefficient[c * gk + q]
                r.immediateCoefficients[c * stride + gk + q] = r.recurrentCoefficient[c * gk + q]
            }
        }
        for j in 0..<n { r.immediateFeatures[j] = r.input[j] }
        for j in 0..<k { r.immediateFeatures[n + j] = r.recurrentFeature[j] }
    }

    @inline(__always)
    static func sigmoid<Scalar: SparseScalar>(_ x: Scalar) -> Scalar {
        Scalar(1 / (1 + Foundation.exp(-Double(x))))
    }
}
