import Foundation

/// Errors raised by the kernel layer. Each carries one readable sentence in `description`.
public enum SparseKernelsError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Arguments that contradict each other or a type's invariants (shapes, counts, indices).
    case invalidArgument(String)
    /// Two operands whose shapes do not fit the operation.
    case shapeMismatch(String)
    /// The same (row, column) appears twice where duplicates were to be rejected.
    case duplicateEntry(row: Int, column: Int)
    /// A Matrix Market file that could not be read, with the file and, where known, the line.
    case malformedFile(path: String, line: Int?, reason: String)
    /// A file that could not be opened, created or renamed.
    case fileSystem(path: String, reason: String)
    /// CHOLMOD reported an error (negative status) with its message.
    case cholmod(status: Int32, message: String)
    /// A plan or pattern would need more memory than the caller allowed.
    case memoryBudgetExceeded(what: String, neededBytes: Int, budgetBytes: Int)
    /// A size that does not fit the 32-bit indices the kernels use.
    case indexOverflow(String)

    /// The error as one readable sentence, naming the file and line, the shapes or the bytes
    /// involved.
    public var description: String {
        switch self {
        case .invalidArgument(let s), .shapeMismatch(let s), .indexOverflow(let s):
            return s
        case .duplicateEntry(let row, let column):
            return "duplicate entry at row \(row), column \(column) (0-based)"
        case .malformedFile(let path, let line, let reason):
            if let line { return "\(path), line \(line): \(reason)" }
            return "\(path): \(reason)"
        case .fileSystem(let path, let reason):
            return "\(path): \(reason)"
        case .cholmod(let status, let message):
            return "CHOLMOD error \(status): \(message)"
        case .memoryBudgetExceeded(let what, let needed, let budget):
            return "\(what) would need \(ByteCount(needed)) of memory, more than the budget of \(ByteCount(budget))"
        }
    }
}

/// A byte count printed with a binary unit ("1.50 GiB").
public struct ByteCount: CustomStringConvertible, Sendable {
    /// The number of bytes.
    public let bytes: Int
    /// A count of bytes.
    public init(_ bytes: Int) { self.bytes = bytes }
    /// The count in the largest binary unit it reaches, with two decimals ("1.50 GiB"); below
    /// 1 KiB, in bytes ("512 bytes").
    public var description: String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.2f %@", value, units[unit])
    }
}
