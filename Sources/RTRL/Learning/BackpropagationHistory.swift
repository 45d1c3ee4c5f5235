/// Backpropagation through time from stored step records: the adjoint a_t of the state runs
/// backwards, a_{t−1} = D_tᵀ a_t + w_{t−1}, and the gradient collects a_tᵀ I_t.
///
/// Full BPTT keeps every record of the sequence (memory O(T)). TBPTT(h) comes in two forms:
/// *blocks* — every h steps, backpropagate the block's losses through the block, then drop it —
/// and *sliding* — keep the last h records, and backpropagate the losses not yet used through
/// them whenever the gradient is read (with one update per step, every loss is backpropagated
/// through h steps: a fair baseline, updating as often as the online methods do).
final class BackpropagationHistory<Scalar: SparseScalar> {
    let structure: ModelStructure
    /// Records kept (nil: unbounded, full BPTT).
    let window: Int?
    /// Sliding window instead of blocks.
    let sliding: Bool
    var records: [StepRecord<Scalar>] = []
    /// ∂L_t/∂s_t for every kept record.
    var stateWeights: [[Scalar]] = []
    private var adjoint: [Scalar]
    private var previous: [Scalar]
    private var dynamicsTransposed: [Scalar]

    init(structure: ModelStructure, window: Int?, sliding: Bool = false) {
        self.structure = structure
        self.window = window
        self.sliding = sliding && window != nil
        adjoint = [Scalar](repeating: 0, count: structure.graph.stateSize)
        previous = adjoint
        dynamicsTransposed = [Scalar](repeating: 0, count: structure.graph.jacobianTransposed.nonzeroCount)
    }

    func append(_ record: StepRecord<Scalar>, stateWeights w: [Scalar]) {
        records.append(record)
        stateWeights.append(w)
        if sliding, let window, records.count > window {
            records.removeFirst(records.count - window)
            stateWeights.removeFirst(stateWeights.count - window)
        }
    }

    func clear() {
        records.removeAll(keepingCapacity: true)
        stateWeights.removeAll(keepingCapacity: true)
    }

    /// Forgets the losses seen so far (their state weights) while keeping the records, so that
    /// later losses still backpropagate through them.
    func forgetLosses() {
        for t in stateWeights.indices { stateWeights[t].withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
    }

    /// Adds the gradient of the kept losses with respect to θ into g (θ-ordered).
    func backpropagate(weightHH: SparseMatrix<Scalar>, into g: UnsafeMutableBufferPointer<Scalar>) {
        let graph = structure.graph
        for q in adjoint.indices { adjoint[q] = 0 }
        for t in stride(from: records.count - 1, through: 0, by: -1) {
            let r = records[t]
            for q in adjoint.indices { adjoint[q] += stateWeights[t][q] }
            // g += a_tᵀ I_t.
            adjoint.withUnsafeBufferPointer { a in
                StepJacobian.immediateTransposedProduct(structure: structure, weightHH: weightHH, record: r, a, into: g)
            }
            // a_{t−1} = D_tᵀ a_t.
            dynamicsTransposed.withUnsafeMutableBufferPointer { dt in
                StepJacobian.dynamicsTransposed(graph: graph, weightHH: weightHH, record: r, into: dt)
            }
            dynamicsTransposed.withUnsafeBufferPointer { dt in
                adjoint.withUnsafeBufferPointer { a in
                    previous.withUnsafeMutableBufferPointer { out in
                        StepJacobian.transposedDynamicsProduct(graph: graph, dt: dt, a, into: out)
                    }
                }
            }
            swap(&adjoint, &previous)
        }
    }
}
