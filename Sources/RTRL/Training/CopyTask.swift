import Foundation

/// The copy task with a curriculum: tokens {0, 1, 2, 3}; a sequence of length T is input
/// `2, b_1 … b_T, 3 × (T+1)` with target `3 × (T+1), 2, b_1 … b_T`, a loss at every step.
/// Each new sequence draws T = max(1, T_max − U{0..4}); when the moving average (decay 0.999) of
/// the per-step loss in bits drops below 0.15, T_max grows by 1 and the average restarts at 0.3.
/// The metric is T_max, the curriculum length.
public final class CopyTask: TrainingTask {
    /// "copy".
    public let name = "copy"
    /// 4: one-hot tokens 0, 1 (the bits), 2 (start) and 3 (blank).
    public let inputSize = 4
    /// 4: the same tokens.
    public let outputSize = 4
    /// The number of independent streams; they share one curriculum.
    public let streamCount: Int
    /// `curriculum_length`.
    public var metricName: String { "curriculum_length" }
    /// T_max, the curriculum length (from 1).
    public var metricValue: Double { Double(state.maximumLength) }

    struct Stream: Codable {
        var generator: SeededGenerator
        var inputs: [Int] = []
        var targets: [Int] = []
        var position = 0
    }
    struct State: Codable {
        var streams: [Stream]
        var maximumLength = 1
        var averageBits = 0.3
    }
    private var state: State

    /// Moving-average decay, threshold and restart value of the curriculum.
    public static let decay = 0.999, threshold = 0.15, restart = 0.3

    /// A task of `streams` streams at curriculum length 1; stream b draws its lengths and bits
    /// from its own generator, seeded from `seed` and b.
    public init(streams: Int, seed: UInt64) {
        streamCount = streams
        state = State(streams: (0..<streams).map { b in
            Stream(generator: SeededGenerator(seed: seed &+ 0x5EED &+ UInt64(b) &* 0x9E37_79B9_7F4A_7C15))
        })
        for b in 0..<streams { state.streams[b].inputs.reserveCapacity(2 * 64 + 2); state.streams[b].targets.reserveCapacity(2 * 64 + 2) }
    }

    /// Writes stream b's next one-hot token, drawing a new sequence when the last one is done.
    public func next(stream b: Int, input: UnsafeMutableBufferPointer<Double>) -> TaskStep {
        var starts = false
        if state.streams[b].position >= state.streams[b].inputs.count {
            newSequence(b)
            starts = true
        }
        let s = state.streams[b]
        oneHot(s.inputs[s.position], into: input)
        state.streams[b].position += 1
        return TaskStep(target: s.targets[s.position], startsSequence: starts)
    }

    private func newSequence(_ b: Int) {
        var s = state.streams[b]
        let length = max(1, state.maximumLength - Int.random(in: 0...4, using: &s.generator))
        s.inputs.removeAll(keepingCapacity: true)
        s.targets.removeAll(keepingCapacity: true)
        s.inputs.append(2)
        var bits: [Int] = []
        for _ in 0..<length { bits.append(Int(s.generator.next() & 1)) }
        s.inputs.append(contentsOf: bits)
        s.inputs.append(contentsOf: repeatElement(3, count: length + 1))
        s.targets.append(contentsOf: repeatElement(3, count: length + 1))
        s.targets.append(2)
        s.targets.append(contentsOf: bits)
        s.position = 0
        state.streams[b] = s
    }

    /// Feeds a step's loss to the moving average and lengthens the curriculum when it drops
    /// below `threshold`.
    public func observe(stream b: Int, loss: Double, hadTarget: Bool) {
        guard hadTarget else { return }
        state.averageBits = CopyTask.decay * state.averageBits + (1 - CopyTask.decay) * loss / Foundation.log(2)
        if state.averageBits < CopyTask.threshold {
            state.maximumLength += 1
            state.averageBits = CopyTask.restart
        }
    }

    /// The streams' generators and sequences and the curriculum, as JSON.
    public func saveState() throws -> Data { try JSONEncoder().encode(state) }
    /// Restores what `saveState()` wrote; throws if it holds another number of streams.
    public func restoreState(_ data: Data) throws {
        let restored = try JSONDecoder().decode(State.self, from: data)
        guard restored.streams.count == streamCount else {
            throw RTRLError.invalidInput("the checkpoint's copy task has \(restored.streams.count) streams, not \(streamCount)")
        }
        state = restored
    }
}

/// A task's generators and curriculum change with every step; it is not `Sendable`.
@available(*, unavailable)
extension CopyTask: Sendable {}
