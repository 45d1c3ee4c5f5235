/// Errors raised by the RTRL layer: one readable sentence each.
public enum RTRLError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A model directory that is missing a file or whose files disagree with each other.
    case invalidModel(String)
    /// Input data (sequences, tasks) that cannot be used.
    case invalidInput(String)
    /// An option that cannot be honoured (unknown method, n < 1, a method a cell does not support).
    case invalidOption(String)
    /// A structure that would not fit the memory budget, with the bytes it needs.
    case tooLarge(what: String, neededBytes: Int, budgetBytes: Int)

    /// The error as one readable sentence.
    public var description: String {
        switch self {
        case .invalidModel(let s), .invalidInput(let s), .invalidOption(let s): return s
        case .tooLarge(let what, let needed, let budget):
            return "\(what) would need \(ByteCount(needed)) of memory, more than the budget of \(ByteCount(budget))"
        }
    }
}
