import Foundation
import TensorCore

/// Writes `tensors` as a safetensors file at `url`, atomically (see ``AtomicFile``).
///
/// The layout is the one Python's `safetensors` reads: an 8-byte little-endian header length,
/// compact JSON (`__metadata__` first, then tensors in the given order) padded with spaces to a
/// multiple of 8 bytes, then each tensor's bytes back to back in header order. Non-contiguous
/// tensors are copied to row-major order one at a time. A URL ending in `.zst` is
/// stream-compressed with zstd while it is written.
///
/// - Parameters:
///   - tensors: names and tensors, in the order they are laid out.
///   - metadata: the `__metadata__` string map (omitted when empty; Python writes `{"format": "pt"}`).
///   - compressionLevel: zstd level for `.zst` destinations.
/// - Throws: ``CheckpointError`` naming the file for duplicate or reserved names and I/O failures.
public func writeSafetensors(tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL,
                             compressionLevel: Int32 = 3) throws {
    let byName = Dictionary(tensors, uniquingKeysWith: { first, _ in first })
    try writeSafetensors(declarations: tensors.map { TensorDeclaration(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) },
                         metadata: metadata, to: url, compressionLevel: compressionLevel) { declaration, write in
        let tensor = byName[declaration.name]!
        let source = tensor.isContiguous ? tensor : tensor.copy()
        try write(UnsafeRawBufferPointer(start: source.rawPointer, count: source.elementCount * source.dtype.byteSize))
    }
}

/// A tensor to be written by ``writeSafetensors(declarations:metadata:to:compressionLevel:fill:)``.
public struct TensorDeclaration: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
    /// The number of bytes the tensor's data takes.
    public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
}

/// Writes a safetensors file whose tensor bytes are produced on the fly, so that a file larger
/// than memory (converted weights, benchmarks) can be written: for each declaration in order,
/// `fill` is called and must pass exactly ``TensorDeclaration/byteCount`` bytes, in row-major
/// order and any number of chunks, to the `write` function it is given.
///
/// - Throws: ``CheckpointError`` naming the file and tensor when `fill` writes too few or too many bytes.
public func writeSafetensors(declarations: [TensorDeclaration], metadata: [String: String] = [:], to url: URL,
                             compressionLevel: Int32 = 3,
                             fill: (TensorDeclaration, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
    let (header, totalBytes) = try safetensorsHeader(for: declarations, metadata: metadata, file: url.path)
    try AtomicFile.write(to: url) { file in
        let compressor = url.pathExtension == "zst"
            ? try ZstdCompressor(level: compressionLevel, pledgedSize: header.count + totalBytes, source: url.path) { try file.write($0) }
            : nil
        let sink: (UnsafeRawBufferPointer) throws -> Void = compressor.map { c in { try c.write($0) } } ?? { try file.write($0) }
        try header.withUnsafeBytes { try sink($0) }
        for declaration in declarations {
            var written = 0
            try fill(declaration) { chunk in
                written += chunk.count
                guard written <= declaration.byteCount else {
                    throw CheckpointError(file: url.path, reason: "tensor '\(declaration.name)' was given more than its \(declaration.byteCount) bytes")
                }
                try sink(chunk)
            }
            guard written == declaration.byteCount else {
                throw CheckpointError(file: url.path, reason: "tensor '\(declaration.name)' was given \(written) of its \(declaration.byteCount) bytes")
            }
        }
        try compressor?.finish()
    }
}

/// Writes `tensors` laid out in the order Python's `safetensors` chooses (by dtype, widest first,
/// then by name), so that with the same metadata the file is byte-identical to Python's.
public func writeSafetensors(tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL,
                             compressionLevel: Int32 = 3) throws {
    try writeSafetensors(tensors: pythonLayoutOrder(tensors), metadata: metadata, to: url,
                         compressionLevel: compressionLevel)
}

/// Tensors sorted as Python's `safetensors.save_file` lays them out.
func pythonLayoutOrder(_ tensors: [String: Tensor]) -> [(String, Tensor)] {
    tensors.sorted { a, b in
        let rankA = SafetensorsDType(a.value.dtype).pythonLayoutRank
        let rankB = SafetensorsDType(b.value.dtype).pythonLayoutRank
        return rankA != rankB ? rankA > rankB : a.key < b.key
    }.map { ($0.key, $0.value) }
}

/// The header bytes (length prefix included) and the size of the data region.
func safetensorsHeader(for tensors: [TensorDeclaration], metadata: [String: String], file: String) throws -> ([UInt8], Int) {
    var json = "{"
    var first = true
    if !metadata.isEmpty {
        json += "\"__metadata__\":{"
        json += metadata.sorted { $0.key < $1.key }
            .map { _JSONWriter.quoted($0.key) + ":" + _JSONWriter.quoted($0.value) }.joined(separator: ",")
        json += "}"
        first = false
    }
    var seen = Set<String>()
    var offset = 0
    for tensor in tensors {
        let name = tensor.name
        guard name != "__metadata__" else { throw CheckpointError(file: file, reason: "'__metadata__' is reserved and cannot name a tensor") }
        guard seen.insert(name).inserted else { throw CheckpointError(file: file, reason: "duplicate tensor name '\(name)'") }
        let size = tensor.byteCount
        if !first { json += "," }
        first = false
        json += _JSONWriter.quoted(name) + ":{\"dtype\":\"" + SafetensorsDType(tensor.dtype).rawValue + "\",\"shape\":["
            + tensor.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(offset + size)]}"
        offset += size
    }
    json += "}"
    var bytes = Array(json.utf8)
    while bytes.count % 8 != 0 { bytes.append(0x20) }
    var length = UInt64(bytes.count).littleEndian
    let prefix = withUnsafeBytes(of: &length) { Array($0) }
    return (prefix + bytes, offset)
}
