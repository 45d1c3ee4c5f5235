import Foundation
import RTRL
import XCTest

/// NoBackTrack's Kalman-like filter pinned down by its definition: online natural gradient with
/// the true Fisher matrix, averaged with weights 1/(t₀ + t) and stepped by 1/(t₀ + t), is the
/// extended Kalman filter on the parameters (Ollivier, arXiv 1703.00209); on a linear-Gaussian
/// model that is recursive least squares. These tests compare the preconditioner against
/// independent implementations: RLS written out below, and a dense softmax Fisher matrix.
final class KalmanFilterTests: XCTestCase {
    /// Recursive least squares for y = xᵀθ + noise, with P₀ given: the textbook gain form.
    private struct RecursiveLeastSquares {
        var theta: [Double]
        var p: [[Double]]
        mutating func update(x: [Double], y: Double) {
            let n = x.count
            let px = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + p[i][$1] * x[$1] } }
            let denominator = 1 + zip(x, px).reduce(0.0) { $0 + $1.0 * $1.1 }
            let gain = px.map { $0 / denominator }
            let error = y - zip(x, theta).reduce(0.0) { $0 + $1.0 * $1.1 }
            for i in 0..<n { theta[i] += gain[i] * error }
            // P ← P − k (P x)ᵀ (P is symmetric, so xᵀP = (P x)ᵀ).
            for i in 0..<n { for j in 0..<n { p[i][j] -= gain[i] * px[j] } }
        }
    }

    private func gaussian(_ rng: inout SeededGenerator, _ count: Int) -> [Double] {
        (0..<count).map { _ in rng.nextGaussian() }
    }

    private func relativeDifference(_ a: [Double], _ b: [Double]) -> Double {
        let scale = max(b.map(abs).max() ?? 0, 1e-300)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    /// Blocks `blocks` (sizes), one independent linear-Gaussian regression per block (a model
    /// whose Fisher matrix is exactly block-diagonal); one block is the plain full-matrix case.
    /// The natural-gradient filter with the averaging schedule and the observations x_b x_bᵀ must
    /// follow RLS on every block, step by step, to 1e-10.
    private func checkAgainstRecursiveLeastSquares(blocks: [Int], steps: Int, seed: UInt64) throws {
        let priorWeight = 2.0, priorFisher = 0.5   // P₀ = (t₀ F₀)⁻¹ = I
        var starts = [0]
        for size in blocks { starts.append(starts.last! + size) }
        let p = starts.last!
        let filter = try NaturalGradientPreconditioner(
            blockStarts: starts,
            options: .init(schedule: .averaging(priorWeight: priorWeight), priorFisher: priorFisher, damping: 0, refactorInterval: 1))
        var rng = SeededGenerator(seed: seed)
        let truth = blocks.map { gaussian(&rng, $0) }
        var references = blocks.map { n in
            RecursiveLeastSquares(theta: [Double](repeating: 0, count: n),
                                  p: (0..<n).map { i in (0..<n).map { i == $0 ? 1 / (priorWeight * priorFisher) : 0 } })
        }
        var theta = [Double](repeating: 0, count: p)
        var worst = 0.0
        for t in 1...steps {
            // Each block's input and target; the factors are the blocks' x, zero elsewhere.
            var factors = [Double](repeating: 0, count: blocks.count * p)
            var gradient = [Double](repeating: 0, count: p)
            for (b, n) in blocks.enumerated() {
                let x = gaussian(&rng, n)
                let y = zip(x, truth[b]).reduce(0.0) { $0 + $1.0 * $1.1 } + 0.3 * rng.nextGaussian()
                let prediction = (0..<n).reduce(0.0) { $0 + x[$1] * theta[starts[b] + $1] }
                for i in 0..<n {
                    factors[b * p + starts[b] + i] = x[i]
                    gradient[starts[b] + i] = -(y - prediction) * x[i]   // of ½(y − xᵀθ)²
                }
                references[b].update(x: x, y: y)
            }
            let weights = [Double](repeating: 1, count: blocks.count)
            try factors.withUnsafeBufferPointer { f in
                try weights.withUnsafeBufferPointer { try filter.observe(factors: f, weights: $0) }
            }
            try filter.refactorize()
            var direction = [Double](repeating: 0, count: p)
            try gradient.withUnsafeBufferPointer { g in
                try direction.withUnsafeMutableBufferPointer { try filter.solve(g, into: $0) }
            }
            for i in 0..<p { theta[i] -= direction[i] / (priorWeight + Double(t)) }
            let expected = references.flatMap { $0.theta }
            let difference = relativeDifference(theta, expected)
            worst = max(worst, difference)
            XCTAssertLessThan(difference, 1e-10, "blocks \(blocks), step \(t)")
            if difference >= 1e-10 { return }
        }
        XCTAssertEqual(filter.lastDamping, 0, "no damping: the prior makes F̂ positive definite")
        // The filter learned: θ is close to the truth after many steps (RLS converges).
        let truthFlat = truth.flatMap { $0 }
        XCTAssertLessThan(relativeDifference(theta, truthFlat), 0.2, "θ \(theta), truth \(truthFlat)")
        XCTAssertLessThan(worst, 1e-10)
    }

    func testAveragingFilterIsRecursiveLeastSquares() throws {
        try checkAgainstRecursiveLeastSquares(blocks: [6], steps: 300, seed: 1)
    }

    func testBlockDiagonalFilterIsRecursiveLeastSquaresPerBlock() throws {
        try checkAgainstRecursiveLeastSquares(blocks: [2, 4, 1, 3], steps: 300, seed: 2)
    }

    /// The empirical Fisher (observing g gᵀ, as `direction(for:)` does) is not the filter: on the
    /// same problem it leaves RLS — so the tests above can tell the two apart.
    func testEmpiricalFisherIsNotRecursiveLeastSquares() throws {
        let n = 4, priorWeight = 2.0, priorFisher = 0.5
        let filter = try NaturalGradientPreconditioner(
            blockStarts: [0, n],
            options: .init(schedule: .averaging(priorWeight: priorWeight), priorFisher: priorFisher, damping: 0, refactorInterval: 1))
        var rng = SeededGenerator(seed: 3)
        let truth = gaussian(&rng, n)
        var reference = RecursiveLeastSquares(theta: [Double](repeating: 0, count: n),
                                              p: (0..<n).map { i in (0..<n).map { i == $0 ? 1 : 0 } })
        var theta = [Double](repeating: 0, count: n)
        for t in 1...50 {
            let x = gaussian(&rng, n)
            let y = zip(x, truth).reduce(0.0) { $0 + $1.0 * $1.1 } + 0.3 * rng.nextGaussian()
            let error = y - zip(x, theta).reduce(0.0) { $0 + $1.0 * $1.1 }
            let direction = try filter.direction(for: x.map { -error * $0 })
            for i in 0..<n { theta[i] -= direction[i] / (priorWeight + Double(t)) }
            reference.update(x: x, y: y)
        }
        XCTAssertGreaterThan(relativeDifference(theta, reference.theta), 1e-3)
    }

    /// The softmax readout's Fisher: factors from `softmaxFisherFactors` with weights p, averaged
    /// by the filter, give the matrix (t₀F₀ + Σ_t J_tᵀ(diag p_t − p_t p_tᵀ)J_t)/(t₀ + t) computed
    /// densely here, and the direction is its solve (checked by multiplying back).
    func testSoftmaxReadoutFisherMatchesDenseComputation() throws {
        let classes = 4, inputs = 3
        let p = classes * inputs + classes        // W (row-major) and b
        let priorWeight = 1.0, priorFisher = 0.1
        let starts = [0, classes * inputs, p]     // W in one block, b in another
        let filter = try NaturalGradientPreconditioner(
            blockStarts: starts,
            options: .init(schedule: .averaging(priorWeight: priorWeight), priorFisher: priorFisher, damping: 0, refactorInterval: 1))
        var rng = SeededGenerator(seed: 4)
        let w = gaussian(&rng, classes * inputs), bias = gaussian(&rng, classes)
        var dense = [[Double]](repeating: [Double](repeating: 0, count: p), count: p)
        for i in 0..<p { dense[i][i] = priorWeight * priorFisher }
        for t in 1...20 {
            let x = gaussian(&rng, inputs)
            let logits = (0..<classes).map { c in bias[c] + (0..<inputs).reduce(0.0) { $0 + w[c * inputs + $1] * x[$1] } }
            let top = logits.max()!
            let exps = logits.map { Foundation.exp($0 - top) }
            let probabilities = exps.map { $0 / exps.reduce(0, +) }
            // J_c = ∂z_c/∂θ: x in row c of W, 1 at bias c.
            var jacobian = [Double](repeating: 0, count: classes * p)
            for c in 0..<classes {
                for i in 0..<inputs { jacobian[c * p + c * inputs + i] = x[i] }
                jacobian[c * p + classes * inputs + c] = 1
            }
            var factors = [Double](repeating: 0, count: classes * p)
            try probabilities.withUnsafeBufferPointer { pr in
                try jacobian.withUnsafeBufferPointer { j in
                    try factors.withUnsafeMutableBufferPointer {
                        try NaturalGradientPreconditioner.softmaxFisherFactors(probabilities: pr, logitJacobian: j, into: $0)
                    }
                }
            }
            try factors.withUnsafeBufferPointer { f in
                try probabilities.withUnsafeBufferPointer { try filter.observe(factors: f, weights: $0) }
            }
            // Dense: Jᵀ (diag p − p pᵀ) J, only within the filter's blocks.
            func block(_ i: Int) -> Int { i < classes * inputs ? 0 : 1 }
            for a in 0..<p { for b in 0..<p where block(a) == block(b) {
                var sum = 0.0
                for c in 0..<classes { for d in 0..<classes {
                    let middle = (c == d ? probabilities[c] : 0) - probabilities[c] * probabilities[d]
                    sum += jacobian[c * p + a] * middle * jacobian[d * p + b]
                } }
                dense[a][b] += sum
            } }
            let normalised = dense.map { $0.map { $0 / (priorWeight + Double(t)) } }
            let fisher = filter.fisher
            var worst = 0.0
            for j in 0..<p {
                for q in Int(fisher.pattern.columnPointers[j])..<Int(fisher.pattern.columnPointers[j + 1]) {
                    let i = Int(fisher.pattern.rowIndices[q])
                    worst = max(worst, abs(fisher.values[q] - normalised[i][j]))
                }
            }
            XCTAssertLessThan(worst, 1e-12, "step \(t)")
            XCTAssertEqual(fisher.nonzeroCount, (classes * inputs) * (classes * inputs + 1) / 2 + classes * (classes + 1) / 2)
            // The direction solves F̂ d = g for a gradient of the log loss at a drawn label.
            let label = t % classes
            let g = (0..<p).map { i in (0..<classes).reduce(0.0) { $0 + ((($1 == label) ? 1 : 0) - probabilities[$1]) * -jacobian[$1 * p + i] } }
            try filter.refactorize()
            var direction = [Double](repeating: 0, count: p)
            try g.withUnsafeBufferPointer { gv in try direction.withUnsafeMutableBufferPointer { try filter.solve(gv, into: $0) } }
            let back = (0..<p).map { i in (0..<p).reduce(0.0) { $0 + normalised[i][$1] * direction[$1] } }
            XCTAssertLessThan(relativeDifference(back, g), 1e-10, "step \(t)")
        }
    }

    /// Bad settings and inputs are errors.
    func testAveragingScheduleValidation() throws {
        for options in [NaturalGradientPreconditioner.Options(schedule: .averaging(priorWeight: -1)),
                        .init(schedule: .averaging(priorWeight: 1), priorFisher: -1),
                        .init(schedule: .averaging(priorWeight: .infinity), priorFisher: 1)] {
            XCTAssertThrowsError(try NaturalGradientPreconditioner(blockStarts: [0, 2], options: options), "\(options)")
        }
        let filter = try NaturalGradientPreconditioner(blockStarts: [0, 2], options: .init(schedule: .averaging(priorWeight: 1), priorFisher: 1))
        let three: [Double] = [1, 2, 3], one: [Double] = [1], negative: [Double] = [-1]
        try three.withUnsafeBufferPointer { f in
            try one.withUnsafeBufferPointer { XCTAssertThrowsError(try filter.observe(factors: f, weights: $0)) }
        }
        try [1.0, 2.0].withUnsafeBufferPointer { f in
            try negative.withUnsafeBufferPointer { XCTAssertThrowsError(try filter.observe(factors: f, weights: $0)) }
        }
        XCTAssertEqual(filter.observations, 0, "refused observations are not counted")
    }

    /// The trainer builds its filter from the configuration (the averaging schedule is not the
    /// default one, and gives other parameters), stores the settings in checkpoints and resumes
    /// bit for bit.
    func testTrainerTakesTheFilterSettingsAndResumesExactly() throws {
        let averaging = NaturalGradientPreconditioner.Options(schedule: .averaging(priorWeight: 10), priorFisher: 1, damping: 0,
                                                              refactorInterval: 1)
        func trainer(_ filter: NaturalGradientPreconditioner.Options) throws -> Trainer<Double> {
            let task = CopyTask(streams: 2, seed: 5)
            let model = try Model<Double>(random: try ModelConfiguration(cell: .rnn, inputSize: 4, hiddenSize: 8, outputSize: 4),
                                          density: 0.5, seed: 5)
            return try Trainer(model: model, task: task, configuration: try TrainingConfiguration(
                method: .noBackTrack, optimizer: .natural, learningRate: 0.05, seed: 5, filter: filter))
        }
        let uninterrupted = try trainer(averaging)
        for _ in 0..<60 { try uninterrupted.trainStep() }
        let exponential = try trainer(.init())
        for _ in 0..<60 { try exponential.trainStep() }
        XCTAssertNotEqual(uninterrupted.model.parameters.flattened, exponential.model.parameters.flattened)

        let first = try trainer(averaging)
        for _ in 0..<25 { try first.trainStep() }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rtrl-kalman-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        try first.saveCheckpoint(to: url.path)
        let resumed = try Trainer<Double>(resumingFrom: url.path, task: CopyTask(streams: 2, seed: 5))
        XCTAssertEqual(resumed.configuration.filter, averaging)
        for _ in 25..<60 { try resumed.trainStep() }
        XCTAssertEqual(resumed.model.parameters.flattened, uninterrupted.model.parameters.flattened)
        XCTAssertTrue(resumed.model.parameters.isFinite)

        XCTAssertThrowsError(try TrainingConfiguration(method: .rtrl, filter: .init(decay: 1)))
        XCTAssertThrowsError(try TrainingConfiguration(method: .rtrl, filter: .init(schedule: .averaging(priorWeight: -1))))
    }

    /// The trainer's natural step covers every parameter, block by block: each hidden unit's of
    /// every layer (its rows of weight_ih and weight_hh and its biases) and each output class's
    /// (its row of the readout weight and its bias). At the first update of the averaging schedule
    /// with no damping, F̂ = (t₀f₀I + g gᵀ)/(t₀ + 1) on a block, so by Sherman–Morrison the step
    /// η/(t₀ + 1) · F̂⁻¹g is η g_b/(t₀f₀ + ‖g_b‖²) on block b — checked against the gradient an SGD
    /// twin (rate 1) applies, with the blocks read off the model's tensors by position.
    private func checkNaturalStepBlockByBlock(layers layerCount: Int, hidden k: Int, streams: Int, density: Double,
                                              seed: UInt64, file: StaticString = #filePath, line: UInt = #line) throws {
        let (t0, f0, eta) = (20.0, 0.05, 0.7)
        let filter = NaturalGradientPreconditioner.Options(schedule: .averaging(priorWeight: t0), priorFisher: f0, damping: 0,
                                                           refactorInterval: 1)
        let inputs = 4, classes = 4
        func trained(_ optimizer: Optimizer<Double>.Kind, rate: Double) throws -> (Parameters<Double>, Parameters<Double>) {
            let model = try Model<Double>(random: try ModelConfiguration(cell: .rnn, inputSize: inputs, hiddenSize: k, outputSize: classes,
                                                                         layerCount: layerCount), density: density, seed: seed)
            // One update after 30 steps, so the copy task's targets have given the readout a gradient.
            let trainer = try Trainer(model: model, task: CopyTask(streams: streams, seed: seed), configuration: try TrainingConfiguration(
                method: .rtrl, optimizer: optimizer, learningRate: rate, clip: 0, updateEvery: 30, seed: seed, filter: filter))
            for _ in 0..<30 { try trainer.trainStep() }
            return (model.parameters, trainer.model.parameters)
        }
        let (before, natural) = try trained(.natural, rate: eta)
        let (_, sgd) = try trained(.sgd, rate: 1)
        func layers(_ p: Parameters<Double>) -> [(ih: [Double], hh: [Double], bih: [Double], bhh: [Double], n: Int)] {
            var result = [(p.weightIH.denseColumnMajor(), p.weightHH.denseColumnMajor(), p.biasIH, p.biasHH, inputs)]
            for upper in p.upperLayers {
                result.append((upper.weightIH.denseColumnMajor(), upper.weightHH.denseColumnMajor(), upper.biasIH, upper.biasHH, k))
            }
            return result
        }
        let initial = layers(before)
        func unitBlock(_ p: Parameters<Double>, _ l: Int, _ i: Int) -> [Double] {
            let a = layers(p)[l], b = initial[l]
            var block: [Double] = []
            for j in 0..<a.n { block.append(a.ih[i + j * k] - b.ih[i + j * k]) }
            for j in 0..<k { block.append(a.hh[i + j * k] - b.hh[i + j * k]) }
            block.append(a.bih[i] - b.bih[i])
            block.append(a.bhh[i] - b.bhh[i])
            return block
        }
        func classBlock(_ p: Parameters<Double>, _ c: Int) -> [Double] {
            var block: [Double] = (0..<k).map { p.readoutWeight[c, $0] - before.readoutWeight[c, $0] }
            block.append(p.readoutBias[c] - before.readoutBias[c])
            return block
        }
        var blocks: [([Double], [Double])] = []
        for l in 0..<layerCount { for i in 0..<k { blocks.append((unitBlock(natural, l, i), unitBlock(sgd, l, i))) } }
        for c in 0..<classes { blocks.append((classBlock(natural, c), classBlock(sgd, c))) }
        for (index, block) in blocks.enumerated() {
            let g = block.1.map { -$0 }
            let squared = g.reduce(0) { $0 + $1 * $1 }
            XCTAssertGreaterThan(squared, 0, "block \(index) has a gradient", file: file, line: line)
            XCTAssertLessThanOrEqual(relativeDifference(block.0, g.map { -eta * $0 / (t0 * f0 + squared) }), 1e-10, "block \(index)",
                                     file: file, line: line)
        }
        XCTAssertEqual(blocks.count, layerCount * k + classes, file: file, line: line)
    }

    func testTrainerPreconditionsEveryUnitAndClassBlockByBlock() throws {
        try checkNaturalStepBlockByBlock(layers: 1, hidden: 6, streams: 2, density: 0.5, seed: 11)
    }

    /// On a stack the blocks are every layer's units, then the readout's classes.
    func testTrainerPreconditionsEveryLayerOfAStack() throws {
        try checkNaturalStepBlockByBlock(layers: 2, hidden: 5, streams: 1, density: 0.6, seed: 12)
    }

    /// The filter's defaults work on the package's tasks: exact RTRL with `--optimizer natural`
    /// and nothing else set (the averaging schedule, t₀ = 100, F₀ = 10⁻²·I, η = 1) climbs the copy
    /// task's curriculum as Adam does (length 3-4 in 4,000 steps on seeds 1-3, measured with the
    /// release build). The exponential schedule that was the default before diverges on the same
    /// run (loss above 700, length 1), so this fails if the defaults regress to it.
    func testDefaultFilterLearnsTheCopyTask() throws {
        let model = try Model<Double>(random: try ModelConfiguration(cell: .rnn, inputSize: 4, hiddenSize: 16, outputSize: 4),
                                      density: 0.5, seed: 1)
        let task = CopyTask(streams: 1, seed: 1)
        XCTAssertEqual(task.inputSize, model.inputSize)
        let trainer = try Trainer(model: model, task: task, configuration: try TrainingConfiguration(
            method: .rtrl, optimizer: .natural, learningRate: 1, seed: 1))
        for _ in 0..<4000 { try trainer.trainStep() }
        XCTAssertTrue(trainer.model.parameters.isFinite)
        XCTAssertGreaterThanOrEqual(trainer.task.metricValue, 3, "curriculum length")
    }
}
