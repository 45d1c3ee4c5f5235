import Foundation
import RTRL
import XCTest

/// Stacked models (num_layers L ≥ 2): the gradient of BPTT against central finite differences of
/// a loss computed by the tests' own forward pass (`ReferenceNetwork` per layer, stacked here),
/// dense exact RTRL (forward mode) against BPTT (reverse mode), a model written from PyTorch's
/// `nn.GRU(num_layers=2)` against PyTorch's loss and gradient, and the model directory's files.
final class StackedLayerTests: XCTestCase {
    /// A random stacked model (layer 0 and the readout are the single-layer model of the seed).
    private func stack(_ cell: CellKind, layers: Int, hidden k: Int, density: Double, seed: UInt64,
                       dampening: Double? = nil, support: Double? = nil) throws -> Model<Double> {
        let configuration = try ModelConfiguration(cell: cell, inputSize: 3, hiddenSize: k, outputSize: 3, layerCount: layers,
                                                   dampening: dampening, support: support)
        return try Model<Double>(random: configuration, density: density, seed: seed)
    }

    /// The loss by the reference forward pass: layers bottom-up within a step, readout on the top.
    private func referenceLoss(_ model: Model<Double>, _ sequence: LabelledSequence) throws -> Double {
        let layers = try (0..<model.layerCount).map { ReferenceNetwork(try Fixtures.layer(of: model, $0)) }
        var states = layers.map { $0.initialState() }, total = 0.0
        for t in 0..<sequence.count {
            var x = sequence.inputs[t]
            for l in layers.indices {
                states[l] = layers[l].step(states[l], x)
                x = layers[l].output(states[l])
            }
            if sequence.targets[t] >= 0 {
                total += ReferenceNetwork.crossEntropy(layers.last!.logits(x), sequence.targets[t])
            }
        }
        return total
    }

    private func finiteDifferences(_ model: Model<Double>, _ sequence: LabelledSequence, step h: Double) throws -> [Double] {
        let theta = model.parameters.flattened
        return try theta.indices.map { q in
            var plus = model.parameters, minus = model.parameters
            var tp = theta, tm = theta
            tp[q] += h
            tm[q] -= h
            try plus.setFlattened(tp)
            try minus.setFlattened(tm)
            return (try referenceLoss(try Model(configuration: model.configuration, parameters: plus), sequence)
                    - referenceLoss(try Model(configuration: model.configuration, parameters: minus), sequence)) / (2 * h)
        }
    }

    private func checkAgainstFiniteDifferences(_ cell: CellKind) throws {
        for (layers, k, density, T, seed) in [(2, 3, 1.0, 7, 61 as UInt64), (3, 4, 0.5, 9, 62), (2, 5, 0.3, 10, 63)] {
            let model = try stack(cell, layers: layers, hidden: k, density: density, seed: seed)
            let sequence = try Fixtures.sequence(for: model, length: T, seed: seed)
            let what = "\(cell) L=\(layers) k=\(k) d=\(density)"
            let bptt = try SequenceGradient(model: model, sequence: sequence, method: .bptt)
            XCTAssertLossesClose(bptt.loss, try referenceLoss(model, sequence), tolerance: 1e-11, what)
            let fd = try finiteDifferences(model, sequence, step: 1e-5)
            XCTAssertRelativelyClose(bptt.gradient.flattened, fd, tolerance: 1e-6, "bptt vs finite differences, \(what)")
            // The upper layers on their own, so that the layer-0 tensors cannot hide an error there.
            let upper = model.parameters.count - model.parameters.upperLayers.reduce(0) { $0 + $1.count }
            XCTAssertRelativelyClose(Array(bptt.gradient.flattened[upper...]), Array(fd[upper...]), tolerance: 1e-6,
                                     "upper layers, \(what)")
            XCTAssertGreaterThan(bptt.gradient.flattened[upper...].map(abs).max() ?? 0, 1e-4, what)
            for method in [GradientMethod.rtrlDense, .rtrl] {
                let forward = try SequenceGradient(model: model, sequence: sequence, method: method)
                XCTAssertRelativelyClose(forward.gradient.flattened, bptt.gradient.flattened, tolerance: 1e-10, "\(method) vs bptt, \(what)")
            }
            let whole = try SequenceGradient(model: model, sequence: sequence, method: .tbptt(T))
            XCTAssertEqual(whole.gradient.flattened, bptt.gradient.flattened, "tbptt-T is bptt, \(what)")
        }
    }

