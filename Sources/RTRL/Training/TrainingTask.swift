import Foundation

/// One step of a task for one stream.
public struct TaskStep: Sendable {
    /// The class to predict at this step, or −1 for no loss.
    public var target: Int
    /// Whether this step starts a new sequence (the learner resets that stream's state first).
    public var startsSequence: Bool

    /// A step with its target (−1 for no loss) and whether it starts a new sequence.
    public init(target: Int, startsSequence: Bool) {
        self.target = target
        self.startsSequence = startsSequence
    }
}

/// A source of online training data: independent streams of (input, target) steps, with the
/// task's own metric. Tasks plug into `Trainer` through this protocol; add your own by
/// conforming a class to it.
public protocol TrainingTask: AnyObject {
    /// A short name ("copy", "text").
    var name: String { get }
    /// n: the length of an input vector, which the model's `input_size` must equal.
    var inputSize: Int { get }
    /// o: the number of target classes, which the model's `output_size` must equal.
    var outputSize: Int { get }
    /// The number of independent streams; the trainer runs one learner stream per task stream.
    var streamCount: Int { get }
    /// Writes stream b's next input (inputSize values) and returns its target.
    func next(stream b: Int, input: UnsafeMutableBufferPointer<Double>) -> TaskStep
    /// Reports the loss (nats) at stream b's last step; `hadTarget` is false for steps without one.
    func observe(stream b: Int, loss: Double, hadTarget: Bool)
    /// The same, with the class the model found most likely at that step (for accuracy-like
    /// metrics). The trainer calls this form; by default it forwards to the one without.
    func observe(stream b: Int, loss: Double, hadTarget: Bool, prediction: Int)
    /// The name of the task's metric (`curriculum_length`, `bits_per_character`, `accuracy`).
    var metricName: String { get }
    /// The current value of the task's metric, in its own units.
    var metricValue: Double { get }
    /// Metrics that need the model (e.g. validation loss), computed at report time.
    func evaluate(model: Model<Double>) throws -> [(name: String, value: Double)]
    /// The task's evolving state (generators, positions, curriculum), for checkpoints.
    func saveState() throws -> Data
    /// Restores the state `saveState()` wrote, so the task continues where it stopped; throws if
    /// `data` is not this task's state.
    func restoreState(_ data: Data) throws
}

extension TrainingTask {
    /// Forwards to ``observe(stream:loss:hadTarget:)``, ignoring the prediction.
    public func observe(stream b: Int, loss: Double, hadTarget: Bool, prediction: Int) {
        observe(stream: b, loss: loss, hadTarget: hadTarget)
    }

    /// No metrics that need the model.
    public func evaluate(model: Model<Double>) throws -> [(name: String, value: Double)] { [] }
}

/// Writes the one-hot code of `token` into `input`.
@inline(__always)
func oneHot(_ token: Int, into input: UnsafeMutableBufferPointer<Double>) {
    for t in 0..<input.count { input[t] = 0 }
    input[token] = 1
}
