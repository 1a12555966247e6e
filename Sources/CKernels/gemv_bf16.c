// GEMV with a bfloat16 weight and float32 activations: the decoding step of a bf16 checkpoint.
//
// Decoding reads every weight once per token, so it is bound by memory bandwidth; a bf16 weight
// is half the bytes of a float32 one. The weight is widened to float32 in registers (a bf16 value
// is the top half of a float32, so widening is a shift and exact), never in memory.
#include "vlm_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float widen(uint16_t bits) {
    union { uint32_t u; float f; } v = { (uint32_t)bits << 16 };
    return v.f;
}

// MARK: - Portable

static float dot_portable(const uint16_t *w, const float *x, ptrdiff_t k) {
    float sum[8] = {0};
    ptrdiff_t c = 0;
    for (; c + 8 <= k; c += 8)
        for (int lane = 0; lane < 8; lane++) sum[lane] += widen(w[c + lane]) * x[c + lane];
    float total = ((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7]));
    for (; c < k; c++) total += widen(w[c]) * x[c];
    return total;
}

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

// One weight row at a time: a single sequential stream is what this memory system reads fastest
// (several interleaved rows read ~40 % slower here); four sums keep enough loads in flight.
AVX2 static float dot_avx2(const uint16_t *w, const float *x, ptrdiff_t k) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    ptrdiff_t c = 0;
    for (; c + 32 <= k; c += 32) {
        s0 = _mm256_fmadd_ps(widen8(w + c), _mm256_loadu_ps(x + c), s0);
        s1 = _mm256_fmadd_ps(widen8(w + c + 8), _mm256_loadu_ps(x + c + 8), s1);
        s2 = _mm256_fmadd_ps(widen8(w + c + 16), _mm256_loadu_ps(x + c + 16), s2);
        s3 = _mm256_fmadd_ps(widen8(w + c + 24), _mm256_loadu_ps(x + c + 24), s3);
    }
    for (; c + 8 <= k; c += 8) s0 = _mm256_fmadd_ps(widen8(w + c), _mm256_loadu_ps(x + c), s0);
    float total = sum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; c < k; c++) total += widen(w[c]) * x[c];
    return total;
}

AVX2 static void widen_avx2(const uint16_t *bits, float *out, ptrdiff_t count) {
    ptrdiff_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, widen8(bits + i));
    for (; i < count; i++) out[i] = widen(bits[i]);
}

// MARK: - AVX-512

#define AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma")))

AVX512 static inline __m512 widen16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

AVX512 static float dot_avx512(const uint16_t *w, const float *x, ptrdiff_t k) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    ptrdiff_t c = 0;
    for (; c + 64 <= k; c += 64) {
        s0 = _mm512_fmadd_ps(widen16(w + c), _mm512_loadu_ps(x + c), s0);
        s1 = _mm512_fmadd_ps(widen16(w + c + 16), _mm512_loadu_ps(x + c + 16), s1);
        s2 = _mm512_fmadd_ps(widen16(w + c + 32), _mm512_loadu_ps(x + c + 32), s2);
        s3 = _mm512_fmadd_ps(widen16(w + c + 48), _mm512_loadu_ps(x + c + 48), s3);
    }
    for (; c + 16 <= k; c += 16) s0 = _mm512_fmadd_ps(widen16(w + c), _mm512_loadu_ps(x + c), s0);
    float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; c < k; c++) total += widen(w[c]) * x[c];
    return total;
}

AVX512 static void widen_avx512(const uint16_t *bits, float *out, ptrdiff_t count) {
    ptrdiff_t i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(out + i, widen16(bits + i));
    for (; i < count; i++) out[i] = widen(bits[i]);
}

#endif  // __x86_64__

// MARK: - Dispatch

typedef float (*dot_fn)(const uint16_t *, const float *, ptrdiff_t);

static vlm_path usable(vlm_path path) {
    const vlm_path best = vlm_best_path();
    return path > best ? best : path;
}

void vlm_gemv_bf16(vlm_path path, const uint16_t *w, ptrdiff_t ldw,
                   const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,
                   ptrdiff_t m, ptrdiff_t k, ptrdiff_t row_begin, ptrdiff_t row_end, int accumulate) {
    dot_fn dot = dot_portable;
    switch (usable(path)) {
#if defined(__x86_64__)
    case vlm_path_avx512: dot = dot_avx512; break;
    case vlm_path_avx2: dot = dot_avx2; break;
#endif
    default: break;
    }
    // Each weight row (2 KB at k = 1024) stays in L1 while every input row passes over it, so the
    // weight is read from memory once however many rows `x` has.
    for (ptrdiff_t r = row_begin; r < row_end; r++)
        for (ptrdiff_t j = 0; j < m; j++) {
            const float d = dot(w + r * ldw, x + j * ldx, k);
            y[j * ldy + r] = accumulate ? y[j * ldy + r] + d : d;
        }
}

void vlm_widen_bf16(vlm_path path, const uint16_t *bits, float *out, ptrdiff_t count) {
    switch (usable(path)) {
#if defined(__x86_64__)
    case vlm_path_avx512: widen_avx512(bits, out, count); return;
    case vlm_path_avx2: widen_avx2(bits, out, count); return;
#endif
    default: widen_portable(bits, out, count); return;
    }
}

typedef struct {
    vlm_path path;
    const uint16_t *w;
    const float *x;
    float *y;
    ptrdiff_t m, n, k;
    int accumulate;
} gemv_job;

static void gemv_part(void *context, int part, int parts) {
    const gemv_job *job = context;
    const ptrdiff_t begin = job->n * part / parts, end = job->n * (part + 1) / parts;
    vlm_gemv_bf16(job->path, job->w, job->k, job->x, job->k, job->y, job->n, job->m, job->k, begin, end, job->accumulate);
}

void vlm_gemv_bf16_parallel(vlm_path path, const uint16_t *w, const float *x, float *y,
                            ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int accumulate, int parts) {
    gemv_job job = { path, w, x, y, m, n, k, accumulate };
    if (parts > n) parts = (int)n;
    vlm_pool_run(gemv_part, &job, parts < 1 ? 1 : parts);
}
