import ArgumentParser
import Foundation
import RTRL

enum TaskName: String, ExpressibleByArgument, CaseIterable { case copy, add, text, delay }
extension OptimizerKind: ExpressibleByArgument {}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a sparse recurrent network online on a task.")

    @Option(help: "Task: copy (curriculum), add, text (character-level) or delay (recall the symbol seen --lag steps earlier).") var task: TaskName = .copy
    @Option(help: "UTF-8 text for --task text (default: a built-in generated corpus).") var text: String?
    @Option(help: "Cell of a new model.") var cell: CellKind = .gru
    @Option(help: "Hidden units of a new model.") var hidden: Int = 64
    @Option(help: "Stacked layers L of a new model (num_layers).") var layers: Int = 1
    @Option(help: "Weight density of a new model, in (0, 1].") var density: Double = 0.25
    @Flag(help: "Draw each gate block's mask separately.") var independentGateMasks = false
    @Option(help: "Gradient method (snap-N, rtrl, rtrl-dense, bptt, tbptt-H, uoro, …).") var method: String = "snap-2"
    @Option(help: "Independent streams.") var batch: Int = 1
    @Option(parsing: .unconditional, help: "Total steps.") var steps: Int = 20_000
    @Option(help: "sgd, adam or natural.") var optimizer: OptimizerKind = .adam
    @Option(help: "Learning rate (default: 0.003 for sgd and adam, 1 for natural: the Kalman filter's step η/(t0 + t) with η = 1).")
    var lr: Double?
    @Option(help: "Largest gradient norm of an update (0: no clipping).") var clip: Double = 1
    @Option(help: "Steps between parameter updates.") var updateEvery: Int = 1
    @Option(help: "Random seed (model, data, stochastic methods).") var seed: UInt64 = 0
    @Option(help: "Threads.") var threads: Int = 1
    @Option(help: "Steps between progress reports and metrics rows.") var reportEvery: Int = 1000
    @Option(help: "Write a metrics row per report to this CSV.") var metrics: String?
    @Option(help: "Write the learning curves to this SVG at the end.") var plot: String?
    @Option(help: "Write checkpoints to this directory (atomically).") var checkpoint: String?
    @Option(help: "Steps between checkpoints (default: only at the end).") var checkpointEvery: Int = 0
    @Option(help: "Resume from this checkpoint.") var resume: String?
    @Option(help: "Start from this model directory.") var model: String?
    @Option(help: "Sequence length of the add task.") var addLength: Int = 10
    @Option(help: "Steps between a symbol and its recall in the delay task.") var lag: Int = 16
    @Option(help: "Natural-gradient filter (--optimizer natural): forget the Fisher estimate exponentially with this factor instead of the Kalman filter's averaging.")
    var fisherDecay: Double?
    @Option(help: "Natural-gradient filter: average the Fisher estimate with weights 1/(t0 + t) after a prior worth t0 = this many observations (the Kalman filter; the default schedule, t0 = 100).")
    var fisherPriorWeight: Double?
    @Option(help: "Natural-gradient filter: the prior Fisher matrix F0 = this · I (with the averaging schedule; default 0.01).")
    var fisherPrior: Double?
    @Option(help: "Natural-gradient filter: damping λ relative to the Fisher estimate's average diagonal.")
    var fisherDamping: Double = 1e-3
    @Option(help: "Natural-gradient filter: refactorise the Fisher estimate every this many updates.")
    var fisherRefactorEvery: Int = 10
    @Option(help: "Run as one process of an MPI job (mpirun -np R rtrl train --distributed …): units splits the influence matrix of rtrl and snap-N by units, streams splits the streams (--batch). Needs a build with the MPI trait.")
    var distributed: DistributedSplit?
    @Option(help: "The most bytes the influence state may take (in a distributed run, each process's part); beyond it the run is refused with the bytes needed.")
    var memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget

    func run() throws {
        try reporting {
            guard steps >= 0, batch >= 1, reportEvery >= 1, checkpointEvery >= 0, memoryBudget >= 0 else {
                throw CommandFailure("--steps must be ≥ 0, --batch and --report-every ≥ 1, --checkpoint-every and --memory-budget ≥ 0")
            }
            if plot != nil && metrics == nil { throw CommandFailure("--plot needs --metrics (the curves are drawn from it)") }
            let task = try makeTask()
            var run = DistributedRun.single
            var start: Model<Double>? = nil
            if let distributed {
                // Every process builds the same model and settings; the split needs them first.
                let (model, method) = try resume.map { try Trainer<Double>.savedModelAndMethod(in: $0) } ?? (try makeModel(task: task), try GradientMethod(parsing: method))
                if resume == nil { start = model }
                run = try DistributedRun.start(distributed, model: model, method: method, streams: batch)
            }
            do {
                try train(task: task, run: run, start: start)
            } catch {
                guard distributed != nil else { throw error }
                run.fail(error)
            }
            run.finish()
        }
    }

    func makeModel(task: TrainingTask) throws -> Model<Double> {
        if let model { return try Model<Double>(directory: model) }
        let configuration = try ModelConfiguration(cell: cell, inputSize: task.inputSize, hiddenSize: hidden,
                                                   outputSize: task.outputSize, layerCount: layers)
        return try Model<Double>(random: configuration, density: density, independentGateMasks: independentGateMasks, seed: seed)
    }

    /// Trains from `start` (nil: the model of --model or a new one), or resumes --resume.
    func train(task: TrainingTask, run: DistributedRun, start: Model<Double>?) throws {
        try reporting {
            let trainer: Trainer<Double>
            if let resume {
                trainer = try Trainer<Double>(resumingFrom: resume, task: task, partition: run.partition, exchange: run.exchange,
                                              memoryBudget: memoryBudget)
            } else {
                let start = try start ?? makeModel(task: task)
                if fisherDecay != nil && (fisherPriorWeight != nil || fisherPrior != nil) {
                    throw CommandFailure("--fisher-decay selects the exponential schedule, which has no prior: give it or --fisher-prior-weight/--fisher-prior, not both")
                }
                let defaults = NaturalGradientPreconditioner.Options()
                var schedule = defaults.schedule
                if let fisherDecay { schedule = .exponential(decay: fisherDecay) }
                if let fisherPriorWeight { schedule = .averaging(priorWeight: fisherPriorWeight) }
                let filter = NaturalGradientPreconditioner.Options(schedule: schedule, priorFisher: fisherPrior ?? defaults.priorFisher,
                                                                   damping: fisherDamping,
                                                                   refactorInterval: fisherRefactorEvery)
                let settings = try TrainingConfiguration(method: GradientMethod(parsing: method), optimizer: optimizer,
                                                         learningRate: lr ?? (optimizer == .natural ? 1 : 3e-3), clip: clip,
                                                         updateEvery: updateEvery, threads: threads, seed: seed, filter: filter)
                trainer = try Trainer(model: start, task: task, configuration: settings, partition: run.partition, exchange: run.exchange,
                                      memoryBudget: memoryBudget)
            }
            var csv: FileHandle?
            if let metrics, run.reports {
                guard FileManager.default.createFile(atPath: metrics, contents: nil), let handle = FileHandle(forWritingAtPath: metrics) else {
                    throw CommandFailure("cannot write the metrics file \(metrics)")
                }
                csv = handle
            }
            defer { try? csv?.close() }
            var header = false
            var last: TrainingReport?
            let interactive = isatty(2) != 0
            try trainer.run(until: steps, reportEvery: reportEvery, checkpointEvery: checkpointEvery,
                            checkpoint: { t in if let checkpoint { try t.saveCheckpoint(to: checkpoint) } }) { report in
                last = report
                guard run.reports else { return }
                let remaining = Double(steps - report.step) / max(report.stepsPerSecond, 1e-9)
                var line = String(format: "step %d/%d  %.0f steps/s  ETA %@  loss %.4f  %@ %@", report.step, steps,
                                  report.stepsPerSecond, formatDuration(remaining), report.loss, report.metricName,
                                  formatMetric(report.metric))
                for e in report.evaluations { line += String(format: "  %@ %.4f", e.name, e.value) }
                FileHandle.standardError.write(Data((interactive ? "\r\u{1B}[K" + line : line + "\n").utf8))
                if let csv {
                    if !header {
                        let names = ["step", "seconds", "steps_per_second", "loss", report.metricName, "grad_norm"] + report.evaluations.map(\.name)
                        csv.write(Data((names.joined(separator: ",") + "\n").utf8))
                        header = true
                    }
                    let values = [Double(report.step), report.seconds, report.stepsPerSecond, report.loss, report.metric,
                                  report.gradientNorm] + report.evaluations.map(\.value)
                    csv.write(Data((values.map { "\($0)" }.joined(separator: ",") + "\n").utf8))
                }
            }
            if let checkpoint { try trainer.saveCheckpoint(to: checkpoint) }
            guard run.reports else { return }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if let plot {
                guard let metrics else { return }
                try? csv?.synchronize()
                try writeCurves(tables: [try MetricsTable(path: metrics)], names: [trainer.configuration.method.description],
                                title: "\(task.name) task, \(trainer.model.cell.rawValue) \(trainer.model.hiddenSize) units, \(trainer.configuration.method.description)",
                                to: plot)
            }
            guard let final = last ?? (steps == trainer.step ? nil : nil) else {
                printJSONLine(["task": task.name, "method": trainer.configuration.method.description, "steps": trainer.step,
                               "final_loss": Double.nan])
                return
            }
            guard final.loss.isFinite || final.loss.isNaN else { throw CommandFailure("training diverged (the loss is not finite)") }
            var fields: [(String, Any)] = [("task", task.name), ("method", trainer.configuration.method.description), ("steps", trainer.step),
                                           ("final_loss", final.loss), (final.metricName, final.metric), ("seconds", final.seconds)]
            for e in final.evaluations { fields.append((e.name, e.value)) }
            fields += run.summary()
            print("{" + fields.map { "\"\($0.0)\": \(jsonValue($0.1))" }.joined(separator: ", ") + "}")
        }
    }

    func makeTask() throws -> TrainingTask {
        switch task {
        case .copy: return CopyTask(streams: batch, seed: seed)
        case .add: return try AddTask(streams: batch, length: addLength, seed: seed)
        case .delay: return try DelayTask(streams: batch, lag: lag, seed: seed)
        case .text:
            if let text { return try TextTask(file: text, streams: batch) }
            return try TextTask(text: TextTask.builtInCorpus(), source: "the built-in corpus", streams: batch)
        }
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : "\(s)s"
}

func formatMetric(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e9 ? String(Int(v)) : String(format: "%.4f", v) }
