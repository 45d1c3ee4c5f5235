/// Which entries of the influence matrix J = ds/dθ a method keeps (<doc:SnApPatterns>).
///
/// SnAp-n keeps entry (q, θ) iff the unit of state variable q is reachable from the unit θ writes
/// within n − 1 hops of the dependency graph A; the exact closure (n = ∞) keeps every entry that
/// can ever be non-zero, which is exact RTRL. The mask is unit-level: for the LSTM both h and c
/// of a reached unit are kept.
///
/// Every parameter of unit i shares the reach set R(i) (the units kept for it). The pattern's
/// size and per-step work are computed before anything proportional to them is allocated, so a
/// pattern that would not fit is refused with the bytes it needs.
public struct InfluencePattern: Sendable, CustomStringConvertible {
    /// SnAp order: `snap(n)` for n ≥ 1, or the exact closure.
    public enum Order: Hashable, Sendable, CustomStringConvertible {
        /// SnAp-n: the units reachable within n − 1 hops (n ≥ 1).
        case snap(Int)
        /// The closure: every unit that can ever be reached (exact RTRL).
        case exact
        /// "snap-n" or "exact".
        public var description: String {
            switch self {
            case .snap(let n): return "snap-\(n)"
            case .exact: return "exact"
            }
        }
        /// Hops allowed (n − 1), or nil for the closure.
        var hops: Int? {
            if case .snap(let n) = self { return n - 1 }
            return nil
        }
    }

    /// Size and work of a pattern, known before building it.
    public struct Statistics: Equatable, Sendable {
        /// Influence entries kept: (state variable, parameter) pairs.
        public var nonzeros: Int
        /// Σ_i |R(i)|: (unit, reached unit) pairs.
        public var reachPairs: Int
        /// Multiply-adds of one influence update D·J on the pattern: Σ_i f_i · nnz(D[R(i), R(i)]).
        public var multiplyAddsPerStep: Int
        /// Memory of one influence matrix's values in Float64, in bytes.
        public var bytes: Int { nonzeros * 8 }
    }

    /// The SnAp order the pattern was built for.
    public let order: Order
    /// The dependency graph of the model's units.
    public let graph: DependencyGraph
    /// The order and origin of the model's core parameters (the columns of J).
    public let layout: ParameterLayout
    /// Reach sets as a k × k pattern: column i lists R(i), the units kept for unit i's parameters.
    public let reach: SparsityPattern
    /// The pattern's size and per-step work.
    public let statistics: Statistics
    /// The units whose parameters' columns of J the pattern keeps: all of them, or a shard's
    /// (a process's part of a run split over processes, ``init(graph:layout:order:units:memoryBudget:)``).
    /// Outside it, reach sets are empty; the statistics count the shard only.
    public let units: Range<Int>

    /// One line: the order, the cell and size, the entries kept and the work per step (printing a
    /// pattern does not list its reach sets).
    public var description: String {
        "InfluencePattern(\(order), \(graph.cell.rawValue) with \(graph.hiddenSize) units, \(statistics.nonzeros) entries, "
            + "\(statistics.multiplyAddsPerStep) multiply-adds per step)"
    }

    /// Counts a pattern's size and work without building it. With `stopAboveBytes`, the count
    /// stops as soon as the influence values exceed that many bytes and throws `tooLarge` with
    /// the bytes counted so far (a lower bound), so a hopeless pattern is refused quickly.
    /// With `units`, only those units' parameters are counted (a shard's part of J).
    public static func statistics(graph: DependencyGraph, layout: ParameterLayout, order: Order, units: Range<Int>? = nil,
                                  stopAboveBytes: Int? = nil) throws -> Statistics {
        try validate(order)
        let units = try checkedUnits(units, graph: graph)
        var stats = Statistics(nonzeros: 0, reachPairs: 0, multiplyAddsPerStep: 0)
        let components = graph.cell.stateComponents
        var walker = ReachWalker(graph: graph)
        for i in units {
            let reached = walker.walk(from: i, hops: order.hops)
            let f = layout.parameterCount(ofUnit: i)
            stats.reachPairs += reached.count
            stats.nonzeros += components * reached.count * f
            stats.multiplyAddsPerStep += f * walker.jacobianEntriesWithinReach()
            if let limit = stopAboveBytes, stats.bytes > limit {
                throw RTRLError.tooLarge(what: "the \(order) influence pattern (at least \(stats.nonzeros) entries; counting stopped at unit \(i + 1) of \(graph.hiddenSize))",
                                         neededBytes: stats.bytes, budgetBytes: limit)
            }
        }
        return stats
    }

