extension InfluencePattern {
    /// Splits the hidden units into `count` consecutive ranges whose influence updates take about
    /// the same multiply-adds (unit i's: f_i · nnz(D[R(i), R(i)])): the shards of a model-parallel
    /// run, one per process. Each range holds at least one unit; throws if there are fewer units
    /// than shards. Costs one reach walk per unit, as counting the pattern does.
    public static func balancedShards(graph: DependencyGraph, layout: ParameterLayout, order: Order,
                                      count: Int) throws -> [Range<Int>] {
        try validate(order)
        let k = graph.hiddenSize
        guard count >= 1, count <= k else {
            throw RTRLError.invalidOption("\(k) hidden units cannot be split into \(count) shards (1 to \(k))")
        }
        var walker = ReachWalker(graph: graph)
        var cost = [Double](repeating: 0, count: k)
        for i in 0..<k {
            _ = walker.walk(from: i, hops: order.hops)
            // A unit with no multiply-adds (SnAp-1 without self terms) still writes its rows.
            cost[i] = Double(layout.parameterCount(ofUnit: i) * max(walker.jacobianEntriesWithinReach(), 1))
        }
        let total = cost.reduce(0, +)
        var bounds = [0], done = 0.0, i = 0
        for r in 1..<count {
            let target = total * Double(r) / Double(count)
            // Take unit i while it lies mostly below the target; leave a unit for every later shard.
            while i < k - (count - r) && (i == bounds.last! || done + cost[i] / 2 <= target) {
                done += cost[i]
                i += 1
            }
            bounds.append(i)
        }
        bounds.append(k)
        return (0..<count).map { bounds[$0]..<bounds[$0 + 1] }
    }
}
