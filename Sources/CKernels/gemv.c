// Matrix-vector products for decoding: `y = x · Wᵀ` for a handful of input rows.
//
// Decoding reads every weight once per token, so it is bound by memory bandwidth. Each weight row
// is read as one sequential stream (the memory system here reads a single stream ~40 % faster than
// several interleaved rows) while every input row passes over it from L1, so the weight is read
// from memory once however many rows `x` has. bf16 weights are half the bytes of float32 ones and
// are widened to float32 in registers (a bf16 value is the top half of a float32: widening is a
// shift and exact), never in memory.
//
// There is no 512-bit version: on the Zen 4 machine this was tuned on (512-bit operations issue as
// two 256-bit halves) an AVX-512 build of the bf16 loop streamed 28 GB/s against AVX2's 33 GB/s;
// the loop is bound by memory, not arithmetic, wherever it runs. The float32 AVX2 loop streams
// 34–51 GB/s where OpenBLAS's sgemv streams 29–37 GB/s on the same buffer. The one AVX-512 kernel,
// for 8 input rows, keeps 256-bit vectors and uses AVX-512VL only for its 32 registers.
#include "vlm_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float widen(uint16_t bits) {
    union { uint32_t u; float f; } v = { (uint32_t)bits << 16 };
    return v.f;
}

// MARK: - Portable

static inline float as_float(float value) { return value; }

// `dot_<name>_portable`: eight partial sums, so the compiler can vectorise the loop for the baseline.
#define DEFINE_DOT_PORTABLE(name, weight_type, scalar)                                              \
    static float dot_##name##_portable(const weight_type *w, const float *x, ptrdiff_t k) {         \
        float sum[8] = {0};                                                                         \
        ptrdiff_t c = 0;                                                                            \
        for (; c + 8 <= k; c += 8)                                                                  \
            for (int lane = 0; lane < 8; lane++) sum[lane] += scalar(w[c + lane]) * x[c + lane];    \
        float total = ((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7])); \
        for (; c < k; c++) total += scalar(w[c]) * x[c];                                            \
        return total;                                                                               \
    }

DEFINE_DOT_PORTABLE(bf16, uint16_t, widen)
DEFINE_DOT_PORTABLE(f32, float, as_float)

static void widen_portable(const uint16_t *bits, float *out, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) out[i] = widen(bits[i]);
}

#if defined(__x86_64__)

// MARK: - AVX2 + FMA

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 widen8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((target("avx2,fma"))) __m256 load8(const float *p) { return _mm256_loadu_ps(p); }

// `dot_<name>_avx2`: Σ w[c]·x[c] with `load(w + c)` giving 8 weights as float32. Four independent
// sums keep enough loads in flight to saturate the memory system.
#define DEFINE_DOT_AVX2(name, weight_type, load, scalar)                                          \
    AVX2 static float dot_##name##_avx2(const weight_type *w, const float *x, ptrdiff_t k) {      \
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                               \
        ptrdiff_t c = 0;                                                                          \
        for (; c + 32 <= k; c += 32) {                                                            \
            s0 = _mm256_fmadd_ps(load(w + c), _mm256_loadu_ps(x + c), s0);                        \
            s1 = _mm256_fmadd_ps(load(w + c + 8), _mm256_loadu_ps(x + c + 8), s1);                \
            s2 = _mm256_fmadd_ps(load(w + c + 16), _mm256_loadu_ps(x + c + 16), s2);              \
            s3 = _mm256_fmadd_ps(load(w + c + 24), _mm256_loadu_ps(x + c + 24), s3);              \
        }                                                                                         \
        for (; c + 8 <= k; c += 8) s0 = _mm256_fmadd_ps(load(w + c), _mm256_loadu_ps(x + c), s0); \
        float total = sum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));         \
        for (; c < k; c++) total += scalar(w[c]) * x[c];                                          \
        return total;                                                                             \
    }

DEFINE_DOT_AVX2(bf16, uint16_t, widen8, widen)
DEFINE_DOT_AVX2(f32, float, load8, as_float)

