/*
 * tempscale._native._tskernels: multi-threaded temperature softmax / log_softmax / logsumexp
 * for NumPy float16/float32/float64 arrays.
 *
 * Layout of this file
 *   1. vector kernels, compiled per instruction set from _kern_impl.h (runtime dispatch)
 *   2. the scalar reference for rows with non-finite cases (and the portable fallback)
 *   3. the job: rows of an N-d array along one axis, any strides / dtype / mask; the fast path is
 *      a contiguous row of the compute dtype; narrow rows (n < NARROW) are processed in
 *      transposed blocks of VF (float32) or VF/2 (float64) rows (16 / 8 with AVX-512),
 *      vectorised across rows
 *   4. a persistent pthread pool (no per-call thread creation; fork-safe; one job at a time,
 *      concurrent callers run on their own thread)
 *   5. the Python module
 * No -ffast-math anywhere: the contract lives on inf and NaN.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>
#include <malloc.h>
#include <unistd.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LOG2E 1.4426950408889634
#define KIND_SOFTMAX 0
#define KIND_LOGSOFTMAX 1
#define KIND_LSE 2

#define T_F16 0
#define T_F32 1
#define T_F64 2

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

#define NARROW 48        /* rows shorter than this go through the transposed block kernels */
/* outputs at least this large use streaming (non-temporal) stores; off by default: on the
   development VM they measured slower (softmax 9.7 -> 11.7 ms on 512 x 32768) */
static size_t g_stream_bytes = SIZE_MAX;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#if defined(__FLT16_MAX__)
#define HAVE_F16 1
typedef _Float16 f16_t;
#else
#define HAVE_F16 0
#endif

/* ---------------------------------------------------------------------------------------------
 * 1. per-ISA kernels
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int (*row_f32)(const float *, float *, npy_intp, double, int, double *, float *);
    int (*row_f64)(const double *, double *, npy_intp, double, int, double *);
    void (*block_f32)(const float *, float *, npy_intp, const double *, int, double *, unsigned char *);
    void (*block_f64)(const double *, double *, npy_intp, const double *, int, double *, unsigned char *);
    void (*exp_pass)(const float *, float *, npy_intp, int);
    void (*tr_in_f32)(const char *, npy_intp, npy_intp, float *);   /* NULL: scalar transposes */
    void (*tr_out_f32)(const float *, npy_intp, char *, npy_intp);
    int brf, brd; /* rows per narrow block: float32 (VF), float64 (VF / 2) */
    int stream;   /* row_f32 / exp_pass can stream their output (non-temporal stores) */
    /* AVX-512: softmax of 16 rows of n <= 16 contiguous float32 entirely in registers */
    int (*nblock16_sm_f32)(const char *, npy_intp, int, char *, npy_intp, const float *);
} kernels_t;

#define SFX(name) name##_base
#define VF 4
#include "_kern_impl.h"
#undef SFX
#undef VF
static const kernels_t K_base = {"baseline", row_f32_base, row_f64_base, block_f32_base,
                                 block_f64_base, exp_pass_base, NULL, NULL, 4, 2, 0, NULL};

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_DISPATCH 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SFX(name) name##_avx2
#define VF 8
#include "_kern_impl.h"
#undef SFX
#undef VF
#pragma GCC pop_options
static const kernels_t K_avx2 = {"avx2", row_f32_avx2, row_f64_avx2, block_f32_avx2,
                                 block_f64_avx2, exp_pass_avx2, NULL, NULL, 8, 4, 0, NULL};

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c")
#define SFX(name) name##_avx512
#define VF 16
#include "_kern_impl.h"
#undef SFX
#undef VF
#pragma GCC pop_options
static const kernels_t K_avx512 = {"avx512f", row_f32_avx512, row_f64_avx512, block_f32_avx512,
                                   block_f64_avx512, exp_pass_avx512,
                                   tr_in_f32_avx512, tr_out_f32_avx512, 16, 8, 1,
                                   nblock16_sm_f32_avx512};
#else
#define HAVE_X86_DISPATCH 0
#endif

static const kernels_t *K_active = &K_base;

