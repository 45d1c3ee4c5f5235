/// One online step of a stacked model: the layers bottom-up, the readout on the top layer, then
/// the method's bookkeeping (the dense influence update, or the step's records for BPTT).
extension StackedGradients {
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    func step(stream b: Int, input: UnsafeBufferPointer<Scalar>, target: Int) {
        let s = streams[b], k = hiddenSize, top = layerCount - 1, components = cell.stateComponents
        for l in 0..<layerCount {
            let model = layerModels[l]
            if l == 0 {
                s.states[0].withUnsafeBufferPointer { previous in
                    CellStep.run(model, previous: previous, isInitial: s.isInitial, input: input, record: &s.records[0])
                }
            } else {
                let below = s.records[l - 1].output
                below.withUnsafeBufferPointer { x in
                    s.states[l].withUnsafeBufferPointer { previous in
                        CellStep.run(model, previous: previous, isInitial: s.isInitial, input: x, record: &s.records[l])
                    }
                }
            }
            s.states[l].withUnsafeMutableBufferPointer { state in
                s.records[l].state.withUnsafeBufferPointer { new in for q in 0..<state.count { state[q] = new[q] } }
            }
        }
        s.isInitial = false

        let p = layerModels[top].parameters
        s.lastTarget = target
        s.loss = s.logits.withUnsafeMutableBufferPointer { logits in
            s.outputGradient.withUnsafeMutableBufferPointer { og in
                s.readoutWeightGradient.withUnsafeMutableBufferPointer { wg in
                    s.readoutBiasGradient.withUnsafeMutableBufferPointer { bg in
                        Readout.step(weight: p.readoutWeight, bias: p.readoutBias, output: s.records[top].output, target: target,
                                     logits: logits, outputGradient: og, weightGradient: wg, biasGradient: bg)
                    }
                }
            }
        }
        // ∂L_t/∂s^{L−1}_t, and the EGRU's direct path from the top layer's ϑ to its y_t.
        for c in 0..<components {
            for i in 0..<k { s.topStateWeights[c * k + i] = s.outputGradient[i] * s.records[top].outputScale[c * k + i] }
        }
        if cell == .egru {
            for i in 0..<k {
                s.coreGradients[top][Int(thresholdParameter[top][i])] += s.outputGradient[i] * s.records[top].thresholdOutput[i]
            }
        }

        if let uoro {
            uoro.update(stream: b, models: layerModels, records: s.records)
            uoro.accumulate(stream: b, topStateWeights: s.topStateWeights, into: &s.coreGradients)
        } else if let kronecker {
            kronecker.update(stream: b, models: layerModels, records: s.records)
            kronecker.accumulate(stream: b, topStateWeights: s.topStateWeights, into: &s.coreGradients)
        } else if let sparse {
            sparse.update(stream: b, models: layerModels, records: s.records, topStateWeights: s.topStateWeights, gradients: &s.coreGradients)
        } else if isDense {
            updateDenseInfluence(stream: b)
            accumulateDenseGradient(stream: b)
        } else {
            s.history.append(s.records)
            s.historyWeights.append(s.topStateWeights)
            if sliding, let window, s.history.count > window {
                s.history.removeFirst(s.history.count - window)
                s.historyWeights.removeFirst(s.historyWeights.count - window)
            }
            if let window, !sliding, s.history.count == window {
                backpropagate(stream: b, into: &s.coreGradients)
                s.history.removeAll(keepingCapacity: true)
                s.historyWeights.removeAll(keepingCapacity: true)
            }
        }
    }

