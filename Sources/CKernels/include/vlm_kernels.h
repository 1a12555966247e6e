// CKernels: the few hot loops that need instructions the Swift build cannot assume.
//
// The package builds for the x86-64 baseline (SSE2), so Swift code cannot use FMA, AVX2 or
// AVX-512 without an unsafe `-target-cpu` flag. These C kernels are compiled once per instruction
// set with function-level target attributes and pick the best one at run time, so one binary runs
// on any x86-64 CPU and uses AVX-512 where it exists. On other architectures only the portable
// versions are built.
#ifndef VLM_KERNELS_H
#define VLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Instruction-set paths a kernel can take.
typedef enum {
    vlm_path_portable = 0,  // plain C, any CPU
    vlm_path_avx2 = 1,      // AVX2 + FMA (x86-64-v3)
    vlm_path_avx512 = 2,    // AVX-512 F + BW (x86-64-v4)
} vlm_path;

/// The best path this CPU supports.
vlm_path vlm_best_path(void);

/// What cpuid says about the CPU (all zero on other architectures). A feature counts only when
/// the operating system also saves its registers on a context switch.
typedef struct {
    char vendor[13];   // "GenuineIntel", "AuthenticAMD", … (NUL-terminated)
    int family, model; // display family and model (extended fields folded in)
    int avx2_fma;      // AVX2 and FMA
    int avx512;        // AVX-512 F, CD, BW, DQ and VL (OpenBLAS's SkylakeX kernels)
    int avx512_bf16;   // AVX512-BF16 on top of the above
} vlm_cpu_features;

/// Reads the CPU's features with cpuid (cheap; not cached).
void vlm_cpu_read(vlm_cpu_features *out);

// MARK: - Matrix-vector products (gemv.c)

/// Rows `row_begin..<row_end` of `y[j, r] = sum_c W[r, c] * x[j, c]` (+ y[j, r] when `accumulate`)
/// for `m` input rows, with `W` a row-major bfloat16 matrix (`ldw` elements per row) and `x`, `y`
/// float32 (`ldx`, `ldy` elements per row). Weights are widened to float32 exactly; sums are
/// float32 with fused multiply-adds where the path has them. `path` above `vlm_best_path()` is
/// lowered to it; the AVX-512 path runs the AVX2 kernel (faster: the loop is memory-bound).
void vlm_gemv_bf16(vlm_path path, const uint16_t *w, ptrdiff_t ldw,
                   const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,
                   ptrdiff_t m, ptrdiff_t k, ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate);

/// The same product with a float32 weight.
void vlm_gemv_f32(vlm_path path, const float *w, ptrdiff_t ldw,
                  const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,
                  ptrdiff_t m, ptrdiff_t k, ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate);

/// The whole product `y[m, n] = x[m, k] · W[n, k]ᵀ` (+ y when `accumulate`; contiguous
/// operands), split by rows into `parts` on the worker pool.
void vlm_gemv_bf16_parallel(vlm_path path, const uint16_t *w, const float *x, float *y,
                            ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int accumulate, int parts);
void vlm_gemv_f32_parallel(vlm_path path, const float *w, const float *x, float *y,
                           ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int accumulate, int parts);

/// `out[i] = float(bits[i])` for `count` bfloat16 values (exact).
void vlm_widen_bf16(vlm_path path, const uint16_t *bits, float *out, ptrdiff_t count);

/// Runs `iterations` rounds of 12 independent fused multiply-add chains on the path's widest
/// vectors (8 lanes for AVX2, 16 for AVX-512, 1 for portable) and returns a value that depends on
/// every result, so it is not optimised away. Used to measure the machine's peak FLOP rate.
float vlm_fma_chains(vlm_path path, int64_t iterations);

/// Runs `iterations` rounds of 12 independent chains of AVX512-BF16 dot products (16 float32
/// lanes, each adding two bf16 products per instruction); returns -1 without running when the CPU
/// lacks AVX512-BF16. Measures the peak a bf16 GEMM could reach.
float vlm_bf16_dot_chains(int64_t iterations);

/// Float32 lanes per vector on `path` (1, 8 or 16).
int vlm_path_lanes(vlm_path path);


// MARK: - Matrix products with bfloat16 operands (gemm_bf16.c)

/// `value` rounded to bfloat16 (round to nearest, ties to even; ±Inf stays; a finite value beyond
/// the largest bf16 rounds to ±Inf; NaN stays NaN, made quiet, sign kept).
uint16_t vlm_bf16_round(float value);

/// Whether this CPU runs the AVX512-BF16 kernel (`vdpbf16ps`); without it the portable one runs.
int vlm_bf16_gemm_native(void);

/// 32-bit words of a packed operand of `rows` rows and reduction length `k`, in panels of
/// `panel_rows` rows (12 for A, 32 for B).
size_t vlm_bf16_packed_words(ptrdiff_t rows, ptrdiff_t k, int panel_rows);

/// Packs `op(B)` (`k × n`; `trans_b`: B is stored `[n, k]` with `ldb` elements per row, else
/// `[k, n]`) rounded to bf16, into `vlm_bf16_packed_words(n, k, 32)` words, so that products with
/// the same B (a frozen weight) do not round and pack it again. `native` 0 forces the portable
/// path (tests); the result is the same either way.
void vlm_bf16_pack_b(int native, const float *b, ptrdiff_t ldb, int trans_b, ptrdiff_t k, ptrdiff_t n,
                     uint32_t *packed, int parts);

/// `C[m, n] = op(A) · op(B)` (+ C when `accumulate`; C may be uninitialised otherwise) with both
/// operands rounded to bf16 and float32 sums. `op(A)` is `m × k` (`trans_a`: A is stored `[k, m]`),
/// `op(B)` is `k × n` as in ``vlm_bf16_pack_b``; when `packed_b` is not null it is used instead of
/// `b`. `workspace` holds `vlm_bf16_packed_words(m, k, 12)` words (+ `vlm_bf16_packed_words(n, k, 32)`
/// when B is not packed). Split into up to `parts` parts on the worker pool.
void vlm_bf16_gemm(int native, int trans_a, const float *a, ptrdiff_t lda, int trans_b, const float *b, ptrdiff_t ldb,
                   const uint32_t *packed_b, float *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                   int accumulate, uint32_t *workspace, int parts);

// MARK: - Worker pool

/// A unit of work: part `part` of `parts` (the caller and the workers each take the next part not
/// yet started, so which thread runs a part is not fixed).
typedef void (*vlm_pool_task)(void *context, int part, int parts);

/// Sets the number of threads the pool uses, the caller included (the first call wins; the
/// workers start on first use). Without it the pool runs everything on the caller.
void vlm_pool_configure(int threads);

/// Runs `task` for parts `0..<parts` (at most the configured thread count) and returns when all
/// are done; returns how many parts ran. The workers spin for a fraction of a millisecond after a
/// job, so back-to-back calls do not pay for waking a thread. A call made while another thread is
/// using the pool runs as one part on the caller.
int vlm_pool_run(vlm_pool_task task, void *context, int parts);

/// Like `vlm_pool_run`, for any number of parts (up to 32767), more than the threads: a worker that
/// another process deschedules then holds up at most the part it is running, while the caller
/// takes the rest. Returns `parts`, or 1 when everything ran on the caller as one part.
int vlm_pool_run_parts(vlm_pool_task task, void *context, int parts);
#endif
