/// A pointer to an array's elements that is never nil (an empty array yields a pointer to a
/// dummy element, which C code receiving a zero count never reads).
@inlinable
func withNonNullPointer<T, R>(_ array: [T], _ body: (UnsafePointer<T>) throws -> R) rethrows -> R {
    try array.withUnsafeBufferPointer { buffer in
        if let base = buffer.baseAddress { return try body(base) }
        return try withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { try body(UnsafePointer($0.baseAddress!)) }
    }
}

/// An owned, fixed-size, zero-filled buffer for plan data passed to C (freed with its owner);
/// with an alignment, for values the kernels stream (a 64-byte alignment keeps each vector load
/// inside one cache line). Shared with the package's other modules for their kernels' arrays.
@usableFromInline
package final class OwnedBuffer<T> {
    @usableFromInline package let pointer: UnsafeMutablePointer<T>
    @usableFromInline package let count: Int
    package init(count: Int, zeroedAs zero: T, alignment: Int? = nil) {
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
    /// The `count` values as a buffer (valid while the owner lives).
    package var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    var bytes: Int { MemoryLayout<T>.stride * count }
}
