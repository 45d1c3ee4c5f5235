import Foundation

/// The optimisers a `Trainer` can use, by the names the `rtrl` command takes.
///
/// `sgd` and `adam` act on the gradient; `natural` is an SGD step along the natural-gradient
/// direction (F̂ + λI)⁻¹ g of every parameter, block by block (NoBackTrack's Kalman-like
/// variant; the trainer applies the preconditioner in the blocks of `NaturalGradientBlocks`).
public enum OptimizerKind: String, Codable, CaseIterable, Hashable, Sendable {
    /// Plain stochastic gradient descent, θ ← θ − η g.
    case sgd
    /// Adam (Kingma & Ba), with bias-corrected moments.
    case adam
    /// SGD along the natural-gradient direction of every parameter (core and readout).
    case natural
}

/// First-order optimisers over a flat parameter vector, with their state for checkpoints.
public struct Optimizer<Scalar: SparseScalar>: Codable, Hashable, Sendable {
    /// The optimiser kinds (``OptimizerKind``).
    public typealias Kind = OptimizerKind

    /// Which optimiser this is.
    public let kind: Kind
    /// The step size η.
    public let learningRate: Double
    /// Adam's decay rates and ε (Kingma & Ba's defaults).
    public let beta1: Double, beta2: Double, epsilon: Double
    var firstMoment: Packed<Scalar>
    var secondMoment: Packed<Scalar>
    /// Updates applied so far.
    public private(set) var updates: Int = 0

    /// An optimiser over `parameterCount` values (Adam's moments start at zero).
    public init(kind: Kind, learningRate: Double, parameterCount: Int,
                beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8) throws {
        guard learningRate.isFinite, learningRate > 0 else {
            throw RTRLError.invalidOption("the learning rate must be a positive number, not \(learningRate)")
        }
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        let moments = kind == .adam ? parameterCount : 0
        firstMoment = Packed([Scalar](repeating: 0, count: moments))
        secondMoment = Packed([Scalar](repeating: 0, count: moments))
    }

    /// θ ← θ − step(g). Allocates nothing.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public mutating func apply(gradient g: UnsafeBufferPointer<Scalar>, to theta: UnsafeMutableBufferPointer<Scalar>) {
        updates += 1
        switch kind {
        case .sgd, .natural:
            let rate = Scalar(learningRate)
            for t in 0..<theta.count { theta[t] -= rate * g[t] }
        case .adam:
            let b1 = Scalar(beta1), b2 = Scalar(beta2), eps = Scalar(epsilon)
            let correction1 = 1 - Foundation.pow(beta1, Double(updates))
            let correction2 = 1 - Foundation.pow(beta2, Double(updates))
            let rate = Scalar(learningRate * correction2.squareRoot() / correction1)
            firstMoment.values.withUnsafeMutableBufferPointer { m in
                secondMoment.values.withUnsafeMutableBufferPointer { v in
                    for t in 0..<theta.count {
                        m[t] = b1 * m[t] + (1 - b1) * g[t]
                        v[t] = b2 * v[t] + (1 - b2) * g[t] * g[t]
                        theta[t] -= rate * m[t] / (v[t].squareRoot() + eps)
                    }
                }
            }
        }
    }
}

/// Scales g so its Euclidean norm is at most `maximum`; returns the norm before clipping.
@discardableResult
@_specialize(where Scalar == Double)
@_specialize(where Scalar == Float)
public func clipGradientNorm<Scalar: SparseScalar>(_ g: UnsafeMutableBufferPointer<Scalar>, maximum: Double) -> Double {
    var sum = 0.0
    for t in 0..<g.count { sum += Double(g[t]) * Double(g[t]) }
    let norm = sum.squareRoot()
    if maximum > 0 && norm > maximum {
        let scale = Scalar(maximum / norm)
        for t in 0..<g.count { g[t] *= scale }
    }
    return norm
}
