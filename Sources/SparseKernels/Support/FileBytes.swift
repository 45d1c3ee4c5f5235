import Foundation

/// Reads whole files with POSIX calls (open, fstat, read, close): predictable errors, and no
/// dependence on Foundation's file reading (which leaks a buffer in some toolchains, found by
/// fuzzing under LeakSanitizer).
package enum FileBytes {
    /// The file's bytes, or `SparseKernelsError.fileSystem` naming the path and the reason.
    package static func read(_ path: String) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw SparseKernelsError.fileSystem(path: path, reason: errno == ENOENT ? "no such file" : String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw SparseKernelsError.fileSystem(path: path, reason: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) != S_IFDIR else { throw SparseKernelsError.fileSystem(path: path, reason: "is a directory") }
        var bytes = [UInt8](repeating: 0, count: max(0, Int(status.st_size)))
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(4096, bytes.count))) }
            let count = bytes.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SparseKernelsError.fileSystem(path: path, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            filled += count
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// The file's bytes as `Data`, or nil if it cannot be read.
    package static func data(_ path: String) -> Data? {
        (try? read(path)).map { Data($0) }
    }
}
