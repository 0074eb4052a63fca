/*
 * Running a job (see _job.h): walking the rows, gathering strided / masked / other-dtype rows into
 * the compute type, the wide-row and narrow-block paths, the scalar reference for the rows the
 * vector kernels decline, and the split into tasks for the thread pool.
 *
 *   wide rows (n >= NARROW): one row at a time, K->row_f32 / row_f64 on the row itself when it
 *     is contiguous in the compute type (no mask), else on a gathered copy;
 *   narrow rows (n < NARROW): blocks of K->brf (float32) or K->brd (float64) rows held
 *     transposed and vectorised across rows (AVX-512: 16 / 8 rows, and all-in-register blocks
 *     for contiguous float32 softmax rows of n <= 16).
 */
#include "_job.h"

#include <stdlib.h>

#include "_pool.h"

#define STREAM16_BYTES ((size_t)16 << 20)

#ifdef TS_BENCH_KERNELS
/* outputs at least this large use streaming (non-temporal) stores; off by default: on the
   development VM they measured slower (softmax 9.7 -> 11.7 ms on 512 x 32768) */
static size_t g_stream_bytes = SIZE_MAX;
#endif

static inline void row_ptrs(const job_t *J, ts_intp r, char **px, char **pm, char **pt, char **po) {
    ts_intp ox = 0, om = 0, ot = 0, oo = 0;
    if (J->nd == 1) {
        ox = r * J->sx[0]; om = r * J->sm[0]; ot = r * J->st[0]; oo = r * J->so[0];
    } else {
        for (int d = J->nd - 1; d >= 0; d--) {
            ts_intp i = r % J->shape[d];
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
    if (t == T_BF16) { uint16_t h; memcpy(&h, p, 2); return (double)bf16_to_f32(h); }
#if HAVE_F16
    uint16_t h; memcpy(&h, p, 2); return (double)f16_to_f32(h);
#else
    return NAN;
#endif
}

static inline void store_from_double(char *p, int t, double v) {
    if (t == T_F32) { float f = (float)v; memcpy(p, &f, 4); return; }
    if (t == T_F64) { memcpy(p, &v, 8); return; }
    if (t == T_BF16) { uint16_t h = f32_to_bf16((float)v); memcpy(p, &h, 2); return; }
#if HAVE_F16
    uint16_t h = f64_to_f16(v); memcpy(p, &h, 2); /* one rounding (not double -> float -> half) */
#endif
}

/* one row of x (and mask) -> dst[j * ds], as the compute type */
static void gather_f32(const job_t *J, const char *px, const char *pm, float *dst, ts_intp ds) {
    ts_intp n = J->n;
    if (J->xfast && !pm) {
        const float *x = (const float *)px;
        for (ts_intp j = 0; j < n; j++) dst[j * ds] = x[j];
        return;
    }
    if ((J->xt == T_BF16 || J->xt == T_F16) && J->rx == 2 && J->xaligned && (ds == 1 || n <= NARROW)) {
        /* vectorised per instruction set (narrow rows: through a buffer) */
        float tmp[NARROW];
        float *d = ds == 1 ? dst : tmp;
        J->K->cvt_in(px, J->xt, d, n);
        if (d != dst)
            for (ts_intp j = 0; j < n; j++) dst[j * ds] = tmp[j];
        if (pm)
            for (ts_intp j = 0; j < n; j++)
                if (!pm[j * J->rm]) dst[j * ds] = -INFINITY;
        return;
    }
    if (J->xt == T_BF16 && !pm && J->rx == 2 && J->xaligned) {
        const uint16_t *x = (const uint16_t *)px;
        for (ts_intp j = 0; j < n; j++) dst[j * ds] = bf16_to_f32(x[j]);
        return;
    }
    for (ts_intp j = 0; j < n; j++) {
        float v;
        if (J->xt == T_F32) memcpy(&v, px + j * J->rx, 4);
        else v = (float)load_as_double(px + j * J->rx, J->xt);
        if (pm && !pm[j * J->rm]) v = -INFINITY;
        dst[j * ds] = v;
    }
}

static void gather_f64(const job_t *J, const char *px, const char *pm, double *dst, ts_intp ds) {
    ts_intp n = J->n;
    if (J->xfast && !pm) {
        const double *x = (const double *)px;
        for (ts_intp j = 0; j < n; j++) dst[j * ds] = x[j];
        return;
    }
    for (ts_intp j = 0; j < n; j++) {
        double v;
        memcpy(&v, px + j * J->rx, 8);
        if (pm && !pm[j * J->rm]) v = -INFINITY;
        dst[j * ds] = v;
    }
}

static void scatter_f32(const job_t *J, char *po, const float *src, ts_intp ss) {
    ts_intp n = J->n;
    if (J->ofast) {
        float *o = (float *)po;
        for (ts_intp j = 0; j < n; j++) o[j] = src[j * ss];
        return;
    }
    if ((J->ot == T_BF16 || J->ot == T_F16) && J->ro == 2 && J->oaligned && (ss == 1 || n <= NARROW)) {
        float tmp[NARROW];
        if (ss != 1)
            for (ts_intp j = 0; j < n; j++) tmp[j] = src[j * ss];
        J->K->cvt_out(ss == 1 ? src : tmp, po, J->ot, n);
        return;
    }
    if (J->ot == T_BF16 && J->ro == 2 && J->oaligned) {
        uint16_t *o = (uint16_t *)po;
        for (ts_intp j = 0; j < n; j++) o[j] = f32_to_bf16(src[j * ss]);
        return;
    }
    for (ts_intp j = 0; j < n; j++) {
        if (J->ot == T_F32) memcpy(po + j * J->ro, &src[j * ss], 4);
        else store_from_double(po + j * J->ro, J->ot, src[j * ss]);
    }
}

static void scatter_f64(const job_t *J, char *po, const double *src, ts_intp ss) {
    ts_intp n = J->n;
    if (J->ofast) {
        double *o = (double *)po;
        for (ts_intp j = 0; j < n; j++) o[j] = src[j * ss];
        return;
    }
    for (ts_intp j = 0; j < n; j++) store_from_double(po + j * J->ro, J->ot, src[j * ss]);
}

static void run_wide(job_t *J, ts_intp r0, ts_intp r1) {
    ts_intp n = J->n;
    int f32 = J->ct == T_F32;
    size_t es = f32 ? 4 : 8;
    char *xb = NULL, *ob = NULL;
    float *scratch = NULL; /* see row_f32: only benchmark builds stream */
#ifdef TS_BENCH_KERNELS
    if (J->stream) {
        scratch = malloc(4 * (size_t)n);
        if (!scratch) { __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED); return; }
    }
#endif
    if (J->h16 && J->kind == KIND_SOFTMAX && J->ot != T_F32) {
        scratch = malloc(4 * (size_t)n);
        if (!scratch) { __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED); return; }
    }
    if (!J->contig) {
        xb = malloc(es * (size_t)(n ? n : 1));
        ob = malloc(es * (size_t)(n ? n : 1));
        if (!xb || !ob) {
            free(xb); free(ob); free(scratch);
            __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    for (ts_intp r = r0; r < r1; r++) {
        char *px, *pm, *pt, *po;
        row_ptrs(J, r, &px, &pm, &pt, &po);
        double T = read_T(J, pt), lse = 0.0;
        if (J->h16) {
            /* the kernel reads and writes the 16-bit row itself; a declined row is gathered
               for the scalar reference */
            void *orow = J->kind == KIND_LSE ? NULL : po;
            if (J->K->row_h16(px, J->xt, orow, J->ot, n, T, J->kind, &lse, scratch, J->nt16)) {
                gather_f32(J, px, NULL, (float *)xb, 1);
                ts_ref_f32((float *)xb, 1, n, T, J->kind, (float *)ob, 1, &lse);
                if (J->kind != KIND_LSE) scatter_f32(J, po, (float *)ob, 1);
            }
            if (J->kind == KIND_LSE) store_from_double(po, J->ot, lse);
            continue;
        }
        if (f32) {
            const float *xr;
            float *orow;
            if (J->contig) { xr = (const float *)px; orow = J->kind == KIND_LSE ? NULL : (float *)po; }
            else { gather_f32(J, px, pm, (float *)xb, 1); xr = (float *)xb; orow = (float *)ob; }
            if (J->K->row_f32(xr, orow, n, T, J->kind, &lse, scratch))
                ts_ref_f32(xr, 1, n, T, J->kind, orow, 1, &lse);
            if (J->kind == KIND_LSE) store_from_double(po, J->ot, lse);
            else if (!J->contig) scatter_f32(J, po, orow, 1);
        } else {
            const double *xr;
            double *orow;
            if (J->contig) { xr = (const double *)px; orow = J->kind == KIND_LSE ? NULL : (double *)po; }
            else { gather_f64(J, px, pm, (double *)xb, 1); xr = (double *)xb; orow = (double *)ob; }
            if (J->K->row_f64(xr, orow, n, T, J->kind, &lse)) ts_ref_f64(xr, 1, n, T, J->kind, orow, 1, &lse);
            if (J->kind == KIND_LSE) store_from_double(po, J->ot, lse);
            else if (!J->contig) scatter_f64(J, po, orow, 1);
        }
    }
    free(xb);
    free(ob);
    free(scratch);
}

static void run_narrow(job_t *J, ts_intp r0, ts_intp r1) {
    ts_intp n = J->n;
    int f32 = J->ct == T_F32;
    int BR = f32 ? J->K->brf : J->K->brd;
    size_t es = f32 ? 4 : 8;
    /* blocks of back-to-back 16-bit rows (one outer dim, no mask, scalar T): converted as one
       run of BR * n entries into the float32 buffer XB (and written back from it), then as the
       float32 rows below */
    int h16 = f32 && J->nd == 1 && (J->xt == T_BF16 || J->xt == T_F16) && J->rx == 2 &&
              J->xaligned && J->sx[0] == 2 * n && !J->m && J->tt < 0 &&
              (J->kind == KIND_LSE ||
               (J->ot == J->xt && J->ro == 2 && J->oaligned && J->so[0] == 2 * n));
    char *XT = malloc(es * BR * (size_t)n), *PT = malloc(es * BR * (size_t)n);
    float *XB = h16 ? malloc(4 * BR * (size_t)n) : NULL;
    if (!XT || !PT || (h16 && !XB)) {
        free(XT); free(PT); free(XB);
        __atomic_store_n(&J->err, 1, __ATOMIC_RELAXED);
        return;
    }
    double Tr[16], lse[16];
    unsigned char spec[16];
    char *po_r[16];
    /* one outer dim, contiguous rows of the compute type, no mask, scalar T */
    int fast = (J->nd == 1 && J->xfast && !J->m && J->tt < 0 && (J->kind == KIND_LSE || J->ofast)) || h16;
    /* all-in-registers AVX-512 softmax blocks for n <= 16 */
    double cT = J->T >= TMIN_F32 ? LOG2E / J->T : 0.0;
    int reg16 = fast && f32 && J->kind == KIND_SOFTMAX && J->K->nblock16_sm_f32 && n <= 16 &&
                J->T < INFINITY && cT >= TSUM_LO && cT <= TSUM_HI;
    float cpair[2] = {(float)cT, 0.0f};
    cpair[1] = (float)(cT - (double)cpair[0]);
    for (ts_intp rb = r0; rb < r1; rb += BR) {
        int nr = (int)(r1 - rb < BR ? r1 - rb : BR);
        const char *xb = J->x + rb * J->sx[0];
        ts_intp rs = J->sx[0];
        if (h16 && nr == BR) {
            J->K->cvt_in(xb, J->xt, XB, BR * n);
            xb = (const char *)XB;
            rs = 4 * n;
        }
        if (reg16 && nr == BR) {
            char *ob = h16 ? (char *)XB : J->o + rb * J->so[0];
            if (!J->K->nblock16_sm_f32(xb, rs, (int)n, ob, h16 ? 4 * n : J->so[0], cpair)) {
                if (h16) J->K->cvt_out(XB, J->o + rb * J->so[0], J->ot, BR * n);
                continue;
            }
        }
        if (fast && nr == BR) {
            /* contiguous rows: transpose column by column (sequential writes into XT, so the
               block kernel's vector loads never wait on pending scalar stores) */
            for (int r = 0; r < BR; r++) Tr[r] = J->T;
            if (f32) {
                float *X = (float *)XT;
                if (J->K->tr_in_f32) J->K->tr_in_f32(xb, rs, n, X);
                else
                    for (ts_intp j = 0; j < n; j++)
                        for (int r = 0; r < BR; r++) X[j * BR + r] = ((const float *)(xb + r * rs))[j];
                J->K->block_f32(X, (float *)PT, n, Tr, J->kind, lse, spec);
            } else {
                double *X = (double *)XT;
                for (ts_intp j = 0; j < n; j++)
                    for (int r = 0; r < BR; r++) X[j * BR + r] = ((const double *)(xb + r * rs))[j];
                J->K->block_f64(X, (double *)PT, n, Tr, J->kind, lse, spec);
            }
            int anyspec = 0;
            for (int r = 0; r < BR; r++) anyspec |= spec[r];
            if (!anyspec && J->kind != KIND_LSE) {
                char *ob = h16 ? (char *)XB : J->o + rb * J->so[0];
                ts_intp os = h16 ? 4 * n : J->so[0];
                if (h16) {
                    if (J->K->tr_out_f32) J->K->tr_out_f32((const float *)PT, n, ob, os);
                    else
                        for (ts_intp j = 0; j < n; j++)
                            for (int r = 0; r < BR; r++) XB[r * n + j] = ((const float *)PT)[j * BR + r];
                    J->K->cvt_out(XB, J->o + rb * J->so[0], J->ot, BR * n);
                } else if (f32 && J->K->tr_out_f32) {
                    J->K->tr_out_f32((const float *)PT, n, ob, os);
                } else if (f32) {
                    const float *P = (const float *)PT;
                    for (ts_intp j = 0; j < n; j++)
                        for (int r = 0; r < BR; r++) ((float *)(ob + r * os))[j] = P[j * BR + r];
                } else {
                    const double *P = (const double *)PT;
                    for (ts_intp j = 0; j < n; j++)
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
                for (ts_intp j = 0; j < n; j++) {
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
                if (f32) ts_ref_f32((float *)XT + r, BR, n, Tr[r], J->kind, (float *)PT + r, BR, &lse[r]);
                else ts_ref_f64((double *)XT + r, BR, n, Tr[r], J->kind, (double *)PT + r, BR, &lse[r]);
            }
            if (J->kind == KIND_LSE) store_from_double(po_r[r], J->ot, lse[r]);
            else if (f32) scatter_f32(J, po_r[r], (float *)PT + r, BR);
            else scatter_f64(J, po_r[r], (double *)PT + r, BR);
        }
    }
    free(XT);
    free(PT);
    free(XB);
}

static void job_task(void *ctx, ts_intp task) {
    job_t *J = ctx;
    ts_intp r0 = task * J->rows_per_task;
    ts_intp r1 = r0 + J->rows_per_task;
    if (r1 > J->nrows) r1 = J->nrows;
    if (J->narrow) run_narrow(J, r0, r1);
    else run_wide(J, r0, r1);
}


static const size_t type_size[4] = {2, 4, 8, 2};

void ts_job_init(job_t *J, int kind, int nd, const ts_intp *shape, int axis, const ts_operand *x,
                 const ts_operand *mask, const ts_operand *temp, double T, const ts_operand *out,
                 const kernels_t *K) {
    memset(J, 0, sizeof *J);
    const ts_operand *m = mask && mask->data ? mask : NULL, *t = temp && temp->data ? temp : NULL;
    J->kind = kind;
    J->xt = x->type;
    J->ot = out->type;
    J->ct = J->xt == T_F64 ? T_F64 : T_F32;
    J->tt = t ? t->type : -1;
    J->T = T;
    J->n = shape[axis];
    J->rx = x->strides[axis];
    J->ro = out->strides[axis];
    J->rm = m ? m->strides[axis] : 0;
    J->x = x->data;
    J->o = out->data;
    J->m = m ? m->data : NULL;
    J->t = t ? t->data : NULL;
    /* outer dims (all but axis), coalesced where every array allows it */
    J->nd = 0;
    J->nrows = 1;
    for (int d = 0; d < nd; d++) {
        if (d == axis) continue;
        ts_intp sh = shape[d];
        J->nrows *= sh;
        if (sh == 1) continue;
        ts_intp sx = x->strides[d], so = out->strides[d];
        ts_intp sm = m ? m->strides[d] : 0, st = t ? t->strides[d] : 0;
        int k = J->nd - 1;
        if (k >= 0 && J->sx[k] == sx * sh && J->so[k] == so * sh && J->sm[k] == sm * sh &&
            J->st[k] == st * sh) {
            J->shape[k] *= sh;
            J->sx[k] = sx; J->so[k] = so; J->sm[k] = sm; J->st[k] = st;
        } else {
            J->shape[J->nd] = sh;
            J->sx[J->nd] = sx; J->so[J->nd] = so; J->sm[J->nd] = sm; J->st[J->nd] = st;
            J->nd++;
        }
    }
    if (J->nd == 0) { J->nd = 1; J->shape[0] = 1; J->sx[0] = J->so[0] = J->sm[0] = J->st[0] = 0; }
    size_t cs = type_size[J->ct];
    J->xaligned = x->aligned;
    J->oaligned = out->aligned;
    J->xfast = J->xt == J->ct && J->rx == (ts_intp)cs && x->aligned;
    J->ofast = J->ot == J->ct && J->ro == (ts_intp)cs && out->aligned;
    J->contig = J->xfast && !m && (kind == KIND_LSE || J->ofast);
    J->narrow = J->n < NARROW;
    J->K = K;
    /* wide contiguous 16-bit rows without a mask, into a contiguous output of their own type or
       float32 (logsumexp: any output) */
    J->h16 = !J->narrow && !m && (J->xt == T_BF16 || J->xt == T_F16) && J->rx == 2 && x->aligned &&
             (kind == KIND_LSE ||
              (out->aligned && ((J->ot == J->xt && J->ro == 2) || (J->ot == T_F32 && J->ro == 4))));
    /* streaming stores for 16-bit softmax outputs of at least STREAM16_BYTES in rows of at least
       1024 (measured on AVX-512: 10-25 % faster once the output is far larger than the caches,
       no gain below; float32 outputs gained nothing: they would need an extra scratch pass) */
    J->nt16 = J->h16 && kind == KIND_SOFTMAX && J->ot != T_F32 && J->n >= 1024 &&
              (size_t)J->nrows * (size_t)J->n * 2 >= STREAM16_BYTES;
#ifdef TS_BENCH_KERNELS
    /* large float32 softmax outputs (>= g_stream_bytes) bypass the caches */
    J->stream = K->stream && kind == KIND_SOFTMAX && J->ct == T_F32 && J->contig && !J->narrow &&
                (size_t)J->nrows * (size_t)J->n * 4 >= g_stream_bytes;
#endif
    ts_intp per = J->n > 0 ? J->n : 1;
    ts_intp rpt = (ts_intp)65536 / per;
    if (rpt < 1) rpt = 1;
    if (J->narrow) rpt = (rpt + 15) / 16 * 16; /* a multiple of every block size */
    J->rows_per_task = rpt;
}

int ts_job_run(job_t *J, int nthreads) {
    if (J->nrows == 0) return 0;
    if (J->n == 0) { /* empty rows: logsumexp -inf, nothing to write otherwise */
        if (J->kind == KIND_LSE) {
            for (ts_intp r = 0; r < J->nrows; r++) {
                char *px, *pm, *pt, *po;
                row_ptrs(J, r, &px, &pm, &pt, &po);
                store_from_double(po, J->ot, -INFINITY);
            }
        }
        return 0;
    }
    ts_intp ntasks = (J->nrows + J->rows_per_task - 1) / J->rows_per_task;
    J->err = 0;
    ts_parallel_run(job_task, J, ntasks, nthreads);
    return J->err ? -1 : 0;
}

#ifdef TS_BENCH_KERNELS
size_t ts_set_stream_bytes(size_t n) {
    size_t old = g_stream_bytes;
    g_stream_bytes = n;
    return old;
}

typedef struct { const float *x; float *o; ts_intp n, chunk; const kernels_t *K; int nt; } exp_job_t;

static void exp_task(void *ctx, ts_intp task) {
    exp_job_t *E = ctx;
    ts_intp a = task * E->chunk, b = a + E->chunk;
    if (b > E->n) b = E->n;
    E->K->exp_pass(E->x + a, E->o + a, b - a, E->nt);
}

void ts_exp_pass(const float *x, float *o, ts_intp n, int nthreads, const kernels_t *K) {
    exp_job_t E = {x, o, n, 65536, K, 0};
    E.nt = K->stream && (size_t)n * 4 >= g_stream_bytes; /* same store policy as softmax */
    ts_parallel_run(exp_task, &E, (n + E.chunk - 1) / E.chunk, nthreads);
}
#endif

/* ---------------------------------------------------------------------------------------------
 * backward of softmax / log_softmax (see _job.h): one pass for the row sums, one for dx
 * ------------------------------------------------------------------------------------------- */
#define BW_LANES 8

/* GCC keeps conditional floating-point selects out of vectorised loops unless it may assume
   that floating-point operations do not trap (clang assumes so by default); no effect on the
   values (inf and NaN are kept: this is not -ffast-math) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

static inline double bw_ld(const char *p, ts_intp j, int type) {
    if (type == T_F32) return ((const float *)p)[j];
    if (type == T_F64) return ((const double *)p)[j];
    if (type == T_BF16) return bf16_to_f32(((const uint16_t *)p)[j]);
#if HAVE_F16
    return (double)f16_to_f32(((const uint16_t *)p)[j]);
#else
    return NAN;
#endif
}

static inline void bw_st(char *p, ts_intp j, int type, double v) {
    if (type == T_F32) ((float *)p)[j] = (float)v;
    else if (type == T_F64) ((double *)p)[j] = v;
    else if (type == T_BF16) ((uint16_t *)p)[j] = f32_to_bf16((float)v);
#if HAVE_F16
    else ((uint16_t *)p)[j] = f64_to_f16(v);
#endif
}

static inline float bw_ldf(const char *p, ts_intp j, int type) {
    if (type == T_F32) return ((const float *)p)[j];
    if (type == T_BF16) return bf16_to_f32(((const uint16_t *)p)[j]);
#if HAVE_F16
    if (type == T_F16) return f16_to_f32(((const uint16_t *)p)[j]);
#endif
    return (float)((const double *)p)[j];
}

static inline void bw_stf(char *p, ts_intp j, int type, float v) {
    if (type == T_F32) ((float *)p)[j] = v;
    else if (type == T_BF16) ((uint16_t *)p)[j] = f32_to_bf16(v);
#if HAVE_F16
    else if (type == T_F16) ((uint16_t *)p)[j] = f32_to_f16(v);
#endif
    else ((double *)p)[j] = v;
}

/* whether entry j takes part in the row: not masked, x > -inf (false for NaN too) */
static inline int bw_valid(const bwd_t *B, const char *x, const unsigned char *m, ts_intp j) {
    return (!m || m[j * B->cm]) && bw_ld(x, j, B->type) > -INFINITY;
}

/* one row; `type` is a constant in each caller below, so the loads fold */
static inline __attribute__((always_inline)) void bw_row(const bwd_t *B, ts_intp r, int type) {
    ts_intp n = B->n;
    const char *g = B->g + r * B->rg, *o = B->out + r * B->rout, *x = B->x + r * B->rx;
    char *dx = B->dx + r * B->rdx;
    const unsigned char *m = B->m ? B->m + r * B->rm : NULL;
    double T = B->T;
    if (B->t) {
        const char *pt = B->t + r * B->rt;
        if (B->tt == T_F32) { float v; memcpy(&v, pt, 4); T = v; }
        else memcpy(&T, pt, 8);
    }
    int lsm = B->kind == KIND_LOGSOFTMAX;
    double *dT = B->dT ? B->dT + r : NULL;
    /* pass 1: s = sum g p (softmax) or G = sum of g over finite log p (log_softmax), and the
       largest p (finite log p), in lanes with selects only (so that it vectorises) */
    /* float32 / 16-bit rows: the instruction set's vector passes (K->bw_sums, K->bw_dx) */
    int vec = B->K && type != T_F64;
    double s = 0.0, h = -INFINITY;
    ts_intp nneg = 0, j = 0;
    if (vec) B->K->bw_sums(g, o, n, type, lsm, &s, &h, &nneg);
    else {
        double acc[BW_LANES], hi[BW_LANES];
        ts_intp ninf[BW_LANES];
        for (int l = 0; l < BW_LANES; l++) { acc[l] = 0.0; hi[l] = -INFINITY; ninf[l] = 0; }
        if (!lsm) {
            for (; j + BW_LANES <= n; j += BW_LANES)
                for (int l = 0; l < BW_LANES; l++) {
                    double p = bw_ld(o, j + l, type), gp = bw_ld(g, j + l, type) * p;
                    acc[l] += p != 0.0 ? gp : 0.0;
                    hi[l] = p > hi[l] ? p : hi[l];
                }
        } else {
            for (; j + BW_LANES <= n; j += BW_LANES)
                for (int l = 0; l < BW_LANES; l++) {
                    double lp = bw_ld(o, j + l, type), gv = bw_ld(g, j + l, type);
                    int fin = lp > -INFINITY;
                    acc[l] += fin ? gv : 0.0;
                    ninf[l] += !fin;
                    hi[l] = lp > hi[l] ? lp : hi[l];
                }
        }
        for (; j < n; j++) {
            double v = bw_ld(o, j, type), gv = bw_ld(g, j, type);
            if (!lsm) {
                s += v != 0.0 ? gv * v : 0.0;
            } else if (v > -INFINITY) {
                s += gv;
            } else {
                nneg++;
            }
            if (v > h) h = v;
        }
        for (int l = 0; l < BW_LANES; l++) {
            s += acc[l];
            nneg += ninf[l];
            if (hi[l] > h) h = hi[l];
        }
    }
    /* rows whose gradient is 0 (as the generic path defines them): T = 0 / inf, NaN rows (the
       output is NaN throughout), rows with a +inf maximum: tie-shaped (every output the
       largest one or 0 / -inf; a regular row leaves this scan after a few entries) with a +inf
       entry */
    int special = !(T > 0.0) || T == INFINITY || (n > 0 && bw_ld(o, 0, type) != bw_ld(o, 0, type));
    if (!special && h > (lsm ? -INFINITY : 0.0)) {
        double zero = lsm ? -INFINITY : 0.0;
        int tie = 1;
        for (ts_intp k = 0; k < n && tie; k++) {
            double v = bw_ld(o, k, type);
            tie = v == h || v == zero;
        }
        for (ts_intp k = 0; k < n && tie && !special; k++)
            special = bw_ld(x, k, type) == INFINITY && (!m || m[k * B->cm]);
    }
    if (special) {
        for (ts_intp k = 0; k < n; k++) bw_st(dx, k, type, 0.0);
        if (dT) *dT = 0.0;
        return;
    }
    /* log_softmax: entries whose log p underflowed to -inf but that are not masked keep g */
    if (lsm && nneg)
        for (ts_intp k = 0; k < n; k++)
            if (!(bw_ld(o, k, type) > -INFINITY) && bw_valid(B, x, m, k)) s += bw_ld(g, k, type);
    /* pass 2: dx = p (g - s) / T or (g - p G) / T; 1/T as a double (exact to 1 ulp) unless it
       would overflow */
    int mul = T >= 0x1p-1000;
    double inv = 1.0 / T;
    if (!lsm) {
        if (vec && T >= 0x1p-120 && T <= 0x1p120) {
            B->K->bw_dx(g, o, dx, n, type, 0, s, inv, B->nt);
        } else if (type != T_F64 && T >= 0x1p-120 && T <= 0x1p120) {
            /* float32 lanes for the narrower types (twice the vector width, no conversions to
               double): a few roundings more, within 2 ulp of the double form */
            float sf = (float)s, invf = (float)inv;
            for (j = 0; j < n; j++) {
                float p = bw_ldf(o, j, type), v = p * (bw_ldf(g, j, type) - sf) * invf;
                bw_stf(dx, j, type, p != 0.0f ? v : 0.0f);
            }
        } else if (mul)
            for (j = 0; j < n; j++) {
                double p = bw_ld(o, j, type), v = p * (bw_ld(g, j, type) - s) * inv;
                bw_st(dx, j, type, p != 0.0 ? v : 0.0);
            }
        else
            for (j = 0; j < n; j++) {
                double p = bw_ld(o, j, type), v = p * (bw_ld(g, j, type) - s) / T;
                bw_st(dx, j, type, p != 0.0 ? v : 0.0);
            }
    } else if (!nneg && mul && vec) { /* no -inf output: no masked entry */
        B->K->bw_dx(g, o, dx, n, type, 1, s, inv, 0);
    } else if (mul && vec) {
        /* -inf outputs (masked entries, or log p underflowed): the vector pass over the row, then
           those entries set as the scalar form below sets them */
        B->K->bw_dx(g, o, dx, n, type, 1, s, inv, 0);
        for (j = 0; j < n; j++)
            if (!(bw_ld(o, j, type) > -INFINITY))
                bw_st(dx, j, type, bw_valid(B, x, m, j) ? bw_ld(g, j, type) * inv : 0.0);
    } else if (!nneg && mul) {
        for (j = 0; j < n; j++) {
            double lp = bw_ld(o, j, type), gv = bw_ld(g, j, type);
            bw_st(dx, j, type, (gv - exp(lp) * s) * inv);
        }
    } else {
        for (j = 0; j < n; j++) {
            double lp = bw_ld(o, j, type), gv = bw_ld(g, j, type), d;
            if (lp > -INFINITY) d = gv - exp(lp) * s;
            else d = nneg && bw_valid(B, x, m, j) ? gv : 0.0;
            bw_st(dx, j, type, mul ? d * inv : d / T);
        }
    }
    if (!dT) return;
    /* dL/dT = -sum dx_j (x_j - m) / T over unmasked entries, m their maximum; halved so that
       x - m cannot overflow */
    double mx = -INFINITY;
    for (ts_intp k = 0; k < n; k++)
        if (bw_valid(B, x, m, k)) {
            double v = bw_ld(x, k, type);
            if (v > mx) mx = v;
        }
    double acc_t = 0.0; /* sum dy (x - m) / 2, dy = T dx unrounded */
    for (ts_intp k = 0; k < n; k++)
        if (bw_valid(B, x, m, k)) {
            double o_k = bw_ld(o, k, type), gv = bw_ld(g, k, type), d;
            if (!lsm) d = o_k != 0.0 ? o_k * (gv - s) : 0.0;
            else d = o_k > -INFINITY ? gv - exp(o_k) * s : gv;
            if (d != 0.0) acc_t += d * (0.5 * bw_ld(x, k, type) - 0.5 * mx);
        }
    *dT = mul ? -(acc_t * inv) * inv * 2.0 : -(acc_t / T / T) * 2.0;
}

static void bw_task(void *ctx, ts_intp task) {
    const bwd_t *B = ctx;
    ts_intp r0 = task * B->rows_per_task, r1 = r0 + B->rows_per_task;
    if (r1 > B->nrows) r1 = B->nrows;
    for (ts_intp r = r0; r < r1; r++) {
        switch (B->type) {
            case T_F32: bw_row(B, r, T_F32); break;
            case T_F64: bw_row(B, r, T_F64); break;
            case T_BF16: bw_row(B, r, T_BF16); break;
#if HAVE_F16
            case T_F16: bw_row(B, r, T_F16); break;
#endif
            default: break;
        }
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

void ts_backward_run(bwd_t *B, int nthreads) {
    if (B->nrows <= 0) return;
    /* as the forward's 16-bit softmax outputs (STREAM16_BYTES) */
    B->nt = (B->type == T_BF16 || B->type == T_F16) && B->kind == KIND_SOFTMAX && B->n >= 1024 &&
            B->rdx == 2 * B->n && (size_t)B->nrows * (size_t)B->n * 2 >= STREAM16_BYTES;
    ts_intp per = B->n > 0 ? B->n : 1;
    B->rows_per_task = (ts_intp)65536 / per;
    if (B->rows_per_task < 1) B->rows_per_task = 1;
    ts_intp ntasks = (B->nrows + B->rows_per_task - 1) / B->rows_per_task;
    ts_parallel_run(bw_task, B, ntasks, nthreads);
}
