// The machine's peak multiply-add rate, for benchmarks: twelve independent chains per path are
// enough to cover the FMA latency on current x86 cores, so the loop runs at issue throughput.
#include "vlm_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// `chains_<name>`: twelve chains of `fmadd` on `vector` registers, summed with `add` and reduced
// to a float by `reduce`.
#define DEFINE_CHAINS(name, target_features, vector, set1, fmadd, add, reduce)                          \
    __attribute__((target(target_features))) static float chains_##name(int64_t iterations) {            \
        const vector b = set1(0.999f), c = set1(1e-4f);                                                  \
        vector a0 = set1(0.f), a1 = set1(1.f), a2 = set1(2.f), a3 = set1(3.f), a4 = set1(4.f);            \
        vector a5 = set1(5.f), a6 = set1(6.f), a7 = set1(7.f), a8 = set1(8.f), a9 = set1(9.f);            \
        vector a10 = set1(10.f), a11 = set1(11.f);                                                       \
        for (int64_t i = 0; i < iterations; i++) {                                                       \
            a0 = fmadd(a0, b, c); a1 = fmadd(a1, b, c); a2 = fmadd(a2, b, c); a3 = fmadd(a3, b, c);      \
            a4 = fmadd(a4, b, c); a5 = fmadd(a5, b, c); a6 = fmadd(a6, b, c); a7 = fmadd(a7, b, c);      \
            a8 = fmadd(a8, b, c); a9 = fmadd(a9, b, c); a10 = fmadd(a10, b, c); a11 = fmadd(a11, b, c);  \
        }                                                                                                \
        const vector s = add(add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7))),          \
                             add(add(a8, a9), add(a10, a11)));                                           \
        return reduce(s);                                                                                \
    }

__attribute__((target("avx2"))) static inline float first_lane(__m256 v) { return _mm256_cvtss_f32(v); }

DEFINE_CHAINS(avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_reduce_add_ps)
DEFINE_CHAINS(avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, first_lane)
#endif

static float chains_portable(int64_t iterations) {
    float a[12];
    for (int j = 0; j < 12; j++) a[j] = (float)j;
    for (int64_t i = 0; i < iterations; i++)
        for (int j = 0; j < 12; j++) a[j] = a[j] * 0.999f + 1e-4f;
    float s = 0;
    for (int j = 0; j < 12; j++) s += a[j];
    return s;
}

#if defined(__x86_64__)
// Twelve chains of bf16 dot products (`vdpbf16ps`: per float32 lane, two bf16 products added to
// the accumulator), the instruction a bf16 GEMM such as OpenBLAS's sbgemm is built on.
__attribute__((target("avx512f,avx512bf16"))) static float bf16_dot_chains(int64_t iterations) {
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    const __m512bh c = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
    __m512 a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    for (int64_t i = 0; i < iterations; i++) {
        a[0] = _mm512_dpbf16_ps(a[0], b, c); a[1] = _mm512_dpbf16_ps(a[1], b, c);
        a[2] = _mm512_dpbf16_ps(a[2], b, c); a[3] = _mm512_dpbf16_ps(a[3], b, c);
        a[4] = _mm512_dpbf16_ps(a[4], b, c); a[5] = _mm512_dpbf16_ps(a[5], b, c);
        a[6] = _mm512_dpbf16_ps(a[6], b, c); a[7] = _mm512_dpbf16_ps(a[7], b, c);
        a[8] = _mm512_dpbf16_ps(a[8], b, c); a[9] = _mm512_dpbf16_ps(a[9], b, c);
        a[10] = _mm512_dpbf16_ps(a[10], b, c); a[11] = _mm512_dpbf16_ps(a[11], b, c);
    }
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    return _mm512_reduce_add_ps(s);
}
#endif

float vlm_bf16_dot_chains(int64_t iterations) {
#if defined(__x86_64__)
    vlm_cpu_features cpu;
    vlm_cpu_read(&cpu);
    if (cpu.avx512_bf16) return bf16_dot_chains(iterations);
#endif
    (void)iterations;
    return -1.0f;
}

float vlm_fma_chains(vlm_path path, int64_t iterations) {
    const vlm_path best = vlm_best_path();
    switch (path > best ? best : path) {
#if defined(__x86_64__)
    case vlm_path_avx512: return chains_avx512(iterations);
    case vlm_path_avx2: return chains_avx2(iterations);
#endif
    default: return chains_portable(iterations);
    }
}
