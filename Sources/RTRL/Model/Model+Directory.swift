import Foundation

/// Model directories (<doc:TheModelDirectory>): `config.json` plus one Matrix Market file per
/// tensor, read and written through the kernel layer's CHOLMOD-backed Matrix Market routines.
extension Model where Scalar == Double {
    /// File names of a single-layer model's tensors, in the order of `Parameters.flattened`
    /// (a stacked model's layers use these names with the suffix `_l{l}`).
    public static let tensorFiles = ["weight_ih.mtx", "weight_hh.mtx", "bias_ih.mtx", "bias_hh.mtx",
                                     "readout_weight.mtx", "readout_bias.mtx", "threshold.mtx"]

    /// Loads a model directory. Duplicate entries, non-finite values, missing files and shapes
    /// that disagree with `config.json` are errors that name the file.
    public init(directory: String) throws {
        let url = URL(fileURLWithPath: directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw RTRLError.invalidModel("\(directory) is not a model directory (it does not exist or is not a directory)")
        }
        let configuration = try Model.configuration(inDirectory: directory)
        func path(_ name: String) throws -> String {
            let p = url.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: p) else {
                throw RTRLError.invalidModel("\(p) is missing")
            }
            return p
        }
        func sparse(_ name: String) throws -> SparseMatrix<Double> {
            do { return try MatrixMarket.readSparse(try path(name)) } catch let e as SparseKernelsError {
                throw RTRLError.invalidModel(e.description)
            }
        }
        func dense(_ name: String) throws -> DenseMatrix<Double> {
            do { return try MatrixMarket.readDense(try path(name)) } catch let e as SparseKernelsError {
                throw RTRLError.invalidModel(e.description)
            }
        }
        func vector(_ name: String, _ expected: Int) throws -> [Double] {
            let d = try dense(name)
            guard d.columnCount == 1 || (d.rowCount == 1 && d.columnCount == expected) else {
                throw RTRLError.invalidModel("\(url.appendingPathComponent(name).path) is \(d.rowCount) × \(d.columnCount) but must be \(expected) × 1")
            }
            guard d.values.count == expected else {
                throw RTRLError.invalidModel("\(url.appendingPathComponent(name).path) holds \(d.values.count) values but must hold \(expected)")
            }
            return d.values
        }
        let rows = configuration.gateRows, layers = configuration.layerCount
        let suffixed = try Model.usesLayerSuffixes(in: url.path, configuration: configuration)
        let names = (0..<layers).map { LayerFileNames(layer: $0, suffixed: suffixed) }
        func layer(_ l: Int) throws -> RecurrentLayerParameters<Double> {
            let n = names[l]
            return RecurrentLayerParameters(
                weightIH: try sparse(n.weightIH), weightHH: try sparse(n.weightHH),
                biasIH: try vector(n.biasIH, rows), biasHH: try vector(n.biasHH, rows),
                threshold: configuration.cell == .egru ? try vector(n.threshold, configuration.hiddenSize) : [])
        }
        let bottom = try layer(0)
        let parameters = Parameters<Double>(
            weightIH: bottom.weightIH, weightHH: bottom.weightHH, biasIH: bottom.biasIH, biasHH: bottom.biasHH,
            readoutWeight: try dense("readout_weight.mtx"),
            readoutBias: try vector("readout_bias.mtx", configuration.outputSize),
            threshold: bottom.threshold, upperLayers: try (1..<layers).map(layer))
        try self.init(configuration: configuration, parameters: parameters)
    }

    /// Writes a new model directory. Refuses a directory that exists and is not empty; writes
    /// into a temporary sibling first and renames it into place, so nothing half-written remains.
    public func write(toNewDirectory directory: String) throws {
        let fm = FileManager.default
        if let contents = try? fm.contentsOfDirectory(atPath: directory), !contents.isEmpty {
            throw RTRLError.invalidOption("\(directory) exists and is not empty; refusing to overwrite it")
        }
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).partial-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: temporary)
        do {
            try fm.createDirectory(at: temporary, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(configuration).write(to: temporary.appendingPathComponent("config.json"))
            try Model.writeTensors(parameters, cell: configuration.cell, to: temporary.path)
            if fm.fileExists(atPath: url.path) { try fm.removeItem(at: url) } // empty, checked above
            try fm.moveItem(at: temporary, to: url)
        } catch {
            try? fm.removeItem(at: temporary)
            throw RTRLError.invalidOption("cannot write the model to \(directory): \(Model.describe(error))")
        }
    }

    /// The file names of one layer's recurrent tensors.
    struct LayerFileNames {
        let weightIH, weightHH, biasIH, biasHH, threshold: String
        /// Layer l's names: unsuffixed for a single layer (`suffixed` false), else with `_l{l}`.
        init(layer l: Int, suffixed: Bool) {
            let suffix = suffixed ? "_l\(l)" : ""
            weightIH = "weight_ih\(suffix).mtx"; weightHH = "weight_hh\(suffix).mtx"
            biasIH = "bias_ih\(suffix).mtx"; biasHH = "bias_hh\(suffix).mtx"; threshold = "threshold\(suffix).mtx"
        }
        func all(_ cell: CellKind) -> [String] { [weightIH, weightHH, biasIH, biasHH] + (cell == .egru ? [threshold] : []) }
    }

    /// A directory's `config.json`, with the errors naming the file.
    static func configuration(inDirectory directory: String) throws -> ModelConfiguration {
        let configPath = URL(fileURLWithPath: directory).appendingPathComponent("config.json").path
        guard let data = FileBytes.data(configPath) else {
            throw RTRLError.invalidModel("\(configPath) is missing or unreadable")
        }
        do {
            return try JSONDecoder().decode(ModelConfiguration.self, from: data)
        } catch let error as RTRLError {
            throw RTRLError.invalidModel("\(configPath): \(error.description)")
        } catch {
            throw RTRLError.invalidModel("\(configPath) is not a valid model configuration (\(Model.describe(error)))")
        }
    }

    /// Whether a model directory names its layers' files with the suffix `_l{l}` (always for a
    /// stacked model; for a single layer, when it uses the `_l0` names), after the same checks as
    /// reading it.
    public static func usesLayerSuffixes(directory: String) throws -> Bool {
        try usesLayerSuffixes(in: directory, configuration: configuration(inDirectory: directory))
    }

    /// The form of a directory's layer file names, after refusing one that mixes unsuffixed and
    /// `_l{l}` names, lacks a layer's file, or holds a layer beyond `num_layers`. A single layer
    /// may use either form (not both).
    static func usesLayerSuffixes(in directory: String, configuration c: ModelConfiguration) throws -> Bool {
        let url = URL(fileURLWithPath: directory), fm = FileManager.default
        func exists(_ name: String) -> Bool { fm.fileExists(atPath: url.appendingPathComponent(name).path) }
        let plain = LayerFileNames(layer: 0, suffixed: false).all(c.cell).filter(exists)
        let suffixedZero = LayerFileNames(layer: 0, suffixed: true).all(c.cell).filter(exists)
        let useSuffix: Bool
        if c.layerCount > 1 {
            guard plain.isEmpty else {
                throw RTRLError.invalidModel("\(directory) has num_layers \(c.layerCount), so its layers' files need the suffix _l{l}, but it holds \(plain.joined(separator: ", ")) (unsuffixed names are for a single layer)")
            }
            useSuffix = true
        } else {
            guard plain.isEmpty || suffixedZero.isEmpty else {
                throw RTRLError.invalidModel("\(directory) mixes unsuffixed and _l0 file names (\((plain + suffixedZero).joined(separator: ", "))); use one form")
            }
            useSuffix = plain.isEmpty && !suffixedZero.isEmpty
        }
        let names = (0..<c.layerCount).map { LayerFileNames(layer: $0, suffixed: useSuffix) }
        for (l, layer) in names.enumerated() {
            for name in layer.all(c.cell) where !exists(name) {
                throw RTRLError.invalidModel("\(url.appendingPathComponent(name).path) is missing (layer \(l) of \(c.layerCount))")
            }
        }
        let beyond = LayerFileNames(layer: c.layerCount, suffixed: true).all(c.cell).filter(exists)
        guard beyond.isEmpty || !useSuffix else {
            throw RTRLError.invalidModel("\(directory) has num_layers \(c.layerCount) but also holds \(beyond.joined(separator: ", "))")
        }
        return useSuffix
    }

    /// Writes the tensor files of `parameters` (a model's or a gradient's) into an existing
    /// directory, each file replaced atomically. Coordinate files keep exactly their pattern.
    /// A stacked model's layers use the names with the suffix `_l{l}`; a single layer's, none
    /// unless `layerSuffixes` (the names of a single-layer model read from `_l0` files).
    public static func writeTensors(_ parameters: Parameters<Double>, cell: CellKind, to directory: String,
                                    layerSuffixes: Bool = false) throws {
        let url = URL(fileURLWithPath: directory)
        func file(_ name: String) -> String { url.appendingPathComponent(name).path }
        func vector(_ values: [Double], _ name: String) throws {
            try MatrixMarket.write(try DenseMatrix(rowCount: values.count, columnCount: 1, values: values), to: file(name))
        }
        let layers = parameters.upperLayers.count + 1
        do {
            for l in 0..<layers {
                let names = LayerFileNames(layer: l, suffixed: layers > 1 || layerSuffixes), layer = parameters.layer(l)
                try MatrixMarket.write(layer.weightIH, to: file(names.weightIH))
                try MatrixMarket.write(layer.weightHH, to: file(names.weightHH))
                try vector(layer.biasIH, names.biasIH)
                try vector(layer.biasHH, names.biasHH)
                if cell == .egru { try vector(layer.threshold, names.threshold) }
            }
            try MatrixMarket.write(parameters.readoutWeight, to: file("readout_weight.mtx"))
            try vector(parameters.readoutBias, "readout_bias.mtx")
        } catch let error as SparseKernelsError {
            throw RTRLError.invalidOption(error.description)
        }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? RTRLError { return e.description }
        if let e = error as? SparseKernelsError { return e.description }
        if let e = error as? DecodingError {
            switch e {
            case .keyNotFound(let key, _): return "missing key \"\(key.stringValue)\""
            case .typeMismatch(_, let c), .valueNotFound(_, let c): return "wrong type at \"\(c.codingPath.map(\.stringValue).joined(separator: "."))\""
            case .dataCorrupted(let c): return c.debugDescription
            @unknown default: return "\(e)"
            }
        }
        return (error as NSError).localizedDescription
    }
}
