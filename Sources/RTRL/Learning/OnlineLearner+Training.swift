import Foundation

/// What a training loop needs from a learner: flat, allocation-free access to the gradient and
/// the parameters (in the order of `Parameters.flattened`), and exact snapshots of its state.
extension OnlineLearner {
    /// Number of values in `Parameters.flattened` (core and readout).
    public var flatParameterCount: Int { model.parameters.count }

    /// Writes the gradient accumulated since the last `resetGradient`, summed over streams, into
    /// `flat` (the order of `Parameters.flattened`). Allocates nothing. Throws, writing nothing,
    /// unless `flat` holds exactly ``flatParameterCount`` values.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func gradient(into flat: UnsafeMutableBufferPointer<Scalar>) throws {
        guard flat.count == flatParameterCount else {
            throw RTRLError.invalidInput("the flat gradient of this model has \(flatParameterCount) values, not \(flat.count)")
        }
        flat.update(repeating: 0)
        let offsets = flatOffsets
        if case .stacked(let stack) = tracker {
            stack.addGradient(into: flat)
            return
        }
        for index in streams.indices { addGradient(stream: index, into: flat, offsets: offsets) }
    }

    /// Writes stream b's part of the gradient accumulated since the last `resetGradient` into
    /// `flat` (the order of `Parameters.flattened`). Summed over b = 0, 1, … in that order,
    /// starting from zeros, these are ``gradient(into:)``'s numbers bit for bit (the order data
    /// parallelism over processes sums them in). Allocates nothing. Throws, writing nothing, for
    /// a stream out of range, a stacked model, or unless `flat` holds exactly
    /// ``flatParameterCount`` values.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func gradient(stream b: Int, into flat: UnsafeMutableBufferPointer<Scalar>) throws {
        guard flat.count == flatParameterCount else {
            throw RTRLError.invalidInput("the flat gradient of this model has \(flatParameterCount) values, not \(flat.count)")
        }
        guard b >= 0 && b < streamCount else { throw RTRLError.invalidInput("stream \(b) is outside 0..<\(streamCount)") }
        if case .stacked = tracker { throw RTRLError.invalidOption("a stacked model's gradient is read for all streams at once") }
        flat.update(repeating: 0)
        addGradient(stream: b, into: flat, offsets: flatOffsets)
    }

    private func addGradient(stream index: Int, into flat: UnsafeMutableBufferPointer<Scalar>, offsets: [Int]) {
        let layout = structure.layout, s = streams[index]
        core.withUnsafeMutableBufferPointer { core in
            for t in 0..<core.count { core[t] = s.coreGradient[t] }
            if case .sparse(let influence) = tracker { influence.addDeferredGradient(stream: index, into: core) }
            if let history = s.history, !history.records.isEmpty {
                history.backpropagate(weightHH: model.parameters.weightHH, into: core)
            }
            for t in 0..<layout.count {
                flat[layout.flatIndex(t, offsets: offsets)] += core[t]
            }
        }
        let w = offsets[5], b = offsets[6]
        for t in 0..<s.readoutWeightGradient.count { flat[w + t] += s.readoutWeightGradient[t] }
        for t in 0..<s.readoutBiasGradient.count { flat[b + t] += s.readoutBiasGradient[t] }
    }

    /// The hidden units whose influence blocks the learner holds: all of them, or a shard's.
    public var influenceUnits: Range<Int> { influencePattern?.units ?? 0..<model.hiddenSize }

    /// The flat positions (in the order of `Parameters.flattened`) of the core parameters of
    /// `units`, unit by unit in the parameter layout's order: where a shard's exact part of the
    /// gradient lies. Throws for units outside 0..<hiddenSize or a stacked model.
    public func flatIndices(ofUnits units: Range<Int>) throws -> [Int] {
        if case .stacked = tracker { throw RTRLError.invalidOption("a stacked model's parameters are not split by unit") }
        guard units.lowerBound >= 0, units.upperBound <= model.hiddenSize else {
            throw RTRLError.invalidInput("units \(units) are outside 0..<\(model.hiddenSize)")
        }
        let layout = structure.layout, offsets = flatOffsets
        return (Int(layout.unitStart[units.lowerBound])..<Int(layout.unitStart[units.upperBound])).map {
            layout.flatIndex($0, offsets: offsets)
        }
    }

    /// Replaces every parameter value from `flat` (the order of `Parameters.flattened`), in place.
    /// Throws, changing nothing, if a value is not finite or `flat` does not hold exactly
    /// ``flatParameterCount`` values.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    public func setParameters(flat: UnsafeBufferPointer<Scalar>) throws {
        guard flat.count == flatParameterCount else {
            throw RTRLError.invalidInput("the flat parameters of this model have \(flatParameterCount) values, not \(flat.count)")
        }
        for t in 0..<flat.count where !flat[t].isFinite {
            throw RTRLError.invalidInput("parameter \(t) of the update is not finite (\(flat[t])); the update was not applied")
        }
        // A stacked model's layer views share the model's arrays: drop them so the copies are in place.
        if case .stacked(let stack) = tracker { stack.releaseViews() }
        var offset = 0
        func copy(_ values: inout [Scalar]) {
            for t in 0..<values.count { values[t] = flat[offset + t] }
            offset += values.count
        }
        copy(&model.parameters.weightIH.values)
        copy(&model.parameters.weightHH.values)
        copy(&model.parameters.biasIH)
        copy(&model.parameters.biasHH)
        copy(&model.parameters.readoutWeight.values)
        copy(&model.parameters.readoutBias)
        copy(&model.parameters.threshold)
        if case .stacked(let stack) = tracker {
            for l in model.parameters.upperLayers.indices {
                copy(&model.parameters.upperLayers[l].weightIH.values)
                copy(&model.parameters.upperLayers[l].weightHH.values)
                copy(&model.parameters.upperLayers[l].biasIH)
                copy(&model.parameters.upperLayers[l].biasHH)
                copy(&model.parameters.upperLayers[l].threshold)
            }
            stack.refresh(from: model)
        }
    }

    /// Offsets in the flat order of: input weights, recurrent weights, input bias, recurrent bias,
    /// threshold (indexed by `ParameterLayout.Source.rawValue`), readout weight (5), readout bias (6).
    var flatOffsets: [Int] {
        let p = model.parameters
        let ih = 0, hh = ih + p.weightIH.nonzeroCount, bih = hh + p.weightHH.nonzeroCount
        let bhh = bih + p.biasIH.count, rw = bhh + p.biasHH.count, rb = rw + p.readoutWeight.values.count
        let th = rb + p.readoutBias.count
        return [ih, hh, bih, bhh, th, rw, rb]
    }
}

