// Matrix products with bfloat16 operands and float32 sums: `C = op(A) · op(B)` (+ C).
//
// Both operands are rounded from float32 to bfloat16 (round to nearest, ties to even) while they
// are packed into panels, then multiplied with AVX512-BF16's `vdpbf16ps`, which adds two bf16
// products to each float32 lane of an accumulator. Products of two bf16 values are exact in
// float32, so the result differs from the exact product of the rounded operands only by the
// float32 additions: |error| ≤ (k + 2) · 2⁻²⁴ · Σ |aᵢ bᵢ| in every order this code adds in (for
// normal numbers: `vdpbf16ps` reads bf16 subnormals as zero and flushes subnormal results).
//
// Layout. The reduction index k is taken in pairs (k odd: a zero pads the last pair). A packed
// operand is a sequence of panels of R rows (R = 12 for A, 32 for B's columns); a panel is
// `pairs × R` 32-bit words, word (p, r) holding the bf16 values of reduction indices 2p and 2p+1 of
// row r — exactly what one `vdpbf16ps` lane consumes. Rows past the matrix's edge are zero.
//
// Blocking. The micro-kernel keeps a 12 × 32 block of C in 24 zmm accumulators, broadcasting one
// pair of A per row and loading 32 columns' pairs of B per step. Over k the work goes in blocks of
// 512 pairs, over rows in blocks of 32 panels (a 768 KB slice of A stays in L2). Measured on Zen 4,
// one thread: blocks of 512 or 1024 pairs ran ~15 % faster than 128 (a B slice that fits L1), since
// C is read and written once per block. Work is split by column panels (or by row panels when there
// are few columns) across the worker pool.
//
// The kernel needs AVX512-BF16 (Intel Cooper Lake, Sapphire/Emerald Rapids; AMD Zen 4 and later).
// A portable version computes the same thing, slowly, on any CPU (for tests and as a reference).
#include "vlm_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { MR = 12, NR = 32, KC_PAIRS = 512, MC_PANELS = 32 };

static inline uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    return bits;
}

uint16_t vlm_bf16_round(float value) {
    const uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);  // NaN: quiet, sign kept
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);                      // overflow rounds to ±Inf
}

static inline uint32_t round_pair(float low, float high) {
    return (uint32_t)vlm_bf16_round(low) | (uint32_t)vlm_bf16_round(high) << 16;
}

size_t vlm_bf16_packed_words(ptrdiff_t rows, ptrdiff_t k, int panel_rows) {
    const ptrdiff_t panels = (rows + panel_rows - 1) / panel_rows, pairs = (k + 1) / 2;
    return (size_t)(panels * pairs * panel_rows);
}

// MARK: - Packing

// Element (r, kk) of the source is `src[r * rs + kk * ks]`: (rs, ks) = (ld, 1) for a row-major
// operand read along its rows, (1, ld) for one read down its columns.
static void pack_portable(const float *src, ptrdiff_t rs, ptrdiff_t ks, ptrdiff_t rows, ptrdiff_t k,
                          int panel_rows, ptrdiff_t panel_begin, ptrdiff_t panel_end, uint32_t *out) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        uint32_t *words = out + panel * pairs * panel_rows;
        for (ptrdiff_t p = 0; p < pairs; p++)
            for (int rr = 0; rr < panel_rows; rr++) {
                const ptrdiff_t r = panel * panel_rows + rr, kk = 2 * p;
                float low = 0, high = 0;
                if (r < rows) {
                    low = src[r * rs + kk * ks];
                    if (kk + 1 < k) high = src[r * rs + (kk + 1) * ks];
                }
                words[p * panel_rows + rr] = round_pair(low, high);
            }
    }
}

#if defined(__x86_64__)
#define AVX512BW __attribute__((target("avx512f,avx512bw")))
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

// Sixteen float32 values rounded to bf16, one per 32-bit lane (the same arithmetic as vlm_bf16_round).
AVX512BW static inline __m512i round16(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(high, _mm512_set1_epi32(1)));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(rounded, nan, high, _mm512_set1_epi32(0x40));
}

