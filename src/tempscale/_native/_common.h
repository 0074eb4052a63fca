/*
 * Shared definitions of tempscale's compiled core: operation and dtype codes, the temperature
 * regimes, and the small numerical helpers used by both the vector kernels (_kern_impl.h) and
 * the scalar reference (_ref_impl.h).  No Python, no NumPy: the C test harness (tests/c/) builds
 * the kernels from these sources alone.
 */
#ifndef TEMPSCALE_COMMON_H
#define TEMPSCALE_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* signed index / byte offset: the type of npy_intp (Py_intptr_t) */
typedef intptr_t ts_intp;

#define LOG2E 1.4426950408889634

/* operations */
#define KIND_SOFTMAX 0
#define KIND_LOGSOFTMAX 1
#define KIND_LSE 2

/* element types of x / out / temperature arrays */
#define T_F16 0
#define T_F32 1
#define T_F64 2
#define T_BF16 3 /* bfloat16: stored as uint16, computed in float32 */

#if defined(__FLT16_MAX__)
#define HAVE_F16 1
typedef _Float16 f16_t;
#else
#define HAVE_F16 0
#endif

/* bfloat16 <-> float32: a bfloat16 is the top half of a float32.  The narrowing rounds to nearest,
   ties to even (as torch does); NaN stays a (quiet) NaN, overflow gives inf.  Branch-free, so the
   conversion loops vectorise. */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x40u; /* NaN: keep the sign and payload's top, set the quiet bit */
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

/* float16 <-> float32 / float64 by integer bit manipulation: exact, the same bits as the
   compiler's _Float16 conversions (libgcc's __extendhfsf2 / __truncsfhf2 / __truncdfhf2, F16C) but
   inlined and without their per-call cost, and independent of MXCSR (no subnormal float operand,
   so flush-to-zero / denormals-are-zero do not change them).  Widening is exact (subnormals
   renormalised; a NaN keeps its sign and payload, with the quiet bit set).  Narrowing rounds once
   to nearest, ties to even (subnormal results included), overflows to inf, and keeps a NaN a quiet
   NaN with the payload's top bits. */
#if defined(__GNUC__)
#define TS_INLINE static inline __attribute__((always_inline))
#else
#define TS_INLINE static inline
#endif
TS_INLINE float f16_to_f32(uint16_t h) {
    uint32_t em = (uint32_t)(h & 0x7fffu);
    uint32_t u = (em << 13) + ((uint32_t)(127 - 15) << 23);
    float f;
    if (em >= 0x7c00u) { /* inf / NaN */
        u += (uint32_t)(128 - 16) << 23;
        if (em > 0x7c00u) u |= 0x00400000u;
    } else if (em < 0x0400u) { /* zero / subnormal: 2^-14 (1 + m/2^10) - 2^-14, all normal floats */
        const uint32_t k = (uint32_t)(127 - 14) << 23;
        float a, b;
        u += 1u << 23;
        memcpy(&a, &u, 4);
        memcpy(&b, &k, 4);
        a -= b;
        memcpy(&u, &a, 4);
    }
    u |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, 4);
    return f;
}

/* m >> s rounded to nearest, ties to even (1 <= s < 64) */
TS_INLINE uint64_t ts_shr_rne(uint64_t m, unsigned s) {
    uint64_t q = m >> s, rem = m & ((UINT64_C(1) << s) - 1u), half = UINT64_C(1) << (s - 1u);
    return q + (rem > half || (rem == half && (q & 1u)));
}

TS_INLINE uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x38800000u) { /* |f| >= 2^-14: a normal half, inf or NaN */
        if (a >= 0x477ff000u) /* >= 65520 (rounds past 65504), inf, NaN */
            return (uint16_t)(s | 0x7c00u | (a > 0x7f800000u ? 0x0200u | ((a >> 13) & 0x3ffu) : 0u));
        uint32_t r = a - ((uint32_t)(127 - 15) << 23);
        return (uint16_t)(s | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
    }
    if (a <= 0x33000000u) return s; /* |f| <= 2^-25: zero (2^-25 ties to the even zero) */
    /* a subnormal half: |f| / 2^-24 = m 2^(E - 126), rounded */
    uint32_t m = (a & 0x007fffffu) | 0x00800000u;
    return (uint16_t)(s | (uint16_t)ts_shr_rne(m, 126u - (a >> 23)));
}

