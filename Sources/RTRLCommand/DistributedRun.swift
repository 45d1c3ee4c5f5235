import ArgumentParser
import DistributedRTRL
import Foundation
import RTRL
#if MPI
import Glibc
#endif

/// How `rtrl train --distributed` splits a run over the processes of an MPI job.
enum DistributedSplit: String, ExpressibleByArgument, CaseIterable {
    /// Model parallelism: each process holds the influence blocks of a range of units.
    case units
    /// Data parallelism: each process steps a range of the streams (--batch).
    case streams
}

/// This process's place in a distributed run: its part, the exchange with the others, and
/// whether it reports (rank 0 prints, writes metrics and the result; every process takes part
/// in checkpoints, which rank 0 writes).
struct DistributedRun {
    let partition: TrainingPartition
    let exchange: (any TrainingExchange<Double>)?
    let reports: Bool
    let finish: () -> Void
    /// Called with an error of this process: the others cannot learn of it and would wait in
    /// the next collective operation, so the job is ended.
    let fail: (Error) -> Never
    /// Fields for the result line: the number of processes and the values this process sent
    /// and received (empty for a single process).
    let summary: () -> [(String, Any)]

    /// The whole run in this process.
    static var single: DistributedRun { DistributedRun(partition: .whole, exchange: nil, reports: true, finish: {}, fail: { error in
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        exit(1)
    }, summary: { [] }) }

    /// Starts MPI and this process's part of `split`, for a run of `model` with `method` on
    /// `streams` streams. Throws in a build without the `MPI` trait.
    static func start(_ split: DistributedSplit, model: Model<Double>, method: GradientMethod, streams: Int) throws -> DistributedRun {
        #if MPI
        let group = try ProcessGroup.start()
        installTerminationMessage(rank: group.rank, size: group.size)
        let fail: (Error) -> Never = { error in
            FileHandle.standardError.write(Data("error: rtrl process \(group.rank) of \(group.size): \(error); ending the job\n".utf8))
            if group.size > 1 { group.abort(code: 1) }
            exit(1)
        }
        do {
            let partitions = split == .units
                ? try MPIExchange<Double>.modelParallel(model: model, method: method, processes: group.size)
                : try MPIExchange<Double>.dataParallel(streams: streams, processes: group.size)
            let exchange = try MPIExchange<Double>(group: group, partitions: partitions)
            return DistributedRun(partition: partitions[group.rank], exchange: exchange, reports: group.rank == 0,
                                  finish: { group.finish() }, fail: fail,
                                  summary: { [("processes", group.size), ("values_exchanged", exchange.valuesSent + exchange.valuesReceived)] })
        } catch {
            fail(error)
        }
        #else
        throw notBuilt
        #endif
    }

    /// The refusal of `--distributed` by an rtrl built without the MPI trait.
    static let notBuilt = CommandFailure("this rtrl was built without MPI: build it with `swift build -c release --traits MPI` (needs Open MPI, Debian's libopenmpi-dev) and run it under mpirun")
}

#if MPI
/// The sentence a process prints when mpirun ends it (SIGTERM) because another process of the
/// job failed or was killed; written once, before any signal can come.
nonisolated(unsafe) private var terminationMessage: UnsafeMutableBufferPointer<UInt8>?

private func installTerminationMessage(rank: Int, size: Int) {
    let text = "error: rtrl process \(rank) of \(size) was stopped: the MPI job ended because another process failed or was killed. "
        + "Checkpoints are renamed into place only when complete, so the last one written is whole; resume from it with any number of processes.\n"
    let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: text.utf8.count)
    _ = buffer.initialize(from: text.utf8)
    terminationMessage = buffer
    signal(SIGTERM) { _ in
        if let message = terminationMessage { _ = write(2, message.baseAddress, message.count) }
        _exit(143)
    }
}
#endif
