/// The scalar types the kernels are written for: `Float` and `Double`.
///
/// The protocol is closed: the C kernels exist for exactly these two types.
public protocol SparseScalar: BinaryFloatingPoint, Sendable, CustomStringConvertible, Codable
where Self.RawSignificand: FixedWidthInteger {
    /// A short name for reports ("float32", "float64").
    static var precisionName: String { get }
}

extension Double: SparseScalar {
    /// "float64".
    public static var precisionName: String { "float64" }
}

extension Float: SparseScalar {
    /// "float32".
    public static var precisionName: String { "float32" }
}
