/// A sparse matrix in compressed sparse column form: a `SparsityPattern` and one value per
/// stored entry, in the pattern's storage order.
///
/// Stored entries are structural: an entry whose value is 0 stays stored (an explicit zero).
public struct SparseMatrix<Scalar: SparseScalar>: Sendable, Hashable, CustomStringConvertible {
    /// Which entries are stored.
    public let pattern: SparsityPattern
    /// The value of every stored entry, in the pattern's storage order.
    public var values: [Scalar] {
        get { storage }
        // In place, also from other modules (an observed property would copy the array at every
        // element written through it); the count is checked after the change.
        _modify {
            yield &storage
            precondition(storage.count == pattern.nonzeroCount, "a sparse matrix's value count is fixed by its pattern")
        }
        set {
            precondition(newValue.count == pattern.nonzeroCount, "a sparse matrix's value count is fixed by its pattern")
            storage = newValue
        }
    }
    /// The values, stored.
    var storage: [Scalar]

    /// Replaces every value; throws, changing nothing, unless `newValues` has exactly as many
    /// values as ``values`` (assigning ``values`` a wrong count traps instead).
    public mutating func replaceValues(with newValues: [Scalar]) throws {
        guard newValues.count == pattern.nonzeroCount else {
            throw SparseKernelsError.invalidArgument("a sparse matrix with \(pattern.nonzeroCount) stored entries takes \(pattern.nonzeroCount) values, not \(newValues.count)")
        }
        storage = newValues
    }

    /// What to do when the same (row, column) is given more than once.
    public enum DuplicatePolicy: Sendable {
        /// Add the values of repeated entries.
        case sum
        /// Throw `SparseKernelsError.duplicateEntry`.
        case reject
    }

    /// The number of rows, m (the pattern's).
    @inlinable public var rowCount: Int { pattern.rowCount }
    /// The number of columns, n (the pattern's).
    @inlinable public var columnCount: Int { pattern.columnCount }
    /// The number of stored entries, explicit zeros included (the pattern's); also `values.count`.
    @inlinable public var nonzeroCount: Int { pattern.nonzeroCount }

    /// A matrix on `pattern` with the given values (one per stored entry).
    public init(pattern: SparsityPattern, values: [Scalar]) throws {
        guard values.count == pattern.nonzeroCount else {
            throw SparseKernelsError.invalidArgument(
                "a pattern with \(pattern.nonzeroCount) entries needs as many values, not \(values.count)")
        }
        self.pattern = pattern
        self.storage = values
    }

    /// A matrix on `pattern` with every stored value zero.
    public init(zerosOn pattern: SparsityPattern) {
        self.pattern = pattern
        self.storage = [Scalar](repeating: 0, count: pattern.nonzeroCount)
    }

    /// A matrix from triplets (row, column, value) in any order.
    ///
    /// - Parameters:
    ///   - rowCount: the number of rows, m.
    ///   - columnCount: the number of columns, n.
    ///   - rows: each triplet's row, in `0 ..< rowCount`.
    ///   - columns: each triplet's column, in `0 ..< columnCount`; as many as `rows`.
    ///   - values: each triplet's value; as many as `rows`.
    ///   - duplicates: whether repeated (row, column) pairs are summed or rejected. Every
    ///     triplet given is stored, zeros included.
    public init(rowCount: Int, columnCount: Int, rows: [Int], columns: [Int], values: [Scalar],
                duplicates: DuplicatePolicy) throws {
        guard values.count == rows.count else {
            throw SparseKernelsError.invalidArgument("\(rows.count) row indices but \(values.count) values")
        }
        let builder = try CompressedColumnBuilder(rowCount: rowCount, columnCount: columnCount,
                                                  rows: rows, columns: columns)
        if duplicates == .reject, let d = builder.firstDuplicate() {
            throw SparseKernelsError.duplicateEntry(row: d.row, column: d.column)
        }
        var target = [Int](repeating: 0, count: rows.count)
        let pattern = target.withUnsafeMutableBufferPointer { builder.pattern(target: $0) }
        var merged = [Scalar](repeating: 0, count: pattern.nonzeroCount)
        // Sum in sorted order (by column, row, input position) so the result does not depend on
        // how the caller ordered the triplets beyond the order of repeats.
        for t in builder.order { merged[target[t]] += values[t] }
        self.pattern = pattern
        self.storage = merged
    }