// `rows8_<name>_avx2`: weight rows `row_begin..<row_end` against 8 input rows. The dot loop above
// needs two loads (weight, input) per multiply-add, so with 8 inputs it is bound by loads; here
// each 8-wide load of the weight serves all 8 inputs (9 loads per 8 multiply-adds). Each weight
// row is still read as one sequential stream (blocking over several weight rows, i.e. several
// interleaved streams, was slower here out of cache, ~0.5–0.75×, though 2× faster in cache).
//
// Two things keep the multiply-adds fed from memory (together 1.6–1.7× on the small preset's
// decoding step, single-threaded, out of cache):
// - A software prefetch into L2 (not L1) 16 KB ahead in the weight stream. Prefetching into L1
//   4 KB ahead (the first version) left the loop waiting on memory and computing by turns.
// - k-blocking: the 8 input rows are read in chunks of `ROWS8_CHUNK` columns (8 × 512 floats =
//   16 KB, which stays in L1 beside the streaming weight) and every weight row of a block of
//   `ROWS8_BLOCK_ROWS` passes over one chunk before the next; each row's 8 partial-sum vectors are
//   kept between chunks. With k = 1536 (the MLP's down projection) the 8 inputs are 48 KB, more
//   than L1, and without the blocking they came from L2 for every weight row.
// Every output is summed exactly as an unblocked loop sums it (lane l adds w[c]·x[c] for
// c ≡ l mod 8 in increasing c with fused multiply-adds, then the 8 lanes, then the tail), so the
// blocking changes no bits.
#define ROWS8_PREFETCH_BYTES 16384
#define ROWS8_CHUNK 512
#define ROWS8_BLOCK_ROWS 32

