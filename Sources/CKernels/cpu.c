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
#else
static vlm_path detect(void) { return vlm_path_portable; }
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
