import Foundation
import SparseKernels

/// The machine's roof, measured in the same process as the benchmark it is set against: the
/// multiply-add rate of an optimised dense GEMM (OpenBLAS, loaded at run time, so the package
/// itself never links it) and the copy bandwidth (bytes read + written).
///
/// A step's roofline time is max(multiply-adds ÷ GEMM rate, least bytes ÷ copy bandwidth): what
/// the machine allows for that much arithmetic and traffic; the fraction reached is that time over
/// the measured one. On a shared machine the speed drifts over seconds, so a benchmark measures
/// the roof between rounds of steps (`sample`) and sets each round against the roof next to it.
final class RooflineProbe {
    private let blas: OpenBLAS?
    /// Why there is no GEMM, or the library's configuration.
    let gemmSource: String
    private let threads: Int
    private let single: Bool
    private let copy: CopyProbe
    private var a: [Double] = [], b: [Double] = [], c: [Double] = []
    private var af: [Float] = [], bf: [Float] = [], cf: [Float] = []
    private static let m = 256, n = 2048, k = 256

    /// Opens OpenBLAS (if present) and allocates the buffers: 2 × 256 MB to copy, and the GEMM's operands.
    init(threads: Int, single: Bool) throws {
        self.threads = threads
        self.single = single
        copy = try CopyProbe(threads: threads)
        switch OpenBLAS.load() {
        case .success(let blas):
            self.blas = blas
            gemmSource = blas.source
            let (m, n, k) = (Self.m, Self.n, Self.k)
            if single {
                af = (0..<(m * k)).map { Float($0 % 97) * 1e-3 }; bf = (0..<(k * n)).map { Float($0 % 89) * 1e-3 }
                cf = [Float](repeating: 0, count: m * n)
            } else {
                a = (0..<(m * k)).map { Double($0 % 97) * 1e-3 }; b = (0..<(k * n)).map { Double($0 % 89) * 1e-3 }
                c = [Double](repeating: 0, count: m * n)
            }
            _ = gemmRate() // warm-up: OpenBLAS starts its threads
        case .failure(let reason):
            blas = nil
            gemmSource = reason.description
        }
    }

    /// Multiply-adds per second of one GEMM, 256 × 256 by 256 × 2048, with the benchmark's threads
    /// (nil without OpenBLAS).
    func gemmRate() -> Double? {
        guard let blas else { return nil }
        let (m, n, k) = (Self.m, Self.n, Self.k)
        let seconds = single
            ? af.withUnsafeBufferPointer { a in bf.withUnsafeBufferPointer { b in cf.withUnsafeMutableBufferPointer { c in
                Stopwatch.time { blas.multiply(m, n, k, a.baseAddress!, b.baseAddress!, c.baseAddress!, threads: threads) } } } }
            : a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in c.withUnsafeMutableBufferPointer { c in
                Stopwatch.time { blas.multiply(m, n, k, a.baseAddress!, b.baseAddress!, c.baseAddress!, threads: threads) } } } }
        return Double(m * n * k) / seconds
    }

    /// Bytes per second (read + written) of one 256 MB copy with the benchmark's threads (large enough
    /// that the copy streams past the caches, as a read-once-write-once kernel can at best).
    func copyBandwidth() -> Double { copy.measure() }
}

/// One round's roof next to the step times of that round.
struct RooflineSample {
    var gemmRate: Double?
    var copyBandwidth: Double
    var stepSeconds: Double

    /// The least time a step of `multiplyAdds` and `bytes` can take (nil without a GEMM rate).
    func roof(multiplyAdds: Int, bytes: Int) -> Double? {
        gemmRate.map { max(Double(multiplyAdds) / $0, Double(bytes) / copyBandwidth) }
    }
}

/// OpenBLAS's CBLAS GEMM, opened with dlopen: the benchmark's reference for the machine's dense
/// multiply-add rate. Its own threads are set to the benchmark's count for the measurement.
struct OpenBLAS {
    private typealias DGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Double, UnsafePointer<Double>?, Int32,
                                              UnsafePointer<Double>?, Int32, Double, UnsafeMutablePointer<Double>?, Int32) -> Void
    private typealias SGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                              UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private typealias SetThreads = @convention(c) (Int32) -> Void
    private typealias Shutdown = @convention(c) () -> Int32
    private let dgemm: DGEMM
    private let sgemm: SGEMM
    private let setThreads: SetThreads?
    /// Stops OpenBLAS's threads (they restart with the next call): after a call they would spin
    /// for about 2^28 cycles and take the cores from the steps timed next.
    private let shutdown: Shutdown?
    /// The library's name and configuration.
    let source: String

    struct Missing: Error, CustomStringConvertible {
        let description: String
    }

    static func load() -> Result<OpenBLAS, Missing> {
        let names = ["libopenblas.so.0", "libopenblas.so"]
        guard let handle = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_LOCAL) }).first else {
            return .failure(Missing(description: "no OpenBLAS (install Debian's libopenblas0 for the GEMM roof)"))
        }
        guard let d = dlsym(handle, "cblas_dgemm"), let s = dlsym(handle, "cblas_sgemm") else {
            return .failure(Missing(description: "OpenBLAS without cblas_dgemm"))
        }
        var source = "openblas"
        if let config = dlsym(handle, "openblas_get_config") {
            typealias GetConfig = @convention(c) () -> UnsafePointer<CChar>?
            if let text = unsafeBitCast(config, to: GetConfig.self)() { source = String(cString: text) }
        }
        return .success(OpenBLAS(dgemm: unsafeBitCast(d, to: DGEMM.self), sgemm: unsafeBitCast(s, to: SGEMM.self),
                                 setThreads: dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) },
                                 shutdown: dlsym(handle, "blas_thread_shutdown_").map { unsafeBitCast($0, to: Shutdown.self) },
                                 source: source))
    }

    /// C = A·B (row-major, m × k by k × n) with `threads` OpenBLAS threads (set back to 1 after).
    func multiply(_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>,
                  _ c: UnsafeMutablePointer<Double>, threads: Int) {
        setThreads?(Int32(threads))
        defer { setThreads?(1); if threads > 1 { _ = shutdown?() } }
        dgemm(101, 111, 111, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }

    /// The same in single precision.
    func multiply(_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, threads: Int) {
        setThreads?(Int32(threads))
        defer { setThreads?(1); if threads > 1 { _ = shutdown?() } }
        sgemm(101, 111, 111, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }
}
