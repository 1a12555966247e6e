import CZstd
import Foundation

/// zstd (de)compression, streamed so that a large file is never held twice in memory.
public enum Zstd {
    /// A corrupt or truncated zstd stream, naming its source.
    public struct Failure: Error, CustomStringConvertible {
        public let source: String
        public let reason: String
        public var description: String { "\(source): \(reason)" }
    }

    /// Decompresses a whole `.zst` file.
    ///
    /// - Throws: ``Failure`` naming the file when it cannot be read, is not zstd, is corrupt or is cut short.
    public static func decompress(contentsOf url: URL) throws -> [UInt8] {
        let compressed: Data
        do { compressed = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw Failure(source: url.path, reason: "cannot read (\(error.localizedDescription))")
        }
        return try compressed.withUnsafeBytes { try decompress($0, source: url.path) }
    }

    /// Decompresses a zstd stream held in memory; `source` names it in errors.
    public static func decompress(_ input: UnsafeRawBufferPointer, source: String) throws -> [UInt8] {
        let storage = try decompressToStorage(input, source: source)
        return withExtendedLifetime(storage) {
            Array(UnsafeRawBufferPointer(start: storage.baseAddress, count: storage.byteCount))
        }
    }
}
