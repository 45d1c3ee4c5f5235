/// The SnAp-n pattern of a stacked model (<doc:SnApPatterns>), and the rows its update computes.
///
/// Units are numbered layer-major (unit i of layer l is l·k + i), state variables likewise
/// (l·S + c·k + i). One hop of the stack's one-step Jacobian D_t goes from a unit to the units of
/// its own layer that read it through `weight_hh` (or its own state), and from there up the
/// stack within the step: to the units of the layer above that read it through `weight_ih`, and
/// so on. For a parameter of unit u in layer l:
/// - R_1 is u and every unit above it that u feeds within the step (the upward closure);
/// - R_n adds the units reachable from R_1 within n − 1 hops; the exact closure adds every
///   reachable unit (exact RTRL).
/// Entry (q, θ) of J is kept iff q's unit is in R_n(θ); every parameter of a unit shares its
/// reach set, so J is one dense block per unit (rows: R's state variables, columns: the unit's
/// parameters). With one layer this is the single-layer `InfluencePattern`.
///
/// The update J ← (D J + I) masked to the pattern runs up the layers, and a unit outside R can
/// carry a value into R within the step; its *work units* are R and the units one hop from R
/// that reach R upward: the values the product needs before the mask.
public struct StackedInfluencePattern: Sendable {
    /// The SnAp order (or the closure).
    public let order: InfluencePattern.Order
    /// L, k and the state components per unit.
    public let layerCount: Int, hiddenSize: Int, components: Int
    /// Influence entries kept: Σ over units of |R| · components · (the unit's parameters).
    public let nonzeros: Int
    /// Multiply-adds of one update, as it runs: per parameter, the entries of D's rows over its
    /// work units that read kept rows, those of A's rows (A = ∂(layer's state)/∂(its input), one
    /// per gate entry of `weight_ih`) that read work units below, the inputs' derivatives handed
    /// up, and the gradient's top-layer rows.
    public let multiplyAddsPerStep: Int

    /// Per unit group (layer-major units): the kept state rows (sorted) and the work units.
    let rowStart: [Int], rows: [Int32]
    let workStart: [Int], work: [Int32]

    /// Builds the pattern; refuses, before allocating the values, one whose entries exceed
    /// `memoryBudget` bytes (in `Scalar`).
    init(structures: [ModelStructure], weightIH: [SparsityPattern], order: InfluencePattern.Order, scalarBytes: Int,
         memoryBudget: Int) throws {
        if case .snap(let n) = order, n < 1 { throw RTRLError.invalidOption("snap(\(n)): the SnAp order must be a whole number ≥ 1") }
        let layers = structures.count, k = structures[0].graph.hiddenSize, components = structures[0].graph.cell.stateComponents
        self.order = order
        layerCount = layers
        hiddenSize = k
        self.components = components
        let total = layers * k
        // Upward edges (unit of layer m − 1 → units of layer m that read it) and their reverse.
        var up = [[Int32]](repeating: [], count: total), down = [[Int32]](repeating: [], count: total)
        for m in 1..<max(layers, 1) {
            let w = weightIH[m]
            for j in 0..<w.columnCount {
                for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                    let from = (m - 1) * k + j, to = m * k + Int(w.rowIndices[p]) % k
                    if !up[from].contains(Int32(to)) { up[from].append(Int32(to)) }
                    if !down[to].contains(Int32(from)) { down[to].append(Int32(from)) }
                }
            }
        }
        // The units of the layer below that each unit's gate rows read, one per entry of weight_ih.
        var inputSources = [[Int32]](repeating: [], count: total)
        for m in 1..<max(layers, 1) {
            let w = weightIH[m]
            for j in 0..<w.columnCount {
                for p in Int(w.columnPointers[j])..<Int(w.columnPointers[j + 1]) {
                    inputSources[m * k + Int(w.rowIndices[p]) % k].append(Int32((m - 1) * k + j))
                }
            }
        }
        var workMark = [Int](repeating: -1, count: total)
        var mark = [Int](repeating: -1, count: total), stamp = 0
        var hopMark = [Int](repeating: -1, count: total), backMark = [Int](repeating: -1, count: total)
        /// Adds to `set` (marked with `stamp` in `marks`) every unit above its new members.
        func closeUpward(_ set: inout [Int32], from start: Int, marks: inout [Int], stamp: Int, edges: [[Int32]]) {
            var q = start
            while q < set.count {
                for v in edges[Int(set[q])] where marks[Int(v)] != stamp { marks[Int(v)] = stamp; set.append(v) }
                q += 1
            }
        }
        /// The units one hop from `from`: D's successors in their layer, then upward.
        func hop(_ from: ArraySlice<Int32>, into out: inout [Int32], marks: inout [Int], stamp: Int) {
            let start = out.count
            for unit in from {
                let m = Int(unit) / k, j = Int(unit) % k, graph = structures[m].graph.units
                for p in Int(graph.columnPointers[j])..<Int(graph.columnPointers[j + 1]) {
                    let v = m * k + Int(graph.rowIndices[p])
                    if marks[v] != stamp { marks[v] = stamp; out.append(Int32(v)) }
                }
            }
            closeUpward(&out, from: start, marks: &marks, stamp: stamp, edges: up)
        }

