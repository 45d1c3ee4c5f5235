import Foundation

/// Dense linear algebra for the Kronecker-sum estimators: Gram–Schmidt QR of tall matrices with
/// few columns (the r+1 factors of each side) and a one-sided Jacobi SVD of the small
/// (r+1) × (r+1) core. Column-major throughout; every routine works in caller-provided buffers
/// (nothing is allocated per step).
enum SmallDense {
    /// Orthonormalises the `count` columns of `a` (each `length` long, column-major) in place by
    /// classical Gram–Schmidt with one full reorthogonalisation (CGS2, accurate to working
    /// precision), and writes the upper-triangular R (count × count, column-major) with
    /// a_before = Q R.
    ///
    /// A column whose residual after projection is at most `tolerance` times its original norm
    /// (zero, or dependent on the earlier columns to working precision) becomes exactly zero, with
    /// a zero diagonal entry in R, so a_before = Q R still holds; the columns of Q are then
    /// orthonormal or zero. `work` holds at least `count` values.
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    static func orthonormalize<Scalar: SparseScalar>(_ a: UnsafeMutableBufferPointer<Scalar>, length: Int, count: Int,
                                                     r: UnsafeMutableBufferPointer<Double>, work: UnsafeMutableBufferPointer<Double>,
                                                     tolerance: Double) {
        for t in 0..<(count * count) { r[t] = 0 }
        guard let base = a.baseAddress else { return }
        for j in 0..<count {
            let column = base + j * length
            let original = dot(column, column, length).squareRoot()
            if original == 0 { continue } // already zero: R's column stays zero
            for _ in 0..<2 {
                for i in 0..<j {
                    let h = dot(base + i * length, column, length)
                    work[i] = h
                    r[i + j * count] += h
                }
                for i in 0..<j where work[i] != 0 {
                    let q = base + i * length, h = Scalar(work[i])
                    for t in 0..<length { column[t] -= h * q[t] }
                }
            }
            let norm = dot(column, column, length).squareRoot()
            if norm <= tolerance * original {
                for t in 0..<length { column[t] = 0 }
                r[j + j * count] = 0
            } else {
                let inverse = Scalar(1 / norm)
                for t in 0..<length { column[t] *= inverse }
                r[j + j * count] = norm
            }
        }
    }

    /// Σ x_t y_t in Double with four independent partial sums (the loop is bound by the latency
    /// of the additions otherwise).
    @_specialize(where Scalar == Double)
    @_specialize(where Scalar == Float)
    @inline(__always)
    static func dot<Scalar: SparseScalar>(_ x: UnsafeMutablePointer<Scalar>, _ y: UnsafeMutablePointer<Scalar>, _ n: Int) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var t = 0
        while t + 4 <= n {
            s0 += Double(x[t]) * Double(y[t])
            s1 += Double(x[t + 1]) * Double(y[t + 1])
            s2 += Double(x[t + 2]) * Double(y[t + 2])
            s3 += Double(x[t + 3]) * Double(y[t + 3])
            t += 4
        }
        while t < n { s0 += Double(x[t]) * Double(y[t]); t += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// The SVD M = X diag(σ) Yᵀ of a square n × n matrix (column-major in `m`, overwritten) by
    /// one-sided (Hestenes) Jacobi: rotations from the right orthogonalise M's columns, G = M·Y,
    /// then σ_j = ‖G_j‖ and X_j = G_j/σ_j. σ is sorted decreasing, X and Y permuted alike. For
    /// σ_j = 0, X_j is set to zero (it never contributes). A zero column of M is never rotated,
    /// so exact zeros stay exact. `x`, `y` hold n·n values, `sigma` n, `order` n indices.
    static func singularValueDecomposition(_ m: UnsafeMutableBufferPointer<Double>, n: Int,
                                           x: UnsafeMutableBufferPointer<Double>, sigma: UnsafeMutableBufferPointer<Double>,
                                           y: UnsafeMutableBufferPointer<Double>, order: UnsafeMutableBufferPointer<Int>) {
        for t in 0..<(n * n) { y[t] = 0 }
        for i in 0..<n { y[i + i * n] = 1 }
        let tolerance = 4 * Double.ulpOfOne
        for _ in 0..<80 {
            var rotated = false
            for p in 0..<n {
                for q in (p + 1)..<max(n, p + 1) {
                    var alpha = 0.0, beta = 0.0, gamma = 0.0
                    for i in 0..<n {
                        let a = m[i + p * n], b = m[i + q * n]
                        alpha += a * a; beta += b * b; gamma += a * b
                    }
                    if gamma == 0 || abs(gamma) <= tolerance * (alpha * beta).squareRoot() { continue }
                    rotated = true
                    let zeta = (beta - alpha) / (2 * gamma)
                    let t = (zeta >= 0 ? 1.0 : -1.0) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
                    let c = 1 / (1 + t * t).squareRoot(), s = c * t
                    for i in 0..<n {
                        let a = m[i + p * n], b = m[i + q * n]
                        m[i + p * n] = c * a - s * b
                        m[i + q * n] = s * a + c * b
                        let ya = y[i + p * n], yb = y[i + q * n]
                        y[i + p * n] = c * ya - s * yb
                        y[i + q * n] = s * ya + c * yb
                    }
                }
            }
            if !rotated { break }
        }
        for j in 0..<n {
            var norm = 0.0
            for i in 0..<n { norm += m[i + j * n] * m[i + j * n] }
            sigma[j] = norm.squareRoot()
            order[j] = j
        }
        // Insertion sort of the indices by decreasing σ (n is small), stable.
        for j in 1..<max(n, 1) {
            let current = order[j]
            var i = j - 1
            while i >= 0 && sigma[order[i]] < sigma[current] { order[i + 1] = order[i]; i -= 1 }
            order[i + 1] = current
        }
        // X from G's columns in the new order; Y permuted in place through x as scratch.
        for j in 0..<n {
            let source = order[j], s = sigma[source]
            for i in 0..<n { x[i + j * n] = s > 0 ? m[i + source * n] / s : 0 }
        }
        for t in 0..<(n * n) { m[t] = y[t] }
        for j in 0..<n {
            let source = order[j]
            for i in 0..<n { y[i + j * n] = m[i + source * n] }
        }
        for j in 0..<n { m[j] = sigma[order[j]] }
        for j in 0..<n { sigma[j] = m[j] }
    }
}

/// The variance-optimal unbiased reduction of OK (Benzing et al., arXiv 1902.03993, §4) from
/// rank r+1 to rank r, on the SVD of the small core: given C = X diag(σ) Yᵀ with σ_0 ≥ … ≥ σ_r,
/// it returns random r-column factors L, R with E[L Rᵀ] = C and the least E‖L Rᵀ − C‖_F² of all
/// unbiased rank-r estimates:
///
/// - m is the smallest index with (r − m)·σ_m ≤ s = Σ_{i≥m} σ_i (m = r − 1 always qualifies);
///   σ_0 … σ_{m−1} are kept exactly (L_j = √σ_j X_j, R_j = √σ_j Y_j);
/// - the tail, n' = r + 1 − m singular values, becomes r' = r − m terms of equal weight s/r':
///   with z_i = √(1 − r'σ_{m+i}/s) (a unit vector) and W an orthonormal basis of z's orthogonal
///   complement (the columns of the Householder reflector that maps z to a coordinate vector,
///   except that one), and independent random signs d_i,
///       L_{m+j} = √(s/r') Σ_i d_i W_ij X_{m+i},   R_{m+j} = √(s/r') Σ_i d_i W_ij Y_{m+i}.
///   Then E[Σ_j L_{m+j} R_{m+j}ᵀ] = (s/r') X_t diag(‖W_i‖²) Y_tᵀ = X_t diag(σ_t) Y_tᵀ, because
///   W Wᵀ = I − z zᵀ has diagonal 1 − z_i² = r'σ_i/s; every non-zero singular value of the tail
///   estimate equals s/r', which is what makes it variance-optimal (its variance, s²/r' − Σ σ_t²,
///   only grows if more values are kept exactly, so the smallest feasible m is best).
///
/// If σ_r = 0 the core already has rank ≤ r and the first r terms are kept exactly: no noise.
struct OptimalReduction {
    let rank: Int
    private var z: [Double]
    private var reflector: [Double]
    private var signs: [Double]