    func testRNNStackMatchesFiniteDifferences() throws { try checkAgainstFiniteDifferences(.rnn) }
    func testGRUStackMatchesFiniteDifferences() throws { try checkAgainstFiniteDifferences(.gru) }
    func testLSTMStackMatchesFiniteDifferences() throws { try checkAgainstFiniteDifferences(.lstm) }

    /// The EGRU's step function hides its pseudo-derivative from finite differences, so its
    /// stacks are checked by the two independent algorithms: dense forward-mode RTRL (J carried up
    /// the layers, the lower thresholds' direct path into y included) against BPTT (adjoints
    /// carried down), on models whose units fire, with the pseudo-derivative active.
    func testEGRUStackForwardModeMatchesReverseMode() throws {
        for (layers, k, seed) in [(2, 5, 71 as UInt64), (3, 4, 72)] {
            let model = try stack(.egru, layers: layers, hidden: k, density: 0.6, seed: seed, support: 0.5)
            let sequence = try Fixtures.sequence(for: model, length: 14, seed: seed, scale: 2)
            let bptt = try SequenceGradient(model: model, sequence: sequence, method: .bptt)
            XCTAssertLossesClose(bptt.loss, try referenceLoss(model, sequence), tolerance: 1e-11)
            for method in [GradientMethod.rtrlDense, .rtrl] {
                let forward = try SequenceGradient(model: model, sequence: sequence, method: method)
                XCTAssertRelativelyClose(forward.gradient.flattened, bptt.gradient.flattened, tolerance: 1e-10, "egru L=\(layers) \(method)")
            }
            // Skipping D's zero entries (quiet units' columns) changes no bit.
            for method in [GradientMethod.rtrl, .snap(2)] {
                XCTAssertEqual(try SequenceGradient(model: model, sequence: sequence, method: method, skipsQuietUnits: false).gradient,
                               try SequenceGradient(model: model, sequence: sequence, method: method).gradient, "egru L=\(layers) \(method) skipping")
            }
            // Every layer's thresholds take part (the units fired and the pseudo-derivative was seen).
            let thresholds = [bptt.gradient.threshold] + bptt.gradient.upperLayers.map(\.threshold)
            for (l, g) in thresholds.enumerated() { XCTAssertGreaterThan(g.map(abs).max()!, 1e-6, "layer \(l)'s thresholds") }
        }
    }

