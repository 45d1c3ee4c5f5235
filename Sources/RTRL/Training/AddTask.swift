import Foundation

/// A classification form of the adding problem: each sequence of T steps shows a random bit and a
/// marker on two of the steps; on the last step (query flag set) the target is the sum of the two
/// marked bits (0, 1 or 2). Inputs: (bit, marker, query). Only the query step has a loss. The
/// metric is the moving-average accuracy at query steps (decay 0.99).
public final class AddTask: TrainingTask {
    /// "add".
    public let name = "add"
    /// 3: the bit, the marker and the query flag.
    public let inputSize = 3
    /// 3: the possible sums 0, 1 and 2.
    public let outputSize = 3
    /// The number of independent streams.
    public let streamCount: Int
    /// T: the steps of every sequence (≥ 2).
    public let length: Int
    /// `accuracy`.
    public var metricName: String { "accuracy" }
    /// The moving-average accuracy at query steps (decay 0.99, from 1/3), between 0 and 1; a
    /// prediction counts as right when the target's probability exceeds one half.
    public var metricValue: Double { state.accuracy }

    struct Stream: Codable {
        var generator: SeededGenerator
        var bits: [Int] = []
        var markers: [Int] = []
        var position = 0
        var lastTarget = -1
    }
    struct State: Codable {
        var streams: [Stream]
        var accuracy = 1.0 / 3.0
    }
    private var state: State

    /// A task of `streams` streams of sequences of `length` steps (throws below 2); stream b draws
    /// its bits and marked steps from its own generator, seeded from `seed` and b.
    public init(streams: Int, length: Int = 10, seed: UInt64) throws {
        guard length >= 2 else { throw RTRLError.invalidOption("the adding task needs sequences of at least 2 steps") }
        streamCount = streams
        self.length = length
        state = State(streams: (0..<streams).map { b in
            Stream(generator: SeededGenerator(seed: seed &+ 0xADD &+ UInt64(b) &* 0x9E37_79B9_7F4A_7C15))
        })
    }

    /// Writes stream b's next (bit, marker, query) input; the target is the sum of the marked
    /// bits on the last step of a sequence, −1 before it.
    public func next(stream b: Int, input: UnsafeMutableBufferPointer<Double>) -> TaskStep {
        var s = state.streams[b]
        var starts = false
        if s.position >= s.bits.count {
            s.bits = (0..<length).map { _ in Int(s.generator.next() & 1) }
            let first = Int.random(in: 0..<length, using: &s.generator)
            var second = Int.random(in: 0..<(length - 1), using: &s.generator)
            if second >= first { second += 1 }
            s.markers = (0..<length).map { $0 == first || $0 == second ? 1 : 0 }
            s.position = 0
            starts = true
        }
        let t = s.position, last = t == length - 1
        input[0] = Double(s.bits[t]); input[1] = Double(s.markers[t]); input[2] = last ? 1 : 0
        let target = last ? zip(s.bits, s.markers).reduce(0) { $0 + $1.0 * $1.1 } : -1
        s.position += 1
        s.lastTarget = target
        state.streams[b] = s
        return TaskStep(target: target, startsSequence: starts)
    }

    /// Updates the moving-average accuracy with a query step's loss (steps without a target are
    /// ignored).
    public func observe(stream b: Int, loss: Double, hadTarget: Bool) {
        guard hadTarget else { return }
        // The target's probability exceeds one half exactly when the prediction must be right.
        let correct: Double = loss < Foundation.log(2) ? 1 : 0
        state.accuracy = 0.99 * state.accuracy + 0.01 * correct
    }

    /// The streams' generators and positions and the accuracy, as JSON.
    public func saveState() throws -> Data { try JSONEncoder().encode(state) }
    /// Restores what `saveState()` wrote; throws if it holds another number of streams.
    public func restoreState(_ data: Data) throws {
        let restored = try JSONDecoder().decode(State.self, from: data)
        guard restored.streams.count == streamCount else { throw RTRLError.invalidInput("the checkpoint's task has another number of streams") }
        state = restored
    }
}

/// A task's generators and positions change with every step; it is not `Sendable`.
@available(*, unavailable)
extension AddTask: Sendable {}
