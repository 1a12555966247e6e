/// Vectorised row primitives for the attention kernels: dot product, `y += a·x`, row maximum and
/// `exp(x − shift)` with its sum. Each is generic over ``ComputeScalar``; the float32 instantiation
/// runs 16 lanes at a time (floating-point reductions do not auto-vectorise without fast-math),
/// the float64 one (gradient checks) stays scalar.

/// Reinterprets a pointer to `T` as a pointer to `Float` (call only when `T` is `Float`).
@inline(__always)
private func floats<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
private func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
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
    if T.self == Float.self {
        let p = floats(x)
        var acc = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= count {
            acc = pointwiseMax(acc, load16(p + i))
            i += 16
        }
        var best = acc.max()
        while i < count { best = Swift.max(best, p[i]); i += 1 }
        return unsafeBitCast(best, to: T.self)
    }
    var best = -T.infinity
    for i in 0..<count { best = Swift.max(best, x[i]) }
    return best
}

/// `e^x` for 16 lanes: Cody–Waite reduction `x = n·ln2 + r`, a degree-7 Taylor polynomial in `r`
/// (|r| ≤ ln2/2, error below 2 ulp), and `2ⁿ` built in the exponent bits. Inputs below −87
/// (including −∞, masked scores) give exactly 0, so masked keys carry no weight.
@inline(__always)
private func exp16(_ input: SIMD16<Float>) -> SIMD16<Float> {
    let x = pointwiseMax(input, SIMD16(repeating: -87))
    let magic = SIMD16<Float>(repeating: 12_582_912)  // 1.5·2²³: adding it rounds to an integer
    let shifted = x * SIMD16(repeating: 1.442_695_04) + magic
    let n = shifted - magic
    var r = x - n * SIMD16(repeating: 0.693_359_375)
    r = r - n * SIMD16(repeating: -2.121_944_4e-4)
    var p = SIMD16<Float>(repeating: 1.0 / 5040)
    p = p * r + SIMD16(repeating: 1.0 / 720)
    p = p * r + SIMD16(repeating: 1.0 / 120)
    p = p * r + SIMD16(repeating: 1.0 / 24)
    p = p * r + SIMD16(repeating: 1.0 / 6)
    p = p * r + SIMD16(repeating: 0.5)
    p = p * r + SIMD16(repeating: 1)
    p = p * r + SIMD16(repeating: 1)
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- SIMD16(repeating: 0x4B40_0000)
    let scale = unsafeBitCast((integer &+ SIMD16(repeating: 127)) &<< SIMD16(repeating: 23), to: SIMD16<Float>.self)
    return (p * scale).replacing(with: 0, where: input .< SIMD16(repeating: -87))
}

/// `x[i] = e^(x[i] − shift)` in place, returning the sum of the results.
@inline(__always)
func rowExpSubtracting<T: ComputeScalar>(_ x: UnsafeMutablePointer<T>, _ shift: T, _ count: Int) -> T {
    if T.self == Float.self {
        let p = UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self)
        let s = SIMD16<Float>(repeating: unsafeBitCast(shift, to: Float.self))
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let e = exp16(load16(p + i) - s)
            store16(e, p + i)
            acc += e
            i += 16
        }
        if i < count {
            var tail = SIMD16<Float>(repeating: -.infinity)
            for lane in 0..<(count - i) { tail[lane] = p[i + lane] }
            let e = exp16(tail - s)
            for lane in 0..<(count - i) { p[i + lane] = e[lane] }
            acc += e
        }
        return unsafeBitCast(acc.sum(), to: T.self)
    }
    var sum: T = 0
    for i in 0..<count {
        let e = T.exp(x[i] - shift)
        x[i] = e
        sum += e
    }
    return sum
}
