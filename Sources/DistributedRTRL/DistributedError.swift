/// An error of a run split over processes: a failed collective operation, or processes that
/// disagree. One readable sentence.
public struct DistributedError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The sentence.
    public let description: String

    /// An error with the sentence `description`.
    public init(_ description: String) { self.description = description }
}
