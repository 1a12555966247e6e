import TensorCore

/// A 64-bit FNV-1a hash over bytes, eight at a time: a fingerprint for comparing tensors between
/// ranks (not cryptographic; a changed bit changes it).
struct ContentHash {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        while index + 8 <= bytes.count {
            value = (value ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) &* 0x100_0000_01b3
            index += 8
        }
        while index < bytes.count {
            value = (value ^ UInt64(bytes[index])) &* 0x100_0000_01b3
            index += 1
        }
    }

    mutating func add(_ text: String) {
        var text = text + "\u{0}"
        text.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }

    /// The tensor's dtype, shape and elements in row-major order.
    mutating func add(_ tensor: Tensor) {
        add("\(tensor.dtype) \(tensor.shape)")
        let contiguous = withNoGrad { tensor.contiguous() }
        add(UnsafeRawBufferPointer(start: contiguous.rawPointer, count: contiguous.elementCount * contiguous.dtype.byteSize))
    }

    var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
