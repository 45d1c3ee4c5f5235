import Foundation
import RTRL
import XCTest

final class CommandTests: XCTestCase {
    private func makeModel(_ cell: String, hidden: Int = 6, density: Double = 0.4, in dir: URL) throws -> String {
        let path = dir.appendingPathComponent("model-\(cell)").path
        _ = try runJSON(["init", "--cell", cell, "--inputs", "3", "--hidden", "\(hidden)", "--outputs", "4",
                         "--density", "\(density)", "--seed", "5", "--out", path])
        return path
    }

    private func writeSequence(_ inputs: String, _ targets: String, in dir: URL) throws -> String {
        let path = dir.appendingPathComponent("seq-\(UUID().uuidString).json").path
        try "{\"inputs\": \(inputs), \"targets\": \(targets)}".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testInitWritesALoadableModelAndRefusesToOverwrite() throws {
        let dir = try temporaryDirectory()
        for cell in ["rnn", "gru", "lstm", "egru"] {
            let path = try makeModel(cell, in: dir)
            let model = try Model<Double>(directory: path)
            XCTAssertEqual(model.cell.rawValue, cell)
            XCTAssertEqual(model.parameters.weightHH.rowCount, model.cell.gateCount * 6)
            // Every unit keeps a recurrent input.
            let rows = Set(model.parameters.weightHH.pattern.rowIndices.map { Int($0) % 6 })
            XCTAssertEqual(rows.count, 6)
            try assertFails(["init", "--cell", cell, "--inputs", "3", "--hidden", "6", "--outputs", "4", "--out", path],
                            mentioning: "not empty")
        }
        try assertFails(["init", "--cell", "gru", "--inputs", "3", "--hidden", "0", "--outputs", "4", "--out",
                         dir.appendingPathComponent("x").path], mentioning: "hidden_size")
        try assertFails(["init", "--cell", "gru", "--inputs", "3", "--hidden", "4", "--outputs", "4", "--density", "1.5",
                         "--out", dir.appendingPathComponent("y").path], mentioning: "density")
    }

    /// `rtrl pattern` against a reachability computed here from the model's files with plain
    /// boolean matrices.
    func testPatternCountsMatchIndependentReachability() throws {
        let dir = try temporaryDirectory()
        for cell in ["rnn", "gru", "lstm", "egru"] {
            let path = try makeModel(cell, hidden: 9, density: 0.2, in: dir)
            let w = try MatrixMarket.readSparse(path + "/weight_hh.mtx")
            let wi = try MatrixMarket.readSparse(path + "/weight_ih.mtx")
            let k = 9, gates = w.rowCount / k
            // depends[i][j]: unit i's new state depends on unit j's old state.
            var depends = [[Bool]](repeating: [Bool](repeating: false, count: k), count: k)
            for j in 0..<k { for r in w.pattern.rows(inColumn: j) { depends[Int(r) % k][j] = true } }
            if cell != "rnn" { for i in 0..<k { depends[i][i] = true } }
            var f = [Int](repeating: 2 * gates + (cell == "egru" ? 1 : 0), count: k)
            for r in w.pattern.rowIndices { f[Int(r) % k] += 1 }
            for r in wi.pattern.rowIndices { f[Int(r) % k] += 1 }
            let components = cell == "lstm" ? 2 : 1
            for n in [1, 2, 3, 0] {
                var nonzeros = 0
                for i in 0..<k {
                    var reached = Set([i]), frontier = Set([i]), hops = 0
                    while !frontier.isEmpty && (n == 0 || hops < n - 1) {
                        var next = Set<Int>()
                        for u in frontier { for v in 0..<k where depends[v][u] && !reached.contains(v) { next.insert(v) } }
                        reached.formUnion(next); frontier = next; hops += 1
                    }
                    nonzeros += components * reached.count * f[i]
                }
                let json = try runJSON(["pattern", "--model", path, "--n", "\(n)"])
                XCTAssertEqual(json["influence_nonzeros"] as? Int, nonzeros, "\(cell) n=\(n)")
                XCTAssertEqual(json["influence_bytes"] as? Int, 8 * nonzeros)
                XCTAssertEqual(json["units"] as? Int, k)
                XCTAssertEqual(json["parameters"] as? Int, f.reduce(0, +))
            }
            try assertFails(["pattern", "--model", path, "--n", "-1"], mentioning: "--n")
            try assertFails(["pattern", "--model", path, "--n", "two"], mentioning: "--n")
        }
    }

    func testGradWritesTheModelsPatternsAndAgreesAcrossMethods() throws {
        let dir = try temporaryDirectory()
        let path = try makeModel("lstm", in: dir)
        let sequence = try writeSequence("[[0.5, -1, 2], [0, 0, 1], [1, 1, 1], [-0.2, 0.3, 0.1]]", "[1, -1, 3, 0]", in: dir)
        var gradients: [String: Parameters<Double>] = [:]
        for method in ["bptt", "rtrl", "rtrl-dense", "snap-6"] {
            let out = dir.appendingPathComponent("grad-\(method)").path
            let json = try runJSON(["grad", "--model", path, "--sequence", sequence, "--method", method, "--out", out])
            XCTAssertEqual(json["steps"] as? Int, 4)
            XCTAssertEqual(json["method"] as? String, method)
            XCTAssertNotNil(json["seconds"] as? Double)
            let loaded = try MatrixMarket.readSparse(out + "/weight_hh.mtx")
            let model = try Model<Double>(directory: path)
            XCTAssertEqual(loaded.pattern, model.parameters.weightHH.pattern)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/config.json"))
            let header = try String(contentsOfFile: out + "/weight_hh.mtx", encoding: .utf8).prefix(45)
            XCTAssertEqual(String(header), "%%MatrixMarket matrix coordinate real general")
            gradients[method] = Parameters(
                weightIH: try MatrixMarket.readSparse(out + "/weight_ih.mtx"), weightHH: loaded,
                biasIH: try MatrixMarket.readDense(out + "/bias_ih.mtx").values, biasHH: try MatrixMarket.readDense(out + "/bias_hh.mtx").values,
                readoutWeight: try MatrixMarket.readDense(out + "/readout_weight.mtx"),
                readoutBias: try MatrixMarket.readDense(out + "/readout_bias.mtx").values, threshold: [])
        }
        let reference = gradients["bptt"]!.flattened
        let scale = reference.map { abs($0) }.max()!
        for (method, g) in gradients {
            let error = zip(g.flattened, reference).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(error / scale, 1e-10, method)
        }
        // Running again replaces the files.
        _ = try runJSON(["grad", "--model", path, "--sequence", sequence, "--method", "rtrl", "--out", dir.appendingPathComponent("grad-rtrl").path])
    }

    /// Stacked models through the command: `init --layers` writes `_l{l}` files, `grad` writes a
    /// gradient under the model's names (a single layer read from `_l0` files keeps them) and its
    /// exact methods agree, `pattern` reports every layer's units.
    func testStackedModelsThroughTheCommand() throws {
        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("stack").path
        let made = try runJSON(["init", "--cell", "gru", "--inputs", "3", "--hidden", "5", "--outputs", "4", "--layers", "2",
                                "--density", "0.5", "--seed", "6", "--out", path])
        XCTAssertEqual(made["layers"] as? Int, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path + "/weight_hh_l1.mtx"))
        let sequence = try writeSequence("[[0.5, -1, 2], [0, 0, 1], [1, 1, 1], [-0.2, 0.3, 0.1]]", "[1, -1, 3, 0]", in: dir)
        var values: [String: [Double]] = [:]
        for method in ["bptt", "rtrl", "rtrl-dense"] {
            let out = dir.appendingPathComponent("grad-\(method)").path
            _ = try runJSON(["grad", "--model", path, "--sequence", sequence, "--method", method, "--out", out])
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/weight_hh.mtx"))
            values[method] = try MatrixMarket.readSparse(out + "/weight_ih_l1.mtx").values + MatrixMarket.readSparse(out + "/weight_hh_l0.mtx").values
        }
        XCTAssertGreaterThan(values["bptt"]!.map(abs).max()!, 1e-4)
        for method in ["rtrl", "rtrl-dense"] {
            XCTAssertLessThan(zip(values[method]!, values["bptt"]!).map { abs($0 - $1) }.max()!, 1e-12, method)
        }
        let pattern = try runJSON(["pattern", "--model", path, "--n", "1"])
        XCTAssertEqual(pattern["units"] as? Int, 10)
        XCTAssertEqual(pattern["layers"] as? Int, 2)
        try assertFails(["grad", "--model", path, "--sequence", sequence, "--method", "nobacktrack"], mentioning: "stacked")

        // A single layer under the _l0 names: its gradient keeps them.
        let single = try makeModel("rnn", in: dir)
        for stem in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            try FileManager.default.moveItem(atPath: single + "/\(stem).mtx", toPath: single + "/\(stem)_l0.mtx")
        }
        let out = dir.appendingPathComponent("grad-l0").path
        _ = try runJSON(["grad", "--model", single, "--sequence", sequence, "--method", "bptt", "--out", out])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/weight_hh_l0.mtx"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/weight_hh.mtx"))
    }

    /// `--samples S` writes the mean of the estimates of seeds seed, seed + 1, …, seed + S − 1,
    /// each computed here through the library.
    func testGradSamplesWritesTheMeanOfTheSeeds() throws {
        let dir = try temporaryDirectory()
        let path = try makeModel("lstm", in: dir)
        let sequence = try writeSequence("[[0.5, -1, 2], [0, 0, 1], [1, 1, 1], [-0.2, 0.3, 0.1]]", "[1, -1, 3, 0]", in: dir)
        let out = dir.appendingPathComponent("grad-ok").path
        let json = try runJSON(["grad", "--model", path, "--sequence", sequence, "--method", "ok-1", "--seed", "7",
                                "--samples", "3", "--out", out])
        XCTAssertEqual(json["samples"] as? Int, 3)
        let model = try Model<Double>(directory: path)
        let labelled = try LabelledSequence(file: sequence, inputSize: model.inputSize, outputSize: model.outputSize)
        let estimates = try (7..<10 as Range<UInt64>).map {
            try SequenceGradient(model: model, sequence: labelled, method: .ok(1), seed: $0).gradient.weightHH.values
        }
        let mean = (0..<estimates[0].count).map { t in estimates.reduce(0) { $0 + $1[t] } / 3 }
        let written = try MatrixMarket.readSparse(out + "/weight_hh.mtx").values
        XCTAssertEqual(written.count, mean.count)
        let scale = mean.map { abs($0) }.max() ?? 0
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(zip(written, mean).map { abs($0 - $1) }.max() ?? 1, 1e-12 * scale)
        XCTAssertNotEqual(estimates[0], estimates[1], "the seeds give different estimates, so the mean is tested")
    }

    func testGradRejectsBadInput() throws {
        let dir = try temporaryDirectory()
        let path = try makeModel("gru", in: dir)
        let good = try writeSequence("[[1, 2, 3]]", "[0]", in: dir)
        try assertFails(["grad", "--model", path, "--sequence", try writeSequence("[[1, 2, 3]]", "[4]", in: dir), "--method", "rtrl"],
                        mentioning: "target 4")
        try assertFails(["grad", "--model", path, "--sequence", try writeSequence("[[1, 2]]", "[0]", in: dir), "--method", "rtrl"],
                        mentioning: "has 2 values")
        try assertFails(["grad", "--model", path, "--sequence", try writeSequence("[[1, 2, \"x\"]]", "[0]", in: dir), "--method", "rtrl"],
                        mentioning: "wrong type")
        try assertFails(["grad", "--model", path, "--sequence", try writeSequence("[[1, 2, 3]]", "[0, 1]", in: dir), "--method", "rtrl"],
                        mentioning: "targets")
        try assertFails(["grad", "--model", path, "--sequence", good, "--method", "snap-0"], mentioning: "snap-0")
        try assertFails(["grad", "--model", path, "--sequence", good, "--method", "magic"], mentioning: "unknown method")
        try assertFails(["grad", "--model", dir.appendingPathComponent("nothing").path, "--sequence", good, "--method", "rtrl"],
                        mentioning: "not a model directory")
        try assertFails(["grad", "--model", path, "--sequence", dir.appendingPathComponent("none.json").path, "--method", "rtrl"],
                        mentioning: "missing")
        // A model file with a duplicate entry, one with NaN, one with the wrong shape.
        let hh = path + "/weight_hh.mtx"
        let original = try String(contentsOfFile: hh, encoding: .utf8)
        var lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let sizeLine = lines.firstIndex { !$0.hasPrefix("%") }!
        var size = lines[sizeLine].split(separator: " ").map(String.init)
        size[2] = String(Int(size[2])! + 1)
        var duplicated = lines
        duplicated[sizeLine] = size.joined(separator: " ")
        duplicated.insert(lines[sizeLine + 1], at: sizeLine + 2)
        try duplicated.joined(separator: "\n").write(toFile: hh, atomically: true, encoding: .utf8)
        try assertFails(["grad", "--model", path, "--sequence", good, "--method", "rtrl"], mentioning: "repeats")
        var withNaN = lines
        let fields = withNaN[sizeLine + 1].split(separator: " ")
        withNaN[sizeLine + 1] = "\(fields[0]) \(fields[1]) nan"
        try withNaN.joined(separator: "\n").write(toFile: hh, atomically: true, encoding: .utf8)
        try assertFails(["grad", "--model", path, "--sequence", good, "--method", "rtrl"], mentioning: "not finite")
        lines[sizeLine] = "99 6 0"
        try lines[..<(sizeLine + 1)].joined(separator: "\n").appending("\n").write(toFile: hh, atomically: true, encoding: .utf8)
        try assertFails(["grad", "--model", path, "--sequence", good, "--method", "rtrl"], mentioning: "weight_hh")
        try original.write(toFile: hh, atomically: true, encoding: .utf8)
        _ = try runJSON(["grad", "--model", path, "--sequence", good, "--method", "rtrl"])
    }

    func testBenchCommandsReportTheContractFields() throws {
        let dir = try temporaryDirectory()
        let path = try makeModel("gru", hidden: 12, density: 0.3, in: dir)
        let product = try runJSON(["bench", "product", "--model", path, "--n", "2", "--reps", "2"])
        for key in ["rows", "cols", "nnz_a", "nnz_b", "multiply_adds", "plan_seconds", "numeric_seconds",
                    "cxsparse_seconds", "bytes", "bandwidth_gbs"] {
            XCTAssertNotNil(product[key], key)
        }
        XCTAssertLessThan(product["max_relative_difference"] as? Double ?? 1, 1e-14)
        let step = try runJSON(["bench", "step", "--model", path, "--method", "snap-2", "--steps", "3", "--warmup", "1"])
        for key in ["method", "batch", "threads", "precision", "seconds_per_step", "p10", "p90", "influence_nonzeros",
                    "flops_per_step", "bytes_per_step"] {
            XCTAssertNotNil(step[key], key)
        }
        // The roofline, measured in the same run: a copy always, a GEMM where OpenBLAS is installed.
        let copy = try XCTUnwrap(step["copy_bandwidth_gbs"] as? Double)
        XCTAssertGreaterThan(copy, 0.1)
        let gemmSource = try XCTUnwrap(step["gemm"] as? String)
        if !gemmSource.hasPrefix("no OpenBLAS") {
            // The roofline columns are reported (their values are timings: benchmarks, not tests).
            for key in ["gemm_rate_g", "copy_bandwidth_gbs", "roofline_seconds", "roofline_fraction", "seconds_per_step"] {
                XCTAssertNotNil(step[key] as? Double, key)
            }
            XCTAssertGreaterThan(try XCTUnwrap(step["roofline_rounds"] as? Int), 0)
            XCTAssertTrue(["compute", "memory"].contains(step["roofline_bound"] as? String ?? ""))
        }
        // The Kronecker-sum estimators count their work: at least the product D·A, nnz(D) times the
        // 4k columns of a gru's coefficient matrix, per term.
        let structure = ModelStructure(try Model<Double>(directory: path))
        let product4k = structure.graph.jacobianTransposed.nonzeroCount * 4 * 12
        for (method, terms) in [("kf-rtrl", 1), ("ok-3", 3)] {
            let row = try runJSON(["bench", "step", "--model", path, "--method", method, "--steps", "3", "--no-roofline"])
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(row["flops_per_step"] as? Int), terms * product4k, method)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(row["bytes_per_step"] as? Int), 2 * terms * 12 * 48 * 8, method)
        }
        let bare = try runJSON(["bench", "step", "--model", path, "--method", "snap-2", "--steps", "3", "--no-roofline"])
        XCTAssertNil(bare["roofline_fraction"])
        XCTAssertNil(bare["filter_seconds_per_step"])
        // --natural: the filter over every parameter, one block per hidden unit (f_i core parameters)
        // and one per class (k readout weights and a bias): Σ f(f + 1)/2 entries.
        let natural = try runJSON(["bench", "step", "--model", path, "--method", "nobacktrack", "--steps", "12", "--natural",
                                   "--fisher-refactor-every", "5", "--no-roofline"])
        let model = try Model<Double>(directory: path)
        let layout = ModelStructure(model).layout
        let k = model.hiddenSize, classes = model.outputSize
        XCTAssertEqual(natural["filter_parameters"] as? Int, layout.count + classes * (k + 1))
        let entries = (0..<k).reduce(0) { sum, i in let f = layout.parameterCount(ofUnit: i); return sum + f * (f + 1) / 2 }
            + classes * (k + 1) * (k + 2) / 2
        XCTAssertEqual(natural["filter_entries"] as? Int, entries)
        XCTAssertNotNil(natural["filter_seconds_per_step"] as? Double, "the filter's time is reported")
        XCTAssertEqual(natural["filter_refactor_every"] as? Int, 5)
        let pattern = try runJSON(["pattern", "--model", path, "--n", "2"])
        XCTAssertEqual(step["influence_nonzeros"] as? Int, pattern["influence_nonzeros"] as? Int)
        XCTAssertEqual(step["flops_per_step"] as? Int, pattern["flops_per_step"] as? Int)
        try assertFails(["bench", "step", "--model", path, "--method", "snap-2", "--steps", "0"], mentioning: "--steps")
    }
}

