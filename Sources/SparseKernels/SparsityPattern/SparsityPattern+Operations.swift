/// Boolean matrix operations on patterns: the structural work of building sparsity patterns
/// (reachability, masks) without any values.
extension SparsityPattern {
    /// The pattern of the transpose.
    public func transposed() -> SparsityPattern {
        var pointers = [Int32](repeating: 0, count: rowCount + 1)
        for i in rowIndices { pointers[Int(i) + 1] += 1 }
        for i in 0..<rowCount { pointers[i + 1] += pointers[i] }
        var next = pointers
        var rows = [Int32](repeating: 0, count: nonzeroCount)
        for j in 0..<columnCount {
            for p in Int(columnPointers[j])..<Int(columnPointers[j + 1]) {
                let i = Int(rowIndices[p])
                rows[Int(next[i])] = Int32(j)
                next[i] += 1
            }
        }
        return SparsityPattern(unchecked: columnCount, rowCount, pointers, rows)
    }

    /// The entries stored in either pattern.
    public func union(_ other: SparsityPattern) throws -> SparsityPattern {
        try merged(with: other, keepOnlyCommon: false)
    }

    /// The entries stored in both patterns.
    public func intersection(_ other: SparsityPattern) throws -> SparsityPattern {
        try merged(with: other, keepOnlyCommon: true)
    }

    private func merged(with other: SparsityPattern, keepOnlyCommon: Bool) throws -> SparsityPattern {
        guard rowCount == other.rowCount, columnCount == other.columnCount else {
            throw SparseKernelsError.shapeMismatch(
                "cannot combine a \(rowCount) × \(columnCount) pattern with a \(other.rowCount) × \(other.columnCount) one")
        }
        var pointers = [Int32](repeating: 0, count: columnCount + 1)
        var rows = [Int32]()
        for j in 0..<columnCount {
            var p = Int(columnPointers[j]), q = Int(other.columnPointers[j])
            let pe = Int(columnPointers[j + 1]), qe = Int(other.columnPointers[j + 1])
            while p < pe || q < qe {
                let a = p < pe ? rowIndices[p] : Int32.max
                let b = q < qe ? other.rowIndices[q] : Int32.max
                if a == b {
                    rows.append(a); p += 1; q += 1
                } else if a < b {
                    if !keepOnlyCommon { rows.append(a) }
                    p += 1
                } else {
                    if !keepOnlyCommon { rows.append(b) }
                    q += 1
                }
            }
            pointers[j + 1] = try checkedInt32(rows.count, "the number of entries of the result")
        }
        return SparsityPattern(unchecked: rowCount, columnCount, pointers, rows)
    }

    /// The pattern of the product `self · other` (an entry wherever some k has both
    /// self(i, k) and other(k, j) stored; no numerical cancellation).
    ///
    /// - Parameters:
    ///   - other: the right factor; its row count must equal this pattern's column count.
    ///   - budgetBytes: refuse, before allocating the result, if its index arrays would need more
    ///     than this many bytes.
    public func multiplied(by other: SparsityPattern, budgetBytes: Int = Int.max) throws -> SparsityPattern {
        guard columnCount == other.rowCount else {
            throw SparseKernelsError.shapeMismatch(
                "cannot multiply a \(rowCount) × \(columnCount) pattern by a \(other.rowCount) × \(other.columnCount) one")
        }
        var mark = [Int32](repeating: -1, count: rowCount)
        // First pass: count, so the size is known (and checked) before allocating.
        var total = 0
        for j in 0..<other.columnCount {
            for q in Int(other.columnPointers[j])..<Int(other.columnPointers[j + 1]) {
                let k = Int(other.rowIndices[q])
                for p in Int(columnPointers[k])..<Int(columnPointers[k + 1]) {
                    let i = Int(rowIndices[p])
                    if mark[i] != Int32(j) { mark[i] = Int32(j); total += 1 }
                }
            }
        }
        let needed = 4 * (total + other.columnCount + 1)
        guard needed <= budgetBytes else {
            throw SparseKernelsError.memoryBudgetExceeded(what: "the product pattern", neededBytes: needed,
                                                          budgetBytes: budgetBytes)
        }
        _ = try checkedInt32(total, "the number of entries of the product pattern")
        for i in 0..<rowCount { mark[i] = -1 }
        var pointers = [Int32](repeating: 0, count: other.columnCount + 1)
        var rows = [Int32]()
        rows.reserveCapacity(total)
        for j in 0..<other.columnCount {
            let start = rows.count
            for q in Int(other.columnPointers[j])..<Int(other.columnPointers[j + 1]) {
                let k = Int(other.rowIndices[q])
                for p in Int(columnPointers[k])..<Int(columnPointers[k + 1]) {
                    let i = Int(rowIndices[p])
                    if mark[i] != Int32(j) { mark[i] = Int32(j); rows.append(Int32(i)) }
                }
            }
            rows[start...].sort()
            pointers[j + 1] = Int32(rows.count)
        }
        return SparsityPattern(unchecked: rowCount, other.columnCount, pointers, rows)
    }

