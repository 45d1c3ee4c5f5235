import ArgumentParser
import Foundation
import RTRL

struct GradCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad", abstract: "Gradient of a sequence's loss with respect to every parameter.")

    @Option(help: "Model directory.") var model: String
    @Option(help: "Sequence JSON: {\"inputs\": [[…], …], \"targets\": […]}.") var sequence: String
    @Option(help: "bptt, rtrl, rtrl-dense, snap-N, uoro, nobacktrack, kf-rtrl or ok-R.") var method: String
    @Option(help: "Write the gradient here as a model directory without config.json.") var out: String?
    @Option(help: "float64 or float32.") var precision: Precision = .float64
    @Option(help: "Seed of stochastic methods.") var seed: UInt64 = 0
    @Option(help: "Stochastic methods: write the mean of this many estimates (seeds seed, seed + 1, …).")
    var samples: Int = 1
    @Option(help: "Threads.") var threads: Int = 1
    @Option(help: "Influence storage for sparse methods: blocked (default) or generic.") var layout: String = "blocked"

    func run() throws {
        try reporting {
            let method = try GradientMethod(parsing: self.method)
            guard let layout = InfluenceLayout(rawValue: layout) else {
                throw CommandFailure("--layout must be blocked or generic, not '\(self.layout)'")
            }
            guard samples >= 1 else { throw CommandFailure("--samples must be at least 1, not \(samples)") }
            guard samples == 1 || method.isStochastic else {
                throw CommandFailure("--samples averages estimates of a stochastic method; \(method) is deterministic")
            }
            guard seed <= UInt64.max - UInt64(samples - 1) else { throw CommandFailure("--seed + --samples overflows") }
            let model = try Model<Double>(directory: self.model)
            let sequence = try LabelledSequence(file: self.sequence, inputSize: model.inputSize, outputSize: model.outputSize)
            let start = Stopwatch.now()
            var loss = 0.0
            var gradient = model.parameters.zeros()
            var sum = [Double](repeating: 0, count: gradient.count)
            for s in 0..<samples {
                let estimate: Parameters<Double>
                switch precision {
                case .float64:
                    let result = try SequenceGradient(model: model, sequence: sequence, method: method, threads: threads,
                                                      layout: layout, seed: seed + UInt64(s))
                    (loss, estimate) = (result.loss, result.gradient)
                case .float32:
                    let result = try SequenceGradient(model: model.converted(to: Float.self), sequence: sequence, method: method,
                                                      threads: threads, layout: layout, seed: seed + UInt64(s))
                    (loss, estimate) = (result.loss, result.gradient.converted(to: Double.self))
                }
                if samples == 1 {
                    gradient = estimate
                } else {
                    for (t, value) in estimate.flattened.enumerated() { sum[t] += value }
                }
            }
            if samples > 1 { try gradient.setFlattened(sum.map { $0 / Double(samples) }) }
            let seconds = Stopwatch.now() - start
            guard loss.isFinite, gradient.isFinite else {
                throw CommandFailure("the gradient is not finite (the model or sequence overflows in \(precision.rawValue))")
            }
            if let out {
                // Gradient files take the model's names (a single layer read from `_l0` files keeps them).
                try writeGradient(gradient, cell: model.cell, to: out, layerSuffixes: try Model<Double>.usesLayerSuffixes(directory: self.model))
            }
            if samples > 1 {
                printJSONLine(["loss": loss, "steps": sequence.count, "method": method.description, "samples": samples,
                               "seconds": seconds])
            } else {
                printJSONLine(["loss": loss, "steps": sequence.count, "method": method.description, "seconds": seconds])
            }
        }
    }
}

/// Writes gradient files into `directory` (created if missing): all files are written into a
/// hidden sibling folder first and then renamed over the old ones, so a failure leaves the old
/// files in place.
func writeGradient(_ gradient: Parameters<Double>, cell: CellKind, to directory: String, layerSuffixes: Bool = false) throws {
    let fm = FileManager.default
    do {
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
        throw CommandFailure("cannot create the output directory \(directory)")
    }
    let staging = URL(fileURLWithPath: directory).appendingPathComponent(".partial-\(ProcessInfo.processInfo.processIdentifier)")
    defer { try? fm.removeItem(at: staging) }
    do {
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
    } catch {
        throw CommandFailure("cannot write into the output directory \(directory)")
    }
    try Model.writeTensors(gradient, cell: cell, to: staging.path, layerSuffixes: layerSuffixes)
    for name in try fm.contentsOfDirectory(atPath: staging.path) {
        let target = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        guard rename(staging.appendingPathComponent(name).path, target) == 0 else {
            throw CommandFailure("cannot replace \(target)")
        }
    }
}
