@testable import RTRL
import XCTest

/// The default influence storage (`BlockedInfluence`): units sharing a reach set grouped into
/// one block, J updated in place, checkpoints in the ungrouped unit-blocked order.
final class BlockedInfluenceTests: XCTestCase {
    /// A checkpoint's influence values are J's entries in the ungrouped order (unit i, then state
    /// variable q of R(i) component-major, then i's parameters), whatever the grouping and whether
    /// the blocks are copied panel by panel or shift (forced here for models this small): checked
    /// entry by entry against dense RTRL's J after the same steps. The two storages give the same
    /// gradients to the bit, and the shifting one holds its gaps and padding in its memory count.
    func testCheckpointHoldsJInTheUngroupedOrder() throws {
        let saved = BlockedStorageTuning.shiftingFromBytes.load(ordering: .relaxed)
        defer { BlockedStorageTuning.shiftingFromBytes.store(saved, ordering: .relaxed) }
        var gradients: [CellKind: [Double]] = [:]
        for shifting in [false, true] {
        BlockedStorageTuning.shiftingFromBytes.store(shifting ? 0 : saved, ordering: .relaxed)
        for (cell, density, order) in [(CellKind.gru, 0.3, InfluencePattern.Order.exact), (.lstm, 0.25, .exact),
                                       (.rnn, 0.2, .snap(2)), (.egru, 0.3, .exact)] {
            let model = try Fixtures.model(cell, hidden: 9, density: density, independentGateMasks: true, seed: 501)
            // An odd number of steps for two of the cells: J then sits in the other placement of
            // its shifting panels.
            let sequence = try Fixtures.sequence(for: model, length: cell == .gru || cell == .rnn ? 11 : 12, seed: 501, scale: 1.5)
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
            XCTAssertEqual(blocked.plan.layout, shifting ? .shiftingPanels : .panelMajor, "\(cell)")
            XCTAssertEqual(blocked.streams[0].placement, shifting && sequence.count % 2 == 1 ? .lower : .upper, "\(cell)")
            let structure = sparse.structure
            XCTAssertEqual(sparse.influenceBytes, 8 * (blocked.plan.storageCount + blocked.plan.additionValueCount
                                                       + structure.graph.jacobianTransposed.nonzeroCount), "\(cell)")
            if shifting {
                XCTAssertGreaterThan(blocked.plan.storageCount, blocked.plan.valueCount, "\(cell): the gap")
            } else {
                XCTAssertEqual(blocked.plan.storageCount, blocked.plan.valueCount, "\(cell)")
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
            if let other = gradients[cell] {
                XCTAssertEqual(sparse.gradient().flattened, other, "\(cell): shifting panels against copied ones")
            } else {
                gradients[cell] = sparse.gradient().flattened
            }
        }
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