static int isa_supported(const char *name) {
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

static const kernels_t *isa_kernels(const char *name) {
#if HAVE_X86_DISPATCH
    if (strcmp(name, "avx512f") == 0) return &K_avx512;
    if (strcmp(name, "avx2") == 0) return &K_avx2;
#endif
    (void)name;
    return &K_base;
}

static const kernels_t *best_kernels(void) {
    if (isa_supported("avx512f")) return isa_kernels("avx512f");
    if (isa_supported("avx2")) return isa_kernels("avx2");
    return &K_base;
}

/* ---------------------------------------------------------------------------------------------
 * 2. scalar reference (all contract cases); x / o are strided in elements
 * ------------------------------------------------------------------------------------------- */
#define DEFINE_SPECIAL(NAME, CT)                                                                 \
    static void NAME(const CT *x, npy_intp xs, npy_intp n, double T, int kind, CT *o,         \
                     npy_intp os, double *lse) {                                               \
        int nan = !(T >= 0.0); /* NaN / negative T (the wrapper never passes one): NaN row */  \
        double m = -INFINITY;                                                                  \
        for (npy_intp i = 0; i < n; i++) {                                                     \
            double v = (double)x[i * xs];                                                      \
            if (v != v) nan = 1;                                                               \
            else if (v > m) m = v;                                                             \
        }                                                                                      \
        if (nan) {                                                                             \
            if (kind == KIND_LSE) *lse = NAN;                                                  \
            else for (npy_intp i = 0; i < n; i++) o[i * os] = NAN;                             \
            return;                                                                            \
        }                                                                                      \
        if (m == -INFINITY) { /* empty or fully masked */                                      \
            if (kind == KIND_LSE) *lse = -INFINITY;                                            \
            else for (npy_intp i = 0; i < n; i++)                                              \
                o[i * os] = kind == KIND_SOFTMAX ? (CT)0 : (CT)-INFINITY;                      \
            return;                                                                            \
        }                                                                                      \
        int tie = m == INFINITY || T == 0.0;                                                   \
        if (tie || T == INFINITY) {                                                            \
            npy_intp cnt = 0;                                                                  \
            for (npy_intp i = 0; i < n; i++) {                                                 \
                double v = (double)x[i * xs];                                                  \
                cnt += tie ? v == m : v > -INFINITY;                                           \
            }                                                                                  \
            if (kind == KIND_LSE) {                                                            \
                *lse = tie || cnt == 1 ? m : INFINITY;                                         \
                return;                                                                        \
            }                                                                                  \
            double p = 1.0 / (double)cnt;                                                      \
            double lp = cnt == 1 ? 0.0 : -log((double)cnt);                                    \
            for (npy_intp i = 0; i < n; i++) {                                                 \
                double v = (double)x[i * xs];                                                  \
                int on = tie ? v == m : v > -INFINITY;                                         \
                o[i * os] = kind == KIND_SOFTMAX ? (CT)(on ? p : 0.0)                          \
                                                 : (CT)(on ? lp : -INFINITY);                  \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        /* finite maximum, 0 < T < inf: y = ((x h - m h) A) / (T h A), see f64_regime */       \
        double h, A;                                                                           \
        f64_regime(T, &h, &A);                                                                 \
        double iT = 1.0 / (T * h * A), mh = m * h, k = 0.0, rest = 0.0;                        \
        for (npy_intp i = 0; i < n; i++) {                                                     \
            double v = (double)x[i * xs];                                                      \
            if (v == m) k += 1.0;                                                              \
            else rest += exp(((v * h - mh) * A) * iT);                                         \
        }                                                                                      \
        double ls = log_sum(k, rest);                                                          \
        if (kind == KIND_LSE) { *lse = lse_combine(m, T, ls); return; }                       \
        double s = k + rest;                                                                   \
        for (npy_intp i = 0; i < n; i++) {                                                     \
            double y = (((double)x[i * xs] * h - mh) * A) * iT;                                \
            o[i * os] = kind == KIND_SOFTMAX ? (CT)(exp(y) / s) : (CT)(y - ls);                \
        }                                                                                      \
    }
DEFINE_SPECIAL(special_f32, float)
DEFINE_SPECIAL(special_f64, double)

/* ---------------------------------------------------------------------------------------------
 * 3. the job
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int kind, xt, ot, ct, tt; /* tt: T array type, -1 for a scalar */
    double T;
    npy_intp n, nrows;
    int nd;
    npy_intp shape[NPY_MAXDIMS];
    npy_intp sx[NPY_MAXDIMS], sm[NPY_MAXDIMS], st[NPY_MAXDIMS], so[NPY_MAXDIMS];
    npy_intp rx, rm, ro; /* strides along the row, bytes */
    char *x, *m, *t, *o;
    int contig, narrow, xfast, ofast, stream;
    npy_intp rows_per_task;
    const kernels_t *K;
    int err;
} job_t;

static inline void row_ptrs(const job_t *J, npy_intp r, char **px, char **pm, char **pt, char **po) {
    npy_intp ox = 0, om = 0, ot = 0, oo = 0;
    if (J->nd == 1) {
        ox = r * J->sx[0]; om = r * J->sm[0]; ot = r * J->st[0]; oo = r * J->so[0];
    } else {
        for (int d = J->nd - 1; d >= 0; d--) {
            npy_intp i = r % J->shape[d];
            r /= J->shape[d];
            ox += i * J->sx[d]; om += i * J->sm[d]; ot += i * J->st[d]; oo += i * J->so[d];
        }
    }
    *px = J->x + ox;
    *pm = J->m ? J->m + om : NULL;
    *pt = J->t ? J->t + ot : NULL;
    *po = J->o + oo;
}

static inline double read_T(const job_t *J, const char *pt) {
    if (J->tt < 0) return J->T;
    if (J->tt == T_F32) { float v; memcpy(&v, pt, 4); return v; }
    double v; memcpy(&v, pt, 8); return v;
}

static inline double load_as_double(const char *p, int t) {
    if (t == T_F32) { float v; memcpy(&v, p, 4); return v; }
    if (t == T_F64) { double v; memcpy(&v, p, 8); return v; }
#if HAVE_F16
    f16_t h; memcpy(&h, p, 2); return (double)(float)h;
#else
    return NAN;
#endif
}

static inline void store_from_double(char *p, int t, double v) {
    if (t == T_F32) { float f = (float)v; memcpy(p, &f, 4); return; }
    if (t == T_F64) { memcpy(p, &v, 8); return; }
#if HAVE_F16
    f16_t h = (f16_t)v; memcpy(p, &h, 2); /* one rounding (not double -> float -> half) */
#endif
}

/* one row of x (and mask) -> dst[j * ds], as the compute type */
static void gather_f32(const job_t *J, const char *px, const char *pm, float *dst, npy_intp ds) {
    npy_intp n = J->n;
    if (J->xfast && !pm) {
        const float *x = (const float *)px;
        for (npy_intp j = 0; j < n; j++) dst[j * ds] = x[j];
        return;
    }
    for (npy_intp j = 0; j < n; j++) {
        float v;
        if (J->xt == T_F32) memcpy(&v, px + j * J->rx, 4);
        else v = (float)load_as_double(px + j * J->rx, J->xt);
        if (pm && !pm[j * J->rm]) v = -INFINITY;
        dst[j * ds] = v;
    }
}

static void gather_f64(const job_t *J, const char *px, const char *pm, double *dst, npy_intp ds) {
    npy_intp n = J->n;
    if (J->xfast && !pm) {
        const double *x = (const double *)px;
        for (npy_intp j = 0; j < n; j++) dst[j * ds] = x[j];
        return;
    }
    for (npy_intp j = 0; j < n; j++) {
        double v;
        memcpy(&v, px + j * J->rx, 8);
        if (pm && !pm[j * J->rm]) v = -INFINITY;
        dst[j * ds] = v;
    }
}

static void scatter_f32(const job_t *J, char *po, const float *src, npy_intp ss) {
    npy_intp n = J->n;
    if (J->ofast) {
        float *o = (float *)po;
        for (npy_intp j = 0; j < n; j++) o[j] = src[j * ss];
        return;
    }
    for (npy_intp j = 0; j < n; j++) {
        if (J->ot == T_F32) memcpy(po + j * J->ro, &src[j * ss], 4);
        else store_from_double(po + j * J->ro, J->ot, src[j * ss]);
    }
}

static void scatter_f64(const job_t *J, char *po, const double *src, npy_intp ss) {
    npy_intp n = J->n;
    if (J->ofast) {
        double *o = (double *)po;
        for (npy_intp j = 0; j < n; j++) o[j] = src[j * ss];
        return;
    }
    for (npy_intp j = 0; j < n; j++) store_from_double(po + j * J->ro, J->ot, src[j * ss]);
}

static void run_wide(job_t *J, npy_intp r0, npy_intp r1) {
    npy_intp n = J->n;
    int f32 = J->ct == T_F32;
    size_t es = f32 ? 4 : 8;
    char *xb = NULL, *ob = NULL;
    float *scratch = NULL;
    if (J->stream) {
        scratch = malloc(4 * (size_t)n);
        if (!scratch) { __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED); return; }
    }
    if (!J->contig) {
        xb = malloc(es * (size_t)(n ? n : 1));
        ob = malloc(es * (size_t)(n ? n : 1));
        if (!xb || !ob) { free(xb); free(ob); __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED); return; }
    }
    for (npy_intp r = r0; r < r1; r++) {
        char *px, *pm, *pt, *po;
        row_ptrs(J, r, &px, &pm, &pt, &po);
        double T = read_T(J, pt), lse = 0.0;
        if (f32) {
            const float *xr;
            float *orow;
            if (J->contig) { xr = (const float *)px; orow = J->kind == KIND_LSE ? NULL : (float *)po; }
            else { gather_f32(J, px, pm, (float *)xb, 1); xr = (float *)xb; orow = (float *)ob; }
            if (J->K->row_f32(xr, orow, n, T, J->kind, &lse, scratch))
                special_f32(xr, 1, n, T, J->kind, orow, 1, &lse);
            if (J->kind == KIND_LSE) store_from_double(po, J->ot, lse);
            else if (!J->contig) scatter_f32(J, po, orow, 1);
        } else {
            const double *xr;
            double *orow;
            if (J->contig) { xr = (const double *)px; orow = J->kind == KIND_LSE ? NULL : (double *)po; }
            else { gather_f64(J, px, pm, (double *)xb, 1); xr = (double *)xb; orow = (double *)ob; }
            if (J->K->row_f64(xr, orow, n, T, J->kind, &lse)) special_f64(xr, 1, n, T, J->kind, orow, 1, &lse);
            if (J->kind == KIND_LSE) store_from_double(po, J->ot, lse);
            else if (!J->contig) scatter_f64(J, po, orow, 1);
        }
    }
    free(xb);
    free(ob);
    free(scratch);
}

