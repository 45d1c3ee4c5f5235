package import CSparseKernels

/// One CHOLMOD workspace (`cholmod_common`): allocated once on the heap, started, with printing
/// silenced and errors captured. Own one per thread of work; never share one between threads
/// that use it at the same time.
package final class Cholmod {
    /// The CHOLMOD workspace, for calling CHOLMOD directly.
    package let common: UnsafeMutablePointer<cholmod_common>

    /// Starts a CHOLMOD workspace.
    package init() throws {
        guard let common = sk_cholmod_new() else {
            throw SparseKernelsError.cholmod(status: CHOLMOD_OUT_OF_MEMORY, message: "out of memory starting CHOLMOD")
        }
        self.common = common
    }

    deinit { sk_cholmod_free(common) }

    /// Runs a CHOLMOD call and turns a failure (nil result or negative status) into an error that
    /// carries CHOLMOD's message.
    package func call<T>(_ what: String, _ body: (UnsafeMutablePointer<cholmod_common>) -> T?) throws -> T {
        sk_cholmod_clear_error()
        common.pointee.status = CHOLMOD_OK
        let result = body(common)
        let status = common.pointee.status
        if let result, status >= CHOLMOD_OK { return result }
        let message = String(cString: sk_cholmod_last_error())
        throw SparseKernelsError.cholmod(status: status < 0 ? status : CHOLMOD_INVALID,
                                         message: "\(what): \(message.isEmpty ? "failed" : message)")
    }
}

extension SparseMatrix {
    /// Calls `body` with a `cholmod_sparse` describing this matrix (packed, sorted, `stype` 0,
    /// `CHOLMOD_INT` indices, real double values). For `Double` it points straight at this
    /// matrix's arrays, with no copy; for `Float` the values are first converted to double.
    /// CHOLMOD must only read it, and it is valid only inside `body`.
    package func withCholmodSparse<R>(_ body: (UnsafeMutablePointer<cholmod_sparse>) throws -> R) rethrows -> R {
        if let doubles = self as? SparseMatrix<Double> {
            return try doubles.withCholmodView(body)
        }
        return try converted(to: Double.self).withCholmodView(body)
    }

    /// Copies a CHOLMOD sparse matrix of any storage (packed or not, sorted or not, int or long
    /// indices, symmetric stype expanded to both triangles; real values, or ones for a pattern).
    package init(copying matrix: UnsafePointer<cholmod_sparse>, duplicates: DuplicatePolicy = .sum) throws {
        let a = matrix.pointee
        guard a.xtype == CHOLMOD_REAL || a.xtype == CHOLMOD_PATTERN else {
            throw SparseKernelsError.invalidArgument("only real or pattern CHOLMOD matrices can be copied")
        }
        guard a.dtype == CHOLMOD_DOUBLE else {
            throw SparseKernelsError.invalidArgument("only double-precision CHOLMOD matrices can be copied")
        }
        let nrow = Int(a.nrow), ncol = Int(a.ncol)
        func index(_ base: UnsafeMutableRawPointer?, _ k: Int) -> Int {
            a.itype == CHOLMOD_LONG ? Int(base!.assumingMemoryBound(to: Int.self)[k])
                                     : Int(base!.assumingMemoryBound(to: Int32.self)[k])
        }
        var rows: [Int] = [], columns: [Int] = [], values: [Scalar] = []
        let x = a.x?.assumingMemoryBound(to: Double.self)
        for j in 0..<ncol {
            let start = index(a.p, j)
            let end = a.packed != 0 ? index(a.p, j + 1) : start + index(a.nz, j)
            for p in start..<end {
                let i = index(a.i, p)
                let v = Scalar(x?[p] ?? 1)
                let keep = a.stype == 0 || (a.stype > 0 && i <= j) || (a.stype < 0 && i >= j)
                guard keep else { continue }
                rows.append(i); columns.append(j); values.append(v)
                if a.stype != 0 && i != j { rows.append(j); columns.append(i); values.append(v) }
            }
        }
        try self.init(rowCount: nrow, columnCount: ncol, rows: rows, columns: columns, values: values,
                      duplicates: duplicates)
    }
}

extension SparseMatrix where Scalar == Double {
    fileprivate func withCholmodView<R>(_ body: (UnsafeMutablePointer<cholmod_sparse>) throws -> R) rethrows -> R {
        try pattern.columnPointers.withUnsafeBufferPointer { p in
            try pattern.rowIndices.withUnsafeBufferPointer { i in
                try values.withUnsafeBufferPointer { x in
                    var view = cholmod_sparse(viewing: pattern, p: p.baseAddress, i: i.baseAddress,
                                              x: UnsafeMutableRawPointer(mutating: x.baseAddress), stype: 0)
                    return try body(&view)
                }
            }
        }
    }
}

extension cholmod_sparse {
    /// A packed, sorted, `CHOLMOD_INT`, real double view of a pattern's arrays and values `x`,
    /// valid while the pointers are. CHOLMOD must only read it.
    init(viewing pattern: SparsityPattern, p: UnsafePointer<Int32>?, i: UnsafePointer<Int32>?,
         x: UnsafeMutableRawPointer?, stype: Int32) {
        self.init()
        nrow = pattern.rowCount
        ncol = pattern.columnCount
        nzmax = Swift.max(pattern.nonzeroCount, 1)
        self.p = UnsafeMutableRawPointer(mutating: p)
        self.i = UnsafeMutableRawPointer(mutating: i)
        self.x = x
        self.stype = stype
        itype = CHOLMOD_INT
        xtype = CHOLMOD_REAL
        dtype = CHOLMOD_DOUBLE
        sorted = 1
        packed = 1
    }
}
