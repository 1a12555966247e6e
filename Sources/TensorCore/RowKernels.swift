/// Vectorised loops over one contiguous row, shared by normalisation, softmax, the losses and SwiGLU.
///
/// Floating-point reductions do not vectorise by themselves (the compiler must keep the order of the
/// additions), so these helpers load explicit 16-lane vectors and keep one partial sum per lane.
/// `exp` has a vectorised float32 path (Cody–Waite range reduction and a degree-7 polynomial; measured
/// within 1.2 ulp of the exact value over [−87, 88], results that would be subnormal flush to 0);
/// float64, used by gradient checks, calls libm.

/// The scalars the row kernels run on: `Float` and `Double`.
typealias RowScalar = ComputeScalar & SIMDScalar

@inline(__always)
func load16<T: RowScalar>(_ pointer: UnsafePointer<T>) -> SIMD16<T> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<T>.self)
}

@inline(__always)
func store16<T: RowScalar>(_ value: SIMD16<T>, _ pointer: UnsafeMutablePointer<T>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD16<T>.self)
}

/// `eˣ` on 16 float32 lanes. Arguments below −88 (including −∞) give 0; above 88 they saturate.
// `@_transparent` because `@inline(__always)` left it as an out-of-line call (16 lanes passed
// through memory) in the cross-entropy forward.
@_transparent
func exp16Float(_ input: SIMD16<Float>) -> SIMD16<Float> {
    var x = input.replacing(with: -88, where: input .< -88)
    x.replace(with: 88, where: x .> 88)
    // n = round(x / ln 2) by the 1.5·2²³ trick; its integer value sits in the low mantissa bits of t.
    let t = x * 1.44269504088896341 + 12_582_912
    let n = t - 12_582_912
    let r = x - n * 0.693145751953125 - n * 1.428606765330187e-06
    var p = SIMD16<Float>(repeating: 1.0 / 5040)
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let exponent = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((exponent &+ 127) &<< 23, to: SIMD16<Float>.self)
    return p * scale
}

/// `eˣ` on one float32, with exactly the vector path's arithmetic (so row tails match their bodies).
@inline(__always)
func exp1(_ x: Float) -> Float {
    exp16Float(SIMD16<Float>(repeating: x))[0]
}

/// Rows per parallel chunk: enough work (~16k elements) to be worth a thread.
@inline(__always)
func rowGrain(_ width: Int) -> Int { max(1, 16_384 / max(width, 1)) }