    /// J^l ← D^l J^l + A^l M^{l−1} + [0 | I^l], layer by layer from the bottom (each layer reads
    /// the updated J of the layer below).
    private func updateDenseInfluence(stream b: Int) {
        let s = streams[b], k = hiddenSize, components = cell.stateComponents, size = components * k
        for l in 0..<layerCount {
            let model = layerModels[l], own = ownInfluence[l]
            own.update(stream: b, weightHH: model.parameters.weightHH, record: s.records[l])
            if l == 0 { continue }
            let lower = parameterStart[l], belowStart = parameterStart[l - 1]
            let below = s.records[l - 1], belowOwn = ownInfluence[l - 1].streams[b].current
            // M^{l−1} = ∂x^l/∂θ for the parameters of layers 0 … l − 1 (k × lower).
            for theta in 0..<lower {
                for j in 0..<k {
                    var m: Scalar = 0
                    for c in 0..<components {
                        let q = c * k + j
                        let value = theta < belowStart ? s.cross[l - 1][q + theta * size] : belowOwn[q + (theta - belowStart) * size]
                        m += below.outputScale[q] * value
                    }
                    s.lowerOutput[j + theta * k] = m
                }
            }
            if cell == .egru {
                for j in 0..<k { s.lowerOutput[j + (belowStart + Int(thresholdParameter[l - 1][j])) * k] += below.thresholdOutput[j] }
            }
            s.inputJacobian.withUnsafeMutableBufferPointer { a in
                StepJacobian.inputJacobian(weightIH: model.parameters.weightIH, record: s.records[l], components: components,
                                           hiddenSize: k, into: a)
            }
            let d = own.streams[b].dense // D^l, column-major, written by `own.update`
            for theta in 0..<lower {
                for q in 0..<size { s.crossNext[l][q + theta * size] = 0 }
                for j in 0..<size {
                    let v = s.cross[l][j + theta * size]
                    if v == 0 { continue }
                    for q in 0..<size { s.crossNext[l][q + theta * size] += d[q + j * size] * v }
                }
                for j in 0..<k {
                    let v = s.lowerOutput[j + theta * k]
                    if v == 0 { continue }
                    for q in 0..<size { s.crossNext[l][q + theta * size] += s.inputJacobian[q + j * size] * v }
                }
            }
            swap(&s.cross[l], &s.crossNext[l])
        }
    }

    /// g += w^{L−1}ᵀ J^{L−1}: the top layer's own columns and those of the layers below.
    private func accumulateDenseGradient(stream b: Int) {
        let s = streams[b], top = layerCount - 1, size = cell.stateComponents * hiddenSize
        s.topStateWeights.withUnsafeBufferPointer { w in
            s.coreGradients[top].withUnsafeMutableBufferPointer { g in ownInfluence[top].accumulate(stream: b, stateWeights: w, into: g) }
            var layer = 0
            for theta in 0..<parameterStart[top] {
                while theta >= parameterStart[layer + 1] { layer += 1 }
                var sum: Scalar = 0
                for q in 0..<size { sum += w[q] * s.cross[top][q + theta * size] }
                s.coreGradients[layer][theta - parameterStart[layer]] += sum
            }
        }
    }

    /// Adds the gradient of the losses kept in a stream's history into `gradients` (per layer,
    /// `ParameterLayout` order): backpropagation through the kept steps and down the layers.
    func backpropagate(stream b: Int, into gradients: inout [[Scalar]]) {
        let s = streams[b], components = cell.stateComponents, top = layerCount - 1
        for l in 0..<layerCount { for q in 0..<s.adjoints[l].count { s.adjoints[l][q] = 0 } }
        for t in stride(from: s.history.count - 1, through: 0, by: -1) {
            let records = s.history[t]
            for q in 0..<s.adjoints[top].count { s.adjoints[top][q] += s.historyWeights[t][q] }
            for l in stride(from: top, through: 0, by: -1) {
                let model = layerModels[l], record = records[l], structure = structures[l]
                s.adjoints[l].withUnsafeBufferPointer { a in
                    gradients[l].withUnsafeMutableBufferPointer { g in
                        StepJacobian.immediateTransposedProduct(structure: structure, weightHH: model.parameters.weightHH,
                                                                record: record, a, into: g)
                    }
                }
                if l > 0 {
                    // The adjoint of layer l's input, handed to the layer below's state (and thresholds).
                    let (upper, lower) = (s.adjoints[l], l - 1)
                    upper.withUnsafeBufferPointer { a in
                        s.inputAdjoint.withUnsafeMutableBufferPointer { e in
                            s.adjoints[lower].withUnsafeMutableBufferPointer { below in
                                gradients[lower].withUnsafeMutableBufferPointer { g in
                                    StepJacobian.handDown(weightIH: model.parameters.weightIH, record: record, below: records[lower],
                                                          components: components, thresholdParameter: thresholdParameter[lower], a,
                                                          scratch: e, into: below, belowGradient: g)
                                }
                            }
                        }
                    }
                }
                // a^l_{t−1} = D^lᵀ a^l_t.
                s.dynamicsTransposed[l].withUnsafeMutableBufferPointer { dt in
                    StepJacobian.dynamicsTransposed(graph: structure.graph, weightHH: model.parameters.weightHH, record: record, into: dt)
                }
                s.dynamicsTransposed[l].withUnsafeBufferPointer { dt in
                    s.adjoints[l].withUnsafeBufferPointer { a in
                        s.previousAdjoint.withUnsafeMutableBufferPointer { out in
                            StepJacobian.transposedDynamicsProduct(graph: structure.graph, dt: dt, a, into: out)
                        }
                    }
                }
                swap(&s.adjoints[l], &s.previousAdjoint)
            }
        }
    }
}
