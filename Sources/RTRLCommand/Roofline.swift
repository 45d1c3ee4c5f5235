import Foundation
import SparseKernels

/// The machine's roof, measured in the same process as the benchmark it is set against: the
/// multiply-add rate of an optimised dense GEMM (OpenBLAS, loaded at run time, so the package
/// itself never links it) and the copy bandwidth (bytes read + written).
///
/// A step's roofline time is max(multiply-adds ÷ GEMM rate, least bytes ÷ copy bandwidth): what
/// the machine allows for that much arithmetic and traffic; the fraction reached is that time over
/// the measured one.
struct Roofline {
    /// Multiply-adds per second of `Xgemm` on 256 × 256 by 256 × 16384, with the benchmark's threads.
    let gemmRate: Double?
    /// Bytes per second of the fastest of seven 256 MB copies with the benchmark's threads.
    let copyBandwidth: Double
    /// Where the GEMM came from (or why there is none).
    let gemmSource: String

    /// Measures both roofs with `threads` threads, in `precision`.
    static func measure(threads: Int, single: Bool) throws -> Roofline {
        let copy = try MemoryBandwidth.measure(threads: threads, best: true) * 1e9
        switch OpenBLAS.load() {
        case .success(let blas):
            return Roofline(gemmRate: blas.multiplyAddRate(threads: threads, single: single), copyBandwidth: copy,
                            gemmSource: blas.source)
        case .failure(let reason):
            return Roofline(gemmRate: nil, copyBandwidth: copy, gemmSource: reason.description)
        }
    }

    /// The least time a step of `multiplyAdds` and `bytes` can take on this machine (nil without a GEMM rate).
    func seconds(multiplyAdds: Int, bytes: Int) -> Double? {
        guard let gemmRate else { return nil }
        return max(Double(multiplyAdds) / gemmRate, Double(bytes) / copyBandwidth)
    }

    /// Which roof binds: "compute" or "memory".
    func bound(multiplyAdds: Int, bytes: Int) -> String {
        guard let gemmRate else { return "memory" }
        return Double(multiplyAdds) / gemmRate >= Double(bytes) / copyBandwidth ? "compute" : "memory"
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
    private let dgemm: DGEMM
    private let sgemm: SGEMM
    private let setThreads: SetThreads?
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
                                 source: source))
    }

    /// The best of five timings of C = A·B, A 256 × 256, B 256 × 16384 (row-major), after a warm-up.
    func multiplyAddRate(threads: Int, single: Bool) -> Double {
        setThreads?(Int32(threads))
        defer { setThreads?(1) }
        let m = 256, n = 16384, k = 256
        func run<T: BinaryFloatingPoint>(_: T.Type, _ call: (UnsafePointer<T>, UnsafePointer<T>, UnsafeMutablePointer<T>) -> Void) -> Double {
            let a = (0..<(m * k)).map { T(Double($0 % 97) * 1e-3) }, b = (0..<(k * n)).map { T(Double($0 % 89) * 1e-3) }
            var c = [T](repeating: 0, count: m * n)
            var best = Double.infinity
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        for rep in 0..<6 {
                            let t = Stopwatch.time { call(a.baseAddress!, b.baseAddress!, c.baseAddress!) }
                            if rep > 0 { best = min(best, t) }
                        }
                    }
                }
            }
            return Double(m * n * k) / best
        }
        let rowMajor: Int32 = 101, noTranspose: Int32 = 111
        if single {
            return run(Float.self) { a, b, c in
                sgemm(rowMajor, noTranspose, noTranspose, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
            }
        }
        return run(Double.self) { a, b, c in
            dgemm(rowMajor, noTranspose, noTranspose, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
        }
    }
}