/// Everything that evolves in a learner, for checkpoints: restoring it into a learner built
/// the same way continues bit for bit.
public struct LearnerSnapshot<Scalar: SparseScalar>: Codable, Hashable, Sendable {
    struct Stream: Codable, Hashable, Sendable {
        var state: Packed<Scalar>
        var isInitial: Bool
        var coreGradient: Packed<Scalar>
        var readoutWeightGradient: Packed<Scalar>
        var readoutBiasGradient: Packed<Scalar>
        var influence: Packed<Scalar>?
        /// The scaled form's column scales and deferred gradient weights (absent otherwise).
        var influenceScale: Packed<Scalar>?
        var influencePending: Packed<Scalar>?
        var historyRecords: [StepRecord<Scalar>]?
        var historyWeights: [Packed<Scalar>]?
        var estimator: [Packed<Scalar>]?
    }
    var method: String
    /// The influence storage of sparse methods ("blocked" or "generic"; absent in older checkpoints).
    var layout: String?
    var stepCount: Int
    var streams: [Stream]
}

/// An array of scalars stored as raw bytes (exact, and compact in JSON as base64).
struct Packed<Scalar: SparseScalar>: Codable, Hashable, Sendable {
    var values: [Scalar]
    init(_ values: [Scalar]) { self.values = values }
    init(from decoder: Decoder) throws {
        let data = try decoder.singleValueContainer().decode(Data.self)
        guard data.count % MemoryLayout<Scalar>.stride == 0 else {
            throw RTRLError.invalidInput("a checkpoint array has a size that is not a whole number of values")
        }
        values = [Scalar](repeating: 0, count: data.count / MemoryLayout<Scalar>.stride)
        _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
    }
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values.withUnsafeBytes { Data($0) })
    }
}

extension OnlineLearner {
    /// The learner's evolving state (not its model or structure).
    public func snapshot() throws -> LearnerSnapshot<Scalar> {
        var result = LearnerSnapshot<Scalar>(method: method.description, stepCount: stepCount, streams: [])
        if case .stacked(let stack) = tracker {
            result.streams = (0..<streamCount).map { stack.save(stream: $0) }
            return result
        }
        if case .sparse(let influence) = tracker { result.layout = influence.storageName }
        for (b, s) in streams.enumerated() {
            var stream = LearnerSnapshot<Scalar>.Stream(
                state: Packed(s.state), isInitial: s.isInitial, coreGradient: Packed(s.coreGradient),
                readoutWeightGradient: Packed(s.readoutWeightGradient), readoutBiasGradient: Packed(s.readoutBiasGradient))
            switch tracker {
            case .sparse(let influence):
                let state = influence.saveState(stream: b)
                stream.influence = Packed(state.values)
                stream.influenceScale = state.scales.map { Packed($0) }
                stream.influencePending = state.pending.map { Packed($0) }
            case .dense(let influence): stream.influence = Packed(influence.streams[b].current)
            case .history, .stacked:
                stream.historyRecords = s.history?.records
                stream.historyWeights = s.history?.stateWeights.map { Packed($0) }
            case .estimator(let estimator): stream.estimator = try estimator.saveState(stream: b).map { Packed($0) }
            }
            result.streams.append(stream)
        }
        return result
    }

