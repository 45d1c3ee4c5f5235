import Foundation
import RTRL
import XCTest

/// The typed configuration, value semantics and precision-generic entry points of the RTRL API.
final class TypedAPITests: XCTestCase {
    private func model<S: SparseScalar>(_ cell: CellKind = .gru, seed: UInt64 = 5, as: S.Type = S.self) throws -> Model<S> {
        try Model<S>(random: try ModelConfiguration(cell: cell, inputSize: 4, hiddenSize: 8, outputSize: 4),
                     density: 0.5, seed: seed)
    }

    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rtrl-typed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A method whose number is below 1 is refused when a learner or a configuration is built, as
    /// its command-line name is ("tbptt-0").
    func testMethodsWithANumberBelowOneAreRefused() throws {
        let m: Model<Double> = try model()
        for method in [GradientMethod.tbptt(0), .tbptt(-3), .snap(0), .ok(0)] {
            XCTAssertThrowsError(try OnlineLearner(model: m, method: method), "\(method)") { error in
                guard case RTRLError.invalidOption = error else { return XCTFail("\(method): \(error)") }
            }
            XCTAssertThrowsError(try TrainingConfiguration(method: method), "\(method)")
            XCTAssertThrowsError(try GradientMethod(parsing: method.description), "\(method.description)")
        }
        XCTAssertNoThrow(try OnlineLearner(model: m, method: .tbptt(1)))
    }

