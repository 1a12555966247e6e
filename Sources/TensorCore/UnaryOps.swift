/// Element-wise functions of one tensor, each with its derivative.
///
/// Backward: `dx = dy · f'(x)`, with `f'` written in terms of whichever of input and output is
/// cheaper; each op saves only that.

/// The pointwise functions the models use.
@usableFromInline
enum UnaryFunction: String, Sendable {
    case exp, log, tanh, sigmoid, silu, relu, square, sqrt, reciprocalSqrt, abs, geluErf, geluTanh, quickGELU

    @inlinable @inline(__always)
    func apply<T: ComputeScalar>(_ x: T) -> T {
        switch self {
        case .exp: return T.exp(x)
        case .log: return T.log(x)
        case .tanh: return T.tanh(x)
        case .sigmoid: return 1 / (1 + T.exp(-x))
        case .silu: return x / (1 + T.exp(-x))
        case .relu: return x > 0 ? x : 0
        case .square: return x * x
        case .sqrt: return x.squareRoot()
        case .reciprocalSqrt: return 1 / x.squareRoot()
        case .abs: return Swift.abs(x)
        case .geluErf: return x * (1 + T.erf(x * T(0.70710678118654752440))) / 2
        case .geluTanh:
            let inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)
            return x * (1 + T.tanh(inner)) / 2
        case .quickGELU: return x / (1 + T.exp(T(-1.702) * x))
        }
    }

    /// `f'(x)` given the input `x` and output `y = f(x)`.
    @inlinable @inline(__always)
    func derivative<T: ComputeScalar>(input x: T, output y: T) -> T {
        switch self {
        case .exp: return y
        case .log: return 1 / x
        case .tanh: return 1 - y * y
        case .sigmoid: return y * (1 - y)
        case .silu:
            let s = 1 / (1 + T.exp(-x))
            return s * (1 + x * (1 - s))
        case .relu: return x > 0 ? 1 : 0
        case .square: return 2 * x
        case .sqrt: return 1 / (2 * y)
        case .reciprocalSqrt: return -y * y * y / 2
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .geluErf:
            let cdf = (1 + T.erf(x * T(0.70710678118654752440))) / 2
            let pdf = T.exp(-x * x / 2) * T(0.39894228040143267794)
            return cdf + x * pdf
        case .geluTanh:
            let c = T(0.79788456080286535588)
            let t = T.tanh(c * (x + T(0.044715) * x * x * x))
            return (1 + t) / 2 + x * (1 - t * t) * c * (1 + 3 * T(0.044715) * x * x) / 2
        case .quickGELU:
            let s = 1 / (1 + T.exp(T(-1.702) * x))
            return s * (1 + T(1.702) * x * (1 - s))
        }
    }
}

@inline(__always)
private func mapKernel<T: ComputeScalar>(_ input: Tensor, into out: Tensor, _ function: UnaryFunction, _: T.Type) {
    if T.self == Float.self, vectorizedFloatMap(input, into: out, function) { return }
    let x = input.pointer(as: T.self), y = out.pointer(as: T.self)
    Parallel.forEachRange(out.elementCount, grain: 16_384) { range in
        for i in range { y[i] = function.apply(x[i]) }
    }
}

/// The exponential-based activations (quick GELU among them) and exact GELU in float32, 16 lanes at a time with the
/// vectorised `exp` (within 1.2 ulp) and `erf` (``erf16Float(_:)``); libm's `expf` and `erff` are
/// a scalar call per element. Returns false for other functions.
private func vectorizedFloatMap(_ input: Tensor, into out: Tensor, _ function: UnaryFunction) -> Bool {
    guard function == .exp || function == .silu || function == .sigmoid || function == .geluErf || function == .quickGELU
    else { return false }
    let x = UnsafePointer(input.floatPointer), y = out.floatPointer
    @inline(__always) func apply(_ v: SIMD16<Float>) -> SIMD16<Float> {
        switch function {
        case .exp: return exp16Float(v)
        case .silu: return v / (1 + exp16Float(-v))
        case .geluErf: return v * (1 + erf16Float(v * 0.707_106_78)) * 0.5
        case .quickGELU: return v / (1 + exp16Float(v * -1.702))
        default: return 1 / (1 + exp16Float(-v))
        }
    }
    Parallel.forEachRange(out.elementCount, grain: 16_384) { range in
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            store16(apply(load16(x + i)), y + i)
            i += 16
        }
        while i < range.upperBound {
            y[i] = apply(SIMD16(repeating: x[i]))[0]
            i += 1
        }
    }
    return true
}

@inline(__always)
private func derivativeKernel<T: ComputeScalar>(_ input: Tensor, _ output: Tensor, _ gradient: Tensor,
                                                 into result: Tensor, _ function: UnaryFunction, _: T.Type) {
    if T.self == Float.self && (function == .silu || function == .sigmoid || function == .geluErf) {
        vectorizedFloatDerivative(input, output, gradient, into: result, function)
        return
    }
    let x = input.pointer(as: T.self), y = output.pointer(as: T.self)
    let g = gradient.pointer(as: T.self), d = result.pointer(as: T.self)
    Parallel.forEachRange(result.elementCount, grain: 16_384) { range in
        for i in range { d[i] = g[i] * function.derivative(input: x[i], output: y[i]) }
    }
}