// `chunk8_<name>_avx2`: columns c0..<c1 (multiples of 8) of one weight row against 8 inputs,
// continuing the 8 partial-sum vectors in `acc` (64 floats); prefetches from `prefetch` on.
#define DEFINE_ROWS8_AVX2(name, weight_type, load, scalar)                                          \
    AVX2 static inline void chunk8_##name##_avx2(const weight_type *w, const float *x, ptrdiff_t ldx, \
                                                 ptrdiff_t c0, ptrdiff_t c1, float *acc, const char *prefetch) { \
        const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;                   \
        const float *x4 = x + 4 * ldx, *x5 = x + 5 * ldx, *x6 = x + 6 * ldx, *x7 = x + 7 * ldx;    \
        __m256 s0 = _mm256_loadu_ps(acc), s1 = _mm256_loadu_ps(acc + 8);                            \
        __m256 s2 = _mm256_loadu_ps(acc + 16), s3 = _mm256_loadu_ps(acc + 24);                      \
        __m256 s4 = _mm256_loadu_ps(acc + 32), s5 = _mm256_loadu_ps(acc + 40);                      \
        __m256 s6 = _mm256_loadu_ps(acc + 48), s7 = _mm256_loadu_ps(acc + 56);                      \
        ptrdiff_t c = c0;                                                                           \
        for (; c + 16 <= c1; c += 16) {                                                             \
            _mm_prefetch(prefetch + (c - c0) * (ptrdiff_t)sizeof(weight_type), _MM_HINT_T1);        \
            for (ptrdiff_t h = c; h < c + 16; h += 8) {                                             \
                const __m256 a = load(w + h);                                                       \
                s0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x0 + h), s0);                               \
                s1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x1 + h), s1);                               \
                s2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x2 + h), s2);                               \
                s3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x3 + h), s3);                               \
                s4 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x4 + h), s4);                               \
                s5 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x5 + h), s5);                               \
                s6 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x6 + h), s6);                               \
                s7 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x7 + h), s7);                               \
            }                                                                                       \
        }                                                                                           \
        for (; c + 8 <= c1; c += 8) {                                                               \
            const __m256 a = load(w + c);                                                           \
            s0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x0 + c), s0);                                   \
            s1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x1 + c), s1);                                   \
            s2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x2 + c), s2);                                   \
            s3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x3 + c), s3);                                   \
            s4 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x4 + c), s4);                                   \
            s5 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x5 + c), s5);                                   \
            s6 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x6 + c), s6);                                   \
            s7 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x7 + c), s7);                                   \
        }                                                                                           \
        _mm256_storeu_ps(acc, s0); _mm256_storeu_ps(acc + 8, s1);                                   \
        _mm256_storeu_ps(acc + 16, s2); _mm256_storeu_ps(acc + 24, s3);                             \
        _mm256_storeu_ps(acc + 32, s4); _mm256_storeu_ps(acc + 40, s5);                             \
        _mm256_storeu_ps(acc + 48, s6); _mm256_storeu_ps(acc + 56, s7);                             \
    }                                                                                               \
                                                                                                    \
    /* Rows r0..<r1 done: each output is its 8 lanes summed, then the columns past k8, stored. */   \
    AVX2 static inline void finish8_##name##_avx2(const weight_type *w, ptrdiff_t ldw, const float *x, ptrdiff_t ldx, \
                                                  float *y, ptrdiff_t ldy, ptrdiff_t k8, ptrdiff_t k,     \
                                                  ptrdiff_t r0, ptrdiff_t r1, const float *acc, int accumulate) { \
        for (ptrdiff_t r = r0; r < r1; r++) {                                                       \
            const weight_type *row = w + r * ldw;                                                   \
            for (int j = 0; j < 8; j++) {                                                           \
                float d = sum8(_mm256_loadu_ps(acc + (r - r0) * 64 + 8 * j));                       \
                for (ptrdiff_t t = k8; t < k; t++) d += scalar(row[t]) * x[j * ldx + t];            \
                y[j * ldy + r] = accumulate ? y[j * ldy + r] + d : d;                               \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
                                                                                                    \
    AVX2 static void rows8_##name##_avx2(const weight_type *w, ptrdiff_t ldw, const float *x, ptrdiff_t ldx, \
                                         float *y, ptrdiff_t ldy, ptrdiff_t k,                      \
                                         ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate) {  \
        float acc[ROWS8_BLOCK_ROWS * 64];                                                           \
        const ptrdiff_t k8 = k / 8 * 8;                                                             \
        /* Whole rows: prefetch ahead in the stream; chunks: the same chunk of a row far enough on. */ \
        const ptrdiff_t rows_ahead = ROWS8_PREFETCH_BYTES / (ldw * (ptrdiff_t)sizeof(weight_type)) + 1; \
        for (ptrdiff_t r0 = row_begin; r0 < row_end; r0 += ROWS8_BLOCK_ROWS) {                      \
            const ptrdiff_t r1 = r0 + ROWS8_BLOCK_ROWS < row_end ? r0 + ROWS8_BLOCK_ROWS : row_end; \
            for (ptrdiff_t i = 0; i < (r1 - r0) * 64; i++) acc[i] = 0;                              \
            for (ptrdiff_t c0 = 0; c0 < k8; c0 += ROWS8_CHUNK) {                                    \
                const ptrdiff_t c1 = c0 + ROWS8_CHUNK < k8 ? c0 + ROWS8_CHUNK : k8;                 \
                const int whole = c0 == 0 && c1 == k8;                                              \
                for (ptrdiff_t r = r0; r < r1; r++) {                                               \
                    const weight_type *row = w + r * ldw;                                           \
                    const char *prefetch = whole ? (const char *)row + ROWS8_PREFETCH_BYTES         \
                                                 : (const char *)(row + rows_ahead * ldw + c0);     \
                    chunk8_##name##_avx2(row, x, ldx, c0, c1, acc + (r - r0) * 64, prefetch);       \
                }                                                                                   \
            }                                                                                       \
            finish8_##name##_avx2(w, ldw, x, ldx, y, ldy, k8, k, r0, r1, acc, accumulate);          \
        }                                                                                           \
    }

DEFINE_ROWS8_AVX2(bf16, uint16_t, widen8, widen)
DEFINE_ROWS8_AVX2(f32, float, load8, as_float)

// MARK: - AVX-512VL (256-bit vectors, 32 registers)

#define AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))

AVX512VL static inline __m256 widen8_vl(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline AVX512VL __m256 load8_vl(const float *p) { return _mm256_loadu_ps(p); }

// `rows8_<name>_avx512vl`: the 8-row kernel above, two weight rows at a time. AVX-512VL gives 32
// vector registers, enough for the 16 partial sums of 2 rows × 8 inputs, so each 8-wide load of an
// input serves both rows: 10 loads per 16 multiply-adds instead of 18. The vectors stay 256 bits
// wide (Zen 4 splits 512-bit operations in two). Each output is summed in the same order as
// above, so the two kernels give the same bits.
#define FMA2(j, xj) { const __m256 v = _mm256_loadu_ps(xj + h); a##j = _mm256_fmadd_ps(p, v, a##j); b##j = _mm256_fmadd_ps(q, v, b##j); }
#define DEFINE_ROWS8_AVX512VL(name, weight_type, load)                                      \
    AVX512VL static inline void chunk8x2_##name##_avx512vl(const weight_type *wa, const weight_type *wb, \
            const float *x, ptrdiff_t ldx, ptrdiff_t c0, ptrdiff_t c1, float *acc, float *accb,        \
            const char *prefetch, const char *prefetchb) {                                          \
        const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;                   \
        const float *x4 = x + 4 * ldx, *x5 = x + 5 * ldx, *x6 = x + 6 * ldx, *x7 = x + 7 * ldx;    \
        __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8);                            \
        __m256 a2 = _mm256_loadu_ps(acc + 16), a3 = _mm256_loadu_ps(acc + 24);                      \
        __m256 a4 = _mm256_loadu_ps(acc + 32), a5 = _mm256_loadu_ps(acc + 40);                      \
        __m256 a6 = _mm256_loadu_ps(acc + 48), a7 = _mm256_loadu_ps(acc + 56);                      \
        __m256 b0 = _mm256_loadu_ps(accb), b1 = _mm256_loadu_ps(accb + 8);                          \
        __m256 b2 = _mm256_loadu_ps(accb + 16), b3 = _mm256_loadu_ps(accb + 24);                    \
        __m256 b4 = _mm256_loadu_ps(accb + 32), b5 = _mm256_loadu_ps(accb + 40);                    \
        __m256 b6 = _mm256_loadu_ps(accb + 48), b7 = _mm256_loadu_ps(accb + 56);                    \
        ptrdiff_t c = c0;                                                                           \
        for (; c + 16 <= c1; c += 16) {                                                             \
            _mm_prefetch(prefetch + (c - c0) * (ptrdiff_t)sizeof(weight_type), _MM_HINT_T1);        \
            _mm_prefetch(prefetchb + (c - c0) * (ptrdiff_t)sizeof(weight_type), _MM_HINT_T1);       \
            for (ptrdiff_t h = c; h < c + 16; h += 8) {                                             \
                const __m256 p = load(wa + h), q = load(wb + h);                                    \
                FMA2(0, x0) FMA2(1, x1) FMA2(2, x2) FMA2(3, x3) FMA2(4, x4) FMA2(5, x5) FMA2(6, x6) FMA2(7, x7) \
            }                                                                                       \
        }                                                                                           \
        for (; c + 8 <= c1; c += 8) {                                                               \
            const ptrdiff_t h = c;                                                                  \
            const __m256 p = load(wa + h), q = load(wb + h);                                        \
            FMA2(0, x0) FMA2(1, x1) FMA2(2, x2) FMA2(3, x3) FMA2(4, x4) FMA2(5, x5) FMA2(6, x6) FMA2(7, x7) \
        }                                                                                           \
        _mm256_storeu_ps(acc, a0); _mm256_storeu_ps(acc + 8, a1);                                   \
        _mm256_storeu_ps(acc + 16, a2); _mm256_storeu_ps(acc + 24, a3);                             \
        _mm256_storeu_ps(acc + 32, a4); _mm256_storeu_ps(acc + 40, a5);                             \
        _mm256_storeu_ps(acc + 48, a6); _mm256_storeu_ps(acc + 56, a7);                             \
        _mm256_storeu_ps(accb, b0); _mm256_storeu_ps(accb + 8, b1);                                 \
        _mm256_storeu_ps(accb + 16, b2); _mm256_storeu_ps(accb + 24, b3);                           \
        _mm256_storeu_ps(accb + 32, b4); _mm256_storeu_ps(accb + 40, b5);                           \
        _mm256_storeu_ps(accb + 48, b6); _mm256_storeu_ps(accb + 56, b7);                           \
    }                                                                                               \
                                                                                                    \
    AVX512VL static void rows8_##name##_avx512vl(const weight_type *w, ptrdiff_t ldw, const float *x, ptrdiff_t ldx, \
                                             float *y, ptrdiff_t ldy, ptrdiff_t k,                  \
                                             ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate) { \
        float acc[ROWS8_BLOCK_ROWS * 64];                                                           \
        const ptrdiff_t k8 = k / 8 * 8;                                                             \
        const ptrdiff_t rows_ahead = ROWS8_PREFETCH_BYTES / (ldw * (ptrdiff_t)sizeof(weight_type)) + 2; \
        for (ptrdiff_t r0 = row_begin; r0 < row_end; r0 += ROWS8_BLOCK_ROWS) {                      \
            const ptrdiff_t r1 = r0 + ROWS8_BLOCK_ROWS < row_end ? r0 + ROWS8_BLOCK_ROWS : row_end; \
            for (ptrdiff_t i = 0; i < (r1 - r0) * 64; i++) acc[i] = 0;                              \
            for (ptrdiff_t c0 = 0; c0 < k8; c0 += ROWS8_CHUNK) {                                    \
                const ptrdiff_t c1 = c0 + ROWS8_CHUNK < k8 ? c0 + ROWS8_CHUNK : k8;                 \
                ptrdiff_t r = r0;                                                                   \
                for (; r + 2 <= r1; r += 2) {                                                       \
                    const weight_type *row = w + r * ldw;                                           \
                    const char *prefetch = (const char *)(row + rows_ahead * ldw + c0);             \
                    chunk8x2_##name##_avx512vl(row, row + ldw, x, ldx, c0, c1, acc + (r - r0) * 64,  \
                                               acc + (r + 1 - r0) * 64, prefetch,                   \
                                               prefetch + ldw * (ptrdiff_t)sizeof(weight_type));    \
                }                                                                                   \
                if (r < r1) {                                                                       \
                    const weight_type *row = w + r * ldw;                                           \
                    chunk8_##name##_avx2(row, x, ldx, c0, c1, acc + (r - r0) * 64,                  \
                                         (const char *)(row + rows_ahead * ldw + c0));              \
                }                                                                                   \
            }                                                                                       \
            finish8_##name##_avx2(w, ldw, x, ldx, y, ldy, k8, k, r0, r1, acc, accumulate);          \
        }                                                                                           \
    }