    /// A matrix from a dense column-major array (`dense[i + j * rowCount]`), storing the entries
    /// that are not zero (or every entry, if `keepZeros`).
    public init(rowCount: Int, columnCount: Int, columnMajor dense: [Scalar], keepZeros: Bool = false) throws {
        guard let n = multipliedOrNil(rowCount, columnCount), n == dense.count else {
            throw SparseKernelsError.invalidArgument(
                "a dense \(rowCount) × \(columnCount) matrix needs \(rowCount) · \(columnCount) values, not \(dense.count)")
        }
        _ = try checkedInt32(rowCount, "the row count")
        _ = try checkedInt32(columnCount, "the column count")
        var pointers = [Int32](repeating: 0, count: columnCount + 1)
        var rows = [Int32]()
        var values = [Scalar]()
        for j in 0..<columnCount {
            for i in 0..<rowCount where keepZeros || dense[i + j * rowCount] != 0 {
                rows.append(Int32(i))
                values.append(dense[i + j * rowCount])
            }
            pointers[j + 1] = try checkedInt32(rows.count, "the number of entries")
        }
        self.pattern = SparsityPattern(unchecked: rowCount, columnCount, pointers, rows)
        self.storage = values
    }

    /// The value at (row, column): the stored value, or 0 if the entry is not stored.
    ///
    /// - Precondition: `0 <= row < rowCount` and `0 <= column < columnCount` (as for an array,
    ///   an index out of range is a programming error and traps).
    public subscript(row: Int, column: Int) -> Scalar {
        precondition(row >= 0 && row < rowCount && column >= 0 && column < columnCount,
                     "index (\(row), \(column)) out of range for a \(rowCount) × \(columnCount) sparse matrix")
        guard let p = pattern.position(row: row, column: column) else { return 0 }
        return values[p]
    }

    /// The matrix as a dense column-major array (`result[i + j * rowCount]`).
    public func denseColumnMajor() -> [Scalar] {
        var dense = [Scalar](repeating: 0, count: rowCount * columnCount)
        for j in 0..<columnCount {
            for p in Int(pattern.columnPointers[j])..<Int(pattern.columnPointers[j + 1]) {
                dense[Int(pattern.rowIndices[p]) + j * rowCount] = values[p]
            }
        }
        return dense
    }

    /// The transpose, with the transposed pattern (sorted rows) and values moved along.
    public func transposed() -> SparseMatrix {
        let t = pattern.transposed()
        var next = t.columnPointers.map { Int($0) }
        var moved = [Scalar](repeating: 0, count: nonzeroCount)
        for j in 0..<columnCount {
            for p in Int(pattern.columnPointers[j])..<Int(pattern.columnPointers[j + 1]) {
                let i = Int(pattern.rowIndices[p])
                moved[next[i]] = values[p]
                next[i] += 1
            }
        }
        return SparseMatrix(uncheckedPattern: t, values: moved)
    }

    /// The same matrix with values converted to another precision.
    public func converted<Other: SparseScalar>(to: Other.Type = Other.self) -> SparseMatrix<Other> {
        SparseMatrix<Other>(uncheckedPattern: pattern, values: values.map { Other($0) })
    }

    /// Whether every stored value is finite (no NaN, no infinity).
    public var isFinite: Bool { values.allSatisfy { $0.isFinite } }

    @usableFromInline
    init(uncheckedPattern pattern: SparsityPattern, values: [Scalar]) {
        self.pattern = pattern
        self.storage = values
    }

    /// One line with the precision, shape and number of stored entries (no values), e.g.
    /// `SparseMatrix<float64>(3 × 4, 5 entries)`.
    public var description: String {
        "SparseMatrix<\(Scalar.precisionName)>(\(rowCount) × \(columnCount), \(nonzeroCount) entries)"
    }
}
