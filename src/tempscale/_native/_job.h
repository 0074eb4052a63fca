/*
 * A job: one operation (softmax / log_softmax / logsumexp) over the rows of an N-d strided array
 * along one axis, with optional mask and per-row temperatures, split into tasks of whole rows
 * run on the thread pool.  Arrays are plain (pointer, element type, byte strides) descriptions,
 * so the job needs neither Python nor NumPy: _parse.c fills one from Python arguments, the C
 * test harness (tests/c/) directly.
 */
#ifndef TEMPSCALE_JOB_H
#define TEMPSCALE_JOB_H

#include "_kernels.h"

#define TS_MAXDIMS 64 /* NumPy 2's NPY_MAXDIMS */

/* one array argument: its elements are at data + sum(i[d] * strides[d]) for index i of x */
typedef struct {
    char *data;             /* NULL: absent (no mask, a scalar temperature) */
    int type;               /* T_F16 / T_F32 / T_F64 / T_BF16; the mask: one byte per entry, 0 = masked */
    const ts_intp *strides; /* bytes, one per dimension of x (0 along broadcast dimensions) */
    int aligned;            /* data and strides are multiples of the element size */
} ts_operand;

typedef struct {
    int kind, xt, ot, ct, tt; /* operation; x, out, compute and T-array types (tt -1: scalar) */
    double T;                 /* the scalar temperature (tt == -1) */
    ts_intp n, nrows;         /* row length, number of rows */
    int nd;                   /* outer dimensions (all but the axis, coalesced), >= 1 */
    ts_intp shape[TS_MAXDIMS];
    ts_intp sx[TS_MAXDIMS], sm[TS_MAXDIMS], st[TS_MAXDIMS], so[TS_MAXDIMS];
    ts_intp rx, rm, ro; /* strides along the row, bytes */
    char *x, *m, *t, *o;
    int contig, narrow, xfast, ofast, xaligned, oaligned;
    int h16; /* wide 16-bit rows converted inside the kernel passes (K->row_h16) */
    int nt16; /* ... writing a large 16-bit softmax output with streaming stores */
    ts_intp rows_per_task;
    const kernels_t *K;
    int err; /* set (atomically) when a task could not allocate its buffers */
#ifdef TS_BENCH_KERNELS
    int stream;
#endif
} job_t;

/* Describe `kind` over x (nd dims of `shape`, rows along `axis`) into J.  The caller has checked
   the arguments: 0 <= axis < nd <= TS_MAXDIMS; x float16/32/64 or bfloat16; out of x's shape with the
   compute type's precision or less (float64 x: float64 out; logsumexp: stride 0 along axis);
   temp float32/float64 (stride 0 along axis) or absent with T >= 0 (NaN / negative T, or such
   entries in temp, give NaN rows). */
void ts_job_init(job_t *J, int kind, int nd, const ts_intp *shape, int axis, const ts_operand *x,
                 const ts_operand *mask, const ts_operand *temp, double T, const ts_operand *out,
                 const kernels_t *K);

/* Run J on up to nthreads threads (<= 0: tempscale_get_num_threads()).  Returns 0, or -1 when
   a buffer could not be allocated (the output is then incomplete). */
int ts_job_run(job_t *J, int nthreads);

/* The backward of softmax / log_softmax over the rows of 2-D (nrows, n) arrays whose entries
   are contiguous within a row: g (incoming gradient), out (the forward's output), x (its input)
   and dx (written) share one storage type (T_F16 / T_F32 / T_F64 / T_BF16), computed in double.
   softmax: dx = p (g - sum g p) / T; log_softmax: dx = (g - p sum' g) / T, sum' over unmasked
   entries, 0 at masked ones.  Rows at T = 0 / inf, NaN rows and rows with a +inf maximum get 0.
   With dT, also dL/dT per row (-sum dx (x - max) / T over unmasked entries). */
typedef struct {
    int kind, type;         /* KIND_SOFTMAX / KIND_LOGSOFTMAX; storage type */
    ts_intp n, nrows;
    const char *g, *out, *x;
    char *dx;
    ts_intp rg, rout, rx, rdx;      /* row strides, bytes */
    const unsigned char *m;         /* mask (1 = keep) or NULL */
    ts_intp rm, cm;                 /* its row / entry strides, bytes */
    double T;                       /* scalar temperature (t == NULL) */
    const char *t;                  /* per-row temperatures (tt T_F32 / T_F64, row stride rt) */
    int tt;
    ts_intp rt;
    double *dT;                     /* per-row dL/dT (contiguous) or NULL */
    ts_intp rows_per_task;
    const kernels_t *K;             /* vector row passes (float32 / 16-bit rows); NULL: scalar */
    int nt;                         /* set by ts_backward_run: streaming stores of a large 16-bit dx */
} bwd_t;

void ts_backward_run(bwd_t *B, int nthreads);

#ifdef TS_BENCH_KERNELS
/* benchmark builds only: outputs of at least this many bytes use streaming stores (off by
   default: SIZE_MAX); returns the previous threshold */
size_t ts_set_stream_bytes(size_t n);
/* o = exp(x), float32, contiguous (the benchmark's one-read-one-write limit) */
void ts_exp_pass(const float *x, float *o, ts_intp n, int nthreads, const kernels_t *K);
#endif

#endif /* TEMPSCALE_JOB_H */
