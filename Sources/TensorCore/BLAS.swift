import COpenBLAS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one file that calls OpenBLAS.
///
/// Matrices are row-major. A transposed operand is passed to BLAS as a transpose flag with its
/// leading dimension, never copied.
public enum BLAS {
    /// Whether a matrix operand is read as stored or transposed.
    public enum Transpose: Sendable {
        case none, transposed
        var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    }

    /// `C = alpha · op(A) · op(B) + beta · C` in float32, with `op(A)` of shape `[m, k]` and
    /// `op(B)` of shape `[k, n]`.
    @inline(__always)
    public static func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let start = Profile.isEnabled ? Profile.now() : 0
        Threads.call {
            cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
        if Profile.isEnabled { Profile.record(since: start, flops: 2 * m * n * k, shape: (transA, transB, m, n, k)) }
    }

    /// `C = alpha · op(A) · op(B) + beta · C` in float64 (gradient checks).
    @inline(__always)
    public static func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                            alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int,
                            beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
        let start = Profile.isEnabled ? Profile.now() : 0
        Threads.call {
            cblas_dgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
        if Profile.isEnabled { Profile.record(since: start, flops: 2 * m * n * k) }
    }

    /// Time and work spent inside GEMM calls, for benchmarks: off by default (one relaxed atomic
    /// load per call when off). Calls made concurrently from several threads all count, so the
    /// total can exceed wall-clock time.
    public enum Profile {
        private static let enabled = Atomic<Bool>(false)
        private static let nanoseconds = Atomic<Int>(0)
        private static let flopCount = Atomic<Int>(0)
        private static let callCount = Atomic<Int>(0)
        private static let shapesEnabled = Atomic<Bool>(false)
        private static let attentionActive = Atomic<Int>(0)
        private static let attentionNanoseconds = Atomic<Int>(0)
        private static let attentionGemmNanoseconds = Atomic<Int>(0)
        private static let shapes = Mutex([String: (nanoseconds: Int, flops: Int, calls: Int)]())

        /// Whether GEMM calls are being timed.
        public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

        /// Zeroes the counters and starts (or stops) timing.
        public static func reset(enabled on: Bool, byShape: Bool = false) {
            shapes.withLock { $0 = [:] }
            attentionNanoseconds.store(0, ordering: .relaxed)
            attentionGemmNanoseconds.store(0, ordering: .relaxed)
            shapesEnabled.store(on && byShape, ordering: .relaxed)
            nanoseconds.store(0, ordering: .relaxed)
            flopCount.store(0, ordering: .relaxed)
            callCount.store(0, ordering: .relaxed)
            enabled.store(on, ordering: .relaxed)
        }

        /// Seconds spent in GEMM, floating-point operations done and calls made since ``reset(enabled:)``.
        public static var totals: (seconds: Double, flops: Int, calls: Int) {
            (Double(nanoseconds.load(ordering: .relaxed)) * 1e-9, flopCount.load(ordering: .relaxed),
             callCount.load(ordering: .relaxed))
        }

        /// A monotonic clock in nanoseconds.
        @inline(__always)
        public static func now() -> Int {
            var time = timespec()
            clock_gettime(CLOCK_MONOTONIC, &time)
            return time.tv_sec * 1_000_000_000 + time.tv_nsec
        }

        /// GEMM time by operand layout and shape (`"NT 1024×512×512"` = op(A) as stored,
        /// op(B) transposed, m × n × k; `"bf16 NT …"` for ``BFloat16GEMM``), when
        /// ``reset(enabled:byShape:)`` asked for it.
        public static var byShape: [(shape: String, seconds: Double, flops: Int, calls: Int)] {
            shapes.withLock { table in
                table.map { (shape: $0.key, seconds: Double($0.value.nanoseconds) * 1e-9, flops: $0.value.flops, calls: $0.value.calls) }
            }.sorted { $0.seconds > $1.seconds }
        }

        /// Wall-clock seconds inside fused attention (forward and backward), and the GEMM time
        /// (summed over the threads that ran them concurrently) inside it.
        public static var attentionTotals: (seconds: Double, gemmSeconds: Double) {
            (Double(attentionNanoseconds.load(ordering: .relaxed)) * 1e-9,
             Double(attentionGemmNanoseconds.load(ordering: .relaxed)) * 1e-9)
        }

        /// Times `body` as attention work (when profiling).
        @inline(__always)
        static func attention<Result>(_ body: () -> Result) -> Result {
            guard isEnabled else { return body() }
            let start = now()
            attentionActive.add(1, ordering: .relaxed)
            defer {
                attentionActive.subtract(1, ordering: .relaxed)
                attentionNanoseconds.add(now() - start, ordering: .relaxed)
            }
            return body()
        }

