// Run-time choice of instruction-set path.
#include "vlm_kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static int os_saves_avx512_state(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (eax & 0xE6) == 0xE6;  // SSE, AVX and the three AVX-512 register states
}

static int os_saves_avx_state(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (eax & 0x6) == 0x6;
}

static vlm_path detect(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return vlm_path_portable;
    const int has_fma = (c >> 12) & 1, has_osxsave = (c >> 27) & 1;
    if (!has_osxsave || !os_saves_avx_state()) return vlm_path_portable;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return vlm_path_portable;
    const int has_avx2 = (b >> 5) & 1, has_avx512f = (b >> 16) & 1, has_avx512bw = (b >> 30) & 1;
    if (has_avx512f && has_avx512bw && has_fma && os_saves_avx512_state()) return vlm_path_avx512;
    if (has_avx2 && has_fma) return vlm_path_avx2;
    return vlm_path_portable;
}

void vlm_cpu_read(vlm_cpu_features *out) {
    memset(out, 0, sizeof *out);
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    const unsigned int max_leaf = a;
    memcpy(out->vendor, &b, 4);
    memcpy(out->vendor + 4, &d, 4);
    memcpy(out->vendor + 8, &c, 4);
    if (max_leaf < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return;
    const int base_family = (a >> 8) & 0xF, base_model = (a >> 4) & 0xF;
    out->family = base_family + (base_family == 0xF ? (int)((a >> 20) & 0xFF) : 0);
    out->model = base_model + ((base_family == 0x6 || base_family == 0xF) ? (int)((a >> 16) & 0xF) << 4 : 0);
    const int has_fma = (c >> 12) & 1, has_osxsave = (c >> 27) & 1;
    if (!has_osxsave || !os_saves_avx_state() || max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned int leaf7_b = b, leaf7_subleaves = a;
    out->avx2_fma = ((leaf7_b >> 5) & 1) && has_fma;
    // F, DQ, CD, BW, VL: what OpenBLAS's SkylakeX kernels use.
    const unsigned int avx512_bits = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    out->avx512 = out->avx2_fma && (leaf7_b & avx512_bits) == avx512_bits && os_saves_avx512_state();
    if (leaf7_subleaves < 1) return;
    __cpuid_count(7, 1, a, b, c, d);
    out->avx512_bf16 = out->avx512 && ((a >> 5) & 1);
}
#else
static vlm_path detect(void) { return vlm_path_portable; }

void vlm_cpu_read(vlm_cpu_features *out) { memset(out, 0, sizeof *out); }
#endif

// VLMKIT_KERNEL_PATH=portable|avx2|avx512 caps the path (for benchmarks and debugging).
static vlm_path capped(vlm_path detected) {
    const char *cap = getenv("VLMKIT_KERNEL_PATH");
    if (!cap) return detected;
    vlm_path limit = detected;
    if (strcmp(cap, "portable") == 0) limit = vlm_path_portable;
    else if (strcmp(cap, "avx2") == 0) limit = vlm_path_avx2;
    return limit < detected ? limit : detected;
}

vlm_path vlm_best_path(void) {
    static _Atomic int cached = -1;  // every thread that races here computes the same value
    int path = atomic_load_explicit(&cached, memory_order_relaxed);
    if (path < 0) {
        path = (int)capped(detect());
        atomic_store_explicit(&cached, path, memory_order_relaxed);
    }
    return (vlm_path)path;
}

int vlm_path_lanes(vlm_path path) {
    switch (path) {
    case vlm_path_avx512: return 16;
    case vlm_path_avx2: return 8;
    default: return 1;
    }
}
