#if MPI
import Foundation
import RTRL

/// The `TrainingExchange` of a run split over the processes of an MPI job: process r runs a
/// `Trainer` with `partitions[r]` and this exchange, which combines the parts so that every
/// process gets the numbers a single process would compute.
///
/// - Model parallelism: each process's gradient is exact for its units' parameters and the
///   readout; the units' values are gathered from every process (`MPI_Allgatherv` of the core
///   parameters, once per update) and the readout's is already the same everywhere. Each value
///   is computed by one process in the single-process order: SnAp-n's gradients are bit for bit
///   the single process's; exact RTRL's, whose one shared block is cut at the shards' edges, are
///   equal to rounding (the block's partial sums are grouped differently).
/// - Data parallelism: each process reads its streams' gradients one by one; all of them are
///   gathered (B·p values per update) and summed in stream order, the order a single process sums
///   them in, so the result is bit for bit the single process's for any number of processes.
///   Every step, the streams' losses and predictions are gathered (2B values) so that every
///   process's task sees every stream, as a single process's would.
///
/// Buffers are allocated at the first update and reused. The exchange counts the values it
/// sends and receives (``valuesSent``, ``valuesReceived``), for scaling estimates.
public final class MPIExchange<Scalar: SparseScalar>: TrainingExchange {
    /// The job's processes.
    public let group: ProcessGroup
    /// Every process's part, in rank order.
    public let partitions: [TrainingPartition]
    /// Values this process has sent in collective operations so far.
    public private(set) var valuesSent = 0
    /// Values this process has received in collective operations so far.
    public private(set) var valuesReceived = 0
    private var counts: [Int32] = []
    private var displacements: [Int32] = []
    private var ownIndex: [Int] = []
    private var allIndex: [Int] = []
    private var send: [Scalar] = []
    private var receive: [Scalar] = []
    private var streamCounts: [Int32] = []
    private var streamDisplacements: [Int32] = []

    /// An exchange for the processes of `group` with the given parts (one per process; all
    /// processes must pass the same partitions).
    public init(group: ProcessGroup, partitions: [TrainingPartition]) throws {
        guard partitions.count == group.size else {
            throw DistributedError("\(group.size) processes need \(group.size) partitions, not \(partitions.count)")
        }
        self.group = group
        self.partitions = partitions
    }

    /// The partitions of model parallelism: units split into ranges of balanced influence work
    /// (`InfluencePattern.balancedShards`), one per process of `group`.
    public static func modelParallel(model: Model<Scalar>, method: GradientMethod, processes: Int) throws -> [TrainingPartition] {
        let order: InfluencePattern.Order
        switch method {
        case .rtrl: order = .exact
        case .snap(let n): order = .snap(n)
        default: throw DistributedError("model parallelism splits the influence matrix of rtrl and snap-N, not \(method)")
        }
        let structure = ModelStructure(model)
        return try InfluencePattern.balancedShards(graph: structure.graph, layout: structure.layout, order: order, count: processes)
            .map { TrainingPartition(units: $0) }
    }

    /// The partitions of data parallelism: the task's streams split into consecutive ranges as
    /// even as can be (earlier processes take one more), one per process.
    public static func dataParallel(streams: Int, processes: Int) throws -> [TrainingPartition] {
        guard processes >= 1, streams >= processes else {
            throw DistributedError("\(streams) stream(s) cannot be split over \(processes) processes (each needs at least one)")
        }
        var start = 0
        return (0..<processes).map { r in
            let count = streams / processes + (r < streams % processes ? 1 : 0)
            defer { start += count }
            return TrainingPartition(streams: start..<(start + count))
        }
    }