    /// Restores a snapshot taken from a learner built with the same model structure, method and
    /// number of streams.
    public func restore(_ snapshot: LearnerSnapshot<Scalar>) throws {
        guard snapshot.method == method.description, snapshot.streams.count == streamCount else {
            throw RTRLError.invalidInput("the checkpoint was taken with \(snapshot.method) on \(snapshot.streams.count) stream(s), not \(method) on \(streamCount)")
        }
        if case .stacked(let stack) = tracker {
            // Each stream is checked in full before it changes; a later stream's error leaves the
            // earlier ones restored, as for the single-layer state below.
            for b in 0..<streamCount { try stack.restore(stream: b, snapshot.streams[b]) }
            stepCount = snapshot.stepCount
            return
        }
        if case .sparse(let influence) = tracker {
            // Checkpoints written before the storage was named hold an unscaled, ungrouped order.
            let scaled = influence is ScaledInfluence<Scalar>
            let saved = snapshot.layout ?? (scaled ? "blocked (unnamed, from an older version)" : influence.storageName)
            guard saved == influence.storageName || (scaled && saved == ScaledInfluence<Scalar>.storageOrderName) else {
                throw RTRLError.invalidInput("the checkpoint's influence matrix is stored \(saved), but this learner's is \(influence.storageName) (the EGRU's scaled form is used when quiet units are skipped)")
            }
        }
        func check(_ a: Packed<Scalar>, _ count: Int, _ what: String) throws -> [Scalar] {
            guard a.values.count == count else {
                throw RTRLError.invalidInput("the checkpoint's \(what) has \(a.values.count) values, not \(count)")
            }
            return a.values
        }
        for (b, s) in streams.enumerated() {
            let saved = snapshot.streams[b]
            s.state = try check(saved.state, s.state.count, "state")
            s.isInitial = saved.isInitial
            s.coreGradient = try check(saved.coreGradient, s.coreGradient.count, "gradient")
            s.readoutWeightGradient = try check(saved.readoutWeightGradient, s.readoutWeightGradient.count, "readout gradient")
            s.readoutBiasGradient = try check(saved.readoutBiasGradient, s.readoutBiasGradient.count, "readout bias gradient")
            switch tracker {
            case .sparse(let influence):
                guard let values = saved.influence else { throw RTRLError.invalidInput("the checkpoint has no influence matrix") }
                try influence.restoreState(stream: b, InfluenceState(values: values.values, scales: saved.influenceScale?.values,
                                                                     pending: saved.influencePending?.values, order: snapshot.layout))
            case .dense(let influence):
                guard let values = saved.influence else { throw RTRLError.invalidInput("the checkpoint has no influence matrix") }
                influence.streams[b].current = try check(values, influence.streams[b].current.count, "influence matrix")
            case .history, .stacked:
                s.history?.records = saved.historyRecords ?? []
                s.history?.stateWeights = (saved.historyWeights ?? []).map { $0.values }
            case .estimator(let estimator):
                try estimator.restoreState(stream: b, (saved.estimator ?? []).map { $0.values })
            }
        }
        stepCount = snapshot.stepCount
    }
}

/// The blocks of the natural-gradient filter over every parameter of a model: one per hidden
/// unit of every layer (the parameters writing it, in its layer's `ParameterLayout` order), then
/// one per output class (its row of the readout weight, then its bias) — the unit-wise Fisher
/// blocks of every unit of the network, hidden and output, so that one learning rate serves all.
public struct NaturalGradientBlocks: Sendable, Hashable {
    /// Position t of the filter's numbering is parameter `flatIndex[t]` of `Parameters.flattened`.
    public let flatIndex: [Int]
    /// Block b holds positions `blockStarts[b] ..< blockStarts[b + 1]` (for
    /// ``NaturalGradientPreconditioner/init(blockStarts:options:memoryBudget:)``).
    public let blockStarts: [Int]
}

extension OnlineLearner {
    /// The natural-gradient filter's blocks over this model's parameters.
    public func naturalGradientBlocks() -> NaturalGradientBlocks {
        var index: [Int] = [], starts = [0]
        func addLayer(_ layout: ParameterLayout, _ offsets: [Int]) {
            let base = index.count
            for t in 0..<layout.count { index.append(layout.flatIndex(t, offsets: offsets)) }
            for u in layout.unitStart.dropFirst() { starts.append(base + Int(u)) }
        }
        let readoutOffsets: (weight: Int, bias: Int)
        if case .stacked(let stack) = tracker {
            for l in 0..<stack.layerCount { addLayer(stack.structures[l].layout, stack.flatOffsets[l]) }
            readoutOffsets = stack.flatReadout
        } else {
            let offsets = flatOffsets
            addLayer(structure.layout, offsets)
            readoutOffsets = (offsets[5], offsets[6])
        }
        let readout = model.parameters.readoutWeight, classes = readout.rowCount
        for c in 0..<classes {
            // The readout weight is column-major: class c's row is strided by the class count.
            for j in 0..<readout.columnCount { index.append(readoutOffsets.weight + c + j * classes) }
            index.append(readoutOffsets.bias + c)
            starts.append(index.count)
        }
        return NaturalGradientBlocks(flatIndex: index, blockStarts: starts)
    }
}
