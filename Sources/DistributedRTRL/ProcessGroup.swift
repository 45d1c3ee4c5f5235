#if MPI
import CMPI
import RTRL

/// The processes of an MPI job (`MPI_COMM_WORLD`): their number, this one's rank, and the few
/// collective operations a split training run needs. MPI is started once per process by
/// ``start()`` and stopped by ``finish()``. Errors come back as thrown ``DistributedError``s (the
/// communicator returns error codes instead of aborting).
///
/// Every operation is collective: every process calls it, in the same order. Calls must come
/// from one thread at a time (MPI is started at `MPI_THREAD_SERIALIZED`), so a group is not
/// `Sendable`.
public final class ProcessGroup {
    /// This process's rank, 0 ..< ``size``.
    public let rank: Int
    /// The number of processes.
    public let size: Int
    private let communicator: MPI_Comm

    private init(communicator: MPI_Comm) throws {
        self.communicator = communicator
        var rank: Int32 = 0, size: Int32 = 0
        try ProcessGroup.check(MPI_Comm_rank(communicator, &rank), "MPI_Comm_rank")
        try ProcessGroup.check(MPI_Comm_size(communicator, &size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// Starts MPI in this process (if it is not started yet) and returns the job's processes.
    /// Run the program under `mpirun`; run alone, it is a job of one process.
    public static func start() throws -> ProcessGroup {
        var started: Int32 = 0
        try check(MPI_Initialized(&started), "MPI_Initialized")
        if started == 0 {
            var provided: Int32 = 0
            var argc: Int32 = 0
            try check(MPI_Init_thread(&argc, nil, cmpi_thread_serialized(), &provided), "MPI_Init_thread")
        }
        let world = cmpi_comm_world()!
        try check(MPI_Comm_set_errhandler(world, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        return try ProcessGroup(communicator: world)
    }

    /// Stops MPI in this process (after the last collective call of every process).
    public func finish() {
        var stopped: Int32 = 0
        MPI_Finalized(&stopped)
        if stopped == 0 { MPI_Finalize() }
    }

    /// Ends every process of the job with `code` (after an error that the others cannot learn of).
    public func abort(code: Int32) -> Never {
        MPI_Abort(communicator, code)
        fatalError("MPI_Abort returned")
    }

    /// Waits until every process has arrived.
    public func barrier() throws {
        try ProcessGroup.check(MPI_Barrier(communicator), "MPI_Barrier")
    }

    /// Every process's `local` values, concatenated in rank order into `all`: process r sends
    /// `counts[r]` values, which land at `displacements[r]` (the arrays are the same on every
    /// process and `local.count == counts[rank]`). Allocates nothing.
    public func allGather<T: BinaryFloatingPoint>(_ local: UnsafeBufferPointer<T>, counts: [Int32], displacements: [Int32],
                                              into all: UnsafeMutableBufferPointer<T>) throws {
        precondition(counts.count == size && displacements.count == size && local.count == Int(counts[rank]))
        let stride = MemoryLayout<T>.stride
        precondition(stride == 4 || stride == 8, "values of 4 or 8 bytes")
        let type = stride == 8 ? cmpi_double() : cmpi_float()
        try ProcessGroup.check(MPI_Allgatherv(local.baseAddress, Int32(local.count), type, all.baseAddress, counts, displacements,
                                              type, communicator), "MPI_Allgatherv")
    }

    /// Every process's bytes, on process `root` (in rank order); nil on the others.
    public func gather(_ bytes: [UInt8], root: Int = 0) throws -> [[UInt8]]? {
        var count = Int64(bytes.count)
        var counts = [Int64](repeating: 0, count: rank == root ? size : 0)
        try ProcessGroup.check(MPI_Gather(&count, 1, cmpi_long_long(), &counts, 1, cmpi_long_long(), Int32(root), communicator),
                               "MPI_Gather")
        guard rank == root else {
            try ProcessGroup.check(MPI_Gatherv(bytes, Int32(bytes.count), cmpi_byte(), nil, nil, nil, cmpi_byte(), Int32(root), communicator),
                                   "MPI_Gatherv")
            return nil
        }
        guard counts.reduce(0, +) <= Int64(Int32.max) else {
            throw RTRLError.tooLarge(what: "the parts gathered for a checkpoint", neededBytes: Int(counts.reduce(0, +)),
                                     budgetBytes: Int(Int32.max))
        }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + Int32(counts[r - 1]) }
        var all = [UInt8](repeating: 0, count: Int(counts.reduce(0, +)))
        let receiveCounts = counts.map { Int32($0) }
        try ProcessGroup.check(MPI_Gatherv(bytes, Int32(bytes.count), cmpi_byte(), &all, receiveCounts, displacements, cmpi_byte(),
                                           Int32(root), communicator), "MPI_Gatherv")
        return (0..<size).map { Array(all[Int(displacements[$0])..<(Int(displacements[$0]) + Int(counts[$0]))]) }
    }

    /// The largest of every process's `value`, on every process.
    public func maximum(_ value: Int) throws -> Int {
        var local = Int64(value), result: Int64 = 0
        try ProcessGroup.check(MPI_Allreduce(&local, &result, 1, cmpi_long_long(), cmpi_max(), communicator), "MPI_Allreduce")
        return Int(result)
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code != cmpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        let message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw DistributedError("\(what) failed: \(message) (another process may have stopped)")
    }
}

/// A process group belongs to the thread that uses it (MPI is serialised, not shared).
@available(*, unavailable)
extension ProcessGroup: Sendable {}
#endif
