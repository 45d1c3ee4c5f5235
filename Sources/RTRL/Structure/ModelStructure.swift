/// The fixed structure of a model that every method shares: its parameter numbering and its
/// one-step dependency graph. Built once per model.
public struct ModelStructure: Sendable {
    /// The numbering of the core parameters θ, unit by unit.
    public let layout: ParameterLayout
    /// The unit graph A and the pattern of the one-step Jacobian D.
    public let graph: DependencyGraph

    /// The parameter numbering and dependency graph of a model's weight patterns.
    public init<Scalar>(_ model: Model<Scalar>) {
        let p = model.parameters
        layout = ParameterLayout(cell: model.cell, inputPattern: p.weightIH.pattern,
                                 recurrentPattern: p.weightHH.pattern, hiddenSize: model.hiddenSize)
        graph = DependencyGraph(cell: model.cell, recurrentPattern: p.weightHH.pattern, hiddenSize: model.hiddenSize)
    }

    /// The influence pattern of a SnAp order (or the exact closure) within a memory budget.
    public func influencePattern(_ order: InfluencePattern.Order, units: Range<Int>? = nil,
                                 memoryBudget: Int = Int.max) throws -> InfluencePattern {
        try InfluencePattern(graph: graph, layout: layout, order: order, units: units, memoryBudget: memoryBudget)
    }
}