DEFINE_ROWS8_AVX512VL(bf16, uint16_t, widen8_vl)
DEFINE_ROWS8_AVX512VL(f32, float, load8_vl)

AVX2 static void widen_avx2(const uint16_t *bits, float *out, ptrdiff_t count) {
    ptrdiff_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, widen8(bits + i));
    for (; i < count; i++) out[i] = widen(bits[i]);
}

#endif  // __x86_64__

// MARK: - Dispatch

static int use_avx2(vlm_path path) {
#if defined(__x86_64__)
    // The AVX-512 path runs the AVX2 loops (see the top of the file).
    return (path > vlm_best_path() ? vlm_best_path() : path) >= vlm_path_avx2;
#else
    (void)path;
    return 0;
#endif
}

static int use_avx512vl(vlm_path path) {
#if defined(__x86_64__)
    return (path > vlm_best_path() ? vlm_best_path() : path) >= vlm_path_avx512;
#else
    (void)path;
    return 0;
#endif
}

#if defined(__x86_64__)
#define PICK_DOT(name, path) (use_avx2(path) ? dot_##name##_avx2 : dot_##name##_portable)
#else
#define PICK_DOT(name, path) dot_##name##_portable
#endif

// On AVX2, 8 inputs at a time go through the 8-row kernel (k-blocked, see above), the rest (all of
// them for fewer than 8 inputs) through the dot product, each weight row staying in L1 while they
// pass over it.
#if defined(__x86_64__)
#define PICK_ROWS8(name, path) (use_avx512vl(path) ? rows8_##name##_avx512vl : use_avx2(path) ? rows8_##name##_avx2 : NULL)
#else
#define PICK_ROWS8(name, path) NULL
#endif