enum RowKernels {
    /// `Σ x[i]`.
    @inline(__always)
    static func sum<T: RowScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>(repeating: 0)
        var i = 0
        while i + 16 <= n { acc += load16(x + i); i += 16 }
        var total = acc.sum()
        while i < n { total += x[i]; i += 1 }
        return total
    }

    /// `Σ x[i]²`.
    @inline(__always)
    static func sumOfSquares<T: RowScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>(repeating: 0)
        var i = 0
        while i + 16 <= n { let v = load16(x + i); acc += v * v; i += 16 }
        var total = acc.sum()
        while i < n { total += x[i] * x[i]; i += 1 }
        return total
    }

    /// `Σ (x[i] − c)²`.
    @inline(__always)
    static func sumOfSquaredDeviations<T: RowScalar>(_ x: UnsafePointer<T>, _ n: Int, from c: T) -> T {
        var acc = SIMD16<T>(repeating: 0)
        var i = 0
        while i + 16 <= n { let v = load16(x + i) - c; acc += v * v; i += 16 }
        var total = acc.sum()
        while i < n { total += (x[i] - c) * (x[i] - c); i += 1 }
        return total
    }

    /// `Σ a[i]·b[i]`.
    @inline(__always)
    static func dot<T: RowScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>(repeating: 0)
        var i = 0
        while i + 16 <= n { acc += load16(a + i) * load16(b + i); i += 16 }
        var total = acc.sum()
        while i < n { total += a[i] * b[i]; i += 1 }
        return total
    }

    /// `max x[i]` (−∞ for an empty row).
    @inline(__always)
    static func maximum<T: RowScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
        var best = -T.infinity
        var i = 0
        if n >= 16 {
            var acc = SIMD16<T>(repeating: -T.infinity)
            while i + 16 <= n {
                let v = load16(x + i)
                // Lane by lane with a select: this form becomes one `maxps` per register, where
                // `replace(with:where:)` was left as a scalar loop in this context.
                for lane in 0..<16 { acc[lane] = v[lane] > acc[lane] ? v[lane] : acc[lane] }
                i += 16
            }
            best = acc.max()
        }
        while i < n { if x[i] > best { best = x[i] }; i += 1 }
        return best
    }

    /// Writes `out[i] = scale · exp(x[i] − shift)` when `out` is given, and returns `Σ exp(x[i] − shift)`.
    @inline(__always)
    static func exponentials<T: RowScalar>(_ x: UnsafePointer<T>, _ n: Int, shift: T,
                                           into out: UnsafeMutablePointer<T>?, scale: T = 1) -> T {
        if T.self == Float.self {
            let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
            let of = out.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: Float.self) }
            return T(floatExponentials(xf, n, shift: Float(shift), into: of, scale: Float(scale)))
        }
        var total: T = 0
        if let out {
            for i in 0..<n { let e = T.exp(x[i] - shift); total += e; out[i] = scale * e }
        } else {
            for i in 0..<n { total += T.exp(x[i] - shift) }
        }
        return total
    }

    @inline(__always)
    private static func floatExponentials(_ x: UnsafePointer<Float>, _ n: Int, shift: Float,
                                          into out: UnsafeMutablePointer<Float>?, scale: Float) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        if let out {
            while i + 16 <= n {
                let e = exp16Float(load16(x + i) - shift)
                acc += e
                store16(e * scale, out + i)
                i += 16
            }
        } else {
            while i + 16 <= n { acc += exp16Float(load16(x + i) - shift); i += 16 }
        }
        var total = acc.sum()
        while i < n {
            let e = exp1(x[i] - shift)
            total += e
            out?[i] = scale * e
            i += 1
        }
        return total
    }

    /// `x[i] *= c`.
    @inline(__always)
    static func scale<T: RowScalar>(_ x: UnsafeMutablePointer<T>, _ n: Int, by c: T) {
        var i = 0
        while i + 16 <= n { store16(load16(x + i) * c, x + i); i += 16 }
        while i < n { x[i] *= c; i += 1 }
    }
}

extension Parallel {
    /// How many chunks ``forEachChunk(_:chunks:_:)`` should split `rows` into: at most
    /// ``threadCount``, each with at least `grain` rows.
    static func chunkCount(_ rows: Int, grain: Int) -> Int {
        max(1, min(threadCount, rows / max(grain, 1)))
    }

    /// Runs `body(rows, chunk)` over `0..<rows` split into `chunks` contiguous ranges numbered from 0,
    /// in parallel, so that each chunk can keep its own partial sums (combined by the caller).
    static func forEachChunk(_ rows: Int, chunks: Int, _ body: (Range<Int>, Int) -> Void) {
        Parallel.forEachRange(chunks, grain: 1) { range in
            for chunk in range { body(rows * chunk / chunks ..< rows * (chunk + 1) / chunks, chunk) }
        }
    }
}

/// `eˣ` lane-wise: the vectorised path for float32, libm per lane for float64.
@inline(__always)
func exp16<T: RowScalar>(_ x: SIMD16<T>) -> SIMD16<T> {
    if T.self == Float.self {
        return unsafeBitCast(exp16Float(unsafeBitCast(x, to: SIMD16<Float>.self)), to: SIMD16<T>.self)
    }
    var result = x
    for lane in 0..<16 { result[lane] = T.exp(x[lane]) }
    return result
}
