internal import CSparseKernels

extension SparseMatrix where Scalar == Double {
    /// The product `self · b` restricted to `mask`, computed the way a general sparse library
    /// does it: CXSparse's `cs_di_multiply` forms the whole product, then the entries on the mask
    /// are picked out. The baseline that `rtrl bench product` measures masked product plans against.
    ///
    /// - Parameters:
    ///   - out: receives one value per entry of `mask`, in its storage order (`mask.nonzeroCount`
    ///     values).
    ///   - work: `rowCount` zeros; left zeroed.
    package func cxsparseMaskedProduct(_ b: SparseMatrix<Double>, mask: SparsityPattern,
                                       into out: inout [Double], work: inout [Double]) throws {
        guard columnCount == b.rowCount, mask.rowCount == rowCount, mask.columnCount == b.columnCount else {
            throw SparseKernelsError.shapeMismatch(
                "a \(rowCount) × \(columnCount) matrix times a \(b.rowCount) × \(b.columnCount) one does not fit a \(mask.rowCount) × \(mask.columnCount) mask")
        }
        guard out.count == mask.nonzeroCount, work.count == rowCount else {
            throw SparseKernelsError.invalidArgument(
                "the masked product needs \(mask.nonzeroCount) output values and \(rowCount) work values, not \(out.count) and \(work.count)")
        }
        try withCSparse { a in
            try b.withCSparse { b in
                guard let c = cs_di_multiply(a, b) else {
                    throw SparseKernelsError.invalidArgument("CXSparse ran out of memory forming the product")
                }
                defer { cs_di_spfree(c) }
                let cp = c.pointee.p!, ci = c.pointee.i!, cx = c.pointee.x!
                for column in 0..<mask.columnCount {
                    for p in Int(cp[column])..<Int(cp[column + 1]) { work[Int(ci[p])] = cx[p] }
                    for q in Int(mask.columnPointers[column])..<Int(mask.columnPointers[column + 1]) {
                        out[q] = work[Int(mask.rowIndices[q])]
                    }
                    for p in Int(cp[column])..<Int(cp[column + 1]) { work[Int(ci[p])] = 0 }
                }
            }
        }
    }
}
