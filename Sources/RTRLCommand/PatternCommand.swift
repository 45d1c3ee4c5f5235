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
            let nValue: Any = order == .exact ? "inf" : Int(n)!
            if m.layerCount > 1 {
                let pattern = try StackedInfluencePattern(model: m, order: order)
                printJSONLine(["n": nValue, "units": m.layerCount * m.hiddenSize, "layers": m.layerCount,
                               "parameters": m.parameters.count - m.parameters.readoutWeight.values.count - m.parameters.readoutBias.count,
                               "influence_nonzeros": pattern.nonzeros, "influence_bytes": pattern.bytes,
                               "flops_per_step": pattern.multiplyAddsPerStep])
                return
            }
            let structure = ModelStructure(m)
            let stats = try InfluencePattern.statistics(graph: structure.graph, layout: structure.layout, order: order)
            printJSONLine(["n": nValue, "units": m.hiddenSize, "parameters": structure.layout.count,
                           "influence_nonzeros": stats.nonzeros, "influence_bytes": stats.bytes,
                           "flops_per_step": stats.multiplyAddsPerStep])
        }
    }
}
