/// Builds the estimator of a stochastic method (<doc:GradientMethodsAndEstimators>): UORO,
/// NoBackTrack, KF-RTRL and OK rank r, for every cell. Stream b draws its random numbers from its
/// own generator, seeded from `seed` and b.
func makeEstimator<Scalar: SparseScalar>(method: GradientMethod, model: Model<Scalar>, structure: ModelStructure,
                                         streams: Int, seed: UInt64, memoryBudget: Int) throws -> InfluenceEstimator<Scalar> {
    switch method {
    case .uoro:
        return try UOROEstimator(model: model, structure: structure, streams: streams, seed: seed, memoryBudget: memoryBudget)
    case .noBackTrack:
        return try NoBackTrackEstimator(model: model, structure: structure, streams: streams, seed: seed, memoryBudget: memoryBudget)
    case .kfRTRL:
        return try KroneckerEstimator(reduction: .kfRTRL, model: model, structure: structure, streams: streams, seed: seed,
                                      memoryBudget: memoryBudget)
    case .ok(let r):
        return try KroneckerEstimator(reduction: .optimal(rank: r), model: model, structure: structure, streams: streams,
                                      seed: seed, memoryBudget: memoryBudget)
    default:
        throw RTRLError.invalidOption("the method \(method) is not a stochastic estimator")
    }
}
