// MUST NOT COMPILE (Swift 6 language mode): one OnlineLearner shared by two concurrent tasks.
//
// An OnlineLearner holds mutable state (the recurrent state, the influence matrix, the
// accumulated gradient) and is a class that is not Sendable, so two tasks stepping the same
// learner would race. The compiler refuses to let it be captured by a closure that runs in two
// tasks at once:
//
//     error: capture of 'learner' with non-Sendable type 'OnlineLearner<Double>' in a
//     '@Sendable' closure
//
// (Writing `group.addTask { try learner.step(…) }` twice is refused as well, by region-based
// isolation: "passing closure as a 'sending' parameter risks causing data races".)
// Give each task its own learner instead, as Examples/Consumer does, and send the results back:
// Model, Parameters and losses are Sendable values.
import RTRL

/// Calls `body` from two concurrent tasks. A closure called from several tasks at once must be
/// `@Sendable`: it may capture only Sendable values.
func inTwoTasks(_ body: @escaping @Sendable () throws -> Double) async throws -> [Double] {
    try await withThrowingTaskGroup(of: Double.self) { group in
        for _ in 0..<2 {
            group.addTask { try body() }
        }
        var losses: [Double] = []
        for try await loss in group { losses.append(loss) }
        return losses
    }
}

@main
struct SharingLearner {
    static func main() async throws {
        let config = try ModelConfiguration(cell: .gru, inputSize: 4, hiddenSize: 16, outputSize: 4)
        let model = try Model<Double>(random: config, density: 0.25, seed: 1)
        let learner = try OnlineLearner(model: model, method: .snap(2))
        let losses = try await inTwoTasks {
            try learner.step(inputs: [0.1, -0.3, 0.7, 0.0], targets: [2])  // refused: the learner is not Sendable
        }
        print(losses, learner.gradient().count)
    }
}
