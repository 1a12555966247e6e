import CKernels

/// Matrix products with bfloat16 operands and float32 sums (`CKernels/gemm_bf16.c`), VLMKit's own
/// kernel on AVX512-BF16's `vdpbf16ps` (Debian's OpenBLAS is built without `sbgemm`).
///
/// Both operands are rounded to bf16 (``round(_:)``) and the products summed in float32, so
/// `C` differs from the exact product of the rounded operands by at most
/// `(k + 2) · 2⁻²⁴ · Σ |aᵢ bᵢ|` per element (float32 additions only: a product of two bf16 values is
/// exact in float32). On a CPU without AVX512-BF16 a portable version computes the same, slowly.
public enum BFloat16GEMM {
    /// Whether this CPU runs the AVX512-BF16 kernel.
    public static let isNative = vlm_bf16_gemm_native() != 0

    /// `value` rounded to bfloat16: to nearest, ties to even; ±Inf stays; a finite value past the
    /// largest bf16 becomes ±Inf; NaN stays NaN (made quiet, sign kept). Subnormals round like
    /// any other value.
    public static func round(_ value: Float) -> UInt16 { vlm_bf16_round(value) }

    /// An operand `op(B)` (`k × n`) rounded and laid out for the kernel once, for a matrix that is
    /// multiplied many times unchanged (a frozen weight).
    public final class PackedOperand: @unchecked Sendable {
        /// Reduction length and columns of `op(B)`.
        public let k: Int, n: Int
        /// How B was stored.
        public let trans: BLAS.Transpose
        // A float32 tensor is only a buffer of 32-bit words here (its storage comes from the buffer pool).
        let words: Tensor

        /// Packs `op(B)`: `.transposed` reads B stored as `[n, k]` (a weight in `x · Wᵀ`), `.none` as `[k, n]`.
        public init(_ trans: BLAS.Transpose, _ b: UnsafePointer<Float>, ldb: Int, k: Int, n: Int, portable: Bool = false) {
            (self.k, self.n, self.trans) = (k, n, trans)
            words = Tensor(uninitialized: [max(1, vlm_bf16_packed_words(n, k, 32))])
            let buffer = UnsafeMutableRawPointer(words.floatPointer).assumingMemoryBound(to: UInt32.self)
            vlm_bf16_pack_b(portable ? 0 : 1, b, ldb, trans == .transposed ? 1 : 0, k, n, buffer, Int32(workerPoolThreads))
        }

        /// Bytes held.
        public var byteCount: Int { words.elementCount * 4 }
    }

    /// The operand B of a product: a float32 matrix rounded on every call, or one packed before.
    public enum Operand {
        case matrix(BLAS.Transpose, UnsafePointer<Float>, ldb: Int)
        case packed(PackedOperand)
    }

    /// `C[m, n] = op(A) · op(B)` (+ C when `accumulate`; otherwise C may be uninitialised) with
    /// `op(A)` of shape `[m, k]` (`.transposed`: A is stored `[k, m]`). `portable` runs the portable
    /// kernel even where the CPU has AVX512-BF16 (tests). Split across the C worker pool.
    public static func multiply(_ transA: BLAS.Transpose, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                b: Operand, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                                portable: Bool = false) {
        guard m > 0 && n > 0 else { return }
        let start = BLAS.Profile.isEnabled ? BLAS.Profile.now() : 0
        var words = vlm_bf16_packed_words(m, k, 12)
        if case .matrix = b { words += vlm_bf16_packed_words(n, k, 32) }
        let workspace = Tensor(uninitialized: [max(1, words)])
        let buffer = UnsafeMutableRawPointer(workspace.floatPointer).assumingMemoryBound(to: UInt32.self)
        // Below ~1 MFLOP a second thread costs more than it saves.
        let parts = Int32(2 * m * n * k < 1 << 20 ? 1 : workerPoolThreads)
        let native: Int32 = portable ? 0 : 1
        switch b {
        case .matrix(let transB, let pointer, let ldb):
            vlm_bf16_gemm(native, transA == .transposed ? 1 : 0, a, lda, transB == .transposed ? 1 : 0, pointer, ldb,
                          nil, c, ldc, m, n, k, accumulate ? 1 : 0, buffer, parts)
        case .packed(let packed):
            ensure(packed.k == k && packed.n == n, "BFloat16GEMM: packed operand is \(packed.k)×\(packed.n), the product needs \(k)×\(n)")
            let words = UnsafeRawPointer(packed.words.floatPointer).assumingMemoryBound(to: UInt32.self)
            vlm_bf16_gemm(native, transA == .transposed ? 1 : 0, a, lda, 0, nil, 0,
                          words, c, ldc, m, n, k, accumulate ? 1 : 0, buffer, parts)
            withExtendedLifetime(packed) {}
        }
        withExtendedLifetime(workspace) {}
        if BLAS.Profile.isEnabled {
            let transB: BLAS.Transpose
            switch b {
            case .matrix(let trans, _, _): transB = trans
            case .packed(let packed): transB = packed.trans
            }
            BLAS.Profile.record(since: start, flops: 2 * m * n * k, shape: (transA, transB, m, n, k), label: "bf16 ")
        }
    }
}
