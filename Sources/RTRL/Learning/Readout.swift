import Foundation

/// The readout and loss of a model (<doc:TheModelDirectory>): logits = W·s + b, cross-entropy with
/// natural log, computed stably (log-sum-exp). Buffers are the caller's, so nothing is allocated
/// per step.
enum Readout {
    /// Returns the loss at this step (0 without a target) and writes ∂L/∂output (k values)
    /// into `outputGradient`; adds the readout's own gradient into `weightGradient` (o × k,
    /// column-major) and `biasGradient`. `logits` is scratch of size o.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func step<Scalar: SparseScalar>(weight: DenseMatrix<Scalar>, bias: [Scalar], output: [Scalar], target: Int,
                                           logits: UnsafeMutableBufferPointer<Double>,
                                           outputGradient: UnsafeMutableBufferPointer<Scalar>,
                                           weightGradient: UnsafeMutableBufferPointer<Scalar>,
                                           biasGradient: UnsafeMutableBufferPointer<Scalar>) -> Double {
        let o = weight.rowCount, k = weight.columnCount
        for i in 0..<k { outputGradient[i] = 0 }
        guard target >= 0 else { return 0 }
        for a in 0..<o { logits[a] = Double(bias[a]) }
        weight.values.withUnsafeBufferPointer { w in
            for i in 0..<k {
                let s = Double(output[i])
                if s == 0 { continue }
                for a in 0..<o { logits[a] += Double(w[a + i * o]) * s }
            }
        }
        var largest = -Double.infinity
        for a in 0..<o { largest = max(largest, logits[a]) }
        var total = 0.0
        for a in 0..<o { total += Foundation.exp(logits[a] - largest) }
        let logNormaliser = largest + Foundation.log(total)
        let loss = logNormaliser - logits[target]
        // ∂L/∂logits = softmax − onehot, kept in `logits`.
        for a in 0..<o { logits[a] = Foundation.exp(logits[a] - logNormaliser) - (a == target ? 1 : 0) }
        weight.values.withUnsafeBufferPointer { w in
            for i in 0..<k {
                var sum = 0.0
                let s = output[i]
                for a in 0..<o {
                    sum += Double(w[a + i * o]) * logits[a]
                    weightGradient[a + i * o] += Scalar(logits[a]) * s
                }
                outputGradient[i] = Scalar(sum)
            }
        }
        for a in 0..<o { biasGradient[a] += Scalar(logits[a]) }
        return loss
    }
}
