import Foundation
import RTRL
import SparseKernels

/// Inputs are split at the first 0x00 byte (or 0xFF) into config.json and weight_hh.mtx of an
/// otherwise valid tiny model directory: loading must succeed or throw, never crash.
let scratch: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-model-\(getpid())").path
    let configuration = try! ModelConfiguration(cell: .gru, inputSize: 2, hiddenSize: 3, outputSize: 2)
    let base = try! Model<Double>(random: configuration, density: 0.5, seed: 1)
    try? FileManager.default.removeItem(atPath: path)
    try! base.write(toNewDirectory: path)
    return path
}()
let validConfig: [UInt8] = [UInt8](FileManager.default.contents(atPath: scratch + "/config.json")!)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex { $0 == 0 || $0 == 0xFF } ?? bytes.count
    let config = Data(split == 0 ? validConfig : Array(bytes[..<split]))
    let weights = Data(bytes[min(split + 1, bytes.count)...])
    writeFile(scratch + "/config.json", config)
    writeFile(scratch + "/weight_hh.mtx", weights)
    if let model = try? Model<Double>(directory: scratch), model.hiddenSize <= 64, model.inputSize <= 64 {
        // A loadable model must also run a step.
        let learner = try? OnlineLearner(model: model, method: .snap(2))
        _ = try? learner?.step(inputs: [Double](repeating: 0.5, count: model.inputSize), targets: [0])
    }
    return 0
}
