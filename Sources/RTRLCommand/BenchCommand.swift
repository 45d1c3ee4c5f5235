import ArgumentParser
import RTRL

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks: the kernel layer alone, or whole online steps.",
        subcommands: [BenchProductCommand.self, BenchStepCommand.self])
}

/// Options that pick a model: a model directory, or a random RNN-shaped one.
struct ModelSource: ParsableArguments {
    @Option(help: "Model directory (default: a random model built from --cell, --rows, --density, --inputs, --seed).")
    var model: String?
    @Option(help: "Cell of the random model.") var cell: CellKind = .rnn
    @Option(help: "Units k of the random model.") var rows: Int = 512
    @Option(help: "Weight density of the random model.") var density: Double = 0.1
    @Option(help: "Inputs of the random model.") var inputs: Int = 16
    @Option(help: "Random seed (model and values).") var seed: UInt64 = 1
    @Option(help: "EGRU pseudo-derivative support of the random model (contract default 1.0; larger is narrower).")
    var support: Double?
    @Option(help: "EGRU pseudo-derivative dampening of the random model (default 0.7).") var dampening: Double?
    @Option(help: "Added to every EGRU threshold of the random model (raises or lowers activity).")
    var thresholdOffset: Double = 0
    @Option(help: "Stacked layers of the random model (num_layers).") var layers: Int = 1

    func load() throws -> Model<Double> {
        if let model { return try Model<Double>(directory: model) }
        let configuration = try ModelConfiguration(cell: cell, inputSize: inputs, hiddenSize: rows, outputSize: 4, layerCount: layers,
                                                   dampening: dampening, support: support)
        var model = try Model<Double>(random: configuration, density: density, seed: seed)
        if cell == .egru && thresholdOffset != 0 {
            var parameters = model.parameters
            parameters.threshold = parameters.threshold.map { $0 + thresholdOffset }
            for l in parameters.upperLayers.indices {
                parameters.upperLayers[l].threshold = parameters.upperLayers[l].threshold.map { $0 + thresholdOffset }
            }
            model = try Model(configuration: configuration, parameters: parameters)
        }
        return model
    }
}