    /// A model directory written from PyTorch (`Scripts/reference/make_pytorch_fixture.py`:
    /// `nn.GRU(3, 4, num_layers=2)` and `nn.Linear(4, 3)`, float64, state_dict through scipy's
    /// `mmwrite`) gives PyTorch's loss and gradient.
    func testPyTorchTwoLayerGRULoadsAndAgrees() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/pytorch-gru-2-layers").path
        let model = try Model<Double>(directory: directory)
        XCTAssertEqual(model.layerCount, 2)
        let sequence = try LabelledSequence(file: directory + "/sequence.json", inputSize: 3, outputSize: 3)
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/expected.json"))) as! [String: Any]
        let torchLoss = expected["loss"] as! Double
        let torchGradient = expected["gradient"] as! [String: [[Double]]]
        for method in [GradientMethod.bptt, .rtrlDense] {
            let g = try SequenceGradient(model: model, sequence: sequence, method: method)
            XCTAssertLossesClose(g.loss, torchLoss, tolerance: 1e-12, "\(method)")
            // PyTorch's gradients are dense row-major; every weight entry is stored, so compare in full.
            func dense(_ m: SparseMatrix<Double>) -> [Double] {
                var d = [Double](repeating: 0, count: m.rowCount * m.columnCount)
                for j in 0..<m.columnCount {
                    for p in Int(m.pattern.columnPointers[j])..<Int(m.pattern.columnPointers[j + 1]) {
                        d[Int(m.pattern.rowIndices[p]) * m.columnCount + j] = m.values[p]
                    }
                }
                return d
            }
            let p = g.gradient, top = p.upperLayers[0]
            var readout = [Double](repeating: 0, count: 12)
            for a in 0..<3 { for i in 0..<4 { readout[a * 4 + i] = p.readoutWeight.values[a + i * 3] } }
            let ours: [(String, [Double])] = [
                ("weight_ih_l0", dense(p.weightIH)), ("weight_hh_l0", dense(p.weightHH)), ("bias_ih_l0", p.biasIH), ("bias_hh_l0", p.biasHH),
                ("weight_ih_l1", dense(top.weightIH)), ("weight_hh_l1", dense(top.weightHH)), ("bias_ih_l1", top.biasIH), ("bias_hh_l1", top.biasHH),
                ("readout_weight", readout), ("readout_bias", p.readoutBias)]
            for (name, values) in ours {
                let theirs = torchGradient[name]!.flatMap { $0 }
                XCTAssertEqual(values.count, theirs.count, name)
                XCTAssertRelativelyClose(values, theirs, tolerance: 1e-10, "\(method): \(name)")
            }
        }
    }

    /// Writing and reading back keeps every value; the files carry the `_l{l}` names and
    /// `num_layers`; a single-layer model's directory is unchanged.
    func testDirectoryRoundTripAndNames() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("stacked-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let model = try stack(.egru, layers: 3, hidden: 4, density: 0.5, seed: 81)
        try model.write(toNewDirectory: root.appendingPathComponent("stack").path)
        let read = try Model<Double>(directory: root.appendingPathComponent("stack").path)
        XCTAssertEqual(read, model)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("stack").path))
        for l in 0..<3 {
            for stem in ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"] { XCTAssertTrue(files.contains("\(stem)_l\(l).mtx"), "\(stem)_l\(l)") }
        }
        XCTAssertFalse(files.contains("weight_ih.mtx"))
        let config = try String(contentsOf: root.appendingPathComponent("stack/config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"num_layers\" : 3"), config)

        let single = try Fixtures.model(.gru, hidden: 3, density: 1, seed: 82)
        try single.write(toNewDirectory: root.appendingPathComponent("single").path)
        let singleConfig = try String(contentsOf: root.appendingPathComponent("single/config.json"), encoding: .utf8)
        XCTAssertFalse(singleConfig.contains("num_layers"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("single/weight_ih.mtx").path))

        // A single layer under the _l0 names reads as the same model.
        let renamed = root.appendingPathComponent("renamed")
        try FileManager.default.copyItem(at: root.appendingPathComponent("single"), to: renamed)
        for stem in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            try FileManager.default.moveItem(at: renamed.appendingPathComponent("\(stem).mtx"), to: renamed.appendingPathComponent("\(stem)_l0.mtx"))
        }
        XCTAssertEqual(try Model<Double>(directory: renamed.path), single)
    }

    /// Directories that mix the two naming forms, lack a layer's file or hold a layer beyond
    /// num_layers are refused with a sentence that names the problem.
    func testMalformedStackedDirectoriesAreRefused() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("stacked-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        let model = try stack(.gru, layers: 2, hidden: 4, density: 1, seed: 83)
        let good = root.appendingPathComponent("good")
        try model.write(toNewDirectory: good.path)
        func variant(_ name: String, _ edit: (URL) throws -> Void) throws -> String {
            let dir = root.appendingPathComponent(name)
            try fm.copyItem(at: good, to: dir)
            try edit(dir)
            return dir.path
        }
        func assertRefused(_ path: String, mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Model<Double>(directory: path), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)", file: file, line: line)
            }
        }
        assertRefused(try variant("missing") { try fm.removeItem(at: $0.appendingPathComponent("bias_hh_l1.mtx")) }, mentioning: "bias_hh_l1.mtx is missing")
        assertRefused(try variant("mixed") {
            try fm.copyItem(at: $0.appendingPathComponent("weight_ih_l0.mtx"), to: $0.appendingPathComponent("weight_ih.mtx"))
        }, mentioning: "unsuffixed")
        assertRefused(try variant("beyond") {
            try fm.copyItem(at: $0.appendingPathComponent("weight_hh_l1.mtx"), to: $0.appendingPathComponent("weight_hh_l2.mtx"))
        }, mentioning: "weight_hh_l2.mtx")
        assertRefused(try variant("wrong-count") {
            let config = $0.appendingPathComponent("config.json")
            let text = try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "\"num_layers\" : 2", with: "\"num_layers\" : 0")
            try text.write(to: config, atomically: true, encoding: .utf8)
        }, mentioning: "num_layers must be between 1")
        assertRefused(try variant("wrong-shape") {
            try fm.removeItem(at: $0.appendingPathComponent("weight_ih_l1.mtx"))
            try fm.copyItem(at: $0.appendingPathComponent("weight_ih_l0.mtx"), to: $0.appendingPathComponent("weight_ih_l1.mtx"))
        }, mentioning: "weight_ih_l1 is 12 × 3")
    }

    /// NoBackTrack refuses stacks with its reason, instead of a wrong number.
    func testOtherMethodsRefuseStacks() throws {
        let model = try stack(.lstm, layers: 2, hidden: 3, density: 1, seed: 84)
        for method in [GradientMethod.noBackTrack] {
            XCTAssertThrowsError(try OnlineLearner(model: model, method: method)) { error in
                XCTAssertTrue("\(error)".contains("stacked models"), "\(method): \(error)")
            }
        }
    }

    /// Streams are independent and threads do not change a bit; the flat gradient and the flat
    /// parameters follow `Parameters.flattened` across the layers.
    func testStreamsThreadsAndFlatAccess() throws {
        let model = try stack(.gru, layers: 2, hidden: 4, density: 0.5, seed: 85)
        let a = try Fixtures.sequence(for: model, length: 8, seed: 1), b = try Fixtures.sequence(for: model, length: 8, seed: 2)
        for method in [GradientMethod.bptt, .rtrlDense, .tbptt(3), .rtrl, .snap(2)] {
            var gradients: [[Double]] = []
            for threads in [1, 2] {
                let learner = try OnlineLearner(model: model, method: method, streams: 2, threads: threads)
                for t in 0..<8 { try learner.step(inputs: a.inputs[t] + b.inputs[t], targets: [a.targets[t], b.targets[t]]) }
                var flat = [Double](repeating: 0, count: learner.flatParameterCount)
                try flat.withUnsafeMutableBufferPointer { try learner.gradient(into: $0) }
                XCTAssertEqual(flat, learner.gradient().flattened, "\(method): flat gradient")
                gradients.append(flat)
            }
            XCTAssertEqual(gradients[0], gradients[1], "\(method): threads")
            let alone = try SequenceGradient(model: model, sequence: a, method: method).gradient.flattened
            let other = try SequenceGradient(model: model, sequence: b, method: method).gradient.flattened
            XCTAssertRelativelyClose(gradients[0], zip(alone, other).map { $0 + $1 }, tolerance: 1e-13, "\(method): streams")
        }
        // One stream on 1, 2 and 3 threads (the sparse update deals the units' blocks to them): the same bits.
        for method in [GradientMethod.rtrl, .snap(2), .snap(1)] {
            let results = try [1, 2, 3].map { threads in
                try SequenceGradient(model: model, sequence: a, method: method, threads: threads).gradient.flattened
            }
            XCTAssertEqual(results[0], results[1], "\(method): 1 and 2 threads")
            XCTAssertEqual(results[0], results[2], "\(method): 1 and 3 threads")
        }
        // setParameters(flat:) reaches every layer: a changed upper-layer weight changes the loss.
        let learner = try OnlineLearner(model: model, method: .bptt)
        var theta = model.parameters.flattened
        theta[theta.count - 1] += 0.5
        try theta.withUnsafeBufferPointer { try learner.setParameters(flat: $0) }
        XCTAssertEqual(learner.model.parameters.flattened, theta)
        var changed = model.parameters
        try changed.setFlattened(theta)
        let sequence = a
        var loss = 0.0
        for t in 0..<sequence.count { loss += try learner.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
        XCTAssertLossesClose(loss, try referenceLoss(try Model(configuration: model.configuration, parameters: changed), sequence),
                             tolerance: 1e-12)
        XCTAssertNotEqual(loss, try referenceLoss(model, sequence))
    }

    /// Float32 stacks follow the Float64 gradient to single precision.
    func testFloat32Stack() throws {
        let model = try stack(.lstm, layers: 2, hidden: 4, density: 0.5, seed: 86)
        let sequence = try Fixtures.sequence(for: model, length: 10, seed: 3)
        let double = try SequenceGradient(model: model, sequence: sequence, method: .bptt).gradient.flattened
        for method in [GradientMethod.bptt, .rtrlDense, .rtrl] {
            let single = try SequenceGradient(model: model.converted(to: Float.self), sequence: sequence, method: method).gradient.flattened
            XCTAssertRelativelyClose(single.map(Double.init), double, tolerance: 1e-4, "\(method)")
        }
    }

    /// A snapshot taken mid-sequence and restored into a new learner (through JSON) continues bit
    /// for bit, for every method that runs on stacks.
    func testCheckpointResumesBitForBit() throws {
        let model = try stack(.egru, layers: 2, hidden: 4, density: 0.6, seed: 87, support: 0.5)
        let sequence = try Fixtures.sequence(for: model, length: 12, seed: 4, scale: 2)
        for method in [GradientMethod.bptt, .tbptt(5), .rtrlDense, .rtrl, .snap(1), .uoro, .kfRTRL, .ok(2)] {
            let straight = try OnlineLearner(model: model, method: method)
            let first = try OnlineLearner(model: model, method: method)
            for t in 0..<12 { try straight.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
            for t in 0..<7 { try first.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
            let data = try JSONEncoder().encode(try first.snapshot())
            let resumed = try OnlineLearner(model: model, method: method)
            try resumed.restore(try JSONDecoder().decode(LearnerSnapshot<Double>.self, from: data))
            for t in 7..<12 { try resumed.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]]) }
            XCTAssertEqual(resumed.gradient().flattened, straight.gradient().flattened, "\(method)")
            XCTAssertEqual(resumed.state(stream: 0), straight.state(stream: 0), "\(method)")
            // A snapshot of another method is refused.
            let other = try OnlineLearner(model: model, method: method == .bptt ? .rtrl : .bptt)
            XCTAssertThrowsError(try other.restore(try first.snapshot()))
        }
    }

    /// UORO on stacks is unbiased: over 1,600 seeds the mean is within 4.5 standard errors of the
    /// exact gradient (sparse RTRL, itself checked against BPTT and finite differences above) for
    /// every parameter that varies, the rest are exact, and the error of means shrinks like 1/√S.
    func testUOROOnStacksIsUnbiased() throws {
        for (cell, layers) in [(CellKind.rnn, 2), (.lstm, 2), (.egru, 2), (.gru, 3)] {
            let model = try stack(cell, layers: layers, hidden: 3, density: 0.7, seed: 88, support: cell == .egru ? 0.5 : nil)
            let sequence = try Fixtures.sequence(for: model, length: 6, seed: 5, scale: 1.5)
            let g = try GradientSamples(model: model, sequence: sequence, method: .uoro, seeds: 0..<1600)
            let what = "\(cell) L=\(layers)"
            XCTAssertGreaterThan(g.stochastic.count, g.exact.count / 3, what)
            XCTAssertLessThan(g.deterministicError, 1e-12, what)
            let worst = g.zScores.map(abs).max() ?? 0
            XCTAssertLessThanOrEqual(worst, 4.5, "\(what): the mean is \(worst) standard errors from the exact gradient")
            let errorS = g.groupError(size: 100), error4S = g.groupError(size: 400)
            let ratio = error4S / errorS
            XCTAssertTrue(ratio > 0.25 && ratio < 0.8, "\(what): error ratio 4S/S is \(ratio), expected ≈ 0.5")
        }
    }

    /// KF-RTRL and OK-r on stacks: OK-r is exact while the sequence is no longer than r (each
    /// layer's columns of J then have Kronecker rank ≤ r), KF-RTRL's first step is exact, on every
    /// cell, and both are unbiased over 1,600 seeds.
    func testKroneckerEstimatorsOnStacks() throws {
        for cell in CellKind.allCases {
            let model = try stack(cell, layers: 2, hidden: 3, density: 0.7, seed: 89, support: cell == .egru ? 0.5 : nil)
            let sequence = try Fixtures.sequence(for: model, length: 5, seed: 6, scale: 1.5, unlabelled: 0)
            let exact = try SequenceGradient(model: model, sequence: sequence, method: .rtrl).gradient.flattened
            for seed: UInt64 in [1, 2] {
                let ok = try SequenceGradient(model: model, sequence: sequence, method: .ok(5), seed: seed).gradient.flattened
                XCTAssertRelativelyClose(ok, exact, tolerance: 1e-9, "\(cell): ok-5 over 5 steps, seed \(seed)")
            }
            let first = try Fixtures.sequence(for: model, length: 1, seed: 7, unlabelled: 0)
            let kf = try SequenceGradient(model: model, sequence: first, method: .kfRTRL, seed: 3).gradient.flattened
            XCTAssertRelativelyClose(kf, try SequenceGradient(model: model, sequence: first, method: .rtrl).gradient.flattened,
                                     tolerance: 1e-10, "\(cell): kf-rtrl's first step")
            // Not exact beyond its rank: OK-1 over 5 steps differs from exact RTRL.
            let ok1 = try SequenceGradient(model: model, sequence: sequence, method: .ok(1), seed: 1).gradient.flattened
            XCTAssertGreaterThan(relativeError(ok1, exact), 1e-6, "\(cell): ok-1 is exact over 5 steps")
        }
        for (cell, method) in [(CellKind.gru, GradientMethod.kfRTRL), (.lstm, .ok(2)), (.egru, .kfRTRL)] {
            let model = try stack(cell, layers: 2, hidden: 3, density: 0.7, seed: 90, support: cell == .egru ? 0.5 : nil)
            let sequence = try Fixtures.sequence(for: model, length: 6, seed: 5, scale: 1.5)
            let g = try GradientSamples(model: model, sequence: sequence, method: method, seeds: 0..<1600)
            let what = "\(cell) \(method)"
            XCTAssertGreaterThan(g.stochastic.count, g.exact.count / 3, what)
            XCTAssertLessThan(g.deterministicError, 1e-12, what)
            let worst = g.zScores.map(abs).max() ?? 0
            XCTAssertLessThanOrEqual(worst, 4.5, "\(what): the mean is \(worst) standard errors from the exact gradient")
        }
    }
}
