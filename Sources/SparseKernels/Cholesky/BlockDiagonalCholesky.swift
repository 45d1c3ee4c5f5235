internal import CSparseKernels

/// A dense Cholesky factorisation A = UᵀU of a block-diagonal symmetric positive definite
/// matrix, block by block, for blocks small enough to be dense (a few to a few hundred rows).
///
/// **Storage.** Block b spans rows and columns `blockStarts[b] ..< blockStarts[b + 1]`; its upper
/// triangle is packed by columns (local column c holds rows 0 … c of the block, the diagonal
/// last), blocks one after another. That is the order of the block-diagonal upper triangle's
/// entries in compressed sparse columns, so the same values describe a `SparseMatrix` on
/// ``upperPattern``.
///
/// **Cost.** `factorize` does Σ f_b³/6 multiply-adds (right-looking, in a dense square of the
/// largest block: f² more values); `solve` 2·Σ f_b²/2 multiply-adds. Nothing is allocated after
/// the initialiser. Where `SparseCholesky` spends its time in CHOLMOD's general sparse machinery for
/// such matrices, this is the dense kernel they call for.
///
/// One instance is not safe to use from two threads at once (it owns its factor).
public final class BlockDiagonalCholesky {
    /// Block b spans `blockStarts[b] ..< blockStarts[b + 1]`.
    public let blockStarts: [Int]
    /// n, for an n × n matrix.
    public let dimension: Int
    /// Values of the packed upper triangles: Σ f_b(f_b + 1)/2.
    public let valueCount: Int
    /// Whether the last `factorize` succeeded.
    public private(set) var isFactorized = false

    private let starts: [Int32]
    private var factor: [Double]
    /// A dense square of the largest block, for the factorisation.
    private var work: [Double]

    /// Blocks with these starts (0 first, strictly increasing; the last is n).
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` for starts that do not begin at 0 or do not
    ///   strictly increase, or no block; `.indexOverflow` past Int32 rows.
    public init(blockStarts: [Int]) throws {
        guard let first = blockStarts.first, first == 0, blockStarts.count >= 2,
              zip(blockStarts, blockStarts.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw SparseKernelsError.invalidArgument(
                "block starts must begin at 0 and strictly increase, with at least one block, not \(blockStarts.prefix(8))…")
        }
        guard blockStarts.last! <= Int(Int32.max) else {
            throw SparseKernelsError.indexOverflow("a block-diagonal matrix of \(blockStarts.last!) rows exceeds Int32 indices")
        }
        self.blockStarts = blockStarts
        dimension = blockStarts.last!
        let sizes = Self.allocatedValues(blockStarts: blockStarts)
        valueCount = sizes.factor
        starts = blockStarts.map { Int32($0) }
        factor = [Double](repeating: 0, count: sizes.factor)
        work = [Double](repeating: 0, count: sizes.square)
    }

    /// The doubles an instance with these block starts (0 first, strictly increasing) allocates:
    /// its factor, Σ f_b(f_b + 1)/2 (= ``valueCount``), and the square of the largest block the
    /// factorisation works in, f_max² — for checking a memory budget before building one.
    public static func allocatedValues(blockStarts: [Int]) -> (factor: Int, square: Int) {
        var factor = 0, largest = 0
        for (start, end) in zip(blockStarts, blockStarts.dropFirst()) {
            let f = end - start
            factor += f * (f + 1) / 2
            largest = max(largest, f)
        }
        return (factor, largest * largest)
    }

    /// The pattern of the stored values: every block's upper triangle with its diagonal.
    public var upperPattern: SparsityPattern {
        var pointers = [Int32](repeating: 0, count: dimension + 1), rows = [Int32]()
        rows.reserveCapacity(valueCount)
        for b in 0..<(blockStarts.count - 1) {
            for j in blockStarts[b]..<blockStarts[b + 1] {
                for i in blockStarts[b]...j { rows.append(Int32(i)) }
                pointers[j + 1] = Int32(rows.count)
            }
        }
        return try! SparsityPattern(rowCount: dimension, columnCount: dimension, columnPointers: pointers, rowIndices: rows)
    }

    /// Factorises the matrix whose packed upper triangles are `values`.
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` for a wrong count or a non-finite value, or
    ///   if the matrix is not positive definite (naming the column where the factorisation broke
    ///   down; the factor is then unusable until the next successful `factorize`).
    public func factorize(values: UnsafeBufferPointer<Double>) throws {
        guard values.count == valueCount else {
            throw SparseKernelsError.invalidArgument("\(blockStarts.count - 1) packed blocks need \(valueCount) values, not \(values.count)")
        }
        for p in 0..<values.count where !values[p].isFinite {
            throw SparseKernelsError.invalidArgument("value \(p) of the matrix to factorise is not finite (\(values[p]))")
        }
        isFactorized = false
        let broken = factor.withUnsafeMutableBufferPointer { u -> Int64 in
            _ = u.update(fromContentsOf: values)
            return starts.withUnsafeBufferPointer { s in
                work.withUnsafeMutableBufferPointer { sk_packchol_factor_f64(Int32(s.count - 1), s.baseAddress!, u.baseAddress!, $0.baseAddress!) }
            }
        }
        guard broken < 0 else {
            throw SparseKernelsError.invalidArgument(
                "the \(dimension) × \(dimension) block-diagonal matrix is not positive definite (the factorisation broke down at column \(broken))")
        }
        isFactorized = true
    }

    /// `factorize(values:)` for an array.
    public func factorize(values: [Double]) throws {
        try values.withUnsafeBufferPointer { try factorize(values: $0) }
    }

    /// x = A⁻¹ b with the last factorisation (`b` and `x` may be the same memory).
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` without a successful factorisation;
    ///   `.shapeMismatch` for vectors of the wrong length.
    public func solve(_ b: UnsafeBufferPointer<Double>, into x: UnsafeMutableBufferPointer<Double>) throws {
        guard isFactorized else { throw SparseKernelsError.invalidArgument("solve needs a successful factorize first") }
        guard b.count == dimension, x.count == dimension else {
            throw SparseKernelsError.shapeMismatch("a solve with a \(dimension) × \(dimension) matrix needs vectors of \(dimension), not \(b.count) and \(x.count)")
        }
        factor.withUnsafeBufferPointer { u in
            starts.withUnsafeBufferPointer { s in
                sk_packchol_solve_f64(Int32(s.count - 1), s.baseAddress!, u.baseAddress!, b.baseAddress!, x.baseAddress!)
            }
        }
    }

    /// `solve(_:into:)` for arrays.
    public func solve(_ b: [Double]) throws -> [Double] {
        var x = [Double](repeating: 0, count: dimension)
        try b.withUnsafeBufferPointer { bv in try x.withUnsafeMutableBufferPointer { try solve(bv, into: $0) } }
        return x
    }
}
