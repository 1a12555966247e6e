/// Conversions between `Float` and the two 16-bit storage formats.
///
/// bfloat16 is the top half of an IEEE float32; rounding to it is round-to-nearest-even, with NaN
/// kept quiet, exactly as PyTorch's `tensor.to(torch.bfloat16)` does.
public enum BFloat16 {
    /// The float32 value of a bfloat16 bit pattern (exact).
    @inlinable @inline(__always)
    public static func float(fromBits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// The bfloat16 bit pattern nearest to `value` (ties to even).
    @inlinable @inline(__always)
    public static func bits(from value: Float) -> UInt16 {
        let raw = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (raw >> 16) | 0x0040) }
        let roundingBias = UInt32(0x7FFF) + ((raw >> 16) & 1)
        return UInt16(truncatingIfNeeded: (raw &+ roundingBias) >> 16)
    }
}

/// Conversions for IEEE half precision (`float16`), through Swift's `Float16`.
public enum HalfFloat {
    @inlinable @inline(__always)
    public static func float(fromBits bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

    @inlinable @inline(__always)
    public static func bits(from value: Float) -> UInt16 { Float16(value).bitPattern }
}
