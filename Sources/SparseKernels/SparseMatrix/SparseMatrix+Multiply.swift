internal import CSparseKernels

extension SparsityPattern {
    /// `y += A·x` for a matrix on this pattern with the given values (x has `columnCount`
    /// entries, y `rowCount`). Allocates nothing.
    public func multiplyAdd<Scalar: SparseScalar>(values: UnsafeBufferPointer<Scalar>, _ x: UnsafeBufferPointer<Scalar>,
                                                  into y: UnsafeMutableBufferPointer<Scalar>) {
        precondition(values.count == nonzeroCount && x.count >= columnCount && y.count >= rowCount)
        columnPointers.withUnsafeBufferPointer { ap in
            rowIndices.withUnsafeBufferPointer { ai in
                let aiBase = ai.baseAddress ?? UnsafePointer(bitPattern: 8)!
                if Scalar.self == Double.self {
                    sk_gaxpy_f64(Int32(columnCount), ap.baseAddress, aiBase, rebound(values, Double.self),
                                 rebound(x, Double.self), reboundMutable(y, Double.self))
                } else {
                    sk_gaxpy_f32(Int32(columnCount), ap.baseAddress, aiBase, rebound(values, Float.self),
                                 rebound(x, Float.self), reboundMutable(y, Float.self))
                }
            }
        }
    }

    /// `y += Aᵀ·x` for a matrix on this pattern (x has `rowCount` entries, y `columnCount`).
    public func transposedMultiplyAdd<Scalar: SparseScalar>(values: UnsafeBufferPointer<Scalar>, _ x: UnsafeBufferPointer<Scalar>,
                                                            into y: UnsafeMutableBufferPointer<Scalar>) {
        precondition(values.count == nonzeroCount && x.count >= rowCount && y.count >= columnCount)
        columnPointers.withUnsafeBufferPointer { ap in
            rowIndices.withUnsafeBufferPointer { ai in
                let aiBase = ai.baseAddress ?? UnsafePointer(bitPattern: 8)!
                if Scalar.self == Double.self {
                    sk_gatxpy_f64(Int32(columnCount), ap.baseAddress, aiBase, rebound(values, Double.self),
                                  rebound(x, Double.self), reboundMutable(y, Double.self))
                } else {
                    sk_gatxpy_f32(Int32(columnCount), ap.baseAddress, aiBase, rebound(values, Float.self),
                                  rebound(x, Float.self), reboundMutable(y, Float.self))
                }
            }
        }
    }
}

func rebound<S, T>(_ b: UnsafeBufferPointer<S>, _: T.Type) -> UnsafePointer<T> {
    UnsafeRawPointer(b.baseAddress ?? UnsafePointer(bitPattern: 8)!).assumingMemoryBound(to: T.self)
}

func reboundMutable<S, T>(_ b: UnsafeMutableBufferPointer<S>, _: T.Type) -> UnsafeMutablePointer<T> {
    UnsafeMutableRawPointer(b.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!).assumingMemoryBound(to: T.self)
}