    /// The configuration is typed, and its JSON form (in checkpoints) keeps the command-line
    /// names: a document written by hand in that form decodes to the typed values, and encoding
    /// gives the names back. A document without filter settings (written before they existed)
    /// gets the exponential schedule, the only one then.
    func testTrainingConfigurationJSONKeepsCommandLineNames() throws {
        let json = #"{"method":"tbptt-16","optimizer":"natural","learningRate":0.5,"clip":2,"updateEvery":3,"threads":2,"seed":9,"layout":"generic"}"#
        let decoded = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(json.utf8))
        XCTAssertEqual(decoded, try TrainingConfiguration(method: .tbptt(16), optimizer: .natural, learningRate: 0.5, clip: 2,
                                                          updateEvery: 3, threads: 2, seed: 9, layout: .stateMajor,
                                                          filter: .init(decay: 0.99)))
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(decoded)) as? [String: Any]
        XCTAssertEqual(object?["method"] as? String, "tbptt-16")
        XCTAssertEqual(object?["layout"] as? String, "generic")
        XCTAssertEqual(object?["optimizer"] as? String, "natural")
        for bad in [json.replacingOccurrences(of: "tbptt-16", with: "tbptt-0"),
                    json.replacingOccurrences(of: "\"updateEvery\":3", with: "\"updateEvery\":0"),
                    json.replacingOccurrences(of: "generic", with: "sideways")] {
            XCTAssertThrowsError(try JSONDecoder().decode(TrainingConfiguration.self, from: Data(bad.utf8)), bad)
        }
        for method in [GradientMethod.bptt, .tbptt(4), .rtrl, .rtrlDense, .snap(3), .uoro, .noBackTrack, .kfRTRL, .ok(8)] {
            let data = try JSONEncoder().encode([method])
            XCTAssertEqual(String(decoding: data, as: UTF8.self), "[\"\(method.description)\"]")
            XCTAssertEqual(try JSONDecoder().decode([GradientMethod].self, from: data), [method])
        }
    }

    /// Value types compare by value: equal when built the same way, different when one value changes.
    func testModelsParametersAndSnapshotsCompareByValue() throws {
        let a: Model<Double> = try model(), b: Model<Double> = try model()
        XCTAssertEqual(a, b)
        XCTAssertEqual(Set([a, b]).count, 1)
        var changed = a
        changed.parameters.weightHH.values[0] += 1e-12
        XCTAssertNotEqual(a, changed)
        XCTAssertNotEqual(a.parameters, changed.parameters)
        XCTAssertNotEqual(a, try model(seed: 6))

        let learner = try OnlineLearner(model: a, method: .snap(2))
        _ = try learner.step(inputs: [1, 0, 0, 0], targets: [2])
        let first = try learner.snapshot()
        XCTAssertEqual(try learner.snapshot(), first)
        _ = try learner.step(inputs: [0, 1, 0, 0], targets: [1])
        XCTAssertNotEqual(try learner.snapshot(), first)
    }

    /// Flat setters and getters refuse a wrong count with an error and change nothing.
    func testFlatAccessRefusesWrongCounts() throws {
        let m: Model<Double> = try model()
        var p = m.parameters
        XCTAssertThrowsError(try p.setFlattened([Double](repeating: 0, count: p.count - 1)))
        XCTAssertEqual(p, m.parameters)
        try p.setFlattened([Double](repeating: 0.25, count: p.count))
        XCTAssertEqual(p.flattened, [Double](repeating: 0.25, count: p.count))

        let learner = try OnlineLearner(model: m, method: .rtrl)
        var tooLong = [Double](repeating: 7, count: learner.flatParameterCount + 1)
        try tooLong.withUnsafeMutableBufferPointer { g in
            XCTAssertThrowsError(try learner.gradient(into: g))
        }
        XCTAssertEqual(tooLong, [Double](repeating: 7, count: learner.flatParameterCount + 1), "nothing written")
        let short = [Double](repeating: 0, count: learner.flatParameterCount - 1)
        try short.withUnsafeBufferPointer { XCTAssertThrowsError(try learner.setParameters(flat: $0)) }
        XCTAssertEqual(learner.model, m)
    }

    /// A `Float` model drawn from a seed is the `Double` model of that seed, rounded.
    func testRandomModelsInFloatAreTheDoubleModelRounded() throws {
        for cell in CellKind.allCases {
            let double: Model<Double> = try model(cell)
            let single: Model<Float> = try model(cell)
            XCTAssertEqual(single, double.converted(to: Float.self), "\(cell)")
        }
    }

    /// The trainer in Float: learns like the Double one (same task, same start), resumes bit for
    /// bit from its own checkpoint, and a Float checkpoint is refused as Double.
    func testTrainerInFloat() throws {
        func trainer<S: SparseScalar>(_: S.Type) throws -> Trainer<S> {
            try Trainer<S>(model: try model(.gru, seed: 3), task: CopyTask(streams: 2, seed: 3),
                           configuration: try TrainingConfiguration(method: .snap(2), learningRate: 1e-2, seed: 3))
        }
        let single = try trainer(Float.self), double = try trainer(Double.self)
        for _ in 0..<60 { try single.trainStep(); try double.trainStep() }
        let difference = zip(single.model.parameters.flattened, double.model.parameters.flattened)
            .map { abs(Double($0) - $1) }.max() ?? .infinity
        XCTAssertLessThan(difference, 1e-3, "Float and Double runs drift apart")
        XCTAssertGreaterThan(difference, 0, "the Float run is not computed in Float")

        let dir = try temporaryDirectory().appendingPathComponent("checkpoint").path
        try single.saveCheckpoint(to: dir)
        let uninterrupted = try trainer(Float.self)
        for _ in 0..<100 { try uninterrupted.trainStep() }
        let resumed = try Trainer<Float>(resumingFrom: dir, task: CopyTask(streams: 2, seed: 3))
        XCTAssertEqual(resumed.step, 60)
        for _ in 60..<100 { try resumed.trainStep() }
        XCTAssertEqual(resumed.model.parameters.flattened, uninterrupted.model.parameters.flattened)
        XCTAssertThrowsError(try Trainer<Double>(resumingFrom: dir, task: CopyTask(streams: 2, seed: 3))) { error in
            XCTAssertTrue("\(error)".contains("float32"), "\(error)")
        }
    }
}