    /// The update's gradient: this process's part, completed from the others' (see the type's
    /// documentation for how each split combines them).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func gradient(of learner: OnlineLearner<Scalar>, into flat: UnsafeMutableBufferPointer<Scalar>) throws {
        if partitions[0].streams != nil {
            try dataParallelGradient(of: learner, into: flat)
        } else {
            try modelParallelGradient(of: learner, into: flat)
        }
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func modelParallelGradient(of learner: OnlineLearner<Scalar>, into flat: UnsafeMutableBufferPointer<Scalar>) throws {
        try learner.gradient(into: flat)
        if counts.isEmpty {
            // Process r's units' parameters, in rank order (the layout's order, unit by unit).
            let indices = try partitions.map { try learner.flatIndices(ofUnits: $0.units ?? 0..<learner.model.hiddenSize) }
            counts = indices.map { Int32($0.count) }
            displacements = [0]
            for r in 1..<group.size { displacements.append(displacements[r - 1] + counts[r - 1]) }
            ownIndex = indices[group.rank]
            allIndex = indices.flatMap { $0 }
            send = [Scalar](repeating: 0, count: ownIndex.count)
            receive = [Scalar](repeating: 0, count: allIndex.count)
        }
        for t in 0..<ownIndex.count { send[t] = flat[ownIndex[t]] }
        try send.withUnsafeBufferPointer { local in
            try receive.withUnsafeMutableBufferPointer { try group.allGather(local, counts: counts, displacements: displacements, into: $0) }
        }
        for t in 0..<allIndex.count { flat[allIndex[t]] = receive[t] }
        valuesSent += send.count
        valuesReceived += receive.count
    }

    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    private func dataParallelGradient(of learner: OnlineLearner<Scalar>, into flat: UnsafeMutableBufferPointer<Scalar>) throws {
        let p = flat.count, own = learner.streamCount
        if counts.isEmpty {
            counts = partitions.map { Int32($0.streams!.count * p) }
            displacements = partitions.map { Int32($0.streams!.lowerBound * p) }
            send = [Scalar](repeating: 0, count: own * p)
            receive = [Scalar](repeating: 0, count: (partitions.last!.streams!.upperBound) * p)
        }
        try send.withUnsafeMutableBufferPointer { s in
            for b in 0..<own { try learner.gradient(stream: b, into: UnsafeMutableBufferPointer(rebasing: s[(b * p)..<((b + 1) * p)])) }
        }
        try send.withUnsafeBufferPointer { local in
            try receive.withUnsafeMutableBufferPointer { try group.allGather(local, counts: counts, displacements: displacements, into: $0) }
        }
        // Summed from zero in stream order, as `OnlineLearner.gradient(into:)` sums its streams.
        flat.update(repeating: 0)
        for b in 0..<(receive.count / p) {
            for t in 0..<p { flat[t] += receive[b * p + t] }
        }
        valuesSent += send.count
        valuesReceived += receive.count
    }

    /// Every stream's values from the processes that step them (data parallelism).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func gatherStreamValues(_ local: UnsafeBufferPointer<Double>, valuesPerStream: Int,
                                   into all: UnsafeMutableBufferPointer<Double>) throws {
        if streamCounts.isEmpty {
            streamCounts = partitions.map { Int32(($0.streams?.count ?? 0) * valuesPerStream) }
            streamDisplacements = partitions.map { Int32(($0.streams?.lowerBound ?? 0) * valuesPerStream) }
        }
        try group.allGather(local, counts: streamCounts, displacements: streamDisplacements, into: all)
        valuesSent += local.count
        valuesReceived += all.count
    }

    /// Every process's learner snapshot, gathered on rank 0 and joined into the whole run's
    /// (nil on the other processes).
    public func checkpointSnapshot(of learner: OnlineLearner<Scalar>) throws -> LearnerSnapshot<Scalar>? {
        let bytes = try [UInt8](JSONEncoder().encode(learner.snapshot()))
        guard let parts = try group.gather(bytes, root: 0) else { return nil }
        let snapshots = try parts.map { try JSONDecoder().decode(LearnerSnapshot<Scalar>.self, from: Data($0)) }
        return try learner.joinedSnapshot(snapshots, partitions: partitions)
    }
}

/// An exchange belongs to its process's trainer and thread.
@available(*, unavailable)
extension MPIExchange: Sendable {}
#endif
