/// The banner and size line of a Matrix Market file.
public struct MatrixMarketHeader: Equatable, Sendable {
    /// `coordinate` (sparse triplets) or `array` (dense, column by column).
    public enum Format: String, Sendable {
        /// Sparse: one line per stored entry, `row column [value]` with indices from 1.
        case coordinate
        /// Dense: every value, one a line, column by column.
        case array
    }
    /// The value type. `complex` files are not supported.
    public enum Field: String, Sendable {
        /// Floating-point values.
        case real
        /// Whole-number values (read as floating point).
        case integer
        /// No values: only the positions of the entries, each read as 1 (`coordinate` files only).
        case pattern
    }
    /// How the stored entries expand to the full matrix.
    public enum Symmetry: String, Sendable {
        /// Every entry is stored.
        case general
        /// A(i, j) = A(j, i): only the lower triangle, diagonal included, is stored.
        case symmetric
        /// A(i, j) = −A(j, i): only the strict lower triangle is stored (the diagonal is zero).
        case skewSymmetric = "skew-symmetric"
    }

    /// `coordinate` or `array`, from the banner.
    public var format: Format
    /// `real`, `integer` or `pattern`, from the banner.
    public var field: Field
    /// `general`, `symmetric` or `skew-symmetric`, from the banner.
    public var symmetry: Symmetry
    /// The number of rows, from the size line.
    public var rowCount: Int
    /// The number of columns, from the size line.
    public var columnCount: Int
    /// Entries the size line declares (for `array`, the number of values stored).
    public var entryCount: Int
}
