/// A pointer to an array's elements that is never nil (an empty array yields a pointer to a
/// dummy element, which C code receiving a zero count never reads).
@inlinable
func withNonNullPointer<T, R>(_ array: [T], _ body: (UnsafePointer<T>) throws -> R) rethrows -> R {
    try array.withUnsafeBufferPointer { buffer in
        if let base = buffer.baseAddress { return try body(base) }
        return try withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { try body(UnsafePointer($0.baseAddress!)) }
    }
}

/// An owned, fixed-size, zero-filled buffer for plan data passed to C (freed with its owner).
@usableFromInline
final class OwnedBuffer<T> {
    @usableFromInline let pointer: UnsafeMutablePointer<T>
    @usableFromInline let count: Int
    init(count: Int, zeroedAs zero: T, alignment: Int? = nil) {
        self.count = count
        if let alignment {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * MemoryLayout<T>.stride,
                                                       alignment: Swift.max(alignment, MemoryLayout<T>.alignment))
                .bindMemory(to: T.self, capacity: Swift.max(count, 1))
        } else {
            pointer = .allocate(capacity: Swift.max(count, 1))
        }
        pointer.initialize(repeating: zero, count: Swift.max(count, 1))
    }
    deinit { pointer.deallocate() }
    var bytes: Int { MemoryLayout<T>.stride * count }
}
