import Foundation

/// Character-level language modelling on a UTF-8 text: the vocabulary is the text's set of
/// Unicode scalars; the last `validationFraction` of the text is held out. Each stream reads the
/// training part from its own offset, one character per step (input: one-hot of the current
/// character; target: the next), wrapping around at the end (a sequence boundary). The metric is
/// the moving-average training loss in bits per character (decay 0.999); `evaluate` adds the
/// validation bits per character (up to `validationLimit` characters, from a zero state).
public final class TextTask: TrainingTask {
    /// "text".
    public let name = "text"
    /// The number of independent streams, spread evenly over the training text.
    public let streamCount: Int
    /// The text's distinct Unicode scalars in ascending order; a character's class is its index.
    public let vocabulary: [Unicode.Scalar]
    /// The vocabulary's size (one-hot inputs).
    public var inputSize: Int { vocabulary.count }
    /// The vocabulary's size (the next character's class).
    public var outputSize: Int { vocabulary.count }
    /// `bits_per_character`.
    public var metricName: String { "bits_per_character" }
    /// The moving-average training loss in bits per character (decay 0.999, from log₂ of the
    /// vocabulary's size).
    public var metricValue: Double { state.averageBits }
    let training: [Int32]
    let validation: [Int32]
    /// The most validation characters `evaluate` predicts.
    public let validationLimit: Int

    struct State: Codable {
        var positions: [Int]
        var averageBits: Double
    }
    private var state: State

    /// Reads `path` (UTF-8). Empty, non-UTF-8 or too-short texts are errors.
    public convenience init(file path: String, streams: Int, validationFraction: Double = 0.1, validationLimit: Int = 20_000) throws {
        guard let data = FileBytes.data(path) else {
            throw RTRLError.invalidInput("\(path) is missing or unreadable")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RTRLError.invalidInput("\(path) is not valid UTF-8 text")
        }
        try self.init(text: text, source: path, streams: streams, validationFraction: validationFraction,
                      validationLimit: validationLimit)
    }

    /// A task on `text`. Empty texts, texts of a single distinct character and texts too short for
    /// the streams are errors.
    ///
    /// - Parameters:
    ///   - text: the whole text; its distinct Unicode scalars make the vocabulary.
    ///   - source: how error messages name the text (a path, say).
    ///   - streams: the number of independent streams, each starting at its own offset.
    ///   - validationFraction: the part of the text, from its end, held out for validation, in
    ///     [0, 1).
    ///   - validationLimit: the most validation characters `evaluate` predicts.
    public init(text: String, source: String = "the text", streams: Int, validationFraction: Double = 0.1,
                validationLimit: Int = 20_000) throws {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { throw RTRLError.invalidInput("\(source) is empty") }
        guard validationFraction >= 0, validationFraction < 1 else {
            throw RTRLError.invalidOption("the validation fraction must be in [0, 1)")
        }
        let vocabulary = Array(Set(scalars)).sorted { $0.value < $1.value }
        guard vocabulary.count >= 2 else {
            throw RTRLError.invalidInput("\(source) has a single distinct character; there is nothing to learn")
        }
        var index = [UInt32: Int32]()
        for (i, c) in vocabulary.enumerated() { index[c.value] = Int32(i) }
        let codes = scalars.map { index[$0.value]! }
        let split = codes.count - Int(Double(codes.count) * validationFraction)
        guard split >= streams + 1 else {
            throw RTRLError.invalidInput("\(source) is too short (\(codes.count) characters) for \(streams) stream(s)")
        }
        self.vocabulary = vocabulary
        self.training = Array(codes[..<split])
        self.validation = Array(codes[split...])
        self.streamCount = streams
        self.validationLimit = validationLimit
        let spacing = (split - 1) / streams
        state = State(positions: (0..<streams).map { $0 * spacing }, averageBits: Foundation.log2(Double(vocabulary.count)))
    }

    /// Writes the one-hot code of stream b's current character; the target is the next one.
    /// At the end of the training text the stream wraps around and starts a new sequence.
    public func next(stream b: Int, input: UnsafeMutableBufferPointer<Double>) -> TaskStep {
        var position = state.positions[b], starts = position == 0
        if position + 1 >= training.count { position = 0; starts = true }
        oneHot(Int(training[position]), into: input)
        state.positions[b] = position + 1
        return TaskStep(target: Int(training[position + 1]), startsSequence: starts)
    }

