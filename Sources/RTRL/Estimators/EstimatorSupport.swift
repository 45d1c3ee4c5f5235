import Foundation

/// Small helpers shared by the stochastic estimators (UORO, NoBackTrack, KF-RTRL, OK).
enum EstimatorSupport {
    /// Stream b's random generator: determined by the learner's seed and b only, so results do
    /// not depend on how streams are spread over threads.
    static func generator(seed: UInt64, stream b: Int) -> SeededGenerator {
        SeededGenerator(seed: seed &+ UInt64(b) &* 0x9E37_79B9_7F4A_7C15 &+ 0xD1B5_4A32_D192_ED03)
    }

    /// The seed whose stream b draws what stream `first` + b of `seed` draws (a learner holding
    /// streams first, first + 1, … of a larger run): `generator(seed:stream:)` is linear in b.
    static func seed(_ seed: UInt64, firstStream first: Int) -> UInt64 {
        seed &+ UInt64(first) &* 0x9E37_79B9_7F4A_7C15
    }

    /// The small constant ε of the variance-reducing scalings ρ = √((‖a‖ + ε)/(‖b‖ + ε)): it keeps
    /// ρ finite and positive when a factor vanishes (at the first step, or for a silent unit).
    /// Any positive ρ keeps the estimates unbiased; ε only matters when a norm is near zero.
    static let epsilon = 1e-7

    /// √((a + ε)/(b + ε)) for norms a, b.
    @inline(__always)
    static func scaling(_ a: Double, _ b: Double) -> Double { ((a + epsilon) / (b + epsilon)).squareRoot() }

    /// For every unit j, the index of its EGRU threshold ϑ_j among the parameters (−1 if it has
    /// none); empty for the other cells.
    static func thresholdParameters(_ layout: ParameterLayout) -> [Int32] {
        guard layout.cell == .egru else { return [] }
        var parameter = [Int32](repeating: -1, count: layout.hiddenSize)
        for t in 0..<layout.count where layout.source[t] == .threshold { parameter[Int(layout.storage[t])] = Int32(t) }
        return parameter
    }

    /// Σ x², accumulated in Double.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func squaredNorm<Scalar: SparseScalar>(_ x: UnsafeBufferPointer<Scalar>) -> Double {
        var sum = 0.0
        for v in x { let d = Double(v); sum += d * d }
        return sum
    }

    /// Σ x·y, accumulated in Double.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func dot<Scalar: SparseScalar>(_ x: UnsafeBufferPointer<Scalar>, _ y: UnsafeBufferPointer<Scalar>) -> Double {
        var sum = 0.0
        for i in 0..<x.count { sum += Double(x[i]) * Double(y[i]) }
        return sum
    }

    /// Checks that the estimate of `streams` streams, `bytesPerStream` each, fits the budget.
    static func checkBudget(_ what: String, streams: Int, bytesPerStream: Int, budget: Int) throws {
        let (needed, overflow) = streams.multipliedReportingOverflow(by: bytesPerStream)
        guard !overflow, needed <= budget else {
            throw RTRLError.tooLarge(what: "the \(what) estimates of \(streams) stream(s)",
                                     neededBytes: overflow ? Int.max : needed, budgetBytes: budget)
        }
    }
}

/// A generator's state as scalars, 16 bits per value (exact in Float and Double), for checkpoints.
func packGenerator<Scalar: SparseScalar>(_ generator: SeededGenerator) -> [Scalar] {
    generator.state.flatMap { word in (0..<4).map { Scalar(Double((word >> (16 * UInt64($0))) & 0xFFFF)) } }
}

func unpackGenerator<Scalar: SparseScalar>(_ values: [Scalar]) throws -> SeededGenerator {
    guard values.count == 16 else { throw RTRLError.invalidInput("the checkpoint's random generator state is malformed") }
    let words = (0..<4).map { w in
        (0..<4).reduce(UInt64(0)) { $0 | (UInt64(Double(values[4 * w + $1])) << (16 * UInt64($1))) }
    }
    return try SeededGenerator(state: words)
}

/// Checks a restored array's length.
func restored<Scalar>(_ values: [Scalar], count: Int, _ what: String) throws -> [Scalar] {
    guard values.count == count else {
        throw RTRLError.invalidInput("the checkpoint's \(what) has \(values.count) values, not \(count)")
    }
    return values
}
