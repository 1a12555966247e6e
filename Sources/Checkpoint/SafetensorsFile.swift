import Foundation
import TensorCore

/// A safetensors file opened for reading, its tensors viewed in place.
///
/// A `.safetensors` file is memory-mapped: opening it reads only the header, and ``tensor(_:)``
/// returns a zero-copy view whose pages the kernel reads on first touch. A `.safetensors.zst` file
/// is stream-decompressed once into a single buffer that its tensors then view.
///
/// ```swift
/// let file = try SafetensorsFile(path: "model.safetensors")
/// let embed = try file.tensor("model.embed_tokens.weight")   // (V, D), no copy
/// ```
public final class SafetensorsFile: @unchecked Sendable {
    /// The path the file was opened from; errors name it.
    public let path: String
    /// Tensor names in the order the header lists them.
    public let names: [String]
    /// The header's `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// The size of the (decompressed) file in bytes.
    public let byteCount: Int

    private let infos: [String: TensorInfo]
    private let dataStart: Int
    /// The whole file's bytes: a mapping, or the decompressed buffer of a `.zst` file.
    private let contents: Storage

    /// Opens the safetensors file at `path`; a path ending in `.zst` is decompressed first.
    ///
    /// - Throws: ``CheckpointError`` naming the file when it cannot be read or its header is invalid.
    public convenience init(path: String) throws {
        let contents: Storage
        do {
            let mapped = try MappedFile(path: path)
            if path.hasSuffix(".zst") {
                contents = try Zstd.decompressToStorage(mapped.bytes, source: path)
            } else {
                contents = mapped.storage(offset: 0, byteCount: mapped.byteCount)
            }
        } catch let error as MappedFile.OpenError {
            throw CheckpointError(file: path, reason: error.reason)
        } catch let error as Zstd.Failure {
            throw CheckpointError(file: path, reason: error.reason)
        }
        try self.init(contents: contents, path: path)
    }

    /// Opens the file at `url` (see ``init(path:)``).
    public convenience init(url: URL) throws { try self.init(path: url.path) }

    /// Reads a safetensors image already in memory; `path` names it in errors.
    public init(contents: Storage, path: String) throws {
        let header = try SafetensorsHeader.parse(
            UnsafeRawBufferPointer(start: contents.baseAddress, count: contents.byteCount), file: path)
        self.path = path
        self.contents = contents
        self.byteCount = contents.byteCount
        self.dataStart = header.dataStart
        self.names = header.tensors.map(\.name)
        self.metadata = header.metadata
        self.infos = Dictionary(uniqueKeysWithValues: header.tensors.map { ($0.name, $0) })
    }

    /// Whether the file holds a tensor called `name`.
    public func contains(_ name: String) -> Bool { infos[name] != nil }

    /// The header entry of `name`.
    ///
    /// - Throws: ``CheckpointError`` when there is no such tensor.
    public func info(_ name: String) throws -> TensorInfo {
        guard let info = infos[name] else { throw CheckpointError(file: path, reason: "no tensor named '\(name)'") }
        return info
    }

    /// The header entries in file order.
    public var tensorInfos: [TensorInfo] { names.map { infos[$0]! } }

    /// A zero-copy view of tensor `name`. The view keeps the file mapped; it must not be written.
    ///
    /// - Throws: ``CheckpointError`` when there is no such tensor or its dtype has no TensorCore type.
    public func tensor(_ name: String) throws -> Tensor {
        let info = try info(name)
        guard let dtype = info.dtype.tensorDType else {
            throw CheckpointError(file: path, reason: "tensor '\(name)' has dtype \(info.dtype.rawValue), which VLMKit does not support")
        }
        let start = dataStart + info.dataOffsets.lowerBound
        let storage = Storage(borrowing: contents.baseAddress + start, byteCount: info.byteCount, keepingAlive: contents)
        return Tensor(storage: storage, dtype: dtype, shape: info.shape)
    }

    /// Every tensor, by name (each a zero-copy view).
    public func tensors() throws -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for name in names { result[name] = try tensor(name) }
        return result
    }
}