    init(rank r: Int) {
        rank = r
        z = [Double](repeating: 0, count: r + 1)
        reflector = [Double](repeating: 0, count: (r + 1) * (r + 1))
        signs = [Double](repeating: 0, count: r + 1)
    }

    /// Writes L and R ((r+1) × r, column-major, in the coordinates of the core's rows and
    /// columns) from X, σ (decreasing), Y ((r+1) × (r+1)). Returns the number of terms kept
    /// exactly (r when no randomness was needed).
    @discardableResult
    mutating func reduce(x: UnsafeBufferPointer<Double>, sigma: UnsafeBufferPointer<Double>, y: UnsafeBufferPointer<Double>,
                         left: UnsafeMutableBufferPointer<Double>, right: UnsafeMutableBufferPointer<Double>,
                         generator: inout SeededGenerator) -> Int {
        let r = rank, n = r + 1
        for t in 0..<(n * r) { left[t] = 0; right[t] = 0 }
        func keep(_ j: Int) {
            let scale = sigma[j].squareRoot()
            for i in 0..<n { left[i + j * n] = scale * x[i + j * n]; right[i + j * n] = scale * y[i + j * n] }
        }
        if !(sigma[r] > 0) {
            for j in 0..<r { keep(j) }
            return r
        }
        var tail = 0.0
        for i in 0..<n { tail += sigma[i] }
        var m = 0
        while m < r - 1 && Double(r - m) * sigma[m] > tail {
            tail -= sigma[m]
            m += 1
        }
        for j in 0..<m { keep(j) }
        let count = n - m, reduced = r - m
        // z, normalised (it is a unit vector up to rounding).
        var norm = 0.0
        for i in 0..<count {
            let value = max(0, 1 - Double(reduced) * sigma[m + i] / tail).squareRoot()
            z[i] = value
            norm += value * value
        }
        norm = norm.squareRoot()
        var pivot = 0
        for i in 0..<count {
            z[i] /= norm
            if z[i] > z[pivot] { pivot = i }
        }
        // H = I − 2vvᵀ/‖v‖² with v = z − e_pivot maps z to e_pivot; W = H without column `pivot`.
        z[pivot] -= 1
        var vv = 0.0
        for i in 0..<count { vv += z[i] * z[i] }
        for j in 0..<count {
            for i in 0..<count {
                reflector[i + j * count] = (i == j ? 1 : 0) - (vv > 0 ? 2 * z[i] * z[j] / vv : 0)
            }
        }
        for i in 0..<count { signs[i] = generator.nextSign() }
        let weight = (tail / Double(reduced)).squareRoot()
        var column = m
        for jj in 0..<count where jj != pivot {
            for i in 0..<count {
                let coefficient = weight * signs[i] * reflector[i + jj * count]
                if coefficient == 0 { continue }
                for row in 0..<n {
                    left[row + column * n] += coefficient * x[row + (m + i) * n]
                    right[row + column * n] += coefficient * y[row + (m + i) * n]
                }
            }
            column += 1
        }
        return m
    }
}
