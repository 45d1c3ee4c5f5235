import RTRL
import XCTest

/// Thread counts change how the work is arranged, never the numbers: results must be
/// bit-identical (OnlineLearner's documented guarantee). The storages sum the same terms in
/// different orders (the unit-blocked product in vector registers, two chains of partial sums;
/// the generic masked product one run at a time; the EGRU's scaled form by columns), so they
/// must agree to rounding.
final class LayoutAndThreadTests: XCTestCase {
    func testLayoutsAgreeToRounding() throws {
        for cell in CellKind.allCases {
            for (k, density, seed) in [(1, 1.0, 301 as UInt64), (6, 1.0, 302), (13, 0.15, 303), (20, 0.3, 304)] {
                let model = try Fixtures.model(cell, hidden: k, density: density, independentGateMasks: k == 13, seed: seed)
                let sequence = try Fixtures.sequence(for: model, length: 25, seed: seed, scale: 1.5)
                for method in [GradientMethod.rtrl, .snap(2)] {
                    let blocked = try sequenceGradient(model, sequence, method, layout: .unitBlocked, skipsQuietUnits: false)
                    let generic = try sequenceGradient(model, sequence, method, layout: .stateMajor, skipsQuietUnits: false)
                    XCTAssertRelativelyClose(blocked.gradient, generic.gradient, tolerance: 1e-12, "\(cell) k=\(k) d=\(density) \(method)")
                    XCTAssertNotEqual(blocked.gradient, generic.gradient.map { $0 * 1.000001 }, "the comparison can fail")
                    XCTAssertEqual(blocked.loss, generic.loss)
                    if cell == .egru {
                        let pushed = try sequenceGradient(model, sequence, method, layout: .unitBlocked, skipsQuietUnits: true)
                        let scale = max(generic.gradient.map { abs($0) }.max() ?? 0, 1e-300)
                        let error = zip(pushed.gradient, generic.gradient).map { abs($0 - $1) }.max() ?? 0
                        XCTAssertLessThan(error / scale, 1e-12, "egru push form, k=\(k) d=\(density) \(method)")
                        XCTAssertEqual(pushed.loss, generic.loss)
                    }
                }
            }
        }
    }

    func testOneAndTwoThreadsGiveBitIdenticalGradients() throws {
        for cell in CellKind.allCases {
            for (k, density, seed) in [(16, 0.5, 311 as UInt64), (24, 0.15, 312)] {
                let model = try Fixtures.model(cell, hidden: k, density: density, seed: seed)
                let sequence = try Fixtures.sequence(for: model, length: 20, seed: seed, scale: 1.5)
                for method in [GradientMethod.rtrl, .snap(2)] {
                    for layout in InfluenceLayout.allCases {
                        let one = try sequenceGradient(model, sequence, method, threads: 1, layout: layout)
                        let two = try sequenceGradient(model, sequence, method, threads: 2, layout: layout)
                        XCTAssertEqual(one.gradient, two.gradient, "\(cell) k=\(k) \(method) \(layout)")
                        XCTAssertEqual(one.loss, two.loss)
                    }
                }
            }
        }
    }

    /// Three streams, 1 vs 2 threads: bit-identical; and the sum of three single-stream runs.
    func testThreeStreamsMatchSingleStreamsAndThreadCounts() throws {
        for cell in CellKind.allCases {
            let model = try Fixtures.model(cell, hidden: 12, density: 0.3, seed: 321)
            let T = 18
            let sequences = try (0..<3).map { try Fixtures.sequence(for: model, length: T, seed: 330 + UInt64($0), scale: 1.5) }
            for method in [GradientMethod.rtrl, .snap(2), .rtrlDense, .bptt] {
                func run(threads: Int) throws -> (loss: Double, gradient: [Double]) {
                    let learner = try OnlineLearner(model: model, method: method, streams: 3, threads: threads)
                    var loss = 0.0
                    for t in 0..<T {
                        loss += try learner.step(inputs: sequences.flatMap { $0.inputs[t] }, targets: sequences.map { $0.targets[t] })
                    }
                    return (loss, learner.gradient().flattened)
                }
                let one = try run(threads: 1), two = try run(threads: 2)
                XCTAssertEqual(one.gradient, two.gradient, "\(cell) \(method): 1 vs 2 threads")
                XCTAssertEqual(one.loss, two.loss)
                var sum = [Double](repeating: 0, count: one.gradient.count), lossSum = 0.0
                for s in sequences {
                    let single = try sequenceGradient(model, s, method)
                    for q in sum.indices { sum[q] += single.gradient[q] }
                    lossSum += single.loss
                }
                XCTAssertRelativelyClose(one.gradient, sum, tolerance: 1e-12, "\(cell) \(method): 3 streams vs sum of singles")
                XCTAssertLossesClose(one.loss, lossSum)
            }
        }
    }
}
