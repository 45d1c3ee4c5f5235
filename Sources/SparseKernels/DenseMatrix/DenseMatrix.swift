/// A dense matrix stored column by column (`values[i + j * rowCount]`), as Matrix Market
/// `array` files and CHOLMOD's `cholmod_dense` lay it out.
public struct DenseMatrix<Scalar: SparseScalar>: Sendable, Hashable {
    /// The number of rows, m.
    public let rowCount: Int
    /// The number of columns, n.
    public let columnCount: Int
    /// Column-major values; the count is fixed at rowCount · columnCount.
    public var values: [Scalar] {
        get { storage }
        // In place, also from other modules (an observed property would copy the array at every
        // element written through it); the count is checked after the change.
        _modify {
            yield &storage
            precondition(storage.count == rowCount * columnCount, "a dense matrix's value count is fixed by its shape")
        }
        set {
            precondition(newValue.count == rowCount * columnCount, "a dense matrix's value count is fixed by its shape")
            storage = newValue
        }
    }
    /// The values, stored.
    var storage: [Scalar]

    /// Replaces every value; throws, changing nothing, unless `newValues` has exactly as many
    /// values as ``values`` (assigning ``values`` a wrong count traps instead).
    public mutating func replaceValues(with newValues: [Scalar]) throws {
        guard newValues.count == rowCount * columnCount else {
            throw SparseKernelsError.invalidArgument("a \(rowCount) × \(columnCount) dense matrix takes \(rowCount * columnCount) values, not \(newValues.count)")
        }
        storage = newValues
    }

    /// A matrix from column-major values.
    public init(rowCount: Int, columnCount: Int, values: [Scalar]) throws {
        guard rowCount >= 0, columnCount >= 0, let n = multipliedOrNil(rowCount, columnCount), n == values.count else {
            throw SparseKernelsError.invalidArgument(
                "a \(rowCount) × \(columnCount) dense matrix needs \(rowCount) · \(columnCount) values, not \(values.count)")
        }
        self.rowCount = rowCount
        self.columnCount = columnCount
        self.storage = values
    }

    /// The zero matrix.
    public init(zeros rowCount: Int, _ columnCount: Int) {
        self.rowCount = rowCount
        self.columnCount = columnCount
        self.storage = [Scalar](repeating: 0, count: rowCount * columnCount)
    }

    /// The value in row `row` and column `column` (both from 0): `values[row + column * rowCount]`.
    public subscript(row: Int, column: Int) -> Scalar {
        get { values[row + column * rowCount] }
        set { values[row + column * rowCount] = newValue }
    }

    /// The same matrix with values converted to another precision.
    public func converted<Other: SparseScalar>(to: Other.Type = Other.self) -> DenseMatrix<Other> {
        // Shape unchanged, so the count matches.
        try! DenseMatrix<Other>(rowCount: rowCount, columnCount: columnCount, values: values.map { Other($0) })
    }
}
