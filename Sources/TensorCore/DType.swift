/// The element type of a ``Tensor``'s storage.
///
/// Computation happens in `float32` (or `float64`, used by gradient checks). The 16-bit float types
/// are storage formats for frozen weights: the matrix-product and embedding paths upcast them on the
/// fly. Integer types carry token ids, masks and indices.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32, float64, bfloat16, float16, int64, int32, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .bfloat16, .float16: 2
        case .uint8, .bool: 1
        }
    }

    /// Whether the type holds floating-point values (including the 16-bit storage formats).
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .bfloat16, .float16: true
        default: false
        }
    }

    /// Whether kernels compute in this type directly (as opposed to storage-only formats).
    public var isComputeType: Bool { self == .float32 || self == .float64 }

    public var description: String { rawValue }
}