    /// The pattern of the submatrix `self[rows, columns]`, renumbered: entry (r, c) of the result
    /// is stored iff (rows[r], columns[c]) is stored here. Rows and columns may be in any order
    /// but must not repeat.
    public func submatrix(rows selectedRows: [Int], columns selectedColumns: [Int]) throws -> SparsityPattern {
        var rowMap = [Int32](repeating: -1, count: rowCount)
        for (r, i) in selectedRows.enumerated() {
            guard i >= 0, i < rowCount else {
                throw SparseKernelsError.invalidArgument("row \(i) is outside 0..<\(rowCount)")
            }
            guard rowMap[i] < 0 else { throw SparseKernelsError.invalidArgument("row \(i) is selected twice") }
            rowMap[i] = Int32(r)
        }
        var seenColumn = [Bool](repeating: false, count: columnCount)
        var pointers = [Int32](repeating: 0, count: selectedColumns.count + 1)
        var rows = [Int32]()
        for (c, j) in selectedColumns.enumerated() {
            guard j >= 0, j < columnCount else {
                throw SparseKernelsError.invalidArgument("column \(j) is outside 0..<\(columnCount)")
            }
            guard !seenColumn[j] else { throw SparseKernelsError.invalidArgument("column \(j) is selected twice") }
            seenColumn[j] = true
            let start = rows.count
            for p in Int(columnPointers[j])..<Int(columnPointers[j + 1]) where rowMap[Int(rowIndices[p])] >= 0 {
                rows.append(rowMap[Int(rowIndices[p])])
            }
            rows[start...].sort()
            pointers[c + 1] = Int32(rows.count)
        }
        return SparsityPattern(unchecked: selectedRows.count, selectedColumns.count, pointers, rows)
    }

    /// The columns stored in row `i`, increasing. Costs a pass over all entries; for many rows,
    /// transpose once and read columns of the transpose.
    public func columns(inRow i: Int) -> [Int] {
        var result: [Int] = []
        for j in 0..<columnCount where position(row: i, column: j) != nil { result.append(j) }
        return result
    }

    /// The pattern with every diagonal entry (i, i), i < min(rows, columns), added.
    public func addingDiagonal() throws -> SparsityPattern {
        let n = Swift.min(rowCount, columnCount)
        var diagonal = [Int32](repeating: 0, count: columnCount + 1)
        var rows = [Int32]()
        for j in 0..<columnCount {
            if j < n { rows.append(Int32(j)) }
            diagonal[j + 1] = Int32(rows.count)
        }
        return try union(SparsityPattern(unchecked: rowCount, columnCount, diagonal, rows))
    }
}

extension SparsityPattern {
    /// The entries stored here but not in `other` (same shape).
    public func subtracting(_ other: SparsityPattern) throws -> SparsityPattern {
        let common = try intersection(other)
        var entries: [(row: Int, column: Int)] = []
        for j in 0..<columnCount {
            for i in rows(inColumn: j) where !common.contains(row: Int(i), column: j) { entries.append((Int(i), j)) }
        }
        return try SparsityPattern(rowCount: rowCount, columnCount: columnCount, entries: entries)
    }
}

extension SparsityPattern {
    /// The transpose, with, for each of its entries (in storage order), the position of the same
    /// entry in this pattern: values stored on this pattern can then be read in the transpose's
    /// order without moving them.
    public func transposedWithPositions() -> (pattern: SparsityPattern, position: [Int32]) {
        var counts = [Int32](repeating: 0, count: rowCount + 1)
        for r in rowIndices { counts[Int(r) + 1] += 1 }
        for i in 0..<rowCount { counts[i + 1] += counts[i] }
        var next = counts
        var rows = [Int32](repeating: 0, count: nonzeroCount), position = [Int32](repeating: 0, count: nonzeroCount)
        for j in 0..<columnCount {
            for p in Int(columnPointers[j])..<Int(columnPointers[j + 1]) {
                let r = Int(rowIndices[p]), t = Int(next[r])
                rows[t] = Int32(j)
                position[t] = Int32(p)
                next[r] += 1
            }
        }
        return (try! SparsityPattern(rowCount: columnCount, columnCount: rowCount, columnPointers: counts, rowIndices: rows), position)
    }
}