// Rows contiguous in memory (rs == 1): sixteen rows' pairs from two loads of the source rows 2p, 2p+1.
AVX512BW static void pack_rows_contiguous(const float *src, ptrdiff_t ks, ptrdiff_t rows, ptrdiff_t k,
                                          int panel_rows, ptrdiff_t panel_begin, ptrdiff_t panel_end, uint32_t *out) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        uint32_t *words = out + panel * pairs * panel_rows;
        for (int rr = 0; rr < panel_rows; rr += 16) {
            const ptrdiff_t r = panel * panel_rows + rr;
            const int width = panel_rows - rr < 16 ? panel_rows - rr : 16;
            const ptrdiff_t valid = rows - r < 0 ? 0 : (rows - r < width ? rows - r : width);
            const __mmask16 load = (__mmask16)((1u << valid) - 1), store = (__mmask16)((1u << width) - 1);
            for (ptrdiff_t p = 0; p < pairs; p++) {
                const ptrdiff_t kk = 2 * p;
                const __m512 low = _mm512_maskz_loadu_ps(load, src + r + kk * ks);
                const __m512 high = kk + 1 < k ? _mm512_maskz_loadu_ps(load, src + r + (kk + 1) * ks) : _mm512_setzero_ps();
                const __m512i pair = _mm512_or_si512(round16(low), _mm512_slli_epi32(round16(high), 16));
                _mm512_mask_storeu_epi32(words + p * panel_rows + rr, store, pair);
            }
        }
    }
}

// Reduction index contiguous (ks == 1): each row's values rounded sixteen pairs at a time into a
// small buffer (64 pairs of every row of the panel), then copied out pair by pair, so that the
// panel is written in order (writing it column by column touched a new cache line per word).
AVX512BW static void pack_k_contiguous(const float *src, ptrdiff_t rs, ptrdiff_t rows, ptrdiff_t k,
                                       int panel_rows, ptrdiff_t panel_begin, ptrdiff_t panel_end, uint32_t *out) {
    enum { BLOCK = 64 };
    uint32_t buffer[NR * BLOCK];
    const ptrdiff_t pairs = (k + 1) / 2;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        uint32_t *words = out + panel * pairs * panel_rows;
        for (ptrdiff_t p0 = 0; p0 < pairs; p0 += BLOCK) {
            const ptrdiff_t count = pairs - p0 < BLOCK ? pairs - p0 : BLOCK;
            for (int rr = 0; rr < panel_rows; rr++) {
                const ptrdiff_t r = panel * panel_rows + rr;
                uint32_t *line = buffer + rr * BLOCK;
                if (r >= rows) {
                    memset(line, 0, sizeof(uint32_t) * (size_t)count);
                    continue;
                }
                const float *row = src + r * rs + 2 * p0;
                ptrdiff_t q = 0;
                for (; q + 16 <= count && 2 * (p0 + q) + 32 <= k; q += 16) {
                    const __m512i a = round16(_mm512_loadu_ps(row + 2 * q)), b = round16(_mm512_loadu_ps(row + 2 * q + 16));
                    const __m512i low = _mm512_permutex2var_epi32(a, even, b), high = _mm512_permutex2var_epi32(a, odd, b);
                    _mm512_storeu_si512(line + q, _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
                }
                for (; q < count; q++) {
                    const ptrdiff_t kk = 2 * (p0 + q);
                    line[q] = round_pair(row[2 * q], kk + 1 < k ? row[2 * q + 1] : 0.0f);
                }
            }
            for (ptrdiff_t q = 0; q < count; q++)
                for (int rr = 0; rr < panel_rows; rr++) words[(p0 + q) * panel_rows + rr] = buffer[rr * BLOCK + q];
        }
    }
}

// MARK: - Micro-kernel