TS_INLINE uint16_t f64_to_f16(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    uint16_t s = (uint16_t)((u >> 48) & 0x8000u);
    uint64_t a = u & UINT64_C(0x7fffffffffffffff);
    if (a >= UINT64_C(0x3f10000000000000)) { /* |d| >= 2^-14 */
        if (a >= UINT64_C(0x40effe0000000000)) /* >= 65520, inf, NaN */
            return (uint16_t)(s | 0x7c00u |
                              (a > UINT64_C(0x7ff0000000000000) ? 0x0200u | ((a >> 42) & 0x3ffu) : 0u));
        uint64_t r = a - ((uint64_t)(1023 - 15) << 52);
        return (uint16_t)(s | (uint16_t)((r + ((UINT64_C(1) << 41) - 1u) + ((r >> 42) & 1u)) >> 42));
    }
    if (a <= UINT64_C(0x3e60000000000000)) return s; /* |d| <= 2^-25 */
    uint64_t m = (a & UINT64_C(0x000fffffffffffff)) | (UINT64_C(1) << 52);
    return (uint16_t)(s | (uint16_t)ts_shr_rne(m, (unsigned)(1051u - (unsigned)(a >> 52))));
}

/* Temperature ranges (every accepted T in [0, inf] gives the contract's value):
 *   float32 compute: T < TMIN_F32 goes to the scalar reference (there every nonzero float gap
 *     d >= 2^-149 has d/T > 2^151: an exact zero term, and a log-softmax below -FLT_MAX);
 *     AVX-512's float-pair exp2_tsum only for c = log2(e)/T in [TSUM_LO, TSUM_HI] (ch = (float)c
 *     normal, and an overflowed x - m then still means a zero term); outside it t is formed in
 *     double.
 *   float64 compute: (x/2 - m/2) * (2 log2(e) / T) for T >= F64_SMALL_T; below it (T/2 could
 *     underflow, 1/T overflow) ((x - m) * F64_SCALE) * (log2(e) / (T * F64_SCALE)). */
#define TMIN_F32 0x1p-300
#define TSUM_LO 0x1p-60
#define TSUM_HI 0x1p120
#define F64_SMALL_T 0x1p-900
#define F64_SCALE 0x1p900
/* float32 log-sums whose non-maximal terms add up to less than this are summed again in double
   with exp2_hi: float subnormals and exp2_lo's 2^-200 cut-off would lose them (logsumexp of
   [0, -3700] at T = 37 is 37 e^-100 = 1.38e-42, a float subnormal) */
#define PRECISE_BELOW 0x1p-90

#define NARROW 48 /* rows shorter than this go through the transposed block kernels */

/* log(k + rest) for k >= 1 maxima (each contributing exactly 1) and the sum of the other terms:
   log1p keeps the small terms (log(1 + 1e-18) is 1e-18, not 0) */
static inline double log_sum(double k, double rest) {
    if (rest >= k) return log(k + rest); /* log s >= log 2: log alone is as exact, and faster */
    return k == 1.0 ? log1p(rest) : log(k) + log1p(rest / k);
}

/* logsumexp = m + T log s, without a spurious overflow of T log s when the sum is finite
   (m = -max/2, T = max, log s = 1.04: T log s > max, m + T log s = 0.54 max) */
static inline double lse_combine(double m, double T, double ls) {
    double r = m + T * ls;
    if (isinf(r) && isfinite(m) && isfinite(T)) r = 2.0 * (0.5 * m + (0.5 * T) * ls);
    return r;
}

/* log2(e) / t as hi + *lo (a double-double, ~2^-104 relative); t > 0 normal */
static inline double log2e_over(double t, double *lo) {
    const double l2e_hi = 1.4426950408889634, l2e_lo = 2.0355273740931033e-17;
    double q = l2e_hi / t;
    double r = fma(-q, t, l2e_hi); /* exact remainder */
    *lo = (r + l2e_lo) / t;
    return q;
}

/* the float64 scaling (h, A) for temperature T > 0 (see above) */
static inline void f64_regime(double T, double *h, double *A) {
    if (T >= F64_SMALL_T) { *h = 0.5; *A = 1.0; }
    else { *h = 1.0; *A = F64_SCALE; }
}

#endif /* TEMPSCALE_COMMON_H */
