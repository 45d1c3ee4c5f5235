internal import CSparseKernels

/// A fixed set of threads that runs one parallel task at a time.
///
/// `run` calls its body once for every thread index 0..<threadCount, on the caller's thread for
/// index 0, and returns when every call has returned. Nothing is allocated per run, so a pool can
/// drive a per-step loop.
///
/// A pool may be shared: when several threads call `run` at once, their tasks run one after
/// another (the C pool holds a lock for the whole task), never interleaved. (`@unchecked`: the
/// pool's state lives in C behind that lock; `WorkerPoolTests` runs concurrent callers under the
/// thread sanitizer.) A body must not call `run` on its own pool: that waits forever.
package final class WorkerPool: @unchecked Sendable {
    let raw: OpaquePointer
    /// Number of threads, the caller's included.
    package let threadCount: Int

    /// Starts `threads - 1` worker threads (at least one thread in all).
    package init(threads: Int) throws {
        guard threads >= 1, threads <= 1024 else {
            throw SparseKernelsError.invalidArgument("a worker pool needs 1 to 1024 threads, not \(threads)")
        }
        guard let raw = sk_pool_new(Int32(threads)) else {
            throw SparseKernelsError.invalidArgument("could not start \(threads) threads")
        }
        self.raw = raw
        self.threadCount = Int(sk_pool_threads(raw))
    }

    deinit { sk_pool_free(raw) }

    /// Runs `body(thread, threadCount)` on every thread and waits for all of them.
    package func run(_ body: (_ thread: Int, _ threadCount: Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var box = body
            withUnsafeMutablePointer(to: &box) { pointer in
                sk_pool_run(raw, { context, thread, count in
                    let body = context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee
                    body(Int(thread), Int(count))
                }, pointer)
            }
        }
    }

    /// Splits 0..<costs.count into `parts` contiguous ranges of about equal total cost.
    /// Returns parts + 1 boundaries.
    package static func balancedBoundaries(costs: [Int], parts: Int) -> [Int32] {
        var prefix = [Int](repeating: 0, count: costs.count + 1)
        for k in 0..<costs.count { prefix[k + 1] = prefix[k] + costs[k] }
        let total = prefix[costs.count]
        var bounds = [Int32](repeating: 0, count: parts + 1)
        var k = 0
        for t in 1..<parts {
            let target = total / parts * t + (total % parts) * t / parts
            while k < costs.count && prefix[k] < target { k += 1 }
            bounds[t] = Int32(k)
        }
        bounds[parts] = Int32(costs.count)
        for t in 1...parts where bounds[t] < bounds[t - 1] { bounds[t] = bounds[t - 1] }
        return bounds
    }
}