    /// Feeds a step's loss to the moving average of bits per character.
    public func observe(stream b: Int, loss: Double, hadTarget: Bool) {
        guard hadTarget else { return }
        state.averageBits = 0.999 * state.averageBits + 0.001 * loss / Foundation.log(2)
    }

    /// `validation_bits_per_character`: the model's loss per character, in bits, on the held-out
    /// text (up to `validationLimit` predictions, from a zero state); nothing without a
    /// validation text of at least two characters.
    public func evaluate(model: Model<Double>) throws -> [(name: String, value: Double)] {
        let count = min(validation.count, validationLimit + 1)
        guard count >= 2 else { return [] }
        var inputs: [[Double]] = [], targets: [Int] = []
        for t in 0..<(count - 1) {
            var row = [Double](repeating: 0, count: vocabulary.count)
            row[Int(validation[t])] = 1
            inputs.append(row)
            targets.append(Int(validation[t + 1]))
        }
        let loss = try SequenceLoss.evaluate(model: model, inputs: inputs, targets: targets)
        return [("validation_bits_per_character", loss / Double(count - 1) / Foundation.log(2))]
    }

    /// The streams' positions and the moving average, as JSON.
    public func saveState() throws -> Data { try JSONEncoder().encode(state) }
    /// Restores what `saveState()` wrote; throws if it holds another number of streams.
    public func restoreState(_ data: Data) throws {
        let restored = try JSONDecoder().decode(State.self, from: data)
        guard restored.positions.count == streamCount else { throw RTRLError.invalidInput("the checkpoint's text task has another number of streams") }
        state = restored
    }

    /// A small English-like corpus generated from a fixed grammar and seed, so that
    /// `rtrl train --task text` runs out of the box (about 60,000 characters).
    public static func builtInCorpus(characters: Int = 60_000) -> String {
        var rng = SeededGenerator(seed: 2026)
        let subjects = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird", "the teacher",
                        "our neighbour", "the wind", "a child"]
        let verbs = ["sees", "likes", "follows", "watches", "finds", "remembers", "carries", "hears", "paints", "visits"]
        let objects = ["the garden", "a red ball", "the long road", "an open window", "the morning light", "a quiet song",
                       "the blue door", "a warm bread", "the last train", "an old letter"]
        let endings = [".", ".", ".", "!", "?"]
        let adverbs = ["slowly", "again", "every day", "at night", "with care", "in the rain"]
        func pick(_ words: [String]) -> String { words[Int.random(in: 0..<words.count, using: &rng)] }
        var text = ""
        while text.unicodeScalars.count < characters {
            var sentence = "\(pick(subjects)) \(pick(verbs)) \(pick(objects))"
            if Int.random(in: 0..<3, using: &rng) == 0 { sentence += " \(pick(adverbs))" }
            if Int.random(in: 0..<4, using: &rng) == 0 { sentence += " and \(pick(verbs)) \(pick(objects))" }
            let ending = pick(endings)
            text += sentence.prefix(1).uppercased() + sentence.dropFirst() + ending + (Int.random(in: 0..<6, using: &rng) == 0 ? "\n" : " ")
        }
        return String(String.UnicodeScalarView(text.unicodeScalars.prefix(characters)))
    }
}

/// The loss of a model over one sequence from the zero state, forward only.
public enum SequenceLoss {
    /// The summed cross-entropy (nats) of `model` over `inputs` (T rows of `model.inputSize`
    /// values) and `targets` (T classes, −1 for no loss at a step), from the zero state.
    public static func evaluate<Scalar: SparseScalar>(model: Model<Scalar>, inputs: [[Double]], targets: [Int]) throws -> Double {
        let learner = try OnlineLearner(model: model, method: .snap(1))
        var loss = 0.0
        for t in 0..<targets.count {
            loss += try learner.step(inputs: inputs[t].map { Scalar($0) }, targets: [targets[t]])
        }
        return loss
    }
}

/// A task's generators and positions change with every step; it is not `Sendable`.
@available(*, unavailable)
extension TextTask: Sendable {}