static void run_narrow(job_t *J, npy_intp r0, npy_intp r1) {
    npy_intp n = J->n;
    int f32 = J->ct == T_F32;
    int BR = f32 ? J->K->brf : J->K->brd;
    size_t es = f32 ? 4 : 8;
    char *XT = malloc(es * BR * (size_t)n), *PT = malloc(es * BR * (size_t)n);
    if (!XT || !PT) { free(XT); free(PT); __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED); return; }
    double Tr[16], lse[16];
    unsigned char spec[16];
    char *po_r[16];
    /* one outer dim, contiguous rows of the compute type, no mask, scalar T */
    int fast = J->nd == 1 && J->xfast && !J->m && J->tt < 0 && (J->kind == KIND_LSE || J->ofast);
    /* all-in-registers AVX-512 softmax blocks for n <= 16 */
    double cT = J->T >= TMIN_F32 ? LOG2E / J->T : 0.0;
    int reg16 = fast && f32 && J->kind == KIND_SOFTMAX && J->K->nblock16_sm_f32 && n <= 16 &&
                J->T < INFINITY && cT >= TSUM_LO && cT <= TSUM_HI;
    float cpair[2] = {(float)cT, 0.0f};
    cpair[1] = (float)(cT - (double)cpair[0]);
    for (npy_intp rb = r0; rb < r1; rb += BR) {
        int nr = (int)(r1 - rb < BR ? r1 - rb : BR);
        if (reg16 && nr == BR &&
            !J->K->nblock16_sm_f32(J->x + rb * J->sx[0], J->sx[0], (int)n, J->o + rb * J->so[0],
                                   J->so[0], cpair))
            continue;
        if (fast && nr == BR) {
            /* contiguous rows: transpose column by column (sequential writes into XT, so the
               block kernel's vector loads never wait on pending scalar stores) */
            const char *xb = J->x + rb * J->sx[0];
            npy_intp rs = J->sx[0];
            for (int r = 0; r < BR; r++) Tr[r] = J->T;
            if (f32) {
                float *X = (float *)XT;
                if (J->K->tr_in_f32) J->K->tr_in_f32(xb, rs, n, X);
                else
                    for (npy_intp j = 0; j < n; j++)
                        for (int r = 0; r < BR; r++) X[j * BR + r] = ((const float *)(xb + r * rs))[j];
                J->K->block_f32(X, (float *)PT, n, Tr, J->kind, lse, spec);
            } else {
                double *X = (double *)XT;
                for (npy_intp j = 0; j < n; j++)
                    for (int r = 0; r < BR; r++) X[j * BR + r] = ((const double *)(xb + r * rs))[j];
                J->K->block_f64(X, (double *)PT, n, Tr, J->kind, lse, spec);
            }
            int anyspec = 0;
            for (int r = 0; r < BR; r++) anyspec |= spec[r];
            if (!anyspec && J->kind != KIND_LSE) {
                char *ob = J->o + rb * J->so[0];
                npy_intp os = J->so[0];
                if (f32 && J->K->tr_out_f32) {
                    J->K->tr_out_f32((const float *)PT, n, ob, os);
                } else if (f32) {
                    const float *P = (const float *)PT;
                    for (npy_intp j = 0; j < n; j++)
                        for (int r = 0; r < BR; r++) ((float *)(ob + r * os))[j] = P[j * BR + r];
                } else {
                    const double *P = (const double *)PT;
                    for (npy_intp j = 0; j < n; j++)
                        for (int r = 0; r < BR; r++) ((double *)(ob + r * os))[j] = P[j * BR + r];
                }
                continue;
            }
            for (int r = 0; r < BR; r++) po_r[r] = J->o + (rb + r) * J->so[0];
            goto finish;
        }
        for (int r = 0; r < BR; r++) {
            if (r < nr) {
                char *px, *pm, *pt;
                row_ptrs(J, rb + r, &px, &pm, &pt, &po_r[r]);
                Tr[r] = read_T(J, pt);
                if (f32) gather_f32(J, px, pm, (float *)XT + r, BR);
                else gather_f64(J, px, pm, (double *)XT + r, BR);
            } else {
                Tr[r] = 1.0;
                for (npy_intp j = 0; j < n; j++) {
                    if (f32) ((float *)XT)[j * BR + r] = 0.0f;
                    else ((double *)XT)[j * BR + r] = 0.0;
                }
            }
        }
        if (f32) J->K->block_f32((float *)XT, (float *)PT, n, Tr, J->kind, lse, spec);
        else J->K->block_f64((double *)XT, (double *)PT, n, Tr, J->kind, lse, spec);
    finish:
        for (int r = 0; r < nr; r++) {
            if (spec[r]) {
                if (f32) special_f32((float *)XT + r, BR, n, Tr[r], J->kind, (float *)PT + r, BR, &lse[r]);
                else special_f64((double *)XT + r, BR, n, Tr[r], J->kind, (double *)PT + r, BR, &lse[r]);
            }
            if (J->kind == KIND_LSE) store_from_double(po_r[r], J->ot, lse[r]);
            else if (f32) scatter_f32(J, po_r[r], (float *)PT + r, BR);
            else scatter_f64(J, po_r[r], (double *)PT + r, BR);
        }
    }
    free(XT);
    free(PT);
}

