/// The structure of a sparse matrix: which entries are stored, in compressed sparse column form.
///
/// Column `j` stores the rows `rowIndices[columnPointers[j] ..< columnPointers[j + 1]]`, strictly
/// increasing. The position of an entry in `rowIndices` is its position in every value array laid
/// out on this pattern (`SparseMatrix.values`, the output of a `MaskedProductPlan`). Indices are
/// 32-bit, as in CHOLMOD's `int` interface and CXSparse's `cs_di`: rows, columns and stored entries
/// are each at most `Int32.max`.
///
/// Patterns are values: two patterns are equal when they have the same shape and entries.
public struct SparsityPattern: Hashable, Sendable, CustomStringConvertible {
    /// Number of rows.
    public let rowCount: Int
    /// Number of columns.
    public let columnCount: Int
    /// `columnCount + 1` offsets into `rowIndices`; the first is 0, the last `nonzeroCount`.
    public let columnPointers: [Int32]
    /// Row of every stored entry, column by column, increasing within a column.
    public let rowIndices: [Int32]

    /// Number of stored entries.
    @inlinable public var nonzeroCount: Int { rowIndices.count }

    /// Creates a pattern from compressed-column arrays, checking every invariant.
    ///
    /// - Throws: `SparseKernelsError.invalidArgument` if the pointers are not monotone, a row is
    ///   out of range, or rows within a column are not strictly increasing.
    public init(rowCount: Int, columnCount: Int, columnPointers: [Int32], rowIndices: [Int32]) throws {
        _ = try checkedInt32(rowCount, "the row count")
        _ = try checkedInt32(columnCount, "the column count")
        guard columnPointers.count == columnCount + 1 else {
            throw SparseKernelsError.invalidArgument(
                "a pattern with \(columnCount) columns needs \(columnCount + 1) column pointers, not \(columnPointers.count)")
        }
        guard columnPointers[0] == 0, Int(columnPointers[columnCount]) == rowIndices.count else {
            throw SparseKernelsError.invalidArgument(
                "column pointers must start at 0 and end at the number of row indices (\(rowIndices.count))")
        }
        for j in 0..<columnCount where columnPointers[j] > columnPointers[j + 1] {
            throw SparseKernelsError.invalidArgument("column pointers decrease at column \(j)")
        }
        for j in 0..<columnCount {
            let start = Int(columnPointers[j]), end = Int(columnPointers[j + 1])
            var previous: Int32 = -1
            for p in start..<end {
                let i = rowIndices[p]
                guard i >= 0, Int(i) < rowCount else {
                    throw SparseKernelsError.invalidArgument(
                        "row index \(i) in column \(j) is outside 0..<\(rowCount)")
                }
                guard i > previous else {
                    throw SparseKernelsError.invalidArgument(
                        "row indices in column \(j) are not strictly increasing (\(previous) then \(i))")
                }
                previous = i
            }
        }
        self.init(unchecked: rowCount, columnCount, columnPointers, rowIndices)
    }

    /// Creates a pattern from arrays already known to be valid.
    @usableFromInline
    init(unchecked rowCount: Int, _ columnCount: Int, _ columnPointers: [Int32], _ rowIndices: [Int32]) {
        self.rowCount = rowCount
        self.columnCount = columnCount
        self.columnPointers = columnPointers
        self.rowIndices = rowIndices
    }

    /// Creates a pattern holding the given (row, column) entries, in any order; an entry given
    /// more than once is stored once.
    public init<S: Sequence>(rowCount: Int, columnCount: Int, entries: S) throws
    where S.Element == (row: Int, column: Int) {
        var rows: [Int] = []
        var columns: [Int] = []
        for e in entries {
            rows.append(e.row)
            columns.append(e.column)
        }
        let built = try CompressedColumnBuilder(rowCount: rowCount, columnCount: columnCount,
                                                rows: rows, columns: columns)
        self = built.pattern(target: nil)
    }

    /// The pattern with no entries.
    public static func empty(rowCount: Int, columnCount: Int) -> SparsityPattern {
        SparsityPattern(unchecked: rowCount, columnCount, [Int32](repeating: 0, count: columnCount + 1), [])
    }

    /// The n × n diagonal pattern.
    public static func identity(_ n: Int) -> SparsityPattern {
        SparsityPattern(unchecked: n, n, (0...n).map { Int32($0) }, (0..<n).map { Int32($0) })
    }

    /// The pattern with every entry stored.
    public static func dense(rowCount: Int, columnCount: Int) throws -> SparsityPattern {
        guard let nnz = multipliedOrNil(rowCount, columnCount) else {
            throw SparseKernelsError.indexOverflow("a dense \(rowCount) × \(columnCount) pattern is too large")
        }
        _ = try checkedInt32(nnz, "the number of entries of a dense \(rowCount) × \(columnCount) pattern")
        let pointers = (0...columnCount).map { Int32($0 * rowCount) }
        var rows = [Int32]()
        rows.reserveCapacity(nnz)
        for _ in 0..<columnCount { for i in 0..<rowCount { rows.append(Int32(i)) } }
        return SparsityPattern(unchecked: rowCount, columnCount, pointers, rows)
    }

    /// The stored rows of column `j`.
    @inlinable
    public func rows(inColumn j: Int) -> ArraySlice<Int32> {
        rowIndices[Int(columnPointers[j])..<Int(columnPointers[j + 1])]
    }

    /// The position of entry (row, column) in value arrays on this pattern, or nil if not stored.
    public func position(row: Int, column: Int) -> Int? {
        guard row >= 0, row < rowCount, column >= 0, column < columnCount else { return nil }
        var lo = Int(columnPointers[column]), hi = Int(columnPointers[column + 1])
        let target = Int32(row)
        while lo < hi {
            let mid = (lo + hi) / 2
            if rowIndices[mid] < target { lo = mid + 1 } else { hi = mid }
        }
        return lo < Int(columnPointers[column + 1]) && rowIndices[lo] == target ? lo : nil
    }

    /// Whether entry (row, column) is stored.
    public func contains(row: Int, column: Int) -> Bool { position(row: row, column: column) != nil }

    /// The column of every stored entry, in storage order (the companion of `rowIndices`).
    public func columnIndices() -> [Int32] {
        var columns = [Int32](repeating: 0, count: nonzeroCount)
        for j in 0..<columnCount {
            for p in Int(columnPointers[j])..<Int(columnPointers[j + 1]) { columns[p] = Int32(j) }
        }
        return columns
    }

    /// Memory held by the index arrays, in bytes.
    public var bytes: Int { 4 * (columnPointers.count + rowIndices.count) }

    /// One line with the shape and number of stored entries, e.g.
    /// `SparsityPattern(3 × 4, 5 entries)`.
    public var description: String {
        "SparsityPattern(\(rowCount) × \(columnCount), \(nonzeroCount) entries)"
    }
}
