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
    let (header, totalBytes) = try safetensorsHeader(for: tensors, metadata: metadata, file: url.path)
    try AtomicFile.write(to: url) { file in
        if url.pathExtension == "zst" {
            let compressor = try ZstdCompressor(level: compressionLevel, pledgedSize: header.count + totalBytes,
                                                source: url.path) { try file.write($0) }
            try writeSafetensorsBody(header: header, tensors: tensors, into: compressor.write)
            try compressor.finish()
        } else {
            try writeSafetensorsBody(header: header, tensors: tensors, into: file.write)
        }
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
func safetensorsHeader(for tensors: [(String, Tensor)], metadata: [String: String], file: String) throws -> ([UInt8], Int) {
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
    for (name, tensor) in tensors {
        guard name != "__metadata__" else { throw CheckpointError(file: file, reason: "'__metadata__' is reserved and cannot name a tensor") }
        guard seen.insert(name).inserted else { throw CheckpointError(file: file, reason: "duplicate tensor name '\(name)'") }
        let size = tensor.elementCount * tensor.dtype.byteSize
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

/// Streams the header and then every tensor's bytes, row-major, to `sink`.
func writeSafetensorsBody(header: [UInt8], tensors: [(String, Tensor)],
                          into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
    try header.withUnsafeBytes { try sink($0) }
    for (_, tensor) in tensors where tensor.elementCount > 0 {
        let source = tensor.isContiguous ? tensor : tensor.copy()
        try sink(UnsafeRawBufferPointer(start: source.rawPointer, count: source.elementCount * source.dtype.byteSize))
    }
}
