import SparseKernels
import XCTest

/// The packed block-diagonal Cholesky against a textbook dense Cholesky–Banachiewicz
/// factorisation written here, on the whole (dense) matrix, and the solves against the matrix
/// itself (A x = b), on awkward block shapes.
final class BlockDiagonalCholeskyTests: XCTestCase {
    /// A random SPD block-diagonal matrix: dense n × n values (zero between blocks) and its
    /// packed upper triangles in the type's order.
    private func randomMatrix(_ starts: [Int], seed: UInt64) -> (dense: [[Double]], packed: [Double]) {
        var rng = SeededGenerator(seed: seed)
        let n = starts.last!
        var dense = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        var packed: [Double] = []
        for b in 0..<(starts.count - 1) {
            let r = starts[b]..<starts[b + 1], f = r.count
            // G Gᵀ + f·I with G random: SPD and moderately conditioned.
            let g = (0..<f).map { _ in (0..<f).map { _ in rng.nextGaussian() } }
            for i in 0..<f {
                for j in 0..<f {
                    var s = i == j ? Double(f) : 0
                    for k in 0..<f { s += g[i][k] * g[j][k] }
                    dense[r.lowerBound + i][r.lowerBound + j] = s
                }
            }
            for j in 0..<f { for i in 0...j { packed.append(dense[r.lowerBound + i][r.lowerBound + j]) } }
        }
        return (dense, packed)
    }

    /// Lower-triangular L with A = L Lᵀ, row by row (L = Uᵀ).
    private func textbookCholesky(_ a: [[Double]]) -> [[Double]] {
        let n = a.count
        var l = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n {
            for j in 0...i {
                var s = a[i][j]
                for k in 0..<j { s -= l[i][k] * l[j][k] }
                l[i][j] = i == j ? s.squareRoot() : s / l[j][j]
            }
        }
        return l
    }

    func testFactorAndSolveMatchTheDenseReference() throws {
        for (index, starts) in [[0, 1], [0, 5], [0, 1, 2, 3], [0, 3, 4, 11, 12, 25], [0, 40, 41, 97]].enumerated() {
            let (dense, packed) = randomMatrix(starts, seed: UInt64(index + 1))
            let cholesky = try BlockDiagonalCholesky(blockStarts: starts)
            XCTAssertEqual(cholesky.valueCount, packed.count)
            XCTAssertEqual(BlockDiagonalCholesky.allocatedValues(blockStarts: starts).factor, packed.count)
            XCTAssertEqual(cholesky.upperPattern.nonzeroCount, packed.count)
            try cholesky.factorize(values: packed)
            let n = starts.last!
            // The factor, through solves with unit vectors: U⁻ᵀ is not exposed, so compare
            // A⁻¹ e_j with the textbook factor's (L Lᵀ)⁻¹ e_j by forward and back substitution.
            let l = textbookCholesky(dense)
            var rng = SeededGenerator(seed: 99)
            let b = (0..<n).map { _ in rng.nextGaussian() }
            let x = try cholesky.solve(b)
            var y = [Double](repeating: 0, count: n), reference = y
            for i in 0..<n { var s = b[i]; for k in 0..<i { s -= l[i][k] * y[k] }; y[i] = s / l[i][i] }
            for i in stride(from: n - 1, through: 0, by: -1) {
                var s = y[i]; for k in (i + 1)..<n { s -= l[k][i] * reference[k] }; reference[i] = s / l[i][i]
            }
            let scale = reference.map(abs).max()!
            XCTAssertLessThanOrEqual(zip(x, reference).map { abs($0 - $1) }.max()! / scale, 1e-12, "\(starts)")
            // And the residual against A itself.
            for i in 0..<n {
                let ax = (0..<n).reduce(0.0) { $0 + dense[i][$1] * x[$1] }
                XCTAssertEqual(ax, b[i], accuracy: 1e-10 * max(1, abs(b[i])), "\(starts) row \(i)")
            }
            // In place: x and b the same memory.
            var inPlace = b
            try inPlace.withUnsafeMutableBufferPointer { v in try cholesky.solve(UnsafeBufferPointer(v), into: v) }
            XCTAssertEqual(inPlace, x, "\(starts)")
        }
    }

    func testRefusalsAndBreakdown() throws {
        for bad in [[], [0], [1, 2], [0, 2, 2], [0, 3, 1]] {
            XCTAssertThrowsError(try BlockDiagonalCholesky(blockStarts: bad), "\(bad)")
        }
        let cholesky = try BlockDiagonalCholesky(blockStarts: [0, 1, 3])
        XCTAssertThrowsError(try cholesky.solve([1, 2, 3]), "no factor yet")
        XCTAssertThrowsError(try cholesky.factorize(values: [1, 2, 3]), "wrong count")
        XCTAssertThrowsError(try cholesky.factorize(values: [1, 2, .nan, 3]), "not finite")
        // Block 1 = [[1, 2], [2, 1]] is indefinite: the factorisation breaks down at column 2.
        XCTAssertThrowsError(try cholesky.factorize(values: [4, 1, 2, 1])) { error in
            XCTAssertTrue("\(error)".contains("column 2"), "\(error)")
        }
        XCTAssertFalse(cholesky.isFactorized)
        XCTAssertThrowsError(try cholesky.solve([1, 2, 3]), "a failed factorisation leaves no factor")
        // Blocks of 3, 1 and 7: 6 + 1 + 28 packed values, and a 7 × 7 square for the factorisation.
        XCTAssertTrue(BlockDiagonalCholesky.allocatedValues(blockStarts: [0, 3, 4, 11]) == (35, 49))
        // Diagonal blocks: A = diag(4, 9, 16) gives x = b ./ diag.
        let diagonal = try BlockDiagonalCholesky(blockStarts: [0, 1, 2, 3])
        try diagonal.factorize(values: [4, 9, 16])
        XCTAssertEqual(try diagonal.solve([4, 9, 32]), [1, 1, 2])
        XCTAssertThrowsError(try diagonal.solve([1, 2]))
    }
}
