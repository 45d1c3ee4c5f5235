import Foundation

/// A sequence of inputs with one target class per step (−1: no loss at that step), as the
/// `--sequence` JSON file of `rtrl grad` holds it: `{"inputs": [[x_1 … x_n], …], "targets": [t_1, …]}`.
public struct LabelledSequence: Sendable, Equatable {
    /// T rows of n values.
    public var inputs: [[Double]]
    /// T target classes, one per step: a class in [0, outputSize), or −1 for no loss at that step.
    public var targets: [Int]

    /// T: the number of steps.
    public var count: Int { targets.count }

    /// A sequence after checking it fits a model: T rows of `inputSize` finite values and T
    /// targets in [0, outputSize) or −1.
    public init(inputs: [[Double]], targets: [Int], inputSize: Int, outputSize: Int) throws {
        guard inputs.count == targets.count else {
            throw RTRLError.invalidInput("the sequence has \(inputs.count) input rows but \(targets.count) targets")
        }
        for (t, row) in inputs.enumerated() {
            guard row.count == inputSize else {
                throw RTRLError.invalidInput("input row \(t) has \(row.count) values but the model takes \(inputSize)")
            }
            if let bad = row.firstIndex(where: { !$0.isFinite }) {
                throw RTRLError.invalidInput("input row \(t), value \(bad) is not finite")
            }
        }
        for (t, target) in targets.enumerated() where target != -1 && (target < 0 || target >= outputSize) {
            throw RTRLError.invalidInput("target \(target) at step \(t) is outside [0, \(outputSize)) and is not −1")
        }
        self.inputs = inputs
        self.targets = targets
    }

    /// Reads a sequence file and checks it against the model's sizes.
    public init(file path: String, inputSize: Int, outputSize: Int) throws {
        guard let data = FileBytes.data(path) else {
            throw RTRLError.invalidInput("\(path) is missing or unreadable")
        }
        struct File: Decodable { let inputs: [[Double]]; let targets: [Int] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw RTRLError.invalidInput("\(path) has no \"\(key.stringValue)\" field")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let place = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: "/")
            throw RTRLError.invalidInput("\(path): the value at \(place) has the wrong type (inputs are rows of numbers, targets integers)")
        } catch {
            throw RTRLError.invalidInput("\(path) is not valid JSON")
        }
        let inputs = file.inputs, targets = file.targets
        do {
            try self.init(inputs: inputs, targets: targets, inputSize: inputSize, outputSize: outputSize)
        } catch let error as RTRLError {
            throw RTRLError.invalidInput("\(path): \(error.description)")
        }
    }
}
