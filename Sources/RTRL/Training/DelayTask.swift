import Foundation

/// Delayed recall: emit the symbol seen `lag` steps earlier, among distractors.
///
/// Every step's input is one token, drawn independently: with probability `recallProbability` one
/// of `symbolCount` symbols (uniformly), otherwise one of `distractorCount` distractors
/// (uniformly); inputs are one-hot over the symbols, then the distractors. The target at step t
/// is the input of step t − lag if that was a symbol, and the class "blank" (class
/// `symbolCount`) otherwise — so a network must keep each symbol for exactly `lag` steps and
/// ignore the distractors. The stream never ends (the learner's state is never reset); the first
/// `lag` steps have no target. Truncated BPTT over H < `lag` steps has, by construction, no
/// gradient path from a target back to the input it names.
///
/// The metric, `recall_accuracy`, is a moving average (decay 0.999, from chance, 1/symbolCount)
/// of whether the most likely class was right, over the steps whose target is a symbol.
public final class DelayTask: TrainingTask {
    /// "delay".
    public let name = "delay"
    /// Steps between a symbol and the step that must emit it (≥ 1).
    public let lag: Int
    /// Symbols to recall.
    public let symbolCount: Int
    /// Distractor tokens (never recalled).
    public let distractorCount: Int
    /// Probability that a step's input is a symbol rather than a distractor.
    public let recallProbability: Double
    /// symbolCount + distractorCount: one-hot tokens.
    public var inputSize: Int { symbolCount + distractorCount }
    /// symbolCount + 1: the symbols and "blank".
    public var outputSize: Int { symbolCount + 1 }
    /// The number of independent streams.
    public let streamCount: Int
    /// `recall_accuracy`.
    public var metricName: String { "recall_accuracy" }
    /// The moving-average accuracy on steps whose target is a symbol.
    public var metricValue: Double { state.accuracy }

    struct Stream: Codable {
        var generator: SeededGenerator
        /// The last `lag` inputs, oldest at `position % lag` once `seen ≥ lag`.
        var recent: [Int]
        var seen = 0
    }
    struct State: Codable {
        var streams: [Stream]
        var accuracy: Double
    }
    private var state: State
    /// The target each stream was given at its last step (−1: none).
    private var lastTargets: [Int]

    /// Decay of the accuracy's moving average.
    public static let decay = 0.999

    /// A task of `streams` streams; stream b draws its tokens from its own generator, seeded from
    /// `seed` and b. Throws for a lag below 1, fewer than 1 symbol, a negative number of
    /// distractors, or a probability outside (0, 1] (without distractors it must be 1).
    public init(streams: Int, lag: Int, symbols: Int = 4, distractors: Int = 4, recallProbability: Double = 0.25,
                seed: UInt64) throws {
        guard streams >= 1 else { throw RTRLError.invalidOption("the delay task needs at least 1 stream, not \(streams)") }
        guard lag >= 1, lag <= 1_000_000 else { throw RTRLError.invalidOption("--lag must be between 1 and 1000000, not \(lag)") }
        guard symbols >= 1, distractors >= 0 else {
            throw RTRLError.invalidOption("the delay task needs ≥ 1 symbol and ≥ 0 distractors, not \(symbols) and \(distractors)")
        }
        guard recallProbability > 0, recallProbability <= 1, distractors > 0 || recallProbability == 1 else {
            throw RTRLError.invalidOption("the recall probability must be in (0, 1] (and 1 without distractors), not \(recallProbability)")
        }
        self.lag = lag
        symbolCount = symbols
        distractorCount = distractors
        self.recallProbability = recallProbability
        streamCount = streams
        state = State(streams: (0..<streams).map { b in
            Stream(generator: SeededGenerator(seed: seed &+ 0xDE1A &+ UInt64(b) &* 0x9E37_79B9_7F4A_7C15),
                   recent: [Int](repeating: 0, count: lag))
        }, accuracy: 1 / Double(symbols))
        lastTargets = [Int](repeating: -1, count: streams)
    }

    /// Writes stream b's next one-hot token and returns the target (the token `lag` steps back
    /// if it was a symbol, blank otherwise; none during the first `lag` steps).
    public func next(stream b: Int, input: UnsafeMutableBufferPointer<Double>) -> TaskStep {
        // The stream is changed in place: a copy of it would copy its `recent` tokens every step.
        let token: Int
        if Double.random(in: 0..<1, using: &state.streams[b].generator) < recallProbability {
            token = Int.random(in: 0..<symbolCount, using: &state.streams[b].generator)
        } else {
            token = symbolCount + Int.random(in: 0..<distractorCount, using: &state.streams[b].generator)
        }
        let seen = state.streams[b].seen
        let slot = seen % lag
        var target = -1
        if seen >= lag {
            let old = state.streams[b].recent[slot]
            target = old < symbolCount ? old : symbolCount
        }
        state.streams[b].recent[slot] = token
        state.streams[b].seen += 1
        let starts = seen == 0
        lastTargets[b] = target
        oneHot(token, into: input)
        return TaskStep(target: target, startsSequence: starts)
    }

    /// Without the prediction nothing is measured (the trainer calls the form with it).
    public func observe(stream b: Int, loss: Double, hadTarget: Bool) {}

    /// Updates the accuracy when the step's target was a symbol.
    public func observe(stream b: Int, loss: Double, hadTarget: Bool, prediction: Int) {
        let target = lastTargets[b]
        guard hadTarget, target >= 0, target < symbolCount else { return }
        state.accuracy = DelayTask.decay * state.accuracy + (1 - DelayTask.decay) * (prediction == target ? 1 : 0)
    }

    /// The streams' generators and recent tokens and the accuracy, as JSON.
    public func saveState() throws -> Data {
        try JSONEncoder().encode(Saved(state: state, lastTargets: lastTargets))
    }

    /// Restores what `saveState()` wrote; throws if it holds another number of streams or lag.
    public func restoreState(_ data: Data) throws {
        let restored = try JSONDecoder().decode(Saved.self, from: data)
        guard restored.state.streams.count == streamCount, restored.lastTargets.count == streamCount,
              restored.state.streams.allSatisfy({ $0.recent.count == lag }) else {
            throw RTRLError.invalidInput("the checkpoint's delay task has another number of streams or another lag")
        }
        state = restored.state
        lastTargets = restored.lastTargets
    }

    private struct Saved: Codable {
        var state: State
        var lastTargets: [Int]
    }
}

/// A task's generators and positions change with every step; it is not `Sendable`.
@available(*, unavailable)
extension DelayTask: Sendable {}