#define DEFINE_GEMV(name, weight_type)                                                                 \
    void vlm_gemv_##name(vlm_path path, const weight_type *w, ptrdiff_t ldw,                           \
                         const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,                       \
                         ptrdiff_t m, ptrdiff_t k, ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate) { \
        float (*dot)(const weight_type *, const float *, ptrdiff_t) = PICK_DOT(name, path);            \
        void (*rows8)(const weight_type *, ptrdiff_t, const float *, ptrdiff_t, float *, ptrdiff_t,    \
                      ptrdiff_t, ptrdiff_t, ptrdiff_t, int) = PICK_ROWS8(name, path);                  \
        const ptrdiff_t grouped = rows8 ? m / 8 * 8 : 0;                                               \
        for (ptrdiff_t j = 0; j < grouped; j += 8)                                                     \
            rows8(w, ldw, x + j * ldx, ldx, y + j * ldy, ldy, k, row_begin, row_end, accumulate);      \
        for (ptrdiff_t r = row_begin; r < row_end; r++) {                                              \
            for (ptrdiff_t j = grouped; j < m; j++) {                                                  \
                const float d = dot(w + r * ldw, x + j * ldx, k);                                      \
                y[j * ldy + r] = accumulate ? y[j * ldy + r] + d : d;                                  \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_GEMV(bf16, uint16_t)
DEFINE_GEMV(f32, float)

void vlm_widen_bf16(vlm_path path, const uint16_t *bits, float *out, ptrdiff_t count) {
#if defined(__x86_64__)
    if (use_avx2(path)) { widen_avx2(bits, out, count); return; }
#endif
    widen_portable(bits, out, count);
}

// MARK: - Split across the worker pool

typedef struct {
    vlm_path path;
    const void *w;
    int bf16;
    const float *x;
    float *y;
    ptrdiff_t m, n, k;
    int accumulate;
} gemv_job;

static void gemv_part(void *context, int part, int parts) {
    const gemv_job *job = context;
    const ptrdiff_t begin = job->n * part / parts, end = job->n * (part + 1) / parts;
    if (job->bf16)
        vlm_gemv_bf16(job->path, job->w, job->k, job->x, job->k, job->y, job->n, job->m, job->k, begin, end, job->accumulate);
    else
        vlm_gemv_f32(job->path, job->w, job->k, job->x, job->k, job->y, job->n, job->m, job->k, begin, end, job->accumulate);
}

// With more than one thread, into up to 4 parts per thread (each ≥ 64 K weights and 32 rows),
// which the threads claim one at a time (see worker_pool.c): one that finishes early, or whose
// sibling another process has descheduled, takes the next part. Rows are independent, so the
// split changes no result.
static void run_split(gemv_job job, int parts) {
    if (parts > 1) {
        ptrdiff_t more = job.n * job.k / (64 * 1024);
        if (more > job.n / 32) more = job.n / 32;
        if (more > 4 * (ptrdiff_t)parts) more = 4 * (ptrdiff_t)parts;
        if (more > parts) parts = (int)more;
    }
    if (parts > job.n) parts = (int)job.n;
    vlm_pool_run_parts(gemv_part, &job, parts < 1 ? 1 : parts);
}

void vlm_gemv_bf16_parallel(vlm_path path, const uint16_t *w, const float *x, float *y,
                            ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int accumulate, int parts) {
    run_split((gemv_job){ path, w, 1, x, y, m, n, k, accumulate }, parts);
}

void vlm_gemv_f32_parallel(vlm_path path, const float *w, const float *x, float *y,
                           ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int accumulate, int parts) {
    run_split((gemv_job){ path, w, 0, x, y, m, n, k, accumulate }, parts);
}
