#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A floating-point type the kernels compute in: `Float` for models, `Double` for gradient checks.
///
/// Kernels are written once, generic over this protocol, and specialised by the compiler.
public protocol ComputeScalar: BinaryFloatingPoint, Sendable {
    /// The tensor element type that stores this scalar.
    static var dtype: DType { get }
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
    static func sin(_ x: Self) -> Self
    static func cos(_ x: Self) -> Self
}

extension Float: ComputeScalar {
    public static var dtype: DType { .float32 }
    @inlinable @inline(__always) public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable @inline(__always) public static func log(_ x: Float) -> Float { logf(x) }
    @inlinable @inline(__always) public static func tanh(_ x: Float) -> Float { tanhf(x) }
    @inlinable @inline(__always) public static func erf(_ x: Float) -> Float { erff(x) }
    @inlinable @inline(__always) public static func pow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
    @inlinable @inline(__always) public static func sin(_ x: Float) -> Float { sinf(x) }
    @inlinable @inline(__always) public static func cos(_ x: Float) -> Float { cosf(x) }
}

extension Double: ComputeScalar {
    public static var dtype: DType { .float64 }
    @inlinable @inline(__always) public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable @inline(__always) public static func log(_ x: Double) -> Double { Glibc.log(x) }
    @inlinable @inline(__always) public static func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
    @inlinable @inline(__always) public static func erf(_ x: Double) -> Double { Glibc.erf(x) }
    @inlinable @inline(__always) public static func pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
    @inlinable @inline(__always) public static func sin(_ x: Double) -> Double { Glibc.sin(x) }
    @inlinable @inline(__always) public static func cos(_ x: Double) -> Double { Glibc.cos(x) }
}

extension Tensor {
    /// Typed pointer to the first element, checked against the tensor's dtype.
    @inlinable
    public func pointer<T: ComputeScalar>(as type: T.Type) -> UnsafeMutablePointer<T> {
        ensure(dtype == T.dtype, "expected a \(T.dtype) tensor, got \(dtype) \(shape)")
        return rawPointer.assumingMemoryBound(to: T.self)
    }

    /// Traps with a message naming the operation unless the tensor computes in float32 or float64.
    @inlinable
    public func requireComputeType(_ operation: String) {
        ensure(dtype.isComputeType, "\(operation) needs a float32 or float64 tensor, got \(dtype) \(shape)")
    }
}

/// Calls the `Float` or `Double` instantiation of a generic kernel for `dtype`.
///
/// Usage: `dispatchFloat(x.dtype, "softmax", float: { kernel(Float.self) }, double: { kernel(Double.self) })`.
@inlinable
public func dispatchFloat<R>(_ dtype: DType, _ operation: String, float: () -> R, double: () -> R) -> R {
    switch dtype {
    case .float32: return float()
    case .float64: return double()
    default: fatalError("\(operation) needs float32 or float64 input, got \(dtype)")
    }
}
