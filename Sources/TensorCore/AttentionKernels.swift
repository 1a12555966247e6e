/// Row primitives for the attention kernels: dot product, `y += a·x`, row maximum and
/// `exp(x − shift)` with its sum. Each is generic over ``ComputeScalar``; float64 (gradient checks)
/// stays plain scalar code.
///
/// For float32, two rules keep the code vector-speed in a default (SSE baseline) build: sums use
/// explicit 16-lane accumulators (floating-point reductions do not auto-vectorise without
/// fast-math), and everything else is branch-free scalar code the loop vectoriser handles. Swift's
/// generic SIMD `pointwiseMax`, `replacing(with:where:)` and `max()` are avoided: they compile to
/// lane-by-lane loops through the stack, which made the first version of these kernels 10× slower.
/// (The row kernels' `exp16Float`, used for `exp` here, is `@_transparent` to escape that.)

/// Reinterprets a pointer to `T` as a pointer to `Float` (call only when `T` is `Float`).
@inline(__always)
private func floats<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}

/// `Σ a[i]·b[i]` over `count` elements.
@inline(__always)
func rowDot<T: ComputeScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ count: Int) -> T {
    if T.self == Float.self {
        let x = floats(a), y = floats(b)
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        var i = 0
        while i + 32 <= count {
            acc0 += load16(x + i) * load16(y + i)
            acc1 += load16(x + i + 16) * load16(y + i + 16)
            i += 32
        }
        if i + 16 <= count {
            acc0 += load16(x + i) * load16(y + i)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
        while i < count { sum += x[i] * y[i]; i += 1 }
        return unsafeBitCast(sum, to: T.self)
    }
    var sum: T = 0
    for i in 0..<count { sum += a[i] * b[i] }
    return sum
}

/// `y[i] += alpha · x[i]` over `count` elements.
@inline(__always)
func rowAddScaled<T: ComputeScalar>(_ alpha: T, _ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>, _ count: Int) {
    for i in 0..<count { y[i] += alpha * x[i] }
}

/// `y[i] *= alpha` over `count` elements.
@inline(__always)
func rowScale<T: ComputeScalar>(_ y: UnsafeMutablePointer<T>, by alpha: T, _ count: Int) {
    for i in 0..<count { y[i] *= alpha }
}

/// The largest of `count` elements (`-∞` for none).
@inline(__always)
func rowMax<T: ComputeScalar>(_ x: UnsafePointer<T>, _ count: Int) -> T {
    // Four independent chains; scalar max instructions are cheap, Swift's generic SIMD max is not.
    var m0 = -T.infinity, m1 = -T.infinity, m2 = -T.infinity, m3 = -T.infinity
    var i = 0
    while i + 4 <= count {
        m0 = x[i] > m0 ? x[i] : m0
        m1 = x[i + 1] > m1 ? x[i + 1] : m1
        m2 = x[i + 2] > m2 ? x[i + 2] : m2
        m3 = x[i + 3] > m3 ? x[i + 3] : m3
        i += 4
    }
    while i < count { m0 = x[i] > m0 ? x[i] : m0; i += 1 }
    return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
}

/// `x[i] = e^(x[i] − shift)` in place, returning the sum of the results. Float32 goes through the
/// row kernels' vectorised `exp` (16 lanes; exactly 0 for hidden keys at −∞), float64 calls libm.
@inline(__always)
func rowExpSubtracting<T: ComputeScalar>(_ x: UnsafeMutablePointer<T>, _ shift: T, _ count: Int) -> T {
    if T.self == Float.self {
        let p = UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self)
        let sum = RowKernels.exponentials(p, count, shift: unsafeBitCast(shift, to: Float.self), into: p)
        return unsafeBitCast(sum, to: T.self)
    }
    var sum: T = 0
    for i in 0..<count {
        let e = T.exp(x[i] - shift)
        x[i] = e
        sum += e
    }
    return sum
}
