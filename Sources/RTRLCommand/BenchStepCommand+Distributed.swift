import DistributedRTRL
import Foundation
import RTRL

/// `rtrl bench step --distributed units|streams`, as one process of an MPI job: every process
/// takes the same steps on its part (its units' influence blocks, or its streams), then the
/// exchange of an update (`MPIExchange.gradient`) is timed on its own. Rank 0 prints one JSON
/// line: each process's median step time, work, influence entries and the bytes its influence
/// state takes (the entries, plus D and the immediate term per stream), and the exchange's median
/// time and values per update.
extension BenchStepCommand {
    func runDistributed(_ split: DistributedSplit, _ model: Model<Double>, _ method: GradientMethod) throws {
        #if MPI
        let group = try ProcessGroup.start()
        defer { group.finish() }
        let partitions = split == .units
            ? try MPIExchange<Double>.modelParallel(model: model, method: method, processes: group.size)
            : try MPIExchange<Double>.dataParallel(streams: batch, processes: group.size)
        let partition = partitions[group.rank]
        let exchange = try MPIExchange<Double>(group: group, partitions: partitions)
        let streams = partition.streams ?? 0..<batch
        let learner = try OnlineLearner(model: model, method: method, streams: streams.count, units: partition.units,
                                        firstStream: streams.lowerBound)
        let n = model.inputSize, o = model.outputSize
        // Every process draws every stream's inputs and keeps its own.
        var rng = SeededGenerator(seed: source.seed &+ 99)
        var all = [Double](repeating: 0, count: batch * n), inputs = [Double](repeating: 0, count: streams.count * n)
        var targets = [Int](repeating: 0, count: streams.count)
        var gradient = [Double](repeating: 0, count: learner.flatParameterCount)
        func step() throws {
            for t in 0..<all.count { all[t] = Double.random(in: -1...1, using: &rng) * inputScale }
            for t in 0..<inputs.count { inputs[t] = all[streams.lowerBound * n + t] }
            for b in 0..<batch { let target = Int.random(in: 0..<o, using: &rng); if streams.contains(b) { targets[b - streams.lowerBound] = target } }
            try learner.step(inputs: inputs, targets: targets)
        }
        for _ in 0..<warmup { try step() }
        // Rounds of 10 steps, then one exchange; every process starts each round together.
        var stepTimes: [Double] = [], exchangeTimes: [Double] = []
        let perRound = min(10, steps)
        for _ in 0..<max(1, steps / perRound) {
            try group.barrier()
            let start = Stopwatch.now()
            for _ in 0..<perRound { try step() }
            let stepped = Stopwatch.now()
            // The exchange alone, not the wait for the slowest process.
            try group.barrier()
            let arrived = Stopwatch.now()
            try gradient.withUnsafeMutableBufferPointer { try exchange.gradient(of: learner, into: $0) }
            let exchanged = Stopwatch.now()
            learner.resetGradient()
            stepTimes.append((stepped - start) / Double(perRound))
            exchangeTimes.append(exchanged - arrived)
        }
        let rounds = stepTimes.count
        let sentPerUpdate = exchange.valuesSent / rounds, receivedPerUpdate = exchange.valuesReceived / rounds
        // Each process's figures, gathered in rank order.
        let mine: [Double] = [Statistics.median(stepTimes), Statistics.median(exchangeTimes), Double(learner.influenceBytes),
                              Double(learner.influencePattern?.statistics.multiplyAddsPerStep ?? 0) * Double(streams.count),
                              Double(sentPerUpdate), Double(receivedPerUpdate),
                              Double(learner.influencePattern.map { $0.statistics.nonzeros * streams.count } ?? 0)]
        var gathered = [Double](repeating: 0, count: mine.count * group.size)
        let counts = [Int32](repeating: Int32(mine.count), count: group.size)
        let displacements = (0..<group.size).map { Int32($0 * mine.count) }
        try mine.withUnsafeBufferPointer { local in
            try gathered.withUnsafeMutableBufferPointer { try group.allGather(local, counts: counts, displacements: displacements, into: $0) }
        }
        guard group.rank == 0 else { return }
        func column(_ c: Int) -> [Double] { (0..<group.size).map { gathered[$0 * mine.count + c] } }
        print("{" + ([
            ("method", method.description), ("cell", model.cell.rawValue), ("hidden", model.hiddenSize), ("batch", batch),
            ("split", split.rawValue), ("processes", group.size), ("parameters", learner.flatParameterCount),
            ("step_seconds", column(0)), ("slowest_step_seconds", column(0).max()!), ("exchange_seconds", column(1)),
            ("influence_bytes", column(2).map { Int($0) }), ("influence_entries", column(6).map { Int($0) }),
            ("multiply_adds_per_step", column(3).map { Int($0) }),
            ("values_sent_per_update", column(4).map { Int($0) }), ("values_received_per_update", column(5).map { Int($0) }),
            ("rounds", rounds), ("steps_per_round", perRound),
        ] as [(String, Any)]).map { "\"\($0.0)\": \(jsonList($0.1))" }.joined(separator: ", ") + "}")
        #else
        throw DistributedRun.notBuilt
        #endif
    }
}

/// A JSON value, lists included.
private func jsonList(_ value: Any) -> String {
    if let list = value as? [Double] { return "[" + list.map { jsonValue($0) }.joined(separator: ", ") + "]" }
    if let list = value as? [Int] { return "[" + list.map { "\($0)" }.joined(separator: ", ") + "]" }
    return jsonValue(value)
}
