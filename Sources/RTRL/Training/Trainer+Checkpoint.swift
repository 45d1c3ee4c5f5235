import Foundation

/// Checkpoints: the model directory (for people and other tools) plus `trainer.json`, which holds
/// everything that evolves — exact parameters, optimiser moments, the learner's state and
/// influence, the task's generators and positions, counters — so that resuming continues bit for
/// bit. A checkpoint is written into a temporary sibling directory and renamed into place; the
/// previous checkpoint is replaced only once the new one is complete.
extension Trainer {
    struct Saved: Codable {
        var version = 1
        /// "float64" or "float32" (absent in checkpoints written before the trainer was generic: float64).
        var precision: String?
        var configuration: TrainingConfiguration
        var model: ModelConfiguration
        var task: String
        var taskState: Data
        var step: Int
        var stepsSinceUpdate: Int
        var lossSum: Double
        var lossCount: Int
        var lastGradientNorm: Double
        var parameters: Packed<Scalar>
        var optimizer: Optimizer<Scalar>
        var learner: LearnerSnapshot<Scalar>
        var preconditioner: NaturalGradientPreconditioner.State?
    }

    /// Writes a checkpoint to `directory` atomically (write, then rename into place). In a split
    /// run every process calls it: the parts' snapshots are joined into the whole run's, and only
    /// the process the exchange names writes, so the checkpoint is the one a single process
    /// would have written.
    public func saveCheckpoint(to directory: String) throws {
        let learnerSnapshot: LearnerSnapshot<Scalar>
        if let exchange {
            guard let whole = try exchange.checkpointSnapshot(of: learner) else { return }
            learnerSnapshot = whole
        } else {
            learnerSnapshot = try learner.snapshot()
        }
        let fm = FileManager.default
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        let parent = url.deletingLastPathComponent()
        let temporary = parent.appendingPathComponent(".\(url.lastPathComponent).writing-\(ProcessInfo.processInfo.processIdentifier)")
        let previous = parent.appendingPathComponent(".\(url.lastPathComponent).previous-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: temporary)
        do {
            try model.converted(to: Double.self).write(toNewDirectory: temporary.path)
            try afterCheckpointFile?("model")
            let saved = Saved(precision: Scalar.precisionName, configuration: configuration, model: model.configuration, task: task.name,
                              taskState: try task.saveState(), step: step, stepsSinceUpdate: stepsSinceUpdate,
                              lossSum: lossSum, lossCount: lossCount, lastGradientNorm: lastGradientNorm,
                              parameters: Packed(model.parameters.flattened), optimizer: optimizer,
                              learner: learnerSnapshot, preconditioner: preconditioner?.saveState())
            try JSONEncoder().encode(saved).write(to: temporary.appendingPathComponent("trainer.json"))
            try afterCheckpointFile?("trainer.json")
        } catch EncodingError.invalidValue(let value, let context) {
            // JSON has no infinities or NaNs: a run whose state is no longer finite has diverged.
            try? fm.removeItem(at: temporary)
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            throw RTRLError.invalidOption("cannot write the checkpoint \(directory): the trainer's state holds \(value) at \(path.isEmpty ? "its top level" : String(path.dropFirst())), which is not finite (the run has diverged); nothing was written")
        } catch {
            try? fm.removeItem(at: temporary)
            throw RTRLError.invalidOption("cannot write the checkpoint \(directory): \(Model.describe(error))")
        }
        // Swap: the old checkpoint is moved aside, the new one renamed in, the old one removed.
        if fm.fileExists(atPath: url.path) {
            try? fm.removeItem(at: previous)
            guard rename(url.path, previous.path) == 0 else {
                try? fm.removeItem(at: temporary)
                throw RTRLError.invalidOption("cannot replace the checkpoint \(directory)")
            }
        }
        guard rename(temporary.path, url.path) == 0 else {
            _ = rename(previous.path, url.path)
            throw RTRLError.invalidOption("cannot move the new checkpoint into \(directory)")
        }
        try? fm.removeItem(at: previous)
    }

    /// Resumes from a checkpoint with the task it was written for (built with the same
    /// settings: its state is restored from the checkpoint). `Scalar` must be the precision the
    /// checkpoint was written in; another precision is refused.
    ///
    /// A process of a split run resumes with its `partition` and `exchange`; the checkpoint may
    /// have been written by a run split another way, or not split.
    public convenience init(resumingFrom directory: String, task: TrainingTask, partition: TrainingPartition = .whole,
                            exchange: (any TrainingExchange<Scalar>)? = nil,
                            memoryBudget: Int = MaskedProductPlan.defaultMemoryBudget) throws {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("trainer.json").path
        guard let data = FileBytes.data(path) else {
            throw RTRLError.invalidInput("\(directory) is not a checkpoint (no trainer.json)")
        }
        // The precision first: the arrays of a checkpoint in the other precision do not decode.
        let precision = (try? JSONDecoder().decode(CheckpointHeader.self, from: data))?.precision ?? Double.precisionName
        guard precision == Scalar.precisionName else {
            throw RTRLError.invalidInput("the checkpoint holds \(precision) values; resume it with that precision, not \(Scalar.precisionName)")
        }
        let saved: Saved
        do { saved = try JSONDecoder().decode(Saved.self, from: data) } catch {
            throw RTRLError.invalidInput("\(path) is not a readable checkpoint")
        }
        guard saved.task == task.name else {
            throw RTRLError.invalidInput("the checkpoint was written for the \(saved.task) task, not \(task.name)")
        }
        var model = try Model<Double>(directory: directory).converted(to: Scalar.self)
        guard model.configuration == saved.model else {
            throw RTRLError.invalidInput("the checkpoint's model files disagree with its trainer.json")
        }
        var parameters = model.parameters
        guard saved.parameters.values.count == parameters.count else {
            throw RTRLError.invalidInput("the checkpoint's parameters do not fit its model")
        }
        try parameters.setFlattened(saved.parameters.values)
        model = try Model(configuration: saved.model, parameters: parameters)
        try self.init(model: model, task: task, configuration: saved.configuration, partition: partition, exchange: exchange,
                      memoryBudget: memoryBudget)
        try task.restoreState(saved.taskState)
        try learner.restore(saved.learner, partition: partition)
        optimizer = saved.optimizer
        if let state = saved.preconditioner { try preconditioner?.restore(state) }
        step = saved.step
        stepsSinceUpdate = saved.stepsSinceUpdate
        lossSum = saved.lossSum
        lossCount = saved.lossCount
        lastGradientNorm = saved.lastGradientNorm
    }
}

extension Trainer {
    /// The model (its structure and the parameters of its model files) and the gradient method of
    /// a checkpoint, read without resuming it: what a split run needs to plan its parts before
    /// each process resumes.
    public static func savedModelAndMethod(in directory: String) throws -> (model: Model<Double>, method: GradientMethod) {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("trainer.json").path
        guard let data = FileBytes.data(path) else {
            throw RTRLError.invalidInput("\(directory) is not a checkpoint (no trainer.json)")
        }
        let settings: CheckpointSettings
        do { settings = try JSONDecoder().decode(CheckpointSettings.self, from: data) } catch {
            throw RTRLError.invalidInput("\(path) is not a readable checkpoint")
        }
        return (try Model<Double>(directory: directory), settings.configuration.method)
    }
}

/// The settings in `trainer.json`, read without the rest.
private struct CheckpointSettings: Decodable {
    var configuration: TrainingConfiguration
}

/// The part of `trainer.json` read before the rest: the precision of its arrays.
private struct CheckpointHeader: Decodable {
    var precision: String?
}