// C[0..<rows, 0..<cols] (+)= A panel · B panel over `pairs` pairs (rows ≤ 12, cols ≤ 32).
AVX512BF16 static void kernel_avx512bf16(const uint32_t *a, const uint32_t *b, ptrdiff_t pairs,
                                         float *c, ptrdiff_t ldc, int rows, int cols, int accumulate) {
    __m512 c0l = _mm512_setzero_ps(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l, c3l = c0l, c3h = c0l;
    __m512 c4l = c0l, c4h = c0l, c5l = c0l, c5h = c0l, c6l = c0l, c6h = c0l, c7l = c0l, c7h = c0l;
    __m512 c8l = c0l, c8h = c0l, c9l = c0l, c9h = c0l, c10l = c0l, c10h = c0l, c11l = c0l, c11h = c0l;
    for (ptrdiff_t p = 0; p < pairs; p++) {
        const __m512bh bl = (__m512bh)_mm512_loadu_si512(b + p * NR), bh = (__m512bh)_mm512_loadu_si512(b + p * NR + 16);
        const uint32_t *ap = a + p * MR;
#define STEP(i)                                                                \
        {                                                                      \
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ap[i]);       \
            c##i##l = _mm512_dpbf16_ps(c##i##l, ai, bl);                       \
            c##i##h = _mm512_dpbf16_ps(c##i##h, ai, bh);                       \
        }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
    }
    const __mmask16 ml = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
    const __mmask16 mh = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
#define STORE(i)                                                                                     \
    if (i < rows) {                                                                                  \
        float *row = c + (ptrdiff_t)(i) * ldc;                                                       \
        if (accumulate) {                                                                            \
            c##i##l = _mm512_add_ps(_mm512_maskz_loadu_ps(ml, row), c##i##l);                        \
            c##i##h = _mm512_add_ps(_mm512_maskz_loadu_ps(mh, row + 16), c##i##h);                   \
        }                                                                                            \
        _mm512_mask_storeu_ps(row, ml, c##i##l);                                                     \
        _mm512_mask_storeu_ps(row + 16, mh, c##i##h);                                                \
    }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7) STORE(8) STORE(9) STORE(10) STORE(11)
#undef STORE
}
#endif  // __x86_64__

static inline float widen(uint32_t half_bits) {
    const uint32_t bits = half_bits << 16;
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

// The same block, one lane at a time; each pair adds its two (exact) products in turn.
static void kernel_portable(const uint32_t *a, const uint32_t *b, ptrdiff_t pairs,
                            float *c, ptrdiff_t ldc, int rows, int cols, int accumulate) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float sum = 0;
            for (ptrdiff_t p = 0; p < pairs; p++) {
                const uint32_t x = a[p * MR + i], y = b[p * NR + j];
                sum += widen(x & 0xffff) * widen(y & 0xffff);
                sum += widen(x >> 16) * widen(y >> 16);
            }
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
        }
}

// MARK: - The product

int vlm_bf16_gemm_native(void) {
#if defined(__x86_64__)
    vlm_cpu_features cpu;
    vlm_cpu_read(&cpu);
    return cpu.avx512_bf16;
#else
    return 0;
#endif
}

typedef struct {
    int native;
    const float *a, *b;
    ptrdiff_t a_rs, a_ks, b_rs, b_ks;  // strides of op(A) (row i, index kk) and op(B)ᵀ (column j, index kk)
    uint32_t *packed_a, *packed_b;
    int pack_b;
    float *c;
    ptrdiff_t ldc, m, n, k;
    int accumulate;
    int split_columns;
} gemm_job;

static void pack(const gemm_job *job, const float *src, ptrdiff_t rs, ptrdiff_t ks, ptrdiff_t rows, int panel_rows,
                 ptrdiff_t begin, ptrdiff_t end, uint32_t *out) {
#if defined(__x86_64__)
    if (job->native && rs == 1) { pack_rows_contiguous(src, ks, rows, job->k, panel_rows, begin, end, out); return; }
    if (job->native && ks == 1) { pack_k_contiguous(src, rs, rows, job->k, panel_rows, begin, end, out); return; }
#endif
    pack_portable(src, rs, ks, rows, job->k, panel_rows, begin, end, out);
}

static void pack_part(void *context, int part, int parts) {
    const gemm_job *job = context;
    const ptrdiff_t a_panels = (job->m + MR - 1) / MR, b_panels = (job->n + NR - 1) / NR;
    pack(job, job->a, job->a_rs, job->a_ks, job->m, MR, a_panels * part / parts, a_panels * (part + 1) / parts, job->packed_a);
    if (job->pack_b)
        pack(job, job->b, job->b_rs, job->b_ks, job->n, NR, b_panels * part / parts, b_panels * (part + 1) / parts, job->packed_b);
}

