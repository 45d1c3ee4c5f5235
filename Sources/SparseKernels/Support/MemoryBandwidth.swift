internal import CSparseKernels
import Foundation

/// Measures the machine's memory bandwidth the way the benchmarks report it: a large copy split
/// over threads, counting bytes read plus bytes written.
package enum MemoryBandwidth {
    /// Median bandwidth in GB/s (10⁹ bytes per second) of `repetitions` copies of `bytes`
    /// bytes (after one untimed warm-up copy), using `threads` threads; with `best`, the fastest
    /// copy's bandwidth instead (a roof: what the machine reached at least once).
    package static func measure(threads: Int = 1, bytes: Int = 256 << 20, repetitions: Int = 7, best: Bool = false) throws -> Double {
        let pool = try WorkerPool(threads: threads)
        let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { source.deallocate(); destination.deallocate() }
        memset(source, 1, bytes)
        memset(destination, 2, bytes)
        sk_parallel_copy(pool.raw, destination, source, bytes)
        var rates: [Double] = []
        for _ in 0..<repetitions {
            let start = Stopwatch.now()
            sk_parallel_copy(pool.raw, destination, source, bytes)
            rates.append(Double(2 * bytes) / (Stopwatch.now() - start) / 1e9)
        }
        return best ? rates.max()! : Statistics.median(rates)
    }
}

/// One copy of a fixed buffer, repeated on demand: a memory-bandwidth probe to interleave with a
/// benchmark (buffers and threads are set up once).
package final class CopyProbe {
    private let pool: WorkerPool
    private let source, destination: UnsafeMutableRawPointer
    /// Bytes copied by one `measure`.
    package let bytes: Int

    /// Allocates and fills two buffers of `bytes` bytes and starts `threads` threads.
    package init(threads: Int = 1, bytes: Int = 256 << 20) throws {
        pool = try WorkerPool(threads: threads)
        self.bytes = bytes
        source = .allocate(byteCount: bytes, alignment: 64)
        destination = .allocate(byteCount: bytes, alignment: 64)
        memset(source, 1, bytes)
        memset(destination, 2, bytes)
        sk_parallel_copy(pool.raw, destination, source, bytes)
    }

    deinit {
        source.deallocate()
        destination.deallocate()
    }

    /// Copies once; the bandwidth in bytes per second (bytes read + written).
    package func measure() -> Double {
        let start = Stopwatch.now()
        sk_parallel_copy(pool.raw, destination, source, bytes)
        return Double(2 * bytes) / (Stopwatch.now() - start)
    }
}

/// A monotonic clock in seconds.
package enum Stopwatch {
    /// Seconds on the monotonic clock (CLOCK_MONOTONIC), for differences.
    package static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Times `body` once, in seconds.
    package static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = now()
        try body()
        return now() - start
    }
}

/// Order statistics for benchmark reports.
package enum Statistics {
    /// The q-quantile (0…1) by linear interpolation between order statistics.
    package static func quantile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let position = q * Double(sorted.count - 1)
        let lo = Int(position.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - Double(lo))
    }

    /// The median (the 0.5-quantile).
    package static func median(_ values: [Double]) -> Double { quantile(values, 0.5) }
}

/// Quantiles of durations in fixed memory: a histogram with log-spaced bins from 1 ns to 1000 s,
/// 0.2% wide, so a quantile is known to within 0.2% however many samples are added — for
/// benchmarks whose memory must not grow with the number of steps.
package struct DurationHistogram: Sendable {
    static let low = 1e-9, ratio = 1.002
    static let binCount = Int((Foundation.log(1e3 / low) / Foundation.log(ratio)).rounded(.up)) + 1
    private var counts = [Int](repeating: 0, count: DurationHistogram.binCount)
    package private(set) var count = 0

    /// An empty histogram.
    package init() {}

    /// Counts one duration (seconds; clamped to the histogram's range).
    package mutating func add(_ seconds: Double) {
        let x = max(seconds, DurationHistogram.low)
        let bin = min(DurationHistogram.binCount - 1, Int(Foundation.log(x / DurationHistogram.low) / Foundation.log(DurationHistogram.ratio)))
        counts[bin] += 1
        count += 1
    }

    /// The q-quantile (0…1): the geometric middle of the bin holding it.
    package func quantile(_ q: Double) -> Double {
        guard count > 0 else { return .nan }
        let target = q * Double(count - 1)
        var seen = 0
        for (bin, c) in counts.enumerated() where c > 0 {
            seen += c
            if Double(seen) > target {
                return DurationHistogram.low * Foundation.pow(DurationHistogram.ratio, Double(bin) + 0.5)
            }
        }
        return .nan
    }
}
