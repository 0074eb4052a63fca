/*
 * Instruction-set dispatch: the vector kernels of _kern_impl.h compiled once per target, and the
 * run-time choice among them.
 *
 *   baseline  every CPU: GCC vector extensions at the compiler's default target (SSE2 on
 *             x86-64, NEON on aarch64, plain scalar code elsewhere)
 *   avx2      x86-64 with AVX2 + FMA (+ F16C)
 *   avx512f   x86-64 with AVX-512 F/DQ/VL/BW
 *
 * The x86 copies use per-function target attributes (GCC: `#pragma GCC target`, clang:
 * `#pragma clang attribute`), never -march, so one binary runs on any x86-64; on every other
 * architecture they are compiled out and only the baseline exists.
 */
#include "_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_DISPATCH 1
#include <immintrin.h>
#else
#define HAVE_X86_DISPATCH 0
#endif

#ifdef TS_BENCH_KERNELS
#define BENCH_FIELDS(sfx, stream) , exp_pass_##sfx, stream
#else
#define BENCH_FIELDS(sfx, stream)
#endif

/* ---- baseline ---------------------------------------------------------------------------- */
#define SFX(name) name##_base
#define VF 4
#include "_kern_impl.h"
#undef SFX
#undef VF
static const kernels_t K_base = {"baseline", row_f32_base, row_f64_base, block_f32_base,
                                 block_f64_base, NULL, NULL, 4, 2, NULL, row_h16_base, cvt_in_base,
                                 cvt_out_base, bw_sums_base, bw_dx_base BENCH_FIELDS(base, 0)};

#if HAVE_X86_DISPATCH
/* ---- AVX2 + FMA -------------------------------------------------------------------------- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define SFX(name) name##_avx2
#define VF 8
#define KI_FMA_X86 1
#include "_kern_impl.h"
#undef KI_FMA_X86
#undef SFX
#undef VF
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
static const kernels_t K_avx2 = {"avx2", row_f32_avx2, row_f64_avx2, block_f32_avx2,
                                 block_f64_avx2, NULL, NULL, 8, 4, NULL, row_h16_avx2, cvt_in_avx2,
                                 cvt_out_avx2, bw_sums_avx2, bw_dx_avx2 BENCH_FIELDS(avx2, 0)};

/* ---- AVX-512 ----------------------------------------------------------------------------- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c")
#endif
#define SFX(name) name##_avx512
#define VF 16
#define KI_AVX512 1
#include "_kern_impl.h"
#undef KI_AVX512
#undef SFX
#undef VF
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
static const kernels_t K_avx512 = {"avx512f", row_f32_avx512, row_f64_avx512, block_f32_avx512,
                                   block_f64_avx512, tr_in_f32_avx512, tr_out_f32_avx512, 16, 8,
                                   nblock16_sm_f32_avx512, row_h16_avx512, cvt_in_avx512,
                                   cvt_out_avx512, bw_sums_avx512, bw_dx_avx512 BENCH_FIELDS(avx512, 1)};
#endif /* HAVE_X86_DISPATCH */

#if HAVE_X86_DISPATCH
const char *const ts_isa_names[] = {"avx512f", "avx2", "baseline"};
#else
const char *const ts_isa_names[] = {"baseline"};
#endif
const int ts_isa_count = (int)(sizeof ts_isa_names / sizeof ts_isa_names[0]);

int ts_isa_supported(const char *name) {
    if (strcmp(name, "baseline") == 0) return 1;
#if HAVE_X86_DISPATCH
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0) return avx2;
    if (strcmp(name, "avx512f") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#endif
    return 0;
}

const kernels_t *ts_isa_kernels(const char *name) {
    if (!ts_isa_supported(name)) return NULL;
#if HAVE_X86_DISPATCH
    if (strcmp(name, "avx512f") == 0) return &K_avx512;
    if (strcmp(name, "avx2") == 0) return &K_avx2;
#endif
    return &K_base;
}

const kernels_t *ts_isa_best(void) {
    for (int i = 0; i < ts_isa_count; i++) {
        const kernels_t *K = ts_isa_kernels(ts_isa_names[i]);
        if (K) return K;
    }
    return &K_base;
}
