import ArgumentParser
import RTRL

struct PatternCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pattern", abstract: "Size and per-step work of a model's SnAp-N influence pattern.")

    @Option(help: "Model directory.") var model: String
    @Option(parsing: .unconditional, help: "SnAp order N ≥ 1, or 0 / inf for the exact closure.") var n: String

    func run() throws {
        try reporting {
            let order = try parseOrder(n)
            let m = try Model<Double>(directory: model)
            guard m.layerCount == 1 else {
                throw RTRLError.invalidOption("rtrl pattern does not count the SnAp patterns of stacked models (num_layers \(m.layerCount)) yet")
            }
            let structure = ModelStructure(m)
            let stats = try InfluencePattern.statistics(graph: structure.graph, layout: structure.layout, order: order)
            let nValue: Any = order == .exact ? "inf" : Int(n)!
            printJSONLine(["n": nValue, "units": m.hiddenSize, "parameters": structure.layout.count,
                           "influence_nonzeros": stats.nonzeros, "influence_bytes": stats.bytes,
                           "flops_per_step": stats.multiplyAddsPerStep])
        }
    }
}