/// The rows of the bad-input table in Docs/RELIABILITY.md that other tests do not cover.
final class BadInputTableTests: XCTestCase {
    func testRemainingRows() throws {
        let dir = try temporaryDirectory()
        let model = dir.appendingPathComponent("model").path
        _ = try runJSON(["init", "--cell", "gru", "--inputs", "3", "--hidden", "6", "--outputs", "4", "--density", "0.5", "--out", model])
        let sequence = dir.appendingPathComponent("seq.json").path
        try #"{"inputs": [[1, 2, 3]], "targets": [1]}"#.write(toFile: sequence, atomically: true, encoding: .utf8)
        let hh = model + "/weight_hh.mtx", original = try String(contentsOfFile: hh, encoding: .utf8)
        func withWeights(_ text: String, mentioning fragment: String) throws {
            try text.write(toFile: hh, atomically: true, encoding: .utf8)
            try assertFails(["grad", "--model", model, "--sequence", sequence, "--method", "rtrl"], mentioning: fragment)
            try original.write(toFile: hh, atomically: true, encoding: .utf8)
        }
        try withWeights(String(original.prefix(120)), mentioning: "declares")
        try withWeights(original.replacingOccurrences(of: "coordinate", with: "coordinat"), mentioning: "unknown format")
        var lines = original.split(separator: "\n").map(String.init)
        let first = lines.firstIndex { !$0.hasPrefix("%") }! + 1
        let fields = lines[first].split(separator: " ")
        lines[first] = "99 \(fields[1]) \(fields[2])"
        try withWeights(lines.joined(separator: "\n") + "\n", mentioning: "outside")
        try assertFails(["grad", "--model", model, "--sequence", sequence, "--method", "rtrl", "--samples", "4"],
                        mentioning: "deterministic")
        try assertFails(["grad", "--model", model, "--sequence", sequence, "--method", "kf-rtrl", "--samples", "0"],
                        mentioning: "--samples")
        try assertFails(["grad", "--model", model, "--sequence", sequence, "--method", "rtrl", "--out", sequence + "/g"],
                        mentioning: "cannot create")
        try assertFails(["init", "--cell", "lstm", "--inputs", "4", "--hidden", "2000000", "--outputs", "4",
                         "--out", dir.appendingPathComponent("huge").path], mentioning: "TiB")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("huge").path))
        let infinite = dir.appendingPathComponent("inf.json").path
        try #"{"inputs": [[1, 2, 1e999]], "targets": [0]}"#.write(toFile: infinite, atomically: true, encoding: .utf8)
        try assertFails(["grad", "--model", model, "--sequence", infinite, "--method", "rtrl"], mentioning: "inf.json")
        try assertFails(["bench", "step", "--model", model, "--method", "rtrl", "--steps", "-2"], mentioning: "--steps")
    }
}
