import Foundation
import TensorCore
@testable import Checkpoint

/// A fresh folder under the system temporary directory, removed when released.
final class TemporaryFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-checkpoint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The raw bytes of a tensor in row-major order.
func rawBytes(_ tensor: Tensor) -> [UInt8] {
    let source = tensor.isContiguous ? tensor : tensor.copy()
    return Array(UnsafeRawBufferPointer(start: source.rawPointer, count: source.elementCount * source.dtype.byteSize))
}

/// A tensor of `dtype` holding exactly `bytes`.
func tensor(bytes: [UInt8], dtype: DType, shape: [Int]) -> Tensor {
    let result = Tensor(zeros: shape, dtype: dtype)
    precondition(bytes.count == result.elementCount * dtype.byteSize)
    bytes.withUnsafeBytes { result.rawPointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return result
}

/// A safetensors image from a header string and data bytes (header used verbatim).
func safetensorsImage(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let json = Array(header.utf8)
    var length = (declaredLength ?? UInt64(json.count)).littleEndian
    return withUnsafeBytes(of: &length) { Array($0) } + json + data
}

/// Parses `bytes` as a safetensors file named `name` in memory.
func openImage(_ bytes: [UInt8], name: String = "test.safetensors") throws -> SafetensorsFile {
    let storage = Storage(byteCount: bytes.count)
    bytes.withUnsafeBytes { if $0.count > 0 { storage.baseAddress.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    return try SafetensorsFile(contents: storage, path: name)
}

/// The error `body` throws, described, or `nil` when it does not throw.
func thrownDescription(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return "\(error)" }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}
