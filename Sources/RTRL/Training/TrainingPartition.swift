/// One process's part of a training run split over several processes, each running its own
/// ``Trainer`` on the same model, task and settings (DistributedRTRL runs them over MPI; the
/// trainer knows nothing of how processes talk, only what it holds and whom to ask).
///
/// - Model parallelism (`units`): every process steps every stream (the forward pass and D are
///   cheap and replicated) but holds the influence blocks of its range of units only
///   (`OnlineLearner.init(…units:)`), so the influence matrix, the whole cost of a step, is split.
/// - Data parallelism (`streams`): every process steps its range of the task's streams.
///
/// At most one of the two is set. Every process draws every stream's inputs from its own copy of
/// the task, so the tasks stay identical without being sent.
public struct TrainingPartition: Hashable, Sendable {
    /// The hidden units whose influence blocks this process holds (nil: all).
    public var units: Range<Int>?
    /// The task's streams this process steps (nil: all).
    public var streams: Range<Int>?

    /// The whole run in one process.
    public static let whole = TrainingPartition(units: nil, streams: nil)

    /// A partition: at most one of `units` and `streams` (checked when a trainer is built).
    public init(units: Range<Int>? = nil, streams: Range<Int>? = nil) {
        self.units = units
        self.streams = streams
    }
}

/// How the processes of a split run (``TrainingPartition``) combine their parts; DistributedRTRL
/// implements it over MPI. Every call is collective: every process of the run makes it, in the
/// same order. Every process must receive the same numbers, so that all processes apply the same
/// update and their copies of the model stay equal.
public protocol TrainingExchange<Scalar>: AnyObject {
    /// The trainer's precision.
    associatedtype Scalar: SparseScalar

    /// The gradient of an update, summed over all of the task's streams (the order of
    /// `Parameters.flattened`), from this process's learner and the others'.
    func gradient(of learner: OnlineLearner<Scalar>, into flat: UnsafeMutableBufferPointer<Scalar>) throws

    /// Data parallelism, after every step: `local` holds `valuesPerStream` values for each of this
    /// process's streams; `all` receives them for every stream of the task, in stream order.
    func gatherStreamValues(_ local: UnsafeBufferPointer<Double>, valuesPerStream: Int,
                            into all: UnsafeMutableBufferPointer<Double>) throws

    /// For a checkpoint: the learner's snapshot as one process holding the whole run would take
    /// it, on the process that writes the checkpoint; nil on the others (which write nothing).
    func checkpointSnapshot(of learner: OnlineLearner<Scalar>) throws -> LearnerSnapshot<Scalar>?
}
