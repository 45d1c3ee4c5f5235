import ArgumentParser
import RTRL

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Write a new model directory with random sparse weights.")

    @Option(help: "Cell: rnn, gru, lstm or egru.") var cell: CellKind
    @Option(help: "Input size n.") var inputs: Int
    @Option(help: "Hidden size k.") var hidden: Int
    @Option(help: "Output size o.") var outputs: Int
    @Option(help: "Stacked layers L (num_layers), each of --hidden units.") var layers: Int = 1
    @Option(help: "Density of the weight masks, in (0, 1].") var density: Double = 1
    @Flag(help: "Draw each gate block's mask separately (default: one mask shared by all gates).")
    var independentGateMasks = false
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "The directory to create (must be absent or empty).") var out: String

    func run() throws {
        try reporting {
            let configuration = try ModelConfiguration(cell: cell, inputSize: inputs, hiddenSize: hidden, outputSize: outputs,
                                                       layerCount: layers)
            let model = try Model<Double>(random: configuration, density: density,
                                          independentGateMasks: independentGateMasks, seed: seed)
            try model.write(toNewDirectory: out)
            let recurrent = model.parameters.weightHH.nonzeroCount + model.parameters.upperLayers.reduce(0) { $0 + $1.weightHH.nonzeroCount }
            if layers > 1 {
                printJSONLine(["model": out, "cell": cell.rawValue, "layers": layers, "parameters": model.parameters.count,
                               "recurrent_nonzeros": recurrent])
            } else {
                printJSONLine(["model": out, "cell": cell.rawValue, "parameters": model.parameters.count, "recurrent_nonzeros": recurrent])
            }
        }
    }
}
