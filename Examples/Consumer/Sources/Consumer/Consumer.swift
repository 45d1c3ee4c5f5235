// A consumer of SparseRTRL in Swift 6 language mode (see Package.swift). Every check exits with
// status 1 and a message on failure; on success it prints one summary line.
//
// 1. The README's snippets: a SparseMatrix, a SparsityPattern mask, a MaskedProductPlan executed
//    into a SparseMatrix, written as Matrix Market; values checked against a dense triple loop.
// 2. One MaskedProductPlan (each layout, 1 and 2 threads) shared by concurrent tasks, each with
//    its own output: every result equals the serial one bit for bit.
// 3. One OnlineLearner per task on the same model and sequence: the gradients are equal.
import Foundation
import RTRL
import SparseKernels

/// Exits with a message if `condition` is false.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("consumer: FAILED: \(message())\n".utf8))
        exit(1)
    }
}

/// A small deterministic generator (SplitMix64), so the consumer depends only on stable API.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D1_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// C = A·B on the mask's entries, by a plain dense triple loop, in the mask's storage order.
func denseMaskedProduct(_ a: SparseMatrix<Double>, _ b: SparseMatrix<Double>, mask: SparsityPattern) -> [Double] {
    let m = a.rowCount, k = a.columnCount, n = b.columnCount
    let ad = a.denseColumnMajor(), bd = b.denseColumnMajor()
    var full = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for l in 0..<k { sum += ad[i + l * m] * bd[l + j * k] }
            full[i + j * m] = sum
        }
    }
    var result: [Double] = []
    for j in 0..<n {
        for i in mask.rows(inColumn: j) { result.append(full[Int(i) + j * m]) }
    }
    return result
}

func nearlyEqual(_ x: [Double], _ y: [Double]) -> Bool {
    x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($0), abs($1)) }
}

func bits(_ values: [Double]) -> [UInt64] { values.map(\.bitPattern) }

// MARK: 1. The README's snippets

