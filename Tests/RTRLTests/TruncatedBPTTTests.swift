import RTRL
import XCTest

/// TBPTT(h) (math.md §7) on a single sequence, the weights fixed: a window that covers the whole
/// sequence sees every dependency, so it is BPTT.
final class TruncatedBPTTTests: XCTestCase {
    func testWindowEqualToSequenceLengthEqualsBPTT() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 8, density: 0.5, seed: 111)
            let sequence = try Fixtures.sequence(for: model, length: 15, seed: 111, scale: 1.5)
            let bptt = try sequenceGradient(model, sequence, .bptt)
            let tbptt = try sequenceGradient(model, sequence, .tbptt(15))
            XCTAssertRelativelyClose(tbptt.gradient, bptt.gradient, tolerance: 1e-12, "\(cell) tbptt-15, T = 15")
            XCTAssertLossesClose(tbptt.loss, bptt.loss)
        }
    }

    /// A window longer than the sequence: the sequence's end closes the (only) window.
    func testWindowLongerThanSequenceEqualsBPTT() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 8, density: 0.5, seed: 112)
            let sequence = try Fixtures.sequence(for: model, length: 15, seed: 112, scale: 1.5)
            let bptt = try sequenceGradient(model, sequence, .bptt)
            let tbptt = try sequenceGradient(model, sequence, .tbptt(40))
            XCTAssertRelativelyClose(tbptt.gradient, bptt.gradient, tolerance: 1e-12, "\(cell) tbptt-40, T = 15")
        }
    }

    /// A short window is an approximation: it must differ from BPTT on a long sequence.
    func testShortWindowDiffersFromBPTT() throws {
        let model = try Fixtures.model(.gru, hidden: 8, density: 0.5, seed: 113)
        let sequence = try Fixtures.sequence(for: model, length: 30, seed: 113, scale: 1.5)
        let bptt = try sequenceGradient(model, sequence, .bptt)
        let tbptt = try sequenceGradient(model, sequence, .tbptt(3))
        XCTAssertGreaterThan(relativeError(tbptt.gradient, bptt.gradient), 1e-6)
    }
}

/// TBPTT(h) against an independent definition: the sequence is cut into windows of h steps
/// (the last one shorter when h does not divide T); each window's losses are differentiated with
/// the window's initial state held fixed. The reference takes central finite differences of the
/// test's own forward pass (`ReferenceNetwork`), window by window.
final class TruncatedBPTTReferenceTests: XCTestCase {
    private func windowedReference(_ model: Model<Double>, _ sequence: LabelledSequence, window h: Int) throws -> [Double] {
        let base = ReferenceNetwork(model), theta = model.parameters.flattened, eps = 1e-5
        var gradient = [Double](repeating: 0, count: theta.count)
        var start = 0, state = base.initialState()
        while start < sequence.count {
            let end = min(start + h, sequence.count)
            func windowLoss(_ flat: [Double]) throws -> Double {
                var p = model.parameters
                try p.setFlattened(flat)
                let net = ReferenceNetwork(try Model(configuration: model.configuration, parameters: p))
                var s = state, loss = 0.0
                for t in start..<end {
                    s = net.step(s, sequence.inputs[t])
                    if sequence.targets[t] >= 0 { loss += ReferenceNetwork.crossEntropy(net.logits(net.output(s)), sequence.targets[t]) }
                }
                return loss
            }
            for q in theta.indices {
                var plus = theta, minus = theta
                plus[q] += eps
                minus[q] -= eps
                gradient[q] += (try windowLoss(plus) - windowLoss(minus)) / (2 * eps)
            }
            for t in start..<end { state = base.step(state, sequence.inputs[t]) }
            start = end
        }
        return gradient
    }

    private func check(window h: Int) throws {
        for cell in [CellKind.rnn, .gru, .lstm] {
            let model = try Fixtures.model(cell, hidden: 5, outputs: 3, density: 0.5, seed: 121)
            let sequence = try Fixtures.sequence(for: model, length: 15, seed: 121, scale: 1.5, unlabelled: 0.1)
            let reference = try windowedReference(model, sequence, window: h)
            let tbptt = try sequenceGradient(model, sequence, .tbptt(h))
            XCTAssertRelativelyClose(tbptt.gradient, reference, tolerance: 1e-6, "\(cell) tbptt-\(h), T = 15")
            XCTAssertLossesClose(tbptt.loss, ReferenceNetwork(model).loss(sequence), tolerance: 1e-11)
        }
    }

    func testWindowOf1() throws { try check(window: 1) }
    func testWindowDividingTheSequence() throws { try check(window: 5) }
    func testWindowEqualToTheSequence() throws { try check(window: 15) }
    /// T = 15 = 3·4 + 3: the last, shorter window's losses must be backpropagated too.
    func testWindowNotDividingTheSequence() throws { try check(window: 4) }
    func testWindowLongerThanTheSequence() throws { try check(window: 40) }
}