static void multiply_part(void *context, int part, int parts) {
    const gemm_job *job = context;
    const ptrdiff_t pairs = (job->k + 1) / 2;
    const ptrdiff_t a_panels = (job->m + MR - 1) / MR, b_panels = (job->n + NR - 1) / NR;
    ptrdiff_t i_begin = 0, i_end = a_panels, j_begin = 0, j_end = b_panels;
    if (job->split_columns) {
        j_begin = b_panels * part / parts;
        j_end = b_panels * (part + 1) / parts;
    } else {
        i_begin = a_panels * part / parts;
        i_end = a_panels * (part + 1) / parts;
    }
    void (*kernel)(const uint32_t *, const uint32_t *, ptrdiff_t, float *, ptrdiff_t, int, int, int) = kernel_portable;
#if defined(__x86_64__)
    if (job->native) kernel = kernel_avx512bf16;
#endif
    if (pairs == 0) {  // k = 0: C = 0 (+ C)
        if (!job->accumulate)
            for (ptrdiff_t i = i_begin * MR; i < i_end * MR && i < job->m; i++)
                for (ptrdiff_t j = j_begin * NR; j < j_end * NR && j < job->n; j++) job->c[i * job->ldc + j] = 0;
        return;
    }
    for (ptrdiff_t pc = 0; pc < pairs; pc += KC_PAIRS) {
        const ptrdiff_t block = pairs - pc < KC_PAIRS ? pairs - pc : KC_PAIRS;
        const int accumulate = job->accumulate || pc > 0;
        for (ptrdiff_t ic = i_begin; ic < i_end; ic += MC_PANELS) {
            const ptrdiff_t ic_end = ic + MC_PANELS < i_end ? ic + MC_PANELS : i_end;
            for (ptrdiff_t jp = j_begin; jp < j_end; jp++) {
                const uint32_t *b = job->packed_b + jp * pairs * NR + pc * NR;
                const int cols = job->n - jp * NR < NR ? (int)(job->n - jp * NR) : NR;
                for (ptrdiff_t ip = ic; ip < ic_end; ip++) {
                    const int rows = job->m - ip * MR < MR ? (int)(job->m - ip * MR) : MR;
                    kernel(job->packed_a + ip * pairs * MR + pc * MR, b, block,
                           job->c + ip * MR * job->ldc + jp * NR, job->ldc, rows, cols, accumulate);
                }
            }
        }
    }
}

static int effective_native(int native) { return native && vlm_bf16_gemm_native(); }

void vlm_bf16_pack_b(int native, const float *b, ptrdiff_t ldb, int trans_b, ptrdiff_t k, ptrdiff_t n,
                     uint32_t *packed, int parts) {
    gemm_job job = { .native = effective_native(native), .b = b, .b_rs = trans_b ? ldb : 1, .b_ks = trans_b ? 1 : ldb,
                     .packed_b = packed, .n = n, .k = k };
    const ptrdiff_t panels = (n + NR - 1) / NR;
    if (parts > panels) parts = (int)panels;
    if (parts < 1) parts = 1;
    job.pack_b = 1;  // m = 0: the A half of pack_part packs nothing
    vlm_pool_run(pack_part, &job, parts);
}

void vlm_bf16_gemm(int native, int trans_a, const float *a, ptrdiff_t lda, int trans_b, const float *b, ptrdiff_t ldb,
                   const uint32_t *packed_b, float *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                   int accumulate, uint32_t *workspace, int parts) {
    if (m <= 0 || n <= 0) return;
    gemm_job job = {
        .native = effective_native(native), .a = a, .b = b,
        .a_rs = trans_a ? 1 : lda, .a_ks = trans_a ? lda : 1,
        .b_rs = trans_b ? ldb : 1, .b_ks = trans_b ? 1 : ldb,
        .c = c, .ldc = ldc, .m = m, .n = n, .k = k, .accumulate = accumulate,
    };
    job.packed_a = workspace;
    job.pack_b = packed_b == 0;
    job.packed_b = packed_b ? (uint32_t *)packed_b : workspace + vlm_bf16_packed_words(m, k, MR);
    const ptrdiff_t a_panels = (m + MR - 1) / MR, b_panels = (n + NR - 1) / NR;
    if (parts < 1) parts = 1;
    if (k > 0) vlm_pool_run(pack_part, &job, parts > a_panels ? (int)a_panels : parts);
    job.split_columns = b_panels >= 2 * parts || b_panels >= a_panels;
    const ptrdiff_t split = job.split_columns ? b_panels : a_panels;
    vlm_pool_run(multiply_part, &job, parts > split ? (int)split : parts);
}