        var rowStart = [0], rows = [Int32](), workStart = [0], work = [Int32]()
        var nonzeros = 0, multiplyAdds = 0
        for unit in 0..<total {
            let l = unit / k, u = unit % k
            stamp += 1
            var reach: [Int32] = [Int32(unit)]
            mark[unit] = stamp
            closeUpward(&reach, from: 0, marks: &mark, stamp: stamp, edges: up)
            var frontier = 0, hops = 0
            while frontier < reach.count, order.hops.map({ hops < $0 }) ?? true {
                let end = reach.count
                hop(reach[frontier..<end], into: &reach, marks: &mark, stamp: stamp)
                frontier = end
                hops += 1
            }
            // Work units: R, and the units one hop from R that reach R upward.
            var next: [Int32] = []
            hop(reach[...], into: &next, marks: &hopMark, stamp: unit)
            var back = reach
            for v in back { backMark[Int(v)] = unit }
            closeUpward(&back, from: 0, marks: &backMark, stamp: unit, edges: down)
            var workUnits = reach
            for v in next where mark[Int(v)] != stamp && backMark[Int(v)] == unit { workUnits.append(v) }
            workUnits.sort()
            reach.sort()
            for v in reach {
                let m = Int(v) / k, i = Int(v) % k
                for c in 0..<components { rows.append(Int32(m * components * k + c * k + i)) }
            }
            rows[rowStart.last!...].sort()
            rowStart.append(rows.count)
            work += workUnits
            workStart.append(work.count)
            let f = structures[l].layout.parameterCount(ofUnit: u)
            nonzeros += components * reach.count * f
            // What the update computes per column: D's entries from kept rows, A's from the work
            // units below, the inputs' derivatives of the work units, the gradient's top rows.
            var perColumn = 0
            for v in workUnits { workMark[Int(v)] = unit }
            for v in workUnits {
                let m = Int(v) / k, i = Int(v) % k, dt = structures[m].graph.jacobianTransposed
                for c in 0..<components {
                    let q = c * k + i
                    for p in Int(dt.columnPointers[q])..<Int(dt.columnPointers[q + 1]) where mark[m * k + Int(dt.rowIndices[p]) % k] == stamp {
                        perColumn += 1
                    }
                }
                if m > l { perColumn += components * inputSources[Int(v)].filter { workMark[Int($0)] == unit }.count }
                if m < layers - 1 { perColumn += components }
                if m == layers - 1 && mark[Int(v)] == stamp { perColumn += components }
            }
            multiplyAdds += f * perColumn
            if nonzeros * scalarBytes > memoryBudget {
                throw RTRLError.tooLarge(what: "the \(order) influence pattern of \(layers) stacked layers (at least \(nonzeros) entries; counting stopped at unit \(unit + 1) of \(total))",
                                         neededBytes: nonzeros * scalarBytes, budgetBytes: memoryBudget)
            }
        }
        self.nonzeros = nonzeros
        self.multiplyAddsPerStep = multiplyAdds
        self.rowStart = rowStart
        self.rows = rows
        self.workStart = workStart
        self.work = work
    }
}

extension StackedInfluencePattern {
    /// The pattern of a model's weight patterns, any number of layers (one layer gives the
    /// single-layer pattern's entries). Refuses one whose Float64 values would exceed
    /// `memoryBudget` bytes.
    public init<Scalar>(model: Model<Scalar>, order: InfluencePattern.Order, memoryBudget: Int = Int.max / 16) throws {
        let views = (0..<model.layerCount).map { model.layerModel($0) }
        try self.init(structures: views.map { ModelStructure($0) }, weightIH: views.map(\.parameters.weightIH.pattern), order: order,
                      scalarBytes: 8, memoryBudget: memoryBudget)
    }

    /// Memory of the influence values in Float64, in bytes.
    public var bytes: Int { nonzeros * 8 }
}
