internal import CSparseKernels
import Foundation

/// Matrix Market files, read and written through CHOLMOD (`cholmod_read_triplet`,
/// `cholmod_read_matrix`, `cholmod_write_sparse`, `cholmod_write_dense`).
///
/// Reading accepts `coordinate` and `array` files with `real`, `integer` or `pattern` values and
/// `general`, `symmetric` or `skew-symmetric` symmetry (expanded to the full matrix), with
/// comments, as scipy's `mmwrite` and hand-written files have them. Every file is first scanned
/// strictly (`MatrixMarketScanner`) so a malformed one fails with its path and line.
///
/// Writing always produces `real general` files (never `integer`, `pattern` or `symmetric`, which
/// CHOLMOD's writer would otherwise choose for some values), with every stored entry, explicit
/// zeros included. A file is written to a temporary name beside its destination and renamed into
/// place, so a failed write leaves no partial file.
public enum MatrixMarket {
    /// Options for reading.
    public struct ReadOptions: Sendable {
        /// Repeated (row, column) entries in a coordinate file: rejected (the default) or summed.
        public var duplicates: SparseMatrix<Double>.DuplicatePolicy
        /// Whether NaN and infinite values are accepted (default: rejected, with the line).
        public var allowNonFinite: Bool
        /// Strict defaults: duplicates rejected, NaN and infinities rejected.
        public init(duplicates: SparseMatrix<Double>.DuplicatePolicy = .reject, allowNonFinite: Bool = false) {
            self.duplicates = duplicates
            self.allowNonFinite = allowNonFinite
        }
    }

    /// Reads the header of a file (after a full strict scan).
    public static func header(ofFile path: String) throws -> MatrixMarketHeader {
        var scanner = try MatrixMarketScanner(path: path)
        return try scanner.scan(rejectDuplicates: false, allowNonFinite: true)
    }

    /// Reads a file as a sparse matrix. A coordinate file keeps exactly its stored entries
    /// (explicit zeros included); an array file stores every entry.
    public static func readSparse(_ path: String, options: ReadOptions = ReadOptions()) throws -> SparseMatrix<Double> {
        var scanner = try MatrixMarketScanner(path: path)
        let header = try scanner.scan(rejectDuplicates: options.duplicates == .reject,
                                      allowNonFinite: options.allowNonFinite)
        let cholmod = try Cholmod()
        if header.format == .array {
            let dense = try readDense(path, header: header, cholmod: cholmod)
            return try SparseMatrix(rowCount: dense.rowCount, columnCount: dense.columnCount,
                                    columnMajor: dense.values, keepZeros: true)
        }
        let triplet = try withFile(path, "r") { file in
            try cholmod.call("reading \(path)") { cholmod_read_triplet(file, $0) }
        }
        defer {
            var t: UnsafeMutablePointer<cholmod_triplet>? = triplet
            cholmod_free_triplet(&t, cholmod.common)
        }
        let t = triplet.pointee
        guard Int(t.nrow) == header.rowCount, Int(t.ncol) == header.columnCount else {
            throw SparseKernelsError.malformedFile(path: path, line: nil,
                                                   reason: "CHOLMOD read a different size than the size line declares")
        }
        let count = Int(t.nnz)
        let ti = t.i.assumingMemoryBound(to: Int32.self)
        let tj = t.j.assumingMemoryBound(to: Int32.self)
        let tx = t.x?.assumingMemoryBound(to: Double.self)
        var rows = [Int](), columns = [Int](), values = [Double]()
        rows.reserveCapacity(2 * count); columns.reserveCapacity(2 * count); values.reserveCapacity(2 * count)
        for k in 0..<count {
            let i = Int(ti[k]), j = Int(tj[k]), v = header.field == .pattern ? 1 : (tx?[k] ?? 1)
            rows.append(i); columns.append(j); values.append(v)
            // CHOLMOD expands skew-symmetric files itself (stype 0) but returns symmetric ones as
            // one triangle (stype != 0): mirror those.
            if t.stype != 0 && i != j {
                rows.append(j); columns.append(i); values.append(v)
            }
        }
        do {
            return try SparseMatrix(rowCount: header.rowCount, columnCount: header.columnCount,
                                    rows: rows, columns: columns, values: values, duplicates: options.duplicates)
        } catch SparseKernelsError.duplicateEntry(let row, let column) {
            throw SparseKernelsError.malformedFile(
                path: path, line: nil, reason: "entry (\(row + 1), \(column + 1)) appears twice")
        }
    }

    /// Reads a file as a dense matrix. An array file is read as it is; a coordinate file is
    /// expanded with zeros where no entry is stored.
    public static func readDense(_ path: String, options: ReadOptions = ReadOptions()) throws -> DenseMatrix<Double> {
        var scanner = try MatrixMarketScanner(path: path)
        let header = try scanner.scan(rejectDuplicates: options.duplicates == .reject,
                                      allowNonFinite: options.allowNonFinite)
        if header.format == .coordinate {
            let sparse = try readSparse(path, options: options)
            return try DenseMatrix(rowCount: sparse.rowCount, columnCount: sparse.columnCount,
                                   values: sparse.denseColumnMajor())
        }
        return try readDense(path, header: header, cholmod: try Cholmod())
    }