    /// Builds the pattern, refusing (before allocating the reach sets) one whose influence
    /// values would exceed `memoryBudget` bytes in Float64.
    ///
    /// With `units` (a non-empty range of the hidden units), the pattern is a shard: it keeps the
    /// columns of those units' parameters only, with the same rows as the whole pattern, and the
    /// budget applies to that part. Shards of consecutive ranges covering every unit hold, between
    /// them, exactly the whole pattern's entries.
    public init(graph: DependencyGraph, layout: ParameterLayout, order: Order, units: Range<Int>? = nil,
                memoryBudget: Int = Int.max) throws {
        let units = try InfluencePattern.checkedUnits(units, graph: graph)
        // Counting costs up to k · nnz(A); where that is large, stop at the budget (the error then
        // gives a lower bound), otherwise count exactly so the error gives the exact need.
        let countingCost = units.count * max(graph.units.nonzeroCount, 1)
        let stats = try InfluencePattern.statistics(graph: graph, layout: layout, order: order, units: units,
                                                    stopAboveBytes: memoryBudget == Int.max || countingCost < 50_000_000 ? nil : memoryBudget)
        guard stats.bytes <= memoryBudget else {
            throw RTRLError.tooLarge(what: "the \(order) influence pattern (\(stats.nonzeros) entries)",
                                     neededBytes: stats.bytes, budgetBytes: memoryBudget)
        }
        guard stats.nonzeros <= Int(Int32.max) else {
            throw RTRLError.tooLarge(what: "the \(order) influence pattern (\(stats.nonzeros) entries, beyond 32-bit indices)",
                                     neededBytes: stats.bytes, budgetBytes: min(memoryBudget, 8 * Int(Int32.max)))
        }
        var walker = ReachWalker(graph: graph)
        var pointers = [Int32](repeating: 0, count: graph.hiddenSize + 1)
        var rows: [Int32] = []
        rows.reserveCapacity(stats.reachPairs)
        for i in 0..<graph.hiddenSize {
            if units.contains(i) { rows.append(contentsOf: walker.walk(from: i, hops: order.hops).sorted()) }
            pointers[i + 1] = Int32(rows.count)
        }
        self.units = units
        self.order = order
        self.graph = graph
        self.layout = layout
        self.reach = SparsityPattern(uncheckedReach: graph.hiddenSize, pointers, rows)
        self.statistics = stats
    }

    /// The units of a shard, checked (nil: all of them).
    static func checkedUnits(_ units: Range<Int>?, graph: DependencyGraph) throws -> Range<Int> {
        guard let units else { return 0..<graph.hiddenSize }
        guard !units.isEmpty, units.lowerBound >= 0, units.upperBound <= graph.hiddenSize else {
            throw RTRLError.invalidOption("a shard's units must be a non-empty range within 0..<\(graph.hiddenSize), not \(units)")
        }
        return units
    }

    /// Whether the pattern keeps only some units' columns (a shard).
    public var isShard: Bool { units != 0..<graph.hiddenSize }

    static func validate(_ order: Order) throws {
        if case .snap(let n) = order, n < 1 {
            throw RTRLError.invalidOption("the SnAp order n must be at least 1, not \(n)")
        }
    }

    /// R(i), sorted (empty for a unit outside a shard's ``units``).
    public func reach(ofUnit i: Int) -> ArraySlice<Int32> { reach.rows(inColumn: i) }
}

extension SparsityPattern {
    fileprivate init(uncheckedReach k: Int, _ pointers: [Int32], _ rows: [Int32]) {
        try! self.init(rowCount: k, columnCount: k, columnPointers: pointers, rowIndices: rows)
    }
}

/// Breadth-first search over the dependency graph, reusing its workspace across start units.
struct ReachWalker {
    let graph: DependencyGraph
    private var stamp: [Int32]
    private var current: Int32 = 0
    private var visited: [Int32] = []
    private var frontier: [Int32] = []
    private var next: [Int32] = []

    init(graph: DependencyGraph) {
        self.graph = graph
        stamp = [Int32](repeating: -1, count: graph.hiddenSize)
    }

    /// The units reachable from `start` within `hops` hops (nil: any number), in visit order.
    mutating func walk(from start: Int, hops: Int?) -> [Int32] {
        current += 1
        visited.removeAll(keepingCapacity: true)
        frontier.removeAll(keepingCapacity: true)
        stamp[start] = current
        visited.append(Int32(start))
        frontier.append(Int32(start))
        var depth = 0
        let a = graph.units
        while !frontier.isEmpty && (hops == nil || depth < hops!) {
            next.removeAll(keepingCapacity: true)
            for u in frontier {
                for p in Int(a.columnPointers[Int(u)])..<Int(a.columnPointers[Int(u) + 1]) {
                    let v = Int(a.rowIndices[p])
                    if stamp[v] != current {
                        stamp[v] = current
                        visited.append(Int32(v))
                        next.append(Int32(v))
                    }
                }
            }
            swap(&frontier, &next)
            depth += 1
        }
        return visited
    }

    /// nnz(D[R, R]) over state variables, for the R of the last walk.
    func jacobianEntriesWithinReach() -> Int {
        let dt = graph.jacobianTransposed, k = graph.hiddenSize
        var count = 0
        for u in visited {
            for c in 0..<graph.cell.stateComponents {
                let q = c * k + Int(u)
                for p in Int(dt.columnPointers[q])..<Int(dt.columnPointers[q + 1])
                where stamp[Int(dt.rowIndices[p]) % k] == current {
                    count += 1
                }
            }
        }
        return count
    }
}