        static func record(since start: Int, flops: Int, shape: (Transpose, Transpose, Int, Int, Int)? = nil, label: String = "") {
            let elapsed = now() - start
            if attentionActive.load(ordering: .relaxed) > 0 { attentionGemmNanoseconds.add(elapsed, ordering: .relaxed) }
            nanoseconds.add(elapsed, ordering: .relaxed)
            flopCount.add(flops, ordering: .relaxed)
            callCount.add(1, ordering: .relaxed)
            if let shape, shapesEnabled.load(ordering: .relaxed) {
                let key = label + (shape.0 == .none ? "N" : "T") + (shape.1 == .none ? "N" : "T") + " \(shape.2)×\(shape.3)×\(shape.4)"
                shapes.withLock { table in
                    let old = table[key] ?? (0, 0, 0)
                    table[key] = (old.nanoseconds + elapsed, old.flops + flops, old.calls + 1)
                }
            }
        }
    }

    /// The number of threads OpenBLAS uses for one GEMM. Setting it waits for GEMMs running on
    /// other threads to finish.
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { Threads.call { openblas_set_num_threads(Int32(newValue)) } }
    }

    /// OpenBLAS's thread count is one setting for the whole process, and its results depend on it:
    /// with K between its block depth and twice that (K = 500, say) one thread blocks the sum over
    /// K differently from several, so the same GEMM gives other bits. Attention runs many small
    /// GEMMs on several of ``Parallel``'s threads at once with OpenBLAS held at one thread
    /// (``singleThreaded(_:)``); a GEMM another thread started meanwhile — a second model in the
    /// process, a test running beside another — would have run on one thread instead of N, and
    /// its bits would have depended on timing. So every GEMM outside such a region holds a lock
    /// the region holds for its whole duration: they never overlap.
    enum Threads {
        nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
            let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
            pthread_mutex_init(lock, nil)
            return lock
        }()
        /// Set on the threads running a region's work (the GEMMs that may run with the lock held elsewhere).
        private static let insideRegion: pthread_key_t = {
            var key = pthread_key_t()
            pthread_key_create(&key, nil)
            return key
        }()

        static var isInsideRegion: Bool { pthread_getspecific(insideRegion) != nil }

        /// Runs one GEMM (or a change of the thread count): inside a region as it is, elsewhere
        /// once no region runs and no other thread's GEMM does.
        @inline(__always)
        static func call<Result>(_ body: () -> Result) -> Result {
            _ = OpenBLASIdleSpin.applied
            if isInsideRegion { return body() }
            pthread_mutex_lock(lock)
            defer { pthread_mutex_unlock(lock) }
            return body()
        }

        /// Runs `body` with OpenBLAS on one thread and no GEMM of another thread running; `body`
        /// spreads its work over threads that each wrap their part in ``asRegionWorker(_:)``.
        static func singleThreaded(_ body: () -> Void) {
            _ = OpenBLASIdleSpin.applied
            pthread_mutex_lock(lock)
            defer { pthread_mutex_unlock(lock) }
            let threads = openblas_get_num_threads()
            if threads != 1 { openblas_set_num_threads(1) }
            defer { if threads != 1 { openblas_set_num_threads(threads) } }
            body()
        }

        /// Runs `body` on this thread as part of a ``singleThreaded(_:)`` region.
        static func asRegionWorker<Result>(_ body: () -> Result) -> Result {
            let outer = pthread_getspecific(insideRegion)
            pthread_setspecific(insideRegion, UnsafeRawPointer(bitPattern: 1))
            defer { pthread_setspecific(insideRegion, outer) }
            return body()
        }
    }

    /// OpenBLAS's description of itself (build options and the kernel family it chose).
    public static var configuration: String {
        guard let text = openblas_get_config() else { return "unknown" }
        _ = OpenBLASIdleSpin.applied
        let spin = OpenBLASIdleSpin.currentExponent
        return String(cString: text) + " core=" + coreName + " idle_spin=2^\(spin > 0 ? spin : 28)"
    }

    /// The kernel set OpenBLAS is running ("Haswell", "SkylakeX", "Cooperlake", "Prescott", …).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "Unknown" }

    /// Whether this OpenBLAS carries kernels for many CPUs and picks one when it loads
    /// (`DYNAMIC_ARCH`), so that `OPENBLAS_CORETYPE` can choose another.
    public static var isDynamicArch: Bool {
        openblas_get_config().map { String(cString: $0).contains("DYNAMIC_ARCH") } ?? false
    }
}

/// Element-generic entry point so kernels written over ``ComputeScalar`` can call GEMM.
@inline(__always)
func gemm<T: ComputeScalar>(_ transA: BLAS.Transpose, _ transB: BLAS.Transpose, m: Int, n: Int, k: Int,
                            alpha: T = 1, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                            beta: T = 0, c: UnsafeMutablePointer<T>, ldc: Int) {
    if T.self == Float.self {
        BLAS.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha as! Float,
                  a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
                  b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb, beta: beta as! Float,
                  c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
    } else {
        BLAS.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha as! Double,
                  a: UnsafeRawPointer(a).assumingMemoryBound(to: Double.self), lda: lda,
                  b: UnsafeRawPointer(b).assumingMemoryBound(to: Double.self), ldb: ldb, beta: beta as! Double,
                  c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self), ldc: ldc)
    }
}
