#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file.
///
/// Tensors view regions of it through ``Storage/init(borrowing:byteCount:keepingAlive:)``; the
/// mapping is released when the last such view goes away. Pages are read lazily by the kernel, so
/// opening a multi-gigabyte checkpoint costs nothing until its bytes are touched.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The first byte of the mapping (`nil` for an empty file).
    public let baseAddress: UnsafeMutableRawPointer?
    /// The file's size in bytes.
    public let byteCount: Int

    /// Errors opening or mapping a file; each names the file.
    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Maps the file at `path` read-only.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw OpenError(path: path, reason: "cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw OpenError(path: path, reason: "cannot stat (\(String(cString: strerror(errno))))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw OpenError(path: path, reason: "not a regular file") }
        byteCount = Int(info.st_size)
        if byteCount == 0 {
            baseAddress = nil
            return
        }
        let address = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw OpenError(path: path, reason: "cannot map \(byteCount) bytes (\(String(cString: strerror(errno))))")
        }
        baseAddress = address
    }

    /// The file's bytes.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: baseAddress, count: byteCount)
    }

    /// Storage viewing `byteCount` bytes at `offset`, keeping this mapping alive.
    ///
    /// The mapping is read-only: a tensor over it must never be written (weights loaded this way are
    /// frozen or copied before training).
    public func storage(offset: Int, byteCount count: Int) -> Storage {
        ensure(offset >= 0 && count >= 0 && offset + count <= byteCount,
                     "\(path): region \(offset)..<\(offset + count) is outside the file's \(byteCount) bytes")
        let start = baseAddress.map { $0 + offset } ?? UnsafeMutableRawPointer(bitPattern: 64)!
        return Storage(borrowing: start, byteCount: count, keepingAlive: self)
    }

    deinit {
        if let baseAddress { munmap(baseAddress, byteCount) }
    }
}
