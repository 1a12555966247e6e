import TensorCore

/// The element types a safetensors header may name, with Hugging Face's spelling.
///
/// All are recognised (so their byte sizes are checked); the ones TensorCore can hold map to a
/// ``DType`` and load, the others (`I8`, `U16`, the `F8_*` formats, …) are reported as unsupported
/// by name when a tensor of that type is requested.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, C64, I64, U64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0: 1
        case .I16, .U16, .F16, .BF16: 2
        case .I32, .U32, .F32: 4
        case .F64, .C64, .I64, .U64: 8
        }
    }

    /// The TensorCore element type, or `nil` when TensorCore cannot hold this type.
    public var tensorDType: DType? {
        switch self {
        case .F32: .float32
        case .F64: .float64
        case .F16: .float16
        case .BF16: .bfloat16
        case .I64: .int64
        case .I32: .int32
        case .U8: .uint8
        case .BOOL: .bool
        default: nil
        }
    }

    /// The safetensors name of a TensorCore type (every ``DType`` has one).
    public init(_ dtype: DType) {
        switch dtype {
        case .float32: self = .F32
        case .float64: self = .F64
        case .float16: self = .F16
        case .bfloat16: self = .BF16
        case .int64: self = .I64
        case .int32: self = .I32
        case .uint8: self = .U8
        case .bool: self = .BOOL
        }
    }

    /// The order Python's `safetensors` lays tensors out in: by this rank descending, then by name.
    /// (It is the declaration order of the Rust `Dtype` enum for the types TensorCore holds.)
    var pythonLayoutRank: Int { Self.allCases.firstIndex(of: self)! }
}