    private static func readDense(_ path: String, header: MatrixMarketHeader, cholmod: Cholmod) throws -> DenseMatrix<Double> {
        var kind: Int32 = 0
        let raw = try withFile(path, "r") { file in
            try cholmod.call("reading \(path)") { cholmod_read_matrix(file, 1, &kind, $0) }
        }
        guard kind == CHOLMOD_DENSE else {
            throw SparseKernelsError.malformedFile(path: path, line: nil, reason: "CHOLMOD did not read an array")
        }
        var dense: UnsafeMutablePointer<cholmod_dense>? = raw.assumingMemoryBound(to: cholmod_dense.self)
        defer { cholmod_free_dense(&dense, cholmod.common) }
        let d = dense!.pointee
        let rows = Int(d.nrow), columns = Int(d.ncol), leading = Int(d.d)
        let x = d.x.assumingMemoryBound(to: Double.self)
        var values = [Double](repeating: 0, count: rows * columns)
        for j in 0..<columns { for i in 0..<rows { values[i + j * rows] = x[i + j * leading] } }
        return try DenseMatrix(rowCount: rows, columnCount: columns, values: values)
    }

    /// Writes a sparse matrix as `coordinate real general`, every stored entry included.
    public static func write<Scalar>(_ matrix: SparseMatrix<Scalar>, to path: String) throws {
        let cholmod = try Cholmod()
        try writeAtomically(path) { file in
            _ = try matrix.withCholmodSparse { view in
                // An unsorted matrix is written as `general` without a symmetry test.
                view.pointee.sorted = 0
                return try cholmod.call("writing \(path)") { c -> Int32? in
                    let r = cholmod_write_sparse(file, view, nil, nil, c)
                    return r < 0 ? nil : r
                }
            }
        } fix: { text in
            normalizeCoordinateBanner(text)
        }
    }

    /// Writes a dense matrix as `array real general`.
    public static func write<Scalar>(_ matrix: DenseMatrix<Scalar>, to path: String) throws {
        let cholmod = try Cholmod()
        var values = matrix.values.map { Double($0) }
        try writeAtomically(path) { file in
            try values.withUnsafeMutableBufferPointer { x in
                var view = cholmod_dense()
                view.nrow = matrix.rowCount
                view.ncol = matrix.columnCount
                view.nzmax = Swift.max(1, matrix.values.count)
                view.d = Swift.max(1, matrix.rowCount)
                view.x = UnsafeMutableRawPointer(x.baseAddress)
                view.xtype = CHOLMOD_REAL
                view.dtype = CHOLMOD_DOUBLE
                _ = try cholmod.call("writing \(path)") { c -> Int32? in
                    let r = cholmod_write_dense(file, &view, nil, c)
                    return r < 0 ? nil : r
                }
            }
        } fix: { $0 }
    }

    /// CHOLMOD writes `integer` when every value is integral and `pattern` (no values) when every
    /// value is 1; rewrite both as `real`, which every reader takes.
    static func normalizeCoordinateBanner(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let banner = lines.first else { return text }
        let words = banner.split(separator: " ")
        guard words.count == 5 else { return text }
        let field = words[3]
        lines[0] = "%%MatrixMarket matrix coordinate real general"
        if field == "pattern" {
            var sawSize = false
            for k in 1..<lines.count where !lines[k].isEmpty && !lines[k].hasPrefix("%") {
                if !sawSize { sawSize = true; continue }
                lines[k] += " 1"
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func withFile<R>(_ path: String, _ mode: String, _ body: (UnsafeMutablePointer<FILE>) throws -> R) throws -> R {
        guard let file = sk_fopen(path, mode) else {
            throw SparseKernelsError.fileSystem(path: path, reason: String(cString: strerror(errno)))
        }
        defer { sk_fclose(file) }
        return try body(file)
    }

    /// Writes through CHOLMOD into a temporary file beside `path`, applies `fix` to its text,
    /// and renames it into place.
    private static func writeAtomically(_ path: String, write: (UnsafeMutablePointer<FILE>) throws -> Void,
                                        fix: (String) -> String) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).\(UInt32.random(in: 0...UInt32.max)).tmp").path
        defer { unlink(temporary) }
        try withFile(temporary, "w", write)
        guard let data = FileBytes.data(temporary) else {
            throw SparseKernelsError.fileSystem(path: temporary, reason: "cannot read back the file just written")
        }
        let text = fix(String(decoding: data, as: UTF8.self))
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
            throw SparseKernelsError.fileSystem(path: path, reason: "cannot write")
        }
        guard rename(temporary, path) == 0 else {
            throw SparseKernelsError.fileSystem(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