static void job_task(void *ctx, npy_intp task) {
    job_t *J = ctx;
    npy_intp r0 = task * J->rows_per_task;
    npy_intp r1 = r0 + J->rows_per_task;
    if (r1 > J->nrows) r1 = J->nrows;
    if (J->narrow) run_narrow(J, r0, r1);
    else run_wide(J, r0, r1);
}

/* ---------------------------------------------------------------------------------------------
 * 4. thread pool
 * ------------------------------------------------------------------------------------------- */
#define MAX_WORKERS 255
static int g_nthreads = 1;
static pthread_mutex_t P_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t P_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t P_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t P_use = PTHREAD_MUTEX_INITIALIZER;
static int P_nworkers = 0;
static unsigned long P_gen = 0;
static unsigned long P_seen0[MAX_WORKERS];
static int P_want = 0, P_running = 0;
static void (*P_fn)(void *, npy_intp);
static void *P_ctx;
static npy_intp P_ntasks, P_next;

static void drain(void (*fn)(void *, npy_intp), void *ctx, npy_intp ntasks) {
    npy_intp t;
    while ((t = __atomic_fetch_add(&P_next, 1, __ATOMIC_RELAXED)) < ntasks) fn(ctx, t);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&P_mu);
    unsigned long seen = P_seen0[id];
    for (;;) {
        while (P_gen == seen) pthread_cond_wait(&P_cv, &P_mu);
        seen = P_gen;
        if (id >= P_want) continue;
        void (*fn)(void *, npy_intp) = P_fn;
        void *ctx = P_ctx;
        npy_intp nt = P_ntasks;
        pthread_mutex_unlock(&P_mu);
        drain(fn, ctx, nt);
        pthread_mutex_lock(&P_mu);
        if (--P_running == 0) pthread_cond_signal(&P_done);
    }
    return NULL;
}

