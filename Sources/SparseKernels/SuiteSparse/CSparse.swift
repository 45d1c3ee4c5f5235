package import CSparseKernels

extension SparseMatrix {
    /// Calls `body` with a CXSparse `cs_di` in compressed-column form (`nz == -1`) describing this
    /// matrix. For `Double` it points straight at this matrix's arrays, with no copy; for `Float`
    /// the values are converted first. CXSparse must only read it; valid only inside `body`.
    package func withCSparse<R>(_ body: (UnsafeMutablePointer<cs_di>) throws -> R) rethrows -> R {
        if let doubles = self as? SparseMatrix<Double> {
            return try doubles.withCSparseView(body)
        }
        return try converted(to: Double.self).withCSparseView(body)
    }

    /// Copies a CXSparse matrix in either form: compressed column (`nz == -1`, rows in any order,
    /// as `cs_di_multiply` returns them) or triplet (`nz >= 0`).
    package init(copying matrix: UnsafePointer<cs_di>, duplicates: DuplicatePolicy = .sum) throws {
        let a = matrix.pointee
        let m = Int(a.m), n = Int(a.n)
        var rows: [Int] = [], columns: [Int] = [], values: [Scalar] = []
        if a.nz < 0 {
            for j in 0..<n {
                for p in Int(a.p[j])..<Int(a.p[j + 1]) {
                    rows.append(Int(a.i[p])); columns.append(j)
                    values.append(Scalar(a.x?[p] ?? 1))
                }
            }
        } else {
            for k in 0..<Int(a.nz) {
                rows.append(Int(a.i[k])); columns.append(Int(a.p[k]))
                values.append(Scalar(a.x?[k] ?? 1))
            }
        }
        try self.init(rowCount: m, columnCount: n, rows: rows, columns: columns, values: values,
                      duplicates: duplicates)
    }
}

extension SparseMatrix where Scalar == Double {
    fileprivate func withCSparseView<R>(_ body: (UnsafeMutablePointer<cs_di>) throws -> R) rethrows -> R {
        try pattern.columnPointers.withUnsafeBufferPointer { p in
            try pattern.rowIndices.withUnsafeBufferPointer { i in
                try values.withUnsafeBufferPointer { x in
                    var view = cs_di()
                    view.nzmax = Int32(nonzeroCount)
                    view.m = Int32(rowCount)
                    view.n = Int32(columnCount)
                    view.p = UnsafeMutablePointer(mutating: p.baseAddress)
                    view.i = UnsafeMutablePointer(mutating: i.baseAddress)
                    view.x = UnsafeMutablePointer(mutating: x.baseAddress)
                    view.nz = -1
                    return try body(&view)
                }
            }
        }
    }
}
