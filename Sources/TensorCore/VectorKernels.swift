import Dispatch

import CKernels

/// The instruction sets the C kernels (`CKernels`) are built for; the best one the CPU supports is
/// chosen at run time, so one binary uses AVX-512 where it exists and still runs anywhere.
public enum KernelPath: Int, CaseIterable, Comparable, Sendable, CustomStringConvertible {
    case portable = 0, avx2 = 1, avx512 = 2

    /// The widest path this CPU supports.
    public static let best = KernelPath(rawValue: Int(vlm_best_path().rawValue)) ?? .portable

    /// Float32 lanes per vector on this path.
    public var lanes: Int { Int(vlm_path_lanes(cPath)) }

    public var description: String {
        switch self {
        case .portable: "portable"
        case .avx2: "AVX2+FMA"
        case .avx512: "AVX-512"
        }
    }

    public static func < (lhs: KernelPath, rhs: KernelPath) -> Bool { lhs.rawValue < rhs.rawValue }

    var cPath: vlm_path { vlm_path(rawValue: UInt32(rawValue)) }
}

/// Matrix-vector products for decoding (`CKernels/gemv.c`): `y[m, n] = x[m, k] · W[n, k]ᵀ` for a
/// handful of input rows, all contiguous and row-major.
///
/// Each weight row is streamed from memory once however many input rows there are, split by rows
/// across `Parallel.threadCount` threads of the C worker pool, whose workers spin briefly between
/// calls instead of being woken for each (a decoding step makes ~60 of these calls).
public enum MatrixVector {
    /// The product with a bfloat16 weight (bit patterns), widened exactly in registers; adds to
    /// `y` when `accumulate`. `path` lets tests run every instruction set; it is lowered to what
    /// the CPU supports.
    public static func product(bfloat16Weight weight: UnsafePointer<UInt16>, x: UnsafePointer<Float>,
                               y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, accumulate: Bool,
                               path: KernelPath = .best) {
        let start = BLAS.Profile.isEnabled ? BLAS.Profile.now() : 0
        vlm_gemv_bf16_parallel(path.cPath, weight, x, y, m, n, k, accumulate ? 1 : 0, parts(n: n, k: k))
        if BLAS.Profile.isEnabled { BLAS.Profile.record(since: start, flops: 2 * m * n * k) }
    }

    /// The product with a float32 weight; adds to `y` when `accumulate`.
    public static func product(weight: UnsafePointer<Float>, x: UnsafePointer<Float>,
                               y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, accumulate: Bool,
                               path: KernelPath = .best) {
        let start = BLAS.Profile.isEnabled ? BLAS.Profile.now() : 0
        vlm_gemv_f32_parallel(path.cPath, weight, x, y, m, n, k, accumulate ? 1 : 0, parts(n: n, k: k))
        if BLAS.Profile.isEnabled { BLAS.Profile.record(since: start, flops: 2 * m * n * k) }
    }

    /// Each part needs enough weight to amortise the hand-off (~64 K elements).
    private static func parts(n: Int, k: Int) -> Int32 {
        Int32(min(workerPoolThreads, max(1, n * k / (64 * 1024))))
    }
}

/// bfloat16 → float32 widening (a bf16 value is the top half of a float32, so it is exact).
public enum BFloat16Kernels {
    /// `out[i] = Float(bits[i])` for `count` bfloat16 bit patterns.
    public static func widen(_ bits: UnsafePointer<UInt16>, into out: UnsafeMutablePointer<Float>, count: Int,
                             path: KernelPath = .best) {
        vlm_widen_bf16(path.cPath, bits, out, count)
    }
}

/// The number of threads of the C worker pool, sized like `Parallel`; evaluating it configures the
/// pool (once: Swift initialises globals lazily and thread-safely).
let workerPoolThreads: Int = {
    vlm_pool_configure(Int32(Parallel.threadCount))
    return Parallel.threadCount
}()

/// What ``forEachPoolRange(_:grain:_:)`` hands the C worker pool.
private struct PoolRangeJob {
    let count: Int
    let body: (Range<Int>) -> Void
}

/// Runs `body` over `0..<count` split into contiguous ranges of at least `grain` items (up to 4
/// per thread) on the C worker pool, whose workers spin briefly between jobs and claim ranges one
/// at a time: for the small per-layer work of a decoding step, where waking `Parallel`'s threads
/// (libdispatch) for every call costs about what the second core gains. `body` must not do GEMMs
/// (OpenBLAS keeps its own threads) or use the pool itself (a nested call runs inline); when
/// another thread holds the pool, everything runs here as one range.
func forEachPoolRange(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let parts = min(4 * workerPoolThreads, count / max(grain, 1))
    guard workerPoolThreads > 1, parts > 1 else {
        body(0..<count)
        return
    }
    withoutActuallyEscaping(body) { body in
        var job = PoolRangeJob(count: count, body: body)
        withUnsafeMutablePointer(to: &job) { pointer in
            _ = vlm_pool_run_parts({ context, part, parts in
                let job = context!.assumingMemoryBound(to: PoolRangeJob.self).pointee
                let (part, parts) = (Int(part), Int(parts))
                job.body(job.count * part / parts..<job.count * (part + 1) / parts)
            }, pointer, Int32(parts))
        }
    }
}

/// The machine's peak multiply-add throughput, measured (benchmarks report GEMM rates against it).
public enum PeakFlops {
    /// Float32 FLOP/s of `threads` threads at once, each running twelve independent fused
    /// multiply-add chains on `path`'s widest vectors for about `seconds`.
    public static func measure(path: KernelPath = .best, threads: Int = 1, seconds: Double = 0.2) -> Double {
        let lanes = Double(path.lanes)
        var iterations: Int64 = 1 << 16
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: max(1, threads)) { _ in
                let sink = vlm_fma_chains(path.cPath, iterations)
                withExtendedLifetime(sink) {}
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if elapsed >= seconds || iterations > 1 << 40 {
                // 12 chains × lanes × 2 FLOPs per fused multiply-add, on every thread.
                return Double(max(1, threads)) * Double(iterations) * 12 * lanes * 2 / max(elapsed, 1e-9)
            }
            iterations *= 2
        }
    }

    /// FLOP/s of `threads` threads running twelve chains of AVX512-BF16 dot products (4 FLOPs per
    /// float32 lane per instruction: two products, two additions), or nil when the CPU lacks them.
    public static func measureBFloat16Dot(threads: Int = 1, seconds: Double = 0.2) -> Double? {
        guard CPUFeatures.current.avx512BF16 else { return nil }
        var iterations: Int64 = 1 << 16
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: max(1, threads)) { _ in
                let sink = vlm_bf16_dot_chains(iterations)
                withExtendedLifetime(sink) {}
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if elapsed >= seconds || iterations > 1 << 40 {
                return Double(max(1, threads)) * Double(iterations) * 12 * 16 * 4 / max(elapsed, 1e-9)
            }
            iterations *= 2
        }
    }
}
