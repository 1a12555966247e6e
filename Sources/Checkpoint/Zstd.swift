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
        guard let stream = ZSTD_createDStream() else { throw Failure(source: source, reason: "out of memory") }
        defer { ZSTD_freeDStream(stream) }
        var output = [UInt8]()
        let chunkSize = ZSTD_DStreamOutSize()
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var lastResult = 0
        repeat {
            let produced: Int = try chunk.withUnsafeMutableBytes { raw in
                var outBuffer = ZSTD_outBuffer(dst: raw.baseAddress, size: raw.count, pos: 0)
                let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                if ZSTD_isError(result) != 0 {
                    throw Failure(source: source, reason: "corrupt zstd data at byte \(inBuffer.pos): "
                                  + String(cString: ZSTD_getErrorName(result)))
                }
                lastResult = result
                return outBuffer.pos
            }
            output.append(contentsOf: chunk[0..<produced])
            // A frame that has just ended with all input read is done: calling again would start a
            // new (empty) frame whose nonzero size hint would look like truncation.
            if lastResult == 0 && inBuffer.pos == inBuffer.size { break }
            if produced == 0 && inBuffer.pos == inBuffer.size { break }
        } while true
        guard lastResult == 0 else {
            throw Failure(source: source, reason: "zstd stream is truncated (ends inside a frame)")
        }
        return output
    }
}
