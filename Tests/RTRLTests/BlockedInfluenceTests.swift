@testable import RTRL
import XCTest

/// The default influence storage (`BlockedInfluence`): units sharing a reach set grouped into
/// one block, J updated in place, checkpoints in the ungrouped unit-blocked order.
final class BlockedInfluenceTests: XCTestCase {
    /// A checkpoint's influence values are J's entries in the ungrouped order (unit i, then state
    /// variable q of R(i) component-major, then i's parameters), whatever the grouping: checked
    /// entry by entry against dense RTRL's J after the same steps.
    func testCheckpointHoldsJInTheUngroupedOrder() throws {
        for (cell, density, order) in [(CellKind.gru, 0.3, InfluencePattern.Order.exact), (.lstm, 0.25, .exact),
                                       (.rnn, 0.2, .snap(2)), (.egru, 0.3, .exact)] {
            let model = try Fixtures.model(cell, hidden: 9, density: density, independentGateMasks: true, seed: 501)
            let sequence = try Fixtures.sequence(for: model, length: 12, seed: 501, scale: 1.5)
            let method: GradientMethod = order == .exact ? .rtrl : .snap(2)
            let sparse = try OnlineLearner(model: model, method: method, skipsQuietUnits: false)
            let dense = try OnlineLearner(model: model, method: .rtrlDense)
            for t in 0..<sequence.count {
                try sparse.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
                try dense.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            }
            guard case .sparse(let storage) = sparse.tracker, let blocked = storage as? BlockedInfluence<Double>,
                  case .dense(let reference) = dense.tracker else { return XCTFail("\(cell): unexpected storages") }
            if order == .exact {
                XCTAssertLessThan(blocked.groups.count, model.hiddenSize, "\(cell): units sharing a reach set are grouped")
            }
            let snapshot = try sparse.snapshot()
            XCTAssertEqual(snapshot.layout, "blocked")
            let values = try XCTUnwrap(snapshot.streams[0].influence?.values)
            let pattern = try XCTUnwrap(sparse.influencePattern), layout = pattern.layout
            let k = model.hiddenSize, S = pattern.graph.stateSize, components = pattern.graph.cell.stateComponents
            var expected: [Double] = []
            for i in 0..<k {
                for c in 0..<components {
                    for u in pattern.reach(ofUnit: i) {
                        let q = c * k + Int(u)
                        for theta in Int(layout.unitStart[i])..<Int(layout.unitStart[i + 1]) {
                            expected.append(order == .exact ? reference.streams[0].current[q + theta * S] : .nan)
                        }
                    }
                }
            }
            XCTAssertEqual(values.count, expected.count, "\(cell)")
            if order == .exact {
                XCTAssertRelativelyClose(values, expected, tolerance: 1e-12, "\(cell): checkpoint order")
                XCTAssertTrue(values.contains { $0 != 0 }, "\(cell): the influence is not all zero")
            }
            // The snapshot restores into a new learner, which continues bit for bit.
            let resumed = try OnlineLearner(model: model, method: method, skipsQuietUnits: false)
            try resumed.restore(snapshot)
            for t in 0..<4 {
                try sparse.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
                try resumed.step(inputs: sequence.inputs[t], targets: [sequence.targets[t]])
            }
            XCTAssertEqual(resumed.gradient().flattened, sparse.gradient().flattened, "\(cell): resumed run")
        }
    }

    /// A checkpoint of another storage order is refused with the reason.
    func testCheckpointOfAnotherStorageIsRefused() throws {
        let model = try Fixtures.model(.gru, hidden: 6, density: 0.5, seed: 502)
        let generic = try OnlineLearner(model: model, method: .snap(2), layout: .stateMajor)
        try generic.step(inputs: [0.1, 0.2, 0.3], targets: [1])
        let blocked = try OnlineLearner(model: model, method: .snap(2))
        XCTAssertThrowsError(try blocked.restore(generic.snapshot())) { error in
            XCTAssertTrue("\(error)".contains("stored generic"), "\(error)")
        }
    }
}
