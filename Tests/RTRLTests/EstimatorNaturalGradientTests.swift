import RTRL
import XCTest

/// NoBackTrack's Kalman-like filtering as a natural-gradient preconditioner: the per-unit
/// block-diagonal Fisher estimate, its CHOLMOD solve against a dense Cholesky of the same
/// matrix, and the refactorisation schedule.
final class EstimatorNaturalGradientTests: XCTestCase {
    /// Dense Cholesky solve of the symmetric matrix whose upper triangle is stored in `m`.
    static func denseSolve(_ m: SparseMatrix<Double>, _ b: [Double]) -> [Double]? {
        let n = m.rowCount
        var a = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            for p in Int(m.pattern.columnPointers[j])..<Int(m.pattern.columnPointers[j + 1]) {
                let i = Int(m.pattern.rowIndices[p])
                a[i + j * n] = m.values[p]
                a[j + i * n] = m.values[p]
            }
        }
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var d = a[j + j * n]
            for k in 0..<j { d -= l[j + k * n] * l[j + k * n] }
            guard d > 0 else { return nil }
            l[j + j * n] = d.squareRoot()
            for i in (j + 1)..<max(n, j + 1) {
                var s = a[i + j * n]
                for k in 0..<j { s -= l[i + k * n] * l[j + k * n] }
                l[i + j * n] = s / l[j + j * n]
            }
        }
        var y = b
        for i in 0..<n { for k in 0..<i { y[i] -= l[i + k * n] * y[k] }; y[i] /= l[i + i * n] }
        for i in stride(from: n - 1, through: 0, by: -1) {
            for k in (i + 1)..<max(n, i + 1) { y[i] -= l[k + i * n] * y[k] }
            y[i] /= l[i + i * n]
        }
        return y
    }

    /// Gradient estimates of a real model (NoBackTrack on a GRU), step by step.
    static func gradients(_ model: Model<Double>, steps: Int, seed: UInt64) throws -> [[Double]] {
        let learner = try OnlineLearner(model: model, method: .noBackTrack, seed: seed)
        let sequence = try Fixtures.sequence(for: model, length: steps, seed: seed, scale: 1.5, unlabelled: 0)
        var result: [[Double]] = []
        for t in 0..<steps {
            learner.resetGradient()
            try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            result.append(learner.structure.layout.gather(learner.gradient()))
        }
        return result
    }

    /// Every step's direction equals a dense Cholesky solve with the matrix CHOLMOD factorised,
    /// which is block-diagonal per unit, equals the bias-corrected running Fisher estimate plus
    /// λI at the last refactorisation, and is refactorised every m steps.
    func testSolveMatchesDenseCholeskyOfTheBlockDiagonalFisher() throws {
        let model = try Fixtures.model(.gru, inputs: 3, hidden: 5, outputs: 4, density: 0.5, seed: 91)
        let layout = ModelStructure(model).layout
        let options = NaturalGradientPreconditioner.Options(decay: 0.9, damping: 1e-2, refactorInterval: 4)
        let preconditioner = try NaturalGradientPreconditioner(layout: layout, options: options)
        XCTAssertEqual(preconditioner.parameterCount, layout.count)
        let gradients = try Self.gradients(model, steps: 13, seed: 92)
        // An independent running estimate, dense, to check the block structure and the decay.
        let p = layout.count
        var fisher = [Double](repeating: 0, count: p * p)
        var unit = [Int](repeating: 0, count: p)
        for i in 0..<model.hiddenSize { for t in Int(layout.unitStart[i])..<Int(layout.unitStart[i + 1]) { unit[t] = i } }
        var snapshot = fisher
        for (t, g) in gradients.enumerated() {
            for j in 0..<p { for i in 0..<p {
                fisher[i + j * p] = options.decay * fisher[i + j * p] + (unit[i] == unit[j] ? (1 - options.decay) * g[i] * g[j] : 0)
            } }
            if t % options.refactorInterval == 0 { snapshot = fisher.map { $0 / (1 - pow(options.decay, Double(t + 1))) } }
            let direction = try preconditioner.direction(for: g)
            XCTAssertEqual(preconditioner.factorizations, t / options.refactorInterval + 1, "step \(t)")
            // The factorised matrix: the snapshot's blocks (upper triangle) plus λ on the diagonal.
            let factorized = preconditioner.factorizedMatrix
            var trace = 0.0
            for j in 0..<p { trace += snapshot[j + j * p] }
            let lambda = options.damping * trace / Double(p)
            XCTAssertEqual(preconditioner.lastDamping, lambda, accuracy: 1e-12 * lambda, "step \(t)")
            var expected = [Double]()
            for j in 0..<p {
                for q in Int(factorized.pattern.columnPointers[j])..<Int(factorized.pattern.columnPointers[j + 1]) {
                    let i = Int(factorized.pattern.rowIndices[q])
                    XCTAssertEqual(unit[i], unit[j], "an entry between units \(unit[i]) and \(unit[j])")
                    expected.append(snapshot[i + j * p] + (i == j ? lambda : 0))
                }
            }
            XCTAssertRelativelyClose(factorized.values, expected, tolerance: 1e-12, "factorised matrix, step \(t)")
            // Every block is stored in full (upper triangle): Σ f_i (f_i + 1) / 2 entries.
            let entries = (0..<model.hiddenSize).reduce(0) { let f = layout.parameterCount(ofUnit: $1); return $0 + f * (f + 1) / 2 }
            XCTAssertEqual(factorized.nonzeroCount, entries)
            // The CHOLMOD solve equals the dense Cholesky solve of the same matrix.
            let dense = try XCTUnwrap(Self.denseSolve(factorized, g))
            XCTAssertRelativelyClose(direction, dense, tolerance: 1e-10, "direction, step \(t)")
        }
        // The running estimate is the dense one's block diagonal, bias-corrected.
        let current = preconditioner.fisher
        let correction = 1 / (1 - pow(options.decay, Double(gradients.count)))
        for j in 0..<p {
            for q in Int(current.pattern.columnPointers[j])..<Int(current.pattern.columnPointers[j + 1]) {
                let i = Int(current.pattern.rowIndices[q])
                XCTAssertEqual(current.values[q], correction * fisher[i + j * p], accuracy: 1e-12 * correction * (fisher.map(abs).max() ?? 1))
            }
        }
    }

    /// The direction is a descent direction ((F̂ + λI)⁻¹ is SPD), scale-invariant through the
    /// relative damping with the exponential schedule (a prior, as the averaging schedule has,
    /// sets a scale), and invalid inputs and options are refused.
    func testDescentScaleInvarianceAndErrors() throws {
        let model = try Fixtures.model(.rnn, inputs: 3, hidden: 6, outputs: 4, density: 0.5, seed: 93)
        let layout = ModelStructure(model).layout
        let gradients = try Self.gradients(model, steps: 20, seed: 94)
        let a = try NaturalGradientPreconditioner(layout: layout, options: .init(decay: 0.99))
        let b = try NaturalGradientPreconditioner(layout: layout, options: .init(decay: 0.99))
        for g in gradients {
            let d = try a.direction(for: g)
            XCTAssertGreaterThan(zip(d, g).reduce(0) { $0 + $1.0 * $1.1 }, 0, "not a descent direction")
            // Scaling every gradient by 1000 scales F by 10⁶ and λ with it: the direction by 1/1000.
            let scaled = try b.direction(for: g.map { $0 * 1000 })
            XCTAssertRelativelyClose(scaled.map { $0 * 1000 }, d, tolerance: 1e-9)
        }
        XCTAssertEqual(a.factorizations, 2) // steps 1 and 11 (m = 10)
        XCTAssertThrowsError(try a.direction(for: [Double](repeating: 0, count: layout.count - 1)))
        var bad = gradients[0]
        bad[3] = .nan
        XCTAssertThrowsError(try a.direction(for: bad))
        for options in [NaturalGradientPreconditioner.Options(decay: 1), .init(minimumDamping: 0), .init(refactorInterval: 0)] {
            XCTAssertThrowsError(try NaturalGradientPreconditioner(layout: layout, options: options)) { error in
                guard case RTRLError.invalidOption = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertThrowsError(try NaturalGradientPreconditioner(layout: layout, memoryBudget: 1000)) { error in
            guard case RTRLError.tooLarge = error else { return XCTFail("\(error)") }
        }
        // Before any observation there is no factor; F̂ = g gᵀ after one; a reset starts again.
        let c = try NaturalGradientPreconditioner(blockStarts: [0, 2, 5], options: .init(decay: 0.99))
        let input = [1.0, 2, 3, 4, 5]
        var output = [Double](repeating: 0, count: 5)
        XCTAssertThrowsError(try input.withUnsafeBufferPointer { i in try output.withUnsafeMutableBufferPointer { try c.solve(i, into: $0) } })
        let first = try c.direction(for: [1.0, 0, 0, 0, 0])
        // F̂ = g gᵀ exactly after one bias-corrected observation: (ggᵀ + λI)⁻¹ g = g / (‖g‖² + λ).
        XCTAssertEqual(first[0], 1 / (1 + c.lastDamping), accuracy: 1e-15)
        XCTAssertEqual(Array(first[1...]), [0, 0, 0, 0])
        XCTAssertEqual(c.lastDamping, 1e-3 / 5, accuracy: 1e-18)
        c.reset()
        XCTAssertEqual(c.observations, 0)
        // Only zero gradients so far: F̂ = 0 and λ = minimumDamping, the direction is 0.
        XCTAssertEqual(try c.direction(for: [0.0, 0, 0, 0, 0]), [0, 0, 0, 0, 0])
        XCTAssertEqual(c.lastDamping, c.options.minimumDamping)
    }
}