static void cache_atfork_child(void);

static void pool_atfork_child(void) {
    /* the workers do not exist in a forked child: start over */
    pthread_mutex_init(&P_mu, NULL);
    pthread_mutex_init(&P_use, NULL);
    pthread_cond_init(&P_cv, NULL);
    pthread_cond_init(&P_done, NULL);
    P_nworkers = 0;
    P_want = P_running = 0;
    cache_atfork_child();
}

static void parallel_run(void (*fn)(void *, npy_intp), void *ctx, npy_intp ntasks, int nthreads) {
    if (nthreads > ntasks) nthreads = (int)ntasks;
    if (nthreads > MAX_WORKERS + 1) nthreads = MAX_WORKERS + 1;
    if (nthreads <= 1 || pthread_mutex_trylock(&P_use) != 0) {
        /* single-threaded, or another Python thread holds the pool: run on this thread */
        for (npy_intp t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&P_mu);
    int want = nthreads - 1;
    while (P_nworkers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        P_seen0[P_nworkers] = P_gen;
        int rc = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)P_nworkers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        P_nworkers++;
    }
    if (want > P_nworkers) want = P_nworkers;
    P_fn = fn;
    P_ctx = ctx;
    P_ntasks = ntasks;
    __atomic_store_n(&P_next, 0, __ATOMIC_RELAXED);
    P_want = want;
    P_running = want;
    P_gen++;
    pthread_cond_broadcast(&P_cv);
    pthread_mutex_unlock(&P_mu);
    drain(fn, ctx, ntasks);
    pthread_mutex_lock(&P_mu);
    while (P_running > 0) pthread_cond_wait(&P_done, &P_mu);
    pthread_mutex_unlock(&P_mu);
    pthread_mutex_unlock(&P_use);
}

/* ---------------------------------------------------------------------------------------------
 * output buffers: a NumPy memory handler that keeps a few large freed blocks for reuse
 *
 * A fresh multi-megabyte np.empty costs page faults and kernel zeroing on first touch (on this
 * kind of VM ~4-5 GB/s, i.e. as much as the whole softmax).  Outputs allocated by `empty` below
 * use this handler: when such an array dies, its block (>= 1 MiB) is kept, up to a byte cap
 * (default min(2 GiB, RAM / 8); TEMPSCALE_CACHE_MB or set_cache_limit; 0 disables), and a later
 * output of exactly the same size reuses it.  release_memory() returns everything.
 * ------------------------------------------------------------------------------------------- */
#define C_SLOTS 8
#define C_MIN ((size_t)1 << 20)
static pthread_mutex_t C_mu = PTHREAD_MUTEX_INITIALIZER;
static void *C_ptr[C_SLOTS];
static size_t C_len[C_SLOTS];
static unsigned long C_age[C_SLOTS], C_clock = 0;
static size_t C_bytes = 0, C_cap = 0;

static void *c_malloc(void *ctx, size_t n) {
    (void)ctx;
    if (n >= C_MIN) {
        void *p = NULL;
        pthread_mutex_lock(&C_mu);
        for (int i = 0; i < C_SLOTS; i++) {
            if (C_ptr[i] && C_len[i] == n) {
                p = C_ptr[i];
                C_ptr[i] = NULL;
                C_bytes -= n;
                break;
            }
        }
        pthread_mutex_unlock(&C_mu);
        if (p) return p;
    }
    return malloc(n);
}
static void *c_calloc(void *ctx, size_t ne, size_t es) { (void)ctx; return calloc(ne, es); }
static void *c_realloc(void *ctx, void *p, size_t n) { (void)ctx; return realloc(p, n); }
static void c_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    if (p && n >= C_MIN && malloc_usable_size(p) >= n) {
        void *drop[C_SLOTS];
        int nd = 0, kept = 0;
        pthread_mutex_lock(&C_mu);
        if (n <= C_cap) {
            while (C_bytes + n > C_cap) { /* evict the oldest */
                int o = -1;
                for (int i = 0; i < C_SLOTS; i++)
                    if (C_ptr[i] && (o < 0 || C_age[i] < C_age[o])) o = i;
                if (o < 0) break;
                drop[nd++] = C_ptr[o];
                C_bytes -= C_len[o];
                C_ptr[o] = NULL;
            }
            int slot = -1;
            for (int i = 0; i < C_SLOTS; i++) if (!C_ptr[i]) { slot = i; break; }
            if (slot < 0) {
                slot = 0;
                for (int i = 1; i < C_SLOTS; i++) if (C_age[i] < C_age[slot]) slot = i;
                drop[nd++] = C_ptr[slot];
                C_bytes -= C_len[slot];
            }
            if (C_bytes + n <= C_cap) {
                C_ptr[slot] = p;
                C_len[slot] = n;
                C_age[slot] = ++C_clock;
                C_bytes += n;
                kept = 1;
            } else {
                C_ptr[slot] = NULL;
            }
        }
        pthread_mutex_unlock(&C_mu);
        for (int i = 0; i < nd; i++) free(drop[i]);
        if (kept) return;
    }
    free(p);
}