func readmeSnippet() throws {
    // C⟨M⟩ = A·B with a plan built once and rerun with new values.
    let a = try SparseMatrix<Double>(rowCount: 3, columnCount: 3, rows: [0, 1, 2, 2], columns: [0, 1, 0, 2],
                                     values: [1, 2, 3, 4], duplicates: .reject)
    let mask = try SparsityPattern(rowCount: 3, columnCount: 3, entries: [(row: 2, column: 0), (row: 1, column: 1)])
    let plan = try MaskedProductPlan(a: a.pattern, b: a.pattern, mask: mask, threads: 2)
    var c = SparseMatrix<Double>(zerosOn: mask)
    try plan.execute(a, a, into: &c)
    check(nearlyEqual(c.values, denseMaskedProduct(a, a, mask: mask)),
          "README product \(c.values) differs from the dense triple loop")
    // A·A: (2,0) = 3·1 + 4·3 = 15, (1,1) = 2·2 = 4.
    check(c[2, 0] == 15 && c[1, 1] == 4, "README product: C(2,0) = \(c[2, 0]), C(1,1) = \(c[1, 1]), expected 15 and 4")

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("consumer-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("c.mtx").path
    try MatrixMarket.write(c, to: path)
    let back = try MatrixMarket.readSparse(path)
    check(back.pattern == c.pattern && back.values == c.values, "README product did not survive MatrixMarket.write/readSparse")
}

// MARK: 2. One plan shared by concurrent tasks

let taskCount = 4
let repetitions = 100

func randomMatrix(_ rows: Int, _ columns: Int, density: Double, rng: inout SplitMix) throws -> SparseMatrix<Double> {
    var r: [Int] = [], c: [Int] = [], v: [Double] = []
    for j in 0..<columns {
        for i in 0..<rows where Double.random(in: 0..<1, using: &rng) < density {
            r.append(i); c.append(j); v.append(Double.random(in: -1...1, using: &rng))
        }
    }
    return try SparseMatrix(rowCount: rows, columnCount: columns, rows: r, columns: c, values: v, duplicates: .reject)
}

/// Runs `plan` in `taskCount` concurrent tasks, `repetitions` times each into the task's own
/// output (filled with NaN before every call), and returns every task's results.
func sharedRuns(_ plan: MaskedProductPlan, _ a: SparseMatrix<Double>, _ b: SparseMatrix<Double>) async throws -> [[UInt64]] {
    try await withThrowingTaskGroup(of: [[UInt64]].self) { group in
        for _ in 0..<taskCount {
            group.addTask {
                var c = SparseMatrix<Double>(zerosOn: plan.mask)
                var results: [[UInt64]] = []
                results.reserveCapacity(repetitions)
                for _ in 0..<repetitions {
                    c.values = [Double](repeating: .nan, count: c.nonzeroCount)
                    try plan.execute(a, b, into: &c)
                    results.append(bits(c.values))
                }
                return results
            }
        }
        var all: [[UInt64]] = []
        for try await results in group { all += results }
        return all
    }
}

/// Returns the number of shared executions checked.
func sharedPlans() async throws -> Int {
    var rng = SplitMix(state: 20_240_601)
    let size = 300
    let a = try randomMatrix(size, size, density: 0.03, rng: &rng)
    let b = try randomMatrix(size, size, density: 0.03, rng: &rng)
    let mask = try randomMatrix(size, size, density: 0.1, rng: &rng).pattern
    let expected = denseMaskedProduct(a, b, mask: mask)
    var checked = 0
    for layout in MaskedProductPlan.Layout.allCases {
        var serialByThreads: [Int: [UInt64]] = [:]
        for threads in [1, 2] {
            let plan = try MaskedProductPlan(a: a.pattern, b: b.pattern, mask: mask, layout: layout, threads: threads)
            check(plan.layout == layout && plan.threadCount == threads, "plan has \(plan.layout)/\(plan.threadCount), asked for \(layout)/\(threads)")
            var serial = SparseMatrix<Double>(zerosOn: mask)
            try plan.execute(a, b, into: &serial)
            check(nearlyEqual(serial.values, expected), "\(layout), \(threads) threads: serial product differs from the dense triple loop")
            serialByThreads[threads] = bits(serial.values)

            let results = try await sharedRuns(plan, a, b)
            check(results.count == taskCount * repetitions, "\(layout), \(threads) threads: \(results.count) results, expected \(taskCount * repetitions)")
            for (index, result) in results.enumerated() where result != bits(serial.values) {
                check(false, "\(layout), \(threads) threads: shared execution \(index) differs from the serial result")
            }
            checked += results.count
        }
        check(serialByThreads[1] == serialByThreads[2], "\(layout): 1 and 2 threads give different bits")
    }
    return checked
}

// MARK: 3. One learner per task

func learnersPerTask() async throws -> (parameters: Int, loss: Double) {
    let config = try ModelConfiguration(cell: .gru, inputSize: 4, hiddenSize: 16, outputSize: 4)
    let model = try Model<Double>(random: config, density: 0.25, seed: 1)
    var rng = SplitMix(state: 7)
    let steps = 40
    let inputs: [[Double]] = (0..<steps).map { _ in (0..<4).map { _ in Double.random(in: -1...1, using: &rng) } }
    let targets: [Int] = (0..<steps).map { t in t % 3 == 2 ? Int.random(in: 0..<4, using: &rng) : -1 }

    // Model, inputs and the results (Parameters, Double) are Sendable values; each task builds
    // its own learner.
    let results = try await withThrowingTaskGroup(of: (Parameters<Double>, Double).self) { group in
        for _ in 0..<2 {
            group.addTask {
                let learner = try OnlineLearner(model: model, method: .snap(2))
                var loss = 0.0
                for t in 0..<steps { loss += try learner.step(inputs: inputs[t], targets: [targets[t]]) }
                return (learner.gradient(), loss)
            }
        }
        var all: [(Parameters<Double>, Double)] = []
        for try await result in group { all.append(result) }
        return all
    }
    check(results.count == 2, "\(results.count) learner results, expected 2")
    let (first, firstLoss) = results[0], (second, secondLoss) = results[1]
    check(first.count == model.parameters.count, "gradient has \(first.count) values, the model \(model.parameters.count)")
    check(first.isFinite && first.flattened.contains { $0 != 0 }, "the gradient is not finite, or all zero")
    check(firstLoss.isFinite && firstLoss > 0, "the loss is \(firstLoss)")
    check(bits(first.flattened) == bits(second.flattened), "two learners on the same sequence give different gradients")
    check(first.weightHH.pattern == second.weightHH.pattern && first.weightIH.pattern == second.weightIH.pattern,
          "two learners' gradients have different patterns")
    check(firstLoss.bitPattern == secondLoss.bitPattern, "two learners on the same sequence give different losses")
    return (first.count, firstLoss)
}

@main
struct Consumer {
    static func main() async {
        do {
            try readmeSnippet()
            let executions = try await sharedPlans()
            let learners = try await learnersPerTask()
            print("consumer: ok — README product, \(executions) shared plan executions over \(MaskedProductPlan.Layout.allCases.count) layouts × 1, 2 threads bit-identical, 2 learners' gradients (\(learners.parameters) values, loss \(String(format: "%.4f", learners.loss))) identical")
        } catch {
            check(false, "error thrown: \(error)")
        }
    }
}
