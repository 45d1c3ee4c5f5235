/// The gradient of a whole sequence's loss with the weights held fixed (what `rtrl grad` reports).
public struct SequenceGradient<Scalar: SparseScalar> {
    /// The total loss: the sum over the steps with a target of the cross-entropy (in nats).
    public var loss: Double
    /// The gradient of `loss` with respect to every parameter, in the model's tensor shapes.
    public var gradient: Parameters<Scalar>

    /// Runs `method` over the sequence from the zero state and returns the total loss and its
    /// gradient with respect to every parameter.
    public init(model: Model<Scalar>, sequence: LabelledSequence, method: GradientMethod, threads: Int = 1,
                layout: InfluenceLayout = .unitBlocked, skipsQuietUnits: Bool = true, seed: UInt64 = 0,
                memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        let learner = try OnlineLearner(model: model, method: method, threads: threads, layout: layout,
                                        skipsQuietUnits: skipsQuietUnits, memoryBudget: memoryBudget, seed: seed)
        var loss = 0.0
        for t in 0..<sequence.count {
            loss += try learner.step(inputs: sequence.inputs[t].map { Scalar($0) }, targets: [sequence.targets[t]])
        }
        self.loss = loss
        self.gradient = learner.gradient()
    }
}