static void cache_atfork_child(void) { pthread_mutex_init(&C_mu, NULL); }

static PyDataMem_Handler C_handler = {
    "tempscale_cache", 1, {NULL, c_malloc, c_calloc, c_realloc, c_free}};
static PyObject *C_capsule = NULL;

static void cache_release(size_t keep) {
    void *drop[C_SLOTS];
    int nd = 0;
    pthread_mutex_lock(&C_mu);
    C_cap = keep;
    for (int i = 0; i < C_SLOTS; i++) {
        if (C_ptr[i]) { drop[nd++] = C_ptr[i]; C_bytes -= C_len[i]; C_ptr[i] = NULL; }
    }
    pthread_mutex_unlock(&C_mu);
    for (int i = 0; i < nd; i++) free(drop[i]);
}

/* empty(shape, dtype): np.empty through the caching handler */
static PyObject *py_empty(PyObject *self, PyObject *args) {
    PyObject *shape_o;
    PyArray_Descr *descr = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O&", &PyTuple_Type, &shape_o, PyArray_DescrConverter, &descr))
        return NULL;
    npy_intp dims[NPY_MAXDIMS];
    Py_ssize_t nd = PyTuple_GET_SIZE(shape_o);
    if (nd > NPY_MAXDIMS) { Py_DECREF(descr); PyErr_SetString(PyExc_ValueError, "too many dims"); return NULL; }
    for (Py_ssize_t i = 0; i < nd; i++) {
        dims[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape_o, i));
        if (dims[i] < 0) {
            Py_DECREF(descr);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative dimension");
            return NULL;
        }
    }
    PyObject *old = PyDataMem_SetHandler(C_capsule);
    if (!old) { Py_DECREF(descr); return NULL; }
    PyObject *arr = PyArray_Empty((int)nd, dims, descr, 0); /* steals descr */
    PyObject *tmp = PyDataMem_SetHandler(old);
    Py_XDECREF(tmp);
    Py_DECREF(old);
    return arr;
}

static PyObject *py_set_cache_limit(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (n < C_bytes) cache_release((size_t)n);
    pthread_mutex_lock(&C_mu);
    C_cap = (size_t)n;
    pthread_mutex_unlock(&C_mu);
    Py_RETURN_NONE;
}

static PyObject *py_release_memory(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    size_t cap;
    pthread_mutex_lock(&C_mu);
    cap = C_cap;
    pthread_mutex_unlock(&C_mu);
    cache_release(cap);
    Py_RETURN_NONE;
}

static PyObject *py_cache_info(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    size_t b, cap;
    int k = 0;
    pthread_mutex_lock(&C_mu);
    b = C_bytes; cap = C_cap;
    for (int i = 0; i < C_SLOTS; i++) k += C_ptr[i] != NULL;
    pthread_mutex_unlock(&C_mu);
    return Py_BuildValue("{s:K,s:K,s:i}", "cached_bytes", (unsigned long long)b, "limit_bytes",
                         (unsigned long long)cap, "blocks", k);
}