/// `erf(x)` in float32, 16 lanes at a time: the odd/even rational approximation Eigen and
/// TensorFlow use (`generic_fast_erf_float`, degree 13 over degree 8 in x), exact to a few ulp of
/// 1; inputs are clamped to ±4, beyond which erf rounds to ±1 in float32.
// `@_transparent` and `replacing(with:where:)` as in `exp16Float`: `clamped` and an out-of-line
// call each compiled to lane-by-lane code through memory (slower than scalar `erff`).
@_transparent
func erf16Float(_ input: SIMD16<Float>) -> SIMD16<Float> {
    var x = input.replacing(with: -4, where: input .< -4)
    x.replace(with: 4, where: x .> 4)
    let x2 = x * x
    var p = x2 * -2.726_142_25e-10 + 2.770_681_42e-08
    p = x2 * p + -2.101_024_02e-06
    p = x2 * p + -5.692_506_39e-05
    p = x2 * p + -7.349_906_30e-04
    p = x2 * p + -2.954_599_81e-03
    p = x2 * p + -1.609_603_33e-02
    p = x * p
    var q = x2 * -1.456_607_18e-05 + -2.133_740_55e-04
    q = x2 * q + -1.682_826_97e-03
    q = x2 * q + -7.373_329_17e-03
    q = x2 * q + -1.426_473_90e-02
    return p / q
}

/// `dy · f'(x)` for SiLU, sigmoid and exact GELU in float32, 16 lanes at a time.
private func vectorizedFloatDerivative(_ input: Tensor, _ output: Tensor, _ gradient: Tensor, into result: Tensor,
                                       _ function: UnaryFunction) {
    let x = UnsafePointer(input.floatPointer), y = UnsafePointer(output.floatPointer)
    let g = UnsafePointer(gradient.floatPointer), d = result.floatPointer
    @inline(__always) func derivative(_ x: SIMD16<Float>, _ y: SIMD16<Float>) -> SIMD16<Float> {
        if function == .sigmoid { return y * (1 - y) }
        if function == .geluErf {
            // Φ(x) + x·φ(x)
            let cdf = (1 + erf16Float(x * 0.707_106_78)) * 0.5
            return cdf + x * exp16Float(x * x * -0.5) * 0.398_942_28
        }
        let s = 1 / (1 + exp16Float(-x))
        return s * (1 + x * (1 - s))
    }
    Parallel.forEachRange(result.elementCount, grain: 16_384) { range in
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            store16(load16(g + i) * derivative(load16(x + i), load16(y + i)), d + i)
            i += 16
        }
        while i < range.upperBound {
            d[i] = g[i] * derivative(SIMD16(repeating: x[i]), SIMD16(repeating: y[i]))[0]
            i += 1
        }
    }
}

extension Tensor {
    @usableFromInline
    func unary(_ function: UnaryFunction) -> Tensor {
        requireComputeType(function.rawValue)
        let input = contiguousStorageView()
        let out = Tensor(uninitialized: shape, dtype: dtype)  // written in full by the kernel
        dispatchFloat(dtype, function.rawValue,
                      float: { mapKernel(input, into: out, function, Float.self) },
                      double: { mapKernel(input, into: out, function, Double.self) })
        if Autograd.needsGraph(self) {
            // Saves the input and the output.
            let savedInput = input.detached(), savedOutput = out.detached()
            out.recordOperation(function.rawValue, inputs: [self]) { g in
                let gradient = g.contiguous()
                let result = Tensor(uninitialized: gradient.shape, dtype: gradient.dtype)
                dispatchFloat(gradient.dtype, function.rawValue,
                              float: { derivativeKernel(savedInput, savedOutput, gradient, into: result, function, Float.self) },
                              double: { derivativeKernel(savedInput, savedOutput, gradient, into: result, function, Double.self) })
                return [result]
            }
        }
        return out
    }

    /// `eˣ` element-wise.
    public func exp() -> Tensor { unary(.exp) }
    /// The natural logarithm element-wise.
    public func log() -> Tensor { unary(.log) }
    /// The hyperbolic tangent element-wise (the gate function of the adapters).
    public func tanh() -> Tensor { unary(.tanh) }
    /// `1 / (1 + e⁻ˣ)` element-wise.
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    /// `x · sigmoid(x)` element-wise (SiLU, the Llama MLP activation).
    public func silu() -> Tensor { unary(.silu) }
    /// `max(x, 0)` element-wise.
    public func relu() -> Tensor { unary(.relu) }
    /// `x²` element-wise.
    public func squared() -> Tensor { unary(.square) }
    /// `√x` element-wise.
    public func squareRoot() -> Tensor { unary(.sqrt) }
    /// `1/√x` element-wise.
    public func reciprocalSquareRoot() -> Tensor { unary(.reciprocalSqrt) }
    /// `|x|` element-wise.
    public func absolute() -> Tensor { unary(.abs) }

    /// The GELU activation: `x · Φ(x)` exactly (`approximation: .none`, PyTorch's default and
    /// CLIP's / Mllama's `gelu`) or with the tanh approximation (`gelu_pytorch_tanh`).
    public func gelu(approximation: GELUApproximation = .none) -> Tensor {
        unary(approximation == .none ? .geluErf : .geluTanh)
    }

    /// OpenAI CLIP's `quick_gelu`: `x · sigmoid(1.702·x)`.
    public func quickGELU() -> Tensor { unary(.quickGELU) }
}

/// How GELU is computed.
public enum GELUApproximation: Sendable {
    /// `x · ½(1 + erf(x/√2))`.
    case none
    /// `x · ½(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    case tanh
}
