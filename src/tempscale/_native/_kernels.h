/*
 * The kernel table (one per instruction set, filled in _dispatch.c from _kern_impl.h), run-time
 * ISA selection, and the scalar reference (_reference.c) that handles every row the vector
 * kernels decline (NaN, no finite maximum, +inf maxima, T = 0 / inf, tiny float32 T).
 */
#ifndef TEMPSCALE_KERNELS_H
#define TEMPSCALE_KERNELS_H

#include "_common.h"

typedef struct {
    const char *name; /* "avx512f", "avx2" or "baseline" (the portable vector code: SSE2 / NEON) */
    /* one contiguous row; returns 1 (nothing reliable written) when the scalar reference must
       redo the row.  scratch: see row_f32 in _kern_impl.h (NULL unless streaming). */
    int (*row_f32)(const float *, float *, ts_intp, double, int, double *, float *);
    int (*row_f64)(const double *, double *, ts_intp, double, int, double *);
    /* a block of brf / brd rows of n entries held transposed (XT[j * BR + r]) */
    void (*block_f32)(const float *, float *, ts_intp, const double *, int, double *, unsigned char *);
    void (*block_f64)(const double *, double *, ts_intp, const double *, int, double *, unsigned char *);
    void (*tr_in_f32)(const char *, ts_intp, ts_intp, float *); /* NULL: scalar transposes */
    void (*tr_out_f32)(const float *, ts_intp, char *, ts_intp);
    int brf, brd; /* rows per narrow block: float32 (VF), float64 (VF / 2) */
    /* AVX-512: softmax of 16 rows of n <= 16 contiguous float32 entirely in registers; NULL
       elsewhere */
    int (*nblock16_sm_f32)(const char *, ts_intp, int, char *, ts_intp, const float *);
    /* one contiguous 16-bit row (x of type T_BF16 / T_F16, o of x's type or T_F32), converted on
       the fly inside the passes; returns 1 as row_f32 does.  scratch: n floats (softmax into a
       16-bit o); last argument: streaming stores of a 16-bit softmax output (AVX-512) */
    int (*row_h16)(const void *, int, void *, int, ts_intp, double, int, double *, float *, int);
    /* a contiguous row of n entries of type T_BF16 / T_F16 / T_F32 <-> float32 */
    void (*cvt_in)(const void *, int, float *, ts_intp);
    void (*cvt_out)(const float *, void *, int, ts_intp);
    /* the backward's row passes (see bw_row in _job.c) for T_F32 / T_BF16 / T_F16 rows */
    void (*bw_sums)(const void *, const void *, ts_intp, int, int, double *, double *, ts_intp *);
    void (*bw_dx)(const void *, const void *, void *, ts_intp, int, int, double, double, int);
#ifdef TS_BENCH_KERNELS
    void (*exp_pass)(const float *, float *, ts_intp, int); /* benchmark: o = exp(x) */
    int stream; /* row_f32 / exp_pass can stream their output (non-temporal stores) */
#endif
} kernels_t;

/* instruction sets this build knows, best first (names as in kernels_t.name) */
extern const char *const ts_isa_names[];
extern const int ts_isa_count;

/* 1 when `name` is compiled in and this CPU runs it ("baseline" always) */
int ts_isa_supported(const char *name);
/* the kernels of a supported instruction set, else NULL */
const kernels_t *ts_isa_kernels(const char *name);
/* the best supported kernels */
const kernels_t *ts_isa_best(void);

/* scalar reference of every contract case; x / o strided in elements */
void ts_ref_f32(const float *x, ts_intp xs, ts_intp n, double T, int kind, float *o, ts_intp os,
                double *lse);
void ts_ref_f64(const double *x, ts_intp xs, ts_intp n, double T, int kind, double *o, ts_intp os,
                double *lse);

#endif /* TEMPSCALE_KERNELS_H */
