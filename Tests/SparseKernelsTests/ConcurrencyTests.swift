import Dispatch
import SparseKernels
import XCTest

/// Plans and pools shared by concurrent callers, as `Sendable` allows: every caller must get the
/// serial result, bit for bit, and no call may hang. `Scripts/sanitize thread` runs these under
/// the thread sanitizer, which reports any unsynchronised access the sharing causes.
final class ConcurrencyTests: XCTestCase {
    /// Callers running at once, and calls each makes.
    private let callers = 4
    private static let callsPerCaller = 25
    private var callsPerCaller: Int { Self.callsPerCaller }

    /// Runs `body(caller)` on `callers` threads at once and waits for all of them.
    private func concurrently(_ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: callers, execute: body)
    }

    /// Concurrent `run` calls on one pool never interleave: each task sees only its own writes.
    func testWorkerPoolSerialisesConcurrentCallers() throws {
        for threads in [1, 2, 3] {
            let pool = try WorkerPool(threads: threads)
            let results = SlotArray<Int>(count: callers)
            concurrently { caller in
                var total = 0
                for call in 0..<Self.callsPerCaller {
                    // Every thread of the task writes its slot; thread 0 sums them after `run`.
                    var slots = [Int](repeating: -1, count: threads)
                    slots.withUnsafeMutableBufferPointer { slots in
                        pool.run { thread, count in
                            precondition(count == threads)
                            slots[thread] = caller * 1000 + call * 10 + thread
                        }
                    }
                    total += slots.reduce(0, +)
                }
                results[caller] = total
            }
            for caller in 0..<callers {
                let expected = (0..<callsPerCaller).reduce(0) { sum, call in
                    sum + (0..<threads).reduce(0) { $0 + caller * 1000 + call * 10 + $1 }
                }
                XCTAssertEqual(results[caller], expected, "threads \(threads), caller \(caller)")
            }
        }
    }

    /// One masked product plan of each layout and thread count, shared by concurrent callers with
    /// their own values: every result equals the serial one.
    func testMaskedProductPlanSharedByConcurrentCallers() throws {
        var random = RandomSparse(seed: 41)
        let a: SparseMatrix<Double> = random.matrix(400, 400, density: 0.02)
        let b: SparseMatrix<Double> = random.matrix(400, 400, density: 0.02)
        let mask = random.pattern(400, 400, density: 0.05)
        // Each caller scales B by its own factor, so a caller reading another's values shows.
        let factors = (0..<callers).map { Double($0 + 2) }
        for layout in MaskedProductPlan.Layout.allCases {
            for threads in [1, 2] {
                let plan = try MaskedProductPlan(a: a.pattern, b: b.pattern, mask: mask, layout: layout, threads: threads)
                let expected = try factors.map { f in
                    try plan.product(a, try SparseMatrix(pattern: b.pattern, values: b.values.map { $0 * f })).values
                }
                XCTAssertTrue(expected[0].contains { $0 != 0 }, "the problem must have non-zero products")
                let wrong = SlotArray<Int>(count: callers)
                concurrently { caller in
                    let scaled = try! SparseMatrix(pattern: b.pattern, values: b.values.map { $0 * factors[caller] })
                    var c = SparseMatrix<Double>(zerosOn: mask)
                    var count = 0
                    for _ in 0..<Self.callsPerCaller {
                        try! plan.execute(a, scaled, into: &c)
                        if c.values != expected[caller] { count += 1 }
                    }
                    wrong[caller] = count
                }
                for caller in 0..<callers {
                    XCTAssertEqual(wrong[caller], 0, "\(layout), \(threads) threads, caller \(caller): wrong results")
                }
            }
        }
    }

    /// One block product plan shared by callers with their own workspaces and values.
    func testBlockProductPlanSharedWithPerCallerWorkspaces() throws {
        var random = RandomSparse(seed: 43)
        let n = 60
        let a = try random.pattern(n, n, density: 0.1).addingDiagonal()
        let aValues: [Double] = random.values(a.nonzeroCount)
        let blocks = [
            BlockProductPlan.Block(rows: (0..<30).map { Int32($0) }, columnCount: 9, columnSumStart: 0),
            BlockProductPlan.Block(rows: (20..<60).map { Int32($0) }, columnCount: 5, columnSumStart: 9),
        ]
        let valueCount = 30 * 9 + 40 * 5
        let weights: [Double] = random.values(n)
        for threads in [1, 2] {
            let plan = try BlockProductPlan(a: a, blocks: blocks, columnSumCount: 14, threads: threads)
            let starts: [[Double]] = (0..<callers).map { _ in random.values(valueCount) }
            // The serial result of three calls from each caller's start.
            @Sendable func run(_ x: inout [Double], _ sums: inout [Double], _ workspace: BlockProductPlan.Workspace) throws {
                for _ in 0..<3 {
                    try aValues.withUnsafeBufferPointer { av in
                        try weights.withUnsafeBufferPointer { w in
                            try x.withUnsafeMutableBufferPointer { xv in
                                try sums.withUnsafeMutableBufferPointer { s in
                                    try plan.execute(a: av, x: xv, additions: UnsafeBufferPointer(start: nil, count: 0),
                                                     rowWeights: w, columnSums: s, workspace: workspace)
                                }
                            }
                        }
                    }
                }
            }
            let serialWorkspace = try plan.makeWorkspace()
            let expected = try starts.map { start in
                var x = start, sums = [Double](repeating: 0, count: 14)
                try run(&x, &sums, serialWorkspace)
                return x + sums
            }
            XCTAssertNotEqual(expected[0], expected[1])
            let wrong = SlotArray<Int>(count: callers)
            concurrently { caller in
                let workspace = try! plan.makeWorkspace()
                var count = 0
                for _ in 0..<Self.callsPerCaller {
                    var x = starts[caller], sums = [Double](repeating: 0, count: 14)
                    try! run(&x, &sums, workspace)
                    if x + sums != expected[caller] { count += 1 }
                }
                wrong[caller] = count
            }
            for caller in 0..<callers {
                XCTAssertEqual(wrong[caller], 0, "\(threads) threads, caller \(caller): wrong results")
            }
        }
    }

    /// One scaled block product plan (whose pool is the plan's) shared by callers with their own
    /// workspaces and values.
    func testScaledBlockProductPlanSharedWithPerCallerWorkspaces() throws {
        // Two blocks of 2 columns × 3 rows; B is block diagonal with full 2 × 2 blocks.
        let entries: [(row: Int, column: Int)] = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 2), (3, 2), (2, 3), (3, 3)]
        let b = try SparsityPattern(rowCount: 4, columnCount: 4, entries: entries)
        let index = (0..<8).map { Int32($0) }
        var random = RandomSparse(seed: 47)
        let bValues: [Double] = random.values(8)
        let active = [UInt8](repeating: 1, count: 4)
        for threads in [1, 2] {
            let plan = try ScaledBlockProductPlan(blockColumns: [2, 2], blockRows: [3, 3], blockFirstRows: [0, 3],
                                                  rowCount: 6, b: b, bValueIndex: index, bValueCount: 8, threads: threads)
            let starts: [[Double]] = (0..<callers).map { _ in random.values(12) }
            @Sendable func run(_ y: [Double], _ workspace: ScaledBlockProductPlan.Workspace) throws -> [Double] {
                var y = y, s = [Double](repeating: 1, count: 4), w = [Double](repeating: 0.5, count: 4)
                var g = [Double](repeating: 0, count: 6)
                for _ in 0..<3 {
                    try y.withUnsafeMutableBufferPointer { yv in
                        try s.withUnsafeMutableBufferPointer { sv in
                            try w.withUnsafeMutableBufferPointer { wv in
                                try g.withUnsafeMutableBufferPointer { gv in
                                    try bValues.withUnsafeBufferPointer { bv in
                                        try active.withUnsafeBufferPointer { av in
                                            _ = try plan.update(values: yv, scales: sv, pendingWeights: wv, g: gv,
                                                                bValues: bv, activeRows: av, workspace: workspace)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                return y + s + w + g
            }
            let serialWorkspace = plan.makeWorkspace()
            let expected = try starts.map { try run($0, serialWorkspace) }
            XCTAssertNotEqual(expected[0], expected[1])
            let wrong = SlotArray<Int>(count: callers)
            concurrently { caller in
                let workspace = plan.makeWorkspace()
                var count = 0
                for _ in 0..<Self.callsPerCaller where try! run(starts[caller], workspace) != expected[caller] {
                    count += 1
                }
                wrong[caller] = count
            }
            for caller in 0..<callers {
                XCTAssertEqual(wrong[caller], 0, "\(threads) threads, caller \(caller): wrong results")
            }
        }
    }
}

/// One slot per concurrent caller, each written by its caller only, read after all have finished
/// (`concurrentPerform` returning orders the writes before the reads).
final class SlotArray<Element>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<Element?>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }
    deinit {
        _ = slots.deinitialize()
        slots.deallocate()
    }
    subscript(index: Int) -> Element {
        get { slots[index]! }
        set { slots[index] = newValue }
    }
}
