import Foundation

/// Model directories (<doc:TheModelDirectory>): `config.json` plus one Matrix Market file per
/// tensor, read and written through the kernel layer's CHOLMOD-backed Matrix Market routines.
extension Model where Scalar == Double {
    /// File names of the tensors, in the order of `Parameters.flattened`.
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
        let configPath = url.appendingPathComponent("config.json").path
        guard let data = FileBytes.data(configPath) else {
            throw RTRLError.invalidModel("\(configPath) is missing or unreadable")
        }
        let configuration: ModelConfiguration
        do {
            configuration = try JSONDecoder().decode(ModelConfiguration.self, from: data)
        } catch let error as RTRLError {
            throw RTRLError.invalidModel("\(configPath): \(error.description)")
        } catch {
            throw RTRLError.invalidModel("\(configPath) is not a valid model configuration (\(Model.describe(error)))")
        }
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
        let rows = configuration.gateRows
        let parameters = Parameters<Double>(
            weightIH: try sparse("weight_ih.mtx"), weightHH: try sparse("weight_hh.mtx"),
            biasIH: try vector("bias_ih.mtx", rows), biasHH: try vector("bias_hh.mtx", rows),
            readoutWeight: try dense("readout_weight.mtx"),
            readoutBias: try vector("readout_bias.mtx", configuration.outputSize),
            threshold: configuration.cell == .egru ? try vector("threshold.mtx", configuration.hiddenSize) : [])
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

    /// Writes the tensor files of `parameters` (a model's or a gradient's) into an existing
    /// directory, each file replaced atomically. Coordinate files keep exactly their pattern.
    public static func writeTensors(_ parameters: Parameters<Double>, cell: CellKind, to directory: String) throws {
        let url = URL(fileURLWithPath: directory)
        func file(_ name: String) -> String { url.appendingPathComponent(name).path }
        do {
            try MatrixMarket.write(parameters.weightIH, to: file("weight_ih.mtx"))
            try MatrixMarket.write(parameters.weightHH, to: file("weight_hh.mtx"))
            try MatrixMarket.write(try DenseMatrix(rowCount: parameters.biasIH.count, columnCount: 1, values: parameters.biasIH), to: file("bias_ih.mtx"))
            try MatrixMarket.write(try DenseMatrix(rowCount: parameters.biasHH.count, columnCount: 1, values: parameters.biasHH), to: file("bias_hh.mtx"))
            try MatrixMarket.write(parameters.readoutWeight, to: file("readout_weight.mtx"))
            try MatrixMarket.write(try DenseMatrix(rowCount: parameters.readoutBias.count, columnCount: 1, values: parameters.readoutBias), to: file("readout_bias.mtx"))
            if cell == .egru {
                try MatrixMarket.write(try DenseMatrix(rowCount: parameters.threshold.count, columnCount: 1, values: parameters.threshold), to: file("threshold.mtx"))
            }
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