/* exported for threadpoolctl-style controllers (ctypes) */
__attribute__((visibility("default"))) int tempscale_get_num_threads(void) {
    return __atomic_load_n(&g_nthreads, __ATOMIC_RELAXED);
}
__attribute__((visibility("default"))) void tempscale_set_num_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_WORKERS + 1) n = MAX_WORKERS + 1;
    __atomic_store_n(&g_nthreads, n, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------
 * 5. Python module
 * ------------------------------------------------------------------------------------------- */
static int type_code(PyArrayObject *a) {
    if (!PyArray_ISNBO(PyArray_DESCR(a)->byteorder)) return -1;
    switch (PyArray_TYPE(a)) {
        case NPY_HALF: return HAVE_F16 ? T_F16 : -1;
        case NPY_FLOAT: return T_F32;
        case NPY_DOUBLE: return T_F64;
        default: return -1;
    }
}

static const size_t type_size[3] = {2, 4, 8};

/* compute(kind, x, T, mask, out, axis, nthreads); T float or array broadcast to x.shape,
   mask None or bool array broadcast to x.shape, out: x.shape (stride 0 along axis for
   logsumexp), all validated by the Python wrapper. */
static PyObject *py_compute(PyObject *self, PyObject *args) {
    int kind, axis, nthreads;
    PyObject *xo, *To, *mo, *oo;
    (void)self;
    if (!PyArg_ParseTuple(args, "iO!OOO!ii", &kind, &PyArray_Type, &xo, &To, &mo, &PyArray_Type, &oo,
                          &axis, &nthreads))
        return NULL;
    PyArrayObject *x = (PyArrayObject *)xo, *o = (PyArrayObject *)oo, *m = NULL, *t = NULL;
    job_t J;
    memset(&J, 0, sizeof J);
    J.kind = kind;
    int nd = PyArray_NDIM(x);
    if (kind < 0 || kind > 2 || axis < 0 || axis >= nd || PyArray_NDIM(o) != nd) {
        PyErr_SetString(PyExc_ValueError, "bad kind / axis / out");
        return NULL;
    }
    J.xt = type_code(x);
    J.ot = type_code(o);
    if (J.xt < 0 || J.ot < 0 || !PyArray_ISWRITEABLE(o)) {
        PyErr_SetString(PyExc_TypeError, "unsupported dtype");
        return NULL;
    }
    J.ct = J.xt == T_F64 ? T_F64 : T_F32;
    if (J.ct == T_F64 && J.ot != T_F64) {
        PyErr_SetString(PyExc_TypeError, "float64 input needs float64 output");
        return NULL;
    }
    if (mo != Py_None) {
        if (!PyArray_Check(mo) || PyArray_TYPE((PyArrayObject *)mo) != NPY_BOOL ||
            PyArray_NDIM((PyArrayObject *)mo) != nd) {
            PyErr_SetString(PyExc_TypeError, "mask must be a bool array of x's ndim");
            return NULL;
        }
        m = (PyArrayObject *)mo;
    }
    if (PyArray_Check(To)) {
        t = (PyArrayObject *)To;
        J.tt = type_code(t);
        if (J.tt != T_F32 && J.tt != T_F64) {
            PyErr_SetString(PyExc_TypeError, "temperature array must be float32/float64");
            return NULL;
        }
        if (PyArray_NDIM(t) != nd) {
            PyErr_SetString(PyExc_ValueError, "temperature array must have x's ndim");
            return NULL;
        }
    } else {
        J.tt = -1;
        J.T = PyFloat_AsDouble(To);
        if (J.T == -1.0 && PyErr_Occurred()) return NULL;
    }
    npy_intp *shape = PyArray_SHAPE(x);
    for (int d = 0; d < nd; d++) {
        if (PyArray_DIM(o, d) != shape[d] || (m && PyArray_DIM(m, d) != shape[d]) ||
            (t && d != axis && PyArray_DIM(t, d) != shape[d])) {
            PyErr_SetString(PyExc_ValueError, "shape mismatch");
            return NULL;
        }
    }
    J.n = shape[axis];
    J.rx = PyArray_STRIDE(x, axis);
    J.ro = PyArray_STRIDE(o, axis);
    J.rm = m ? PyArray_STRIDE(m, axis) : 0;
    J.x = PyArray_BYTES(x);
    J.o = PyArray_BYTES(o);
    J.m = m ? PyArray_BYTES(m) : NULL;
    J.t = t ? PyArray_BYTES(t) : NULL;
    /* outer dims (all but axis), coalesced where every array allows it */
    J.nd = 0;
    J.nrows = 1;
    for (int d = 0; d < nd; d++) {
        if (d == axis) continue;
        npy_intp sh = shape[d];
        J.nrows *= sh;
        if (sh == 1) continue;
        npy_intp sx = PyArray_STRIDE(x, d), so = PyArray_STRIDE(o, d);
        npy_intp sm = m ? PyArray_STRIDE(m, d) : 0, st = t ? PyArray_STRIDE(t, d) : 0;
        int k = J.nd - 1;
        if (k >= 0 && J.sx[k] == sx * sh && J.so[k] == so * sh && J.sm[k] == sm * sh &&
            J.st[k] == st * sh) {
            J.shape[k] *= sh;
            J.sx[k] = sx; J.so[k] = so; J.sm[k] = sm; J.st[k] = st;
        } else {
            J.shape[J.nd] = sh;
            J.sx[J.nd] = sx; J.so[J.nd] = so; J.sm[J.nd] = sm; J.st[J.nd] = st;
            J.nd++;
        }
    }
    if (J.nd == 0) { J.nd = 1; J.shape[0] = 1; J.sx[0] = J.so[0] = J.sm[0] = J.st[0] = 0; }
    if (J.nrows == 0) Py_RETURN_NONE;
    size_t cs = type_size[J.ct];
    J.xfast = J.xt == J.ct && J.rx == (npy_intp)cs && PyArray_ISALIGNED(x);
    J.ofast = J.ot == J.ct && J.ro == (npy_intp)cs && PyArray_ISALIGNED(o);
    J.contig = J.xfast && !m && (kind == KIND_LSE || J.ofast);
    J.narrow = J.n < NARROW;
    J.K = K_active;
    /* large float32 softmax outputs (>= g_stream_bytes) bypass the caches */
    J.stream = J.K->stream && kind == KIND_SOFTMAX && J.ct == T_F32 && J.contig && !J.narrow &&
               (size_t)J.nrows * (size_t)J.n * 4 >= g_stream_bytes;
    npy_intp per = J.n > 0 ? J.n : 1;
    npy_intp rpt = (npy_intp)65536 / per;
    if (rpt < 1) rpt = 1;
    if (J.narrow) rpt = (rpt + 15) / 16 * 16; /* a multiple of every block size */
    J.rows_per_task = rpt;
    npy_intp ntasks = (J.nrows + rpt - 1) / rpt;
    int nth = nthreads > 0 ? nthreads : tempscale_get_num_threads();
    if (J.n == 0) {
        if (kind == KIND_LSE) {
            for (npy_intp r = 0; r < J.nrows; r++) {
                char *px, *pm, *pt, *po;
                row_ptrs(&J, r, &px, &pm, &pt, &po);
                store_from_double(po, J.ot, -INFINITY);
            }
        }
        Py_RETURN_NONE;
    }
    Py_BEGIN_ALLOW_THREADS
    parallel_run(job_task, &J, ntasks, nth);
    Py_END_ALLOW_THREADS
    if (J.err) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

typedef struct { const float *x; float *o; npy_intp n, chunk; const kernels_t *K; int nt; } exp_job_t;

static void exp_task(void *ctx, npy_intp task) {
    exp_job_t *E = ctx;
    npy_intp a = task * E->chunk, b = a + E->chunk;
    if (b > E->n) b = E->n;
    E->K->exp_pass(E->x + a, E->o + a, b - a, E->nt);
}

/* exp_pass(x, out, nthreads): out = exp(x) for C-contiguous float32 (the benchmark's limit) */
static PyObject *py_exp_pass(PyObject *self, PyObject *args) {
    PyArrayObject *x, *o;
    int nthreads;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!i", &PyArray_Type, &x, &PyArray_Type, &o, &nthreads)) return NULL;
    if (PyArray_TYPE(x) != NPY_FLOAT || PyArray_TYPE(o) != NPY_FLOAT || !PyArray_IS_C_CONTIGUOUS(x) ||
        !PyArray_IS_C_CONTIGUOUS(o) || PyArray_SIZE(x) != PyArray_SIZE(o) || !PyArray_ISWRITEABLE(o)) {
        PyErr_SetString(PyExc_TypeError, "exp_pass needs C-contiguous float32 arrays of one size");
        return NULL;
    }
    exp_job_t E = {(const float *)PyArray_DATA(x), (float *)PyArray_DATA(o), PyArray_SIZE(x), 65536, K_active, 0};
    E.nt = K_active->stream && (size_t)E.n * 4 >= g_stream_bytes; /* same store policy as softmax */
    npy_intp ntasks = (E.n + E.chunk - 1) / E.chunk;
    Py_BEGIN_ALLOW_THREADS
    parallel_run(exp_task, &E, ntasks, nthreads > 0 ? nthreads : tempscale_get_num_threads());
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(tempscale_get_num_threads());
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    tempscale_set_num_threads((int)(n < 1 ? 1 : n > 100000 ? 100000 : n));
    Py_RETURN_NONE;
}

static PyObject *py_isa(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyUnicode_FromString(K_active->name);
}

/* set_isa(name): switch the dispatched kernels (tests use it to cover every level) */
static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (strcmp(name, "best") == 0) { K_active = best_kernels(); return PyUnicode_FromString(K_active->name); }
    if (!isa_supported(name)) {
        PyErr_Format(PyExc_ValueError, "instruction set %s is not supported on this CPU/build", name);
        return NULL;
    }
    K_active = isa_kernels(name);
    return PyUnicode_FromString(K_active->name);
}

/* _set_stream_bytes(n): output size from which streaming stores are used; returns the old one */
static PyObject *py_set_stream_bytes(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    size_t old = g_stream_bytes;
    g_stream_bytes = (size_t)n;
    return PyLong_FromSize_t(old);
}

static PyObject *py_supported_isas(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    PyObject *l = PyList_New(0);
    const char *names[] = {"avx512f", "avx2", "baseline"};
    for (int i = 0; i < 3; i++) {
        if (isa_supported(names[i])) {
            PyObject *s = PyUnicode_FromString(names[i]);
            PyList_Append(l, s);
            Py_DECREF(s);
        }
    }
    return l;
}

static PyMethodDef methods[] = {
    {"compute", py_compute, METH_VARARGS, "compute(kind, x, T, mask, out, axis, nthreads)"},
    {"exp_pass", py_exp_pass, METH_VARARGS, "exp_pass(x, out, nthreads): out = exp(x), float32"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "threads used by the kernels"},
    {"set_num_threads", py_set_num_threads, METH_O, "set the threads used by the kernels"},
    {"isa", py_isa, METH_NOARGS, "the instruction set in use"},
    {"set_isa", py_set_isa, METH_O, "select an instruction set ('best' for automatic)"},
    {"supported_isas", py_supported_isas, METH_NOARGS, "instruction sets usable here"},
    {"_set_stream_bytes", py_set_stream_bytes, METH_O, "(tuning/tests) streaming-store threshold"},
    {"empty", py_empty, METH_VARARGS, "empty(shape, dtype): np.empty through the block cache"},
    {"set_cache_limit", py_set_cache_limit, METH_O, "byte cap of the output block cache (0: off)"},
    {"release_memory", py_release_memory, METH_NOARGS, "free the cached output blocks"},
    {"cache_info", py_cache_info, METH_NOARGS, "cached bytes / limit / blocks"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_tskernels", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tskernels(void) {
    import_array();
    static int once = 0;
    if (!once) {
        pthread_atfork(NULL, NULL, pool_atfork_child);
        once = 1;
    }
    K_active = best_kernels();
    PyObject *mod = PyModule_Create(&moddef);
    if (!mod) return NULL;
    if (!C_capsule) {
        C_capsule = PyCapsule_New(&C_handler, "mem_handler", NULL);
        if (!C_capsule) { Py_DECREF(mod); return NULL; }
    }
    if (C_cap == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        size_t ram = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : ((size_t)8 << 30);
        C_cap = ram / 8 < ((size_t)2 << 30) ? ram / 8 : ((size_t)2 << 30);
    }
#if defined(__clang__)
    PyModule_AddStringConstant(mod, "compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
    PyModule_AddStringConstant(mod, "compiler", "gcc " __VERSION__);
#else
    PyModule_AddStringConstant(mod, "compiler", "unknown");
#endif
    PyModule_AddIntConstant(mod, "has_float16", HAVE_F16);
    PyModule_AddIntConstant(mod, "narrow_threshold", NARROW);
    return mod;
}
