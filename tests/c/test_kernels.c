/*
 * Standalone test of tempscale's compiled kernels, without Python: softmax, log_softmax and
 * logsumexp on float16 (where the compiler has _Float16), bfloat16, float32 and float64, checked against a
 * long-double reference of the numerical contract on rows of every kind (plain, ties, masked
 * -inf, all masked, +inf, NaN, +-max of the dtype, one entry left, a wide spread), every class of
 * temperature (0, 1e-300, 1e-30, 0.5, 1, 2, 1e30, inf, and per-row temperatures including NaN and
 * negative ones, which give NaN rows), narrow and wide rows (the transposed-block and the row
 * kernels), contiguous / masked / other-axis layouts, single- and multi-threaded, on every
 * instruction set this CPU runs (selected as the Python module's set_isa does).
 *
 * Build (from the repository root; .ci/cross.sh and .ci/sanitize.sh do this):
 *   cc -O2 -std=gnu11 -Isrc/tempscale/_native tests/c/test_kernels.c \
 *      src/tempscale/_native/{_dispatch,_reference,_job,_pool}.c -lm -pthread -o test_kernels
 *   ./test_kernels [--isa NAME] [--quiet]
 * Prints one summary line "N passed, M failed (...)" and exits non-zero on any failure.
 */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_job.h"
#include "_pool.h"

/* ---------------------------------------------------------------------------------------------
 * rows of every contract kind
 * ------------------------------------------------------------------------------------------- */
enum { P_PLAIN, P_TIES, P_MASKED, P_ALLMASKED, P_PINF, P_NAN, P_MAX, P_ONELEFT, P_SPREAD, NPAT };
static const char *const PAT_NAME[NPAT] = {"plain", "ties",   "masked",   "all-masked", "+inf",
                                           "nan",   "+-max", "one-left", "spread"};

/* temperatures of the scalar runs; the per-row runs add NaN and -1 (NaN rows) */
static const double TEMPS[] = {0.0, 1e-300, 1e-30, 0.5, 1.0, 2.0, 1e30, INFINITY, NAN, -1.0};
#define NT_SCALAR 8
#define NT_ROW 10

static const int WIDTHS[] = {1, 7, 47, 48, 300}; /* narrow (< 48) and wide rows */
#define NW ((int)(sizeof WIDTHS / sizeof WIDTHS[0]))

static const int TYPE_SIZE[4] = {2, 4, 8, 2};
static const char *const TYPE_NAME[4] = {"float16", "float32", "float64", "bfloat16"};

static double unit(int pat, int j) { /* a fixed pseudo-random value in [-4, 4) */
    uint32_t h = (uint32_t)(j + 1) * 2654435761u ^ (uint32_t)(pat + 7) * 40503u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return (double)(h % 65536u) / 8192.0 - 4.0;
}

static double type_max(int type) {
    return type == T_F16 ? 65504.0 : type == T_F32 ? (double)FLT_MAX
         : type == T_BF16 ? 0x1.fep127 : DBL_MAX;
}

/* v rounded to `type` (exact for NaN / inf) */
static double round_to(int type, double v) {
#if HAVE_F16
    if (type == T_F16) return (double)(f16_t)v;
#endif
    if (type == T_F32) return (double)(float)v;
    if (type == T_BF16) return (double)bf16_to_f32(f32_to_bf16((float)v));
    return v;
}

static double pattern_value(int pat, int j, int n, int type) {
    double u = unit(pat, j), big = type_max(type);
    switch (pat) {
        case P_TIES: return j % 3 == 0 ? 5.0 : u;
        case P_MASKED: return j % 3 == 1 ? -INFINITY : u;
        case P_ALLMASKED: return -INFINITY;
        case P_PINF: return j % 4 == 2 ? INFINITY : u;
        case P_NAN: return j == n / 2 ? NAN : u;
        case P_MAX: return j % 3 == 0 ? big : j % 3 == 1 ? -big : u;
        case P_ONELEFT: return j == n - 1 ? u : -INFINITY;
        case P_SPREAD: return u * 2000.0;
        default: return u;
    }
}

static int mask_on(int j) { return j % 5 != 4; } /* the masked layout drops every fifth entry */

/* ---------------------------------------------------------------------------------------------
 * the reference: long double, every contract case spelled out
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int done;
    double *p, *lp, lse; /* softmax, log_softmax (n each), logsumexp */
} ref_t;

static void reference(const double *x, int n, double T, double *p, double *lp, double *lse) {
    int nan = !(T >= 0.0);
    long double m = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] != x[j]) nan = 1;
        else if (x[j] > m) m = x[j];
    }
    if (nan) {
        for (int j = 0; j < n; j++) p[j] = lp[j] = NAN;
        *lse = NAN;
        return;
    }
    if (m == -INFINITY) { /* nothing unmasked */
        for (int j = 0; j < n; j++) { p[j] = 0.0; lp[j] = -INFINITY; }
        *lse = -INFINITY;
        return;
    }
    if (m == INFINITY || T == 0.0 || T == INFINITY) { /* ties of the maxima, or uniform */
        int tie = m == INFINITY || T == 0.0, cnt = 0;
        for (int j = 0; j < n; j++) cnt += tie ? x[j] == m : x[j] > -INFINITY;
        for (int j = 0; j < n; j++) {
            int on = tie ? x[j] == m : x[j] > -INFINITY;
            p[j] = on ? (double)(1.0L / cnt) : 0.0;
            lp[j] = on ? (double)-logl((long double)cnt) : -INFINITY;
        }
        *lse = tie || cnt == 1 ? (double)m : INFINITY;
        return;
    }
    long double k = 0, rest = 0, Tl = T;
    for (int j = 0; j < n; j++) {
        if (x[j] == m) k += 1;
        else rest += expl(((long double)x[j] - m) / Tl);
    }
    /* log s = log k + log1p(rest / k): log(s) alone would round 1 + 1e-40 to 1 */
    long double ls = logl(k) + log1pl(rest / k), s = k + rest;
    for (int j = 0; j < n; j++) {
        long double y = ((long double)x[j] - m) / Tl;
        p[j] = (double)(expl(y) / s);
        lp[j] = (double)(y - ls);
    }
    *lse = (double)(m + Tl * ls);
}

/* cache: [input type][masked][width][pattern][temperature] */
static ref_t REFS[4][2][NW][NPAT][NT_ROW];

static const ref_t *get_ref(int xt, int masked, int wi, int pat, int ti) {
    ref_t *r = &REFS[xt][masked][wi][pat][ti];
    if (!r->done) {
        int n = WIDTHS[wi];
        double *x = malloc(sizeof(double) * (size_t)n);
        r->p = malloc(sizeof(double) * (size_t)n);
        r->lp = malloc(sizeof(double) * (size_t)n);
        if (!x || !r->p || !r->lp) { fprintf(stderr, "out of memory\n"); exit(2); }
        for (int j = 0; j < n; j++) {
            x[j] = round_to(xt, pattern_value(pat, j, n, xt));
            if (masked && !mask_on(j)) x[j] = -INFINITY;
        }
        reference(x, n, TEMPS[ti], r->p, r->lp, &r->lse);
        free(x);
        r->done = 1;
    }
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * checking one value
 * ------------------------------------------------------------------------------------------- */
static long long n_pass = 0, n_fail = 0;
static int quiet = 0;

static double load(const char *p, int type) {
#if HAVE_F16
    if (type == T_F16) { f16_t h; memcpy(&h, p, 2); return (double)h; }
#endif
    if (type == T_F32) { float f; memcpy(&f, p, 4); return f; }
    if (type == T_BF16) { uint16_t h; memcpy(&h, p, 2); return (double)bf16_to_f32(h); }
    double d; memcpy(&d, p, 8); return d;
}

static void store(char *p, int type, double v) {
#if HAVE_F16
    if (type == T_F16) { f16_t h = (f16_t)v; memcpy(p, &h, 2); return; }
#endif
    if (type == T_F32) { float f = (float)v; memcpy(p, &f, 4); return; }
    if (type == T_BF16) { uint16_t h = f32_to_bf16((float)v); memcpy(p, &h, 2); return; }
    memcpy(p, &v, 8);
}

/* the spacing of `type` at |r| (r finite) */
static double ulp_of(int type, double r) {
    int prec = type == T_F16 ? 10 : type == T_F32 ? 23 : type == T_BF16 ? 7 : 52;
    double tiny = type == T_F16 ? 0x1p-24 : type == T_F32 ? 0x1p-149 : type == T_BF16 ? 0x1p-133
                : 0x1p-1074;
    int e;
    if (r == 0.0) return tiny;
    frexp(fabs(r), &e);
    double u = ldexp(1.0, e - 1 - prec);
    return u > tiny ? u : tiny;
}

/* measured maxima plus headroom, in ulps of the output type (tests/test_native_hardening.py) */
static double ulp_bound(int type) {
    return type == T_F16 || type == T_BF16 ? 1.0 : type == T_F32 ? 4.0 : 8.0;
}

/* got (of type ot) against the exact ref: same NaN / inf, exact zero where ref is 0 (up to the
   smallest subnormal: a value just under half of it may round up after two roundings), else
   within ulp_bound(ot) ulps of ref rounded to ot */
static int close_enough(double got, double ref, int ot) {
    if (ref != ref) return got != got;
    if (got != got) return 0;
    double rt = round_to(ot, ref);
    if (isinf(rt)) return got == rt;
    if (ref == 0.0) return fabs(got) <= ulp_of(ot, 0.0);
    return fabs(got - rt) <= ulp_bound(ot) * ulp_of(ot, rt);
}

static void fail(const char *what, const char *isa, int xt, int ot, int kind, int n, int pat,
                 double T, int threads, ts_intp row, ts_intp j, double got, double ref) {
    n_fail++;
    if (n_fail <= 25 && !quiet)
        fprintf(stderr, "FAIL %s isa=%s %s->%s kind=%d n=%d row=%s T=%g threads=%d r=%ld j=%ld: "
                "got %.17g want %.17g\n", what, isa, TYPE_NAME[xt], TYPE_NAME[ot], kind, n,
                PAT_NAME[pat], T, threads, (long)row, (long)j, got, ref);
}

/* ---------------------------------------------------------------------------------------------
 * one run: R rows of width n in a layout, through ts_job_init / ts_job_run
 * ------------------------------------------------------------------------------------------- */
enum { L_ROWS, L_MASKED, L_COLUMNS, NLAYOUT }; /* row-major; + bool mask; rows along axis 0 */
static const char *const LAYOUT_NAME[NLAYOUT] = {"rows", "masked", "columns"};

/* row r: pattern r % NPAT; with per-row T, temperature index (r / NPAT) % NT_ROW */
static void run_case(const kernels_t *K, int xt, int ot, int kind, int wi, int layout, int ti,
                     int t_type, ts_intp R, int threads) {
    int n = WIDTHS[wi];
    int per_row = ti < 0;
    size_t xs = (size_t)TYPE_SIZE[xt], os = (size_t)TYPE_SIZE[ot];
    char *x = malloc(xs * (size_t)R * (size_t)n);
    char *o = malloc(os * (size_t)R * (size_t)n);
    unsigned char *mk = layout == L_MASKED ? malloc((size_t)R * (size_t)n) : NULL;
    char *Tarr = per_row ? malloc((size_t)R * 8) : NULL;
    if (!x || !o || (layout == L_MASKED && !mk) || (per_row && !Tarr)) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    /* element (r, j) sits at r * s_r + j * s_j (bytes); axis = the dimension of j */
    int cols = layout == L_COLUMNS;
    ts_intp xsr = cols ? (ts_intp)xs : (ts_intp)(xs * (size_t)n), xsj = cols ? (ts_intp)(xs * (size_t)R) : (ts_intp)xs;
    ts_intp osr = cols ? (ts_intp)os : (ts_intp)(os * (size_t)n), osj = cols ? (ts_intp)(os * (size_t)R) : (ts_intp)os;
    if (kind == KIND_LSE) { osr = (ts_intp)os; osj = 0; }
    for (ts_intp r = 0; r < R; r++) {
        for (int j = 0; j < n; j++) {
            store(x + r * xsr + j * xsj, xt, pattern_value((int)(r % NPAT), j, n, xt));
            if (mk) mk[r * n + j] = (unsigned char)mask_on(j);
        }
        if (per_row) {
            double T = TEMPS[(r / NPAT) % NT_ROW];
            if (t_type == T_F32) { float f = (float)T; memcpy(Tarr + r * 4, &f, 4); }
            else memcpy(Tarr + r * 8, &T, 8);
        }
    }
    memset(o, 0x7f, os * (size_t)R * (size_t)n); /* garbage: every output must be written */
    int axis = cols ? 0 : 1;
    ts_intp shape[2] = {cols ? n : R, cols ? R : n};
    ts_intp xstr[2] = {cols ? xsj : xsr, cols ? xsr : xsj};
    ts_intp ostr[2] = {cols ? osj : osr, cols ? osr : osj};
    ts_intp mstr[2] = {n, 1};
    ts_intp tstr[2] = {cols ? 0 : TYPE_SIZE[t_type], cols ? TYPE_SIZE[t_type] : 0};
    ts_operand xop = {x, xt, xstr, 1}, oop = {o, ot, ostr, 1};
    ts_operand mop = {(char *)mk, 0, mstr, 1}, top = {Tarr, t_type, tstr, 1};
    job_t J;
    double Ts = per_row ? 1.0 : TEMPS[ti];
    ts_job_init(&J, kind, 2, shape, axis, &xop, &mop, &top, Ts, &oop, K);
    if (ts_job_run(&J, threads) != 0) {
        fprintf(stderr, "ts_job_run: out of memory\n");
        exit(2);
    }
    /* check every row against its reference */
    for (ts_intp r = 0; r < R; r++) {
        int pat = (int)(r % NPAT), tj = per_row ? (int)((r / NPAT) % NT_ROW) : ti;
        double Tr = TEMPS[tj];
        if (per_row && t_type == T_F32) Tr = (double)(float)Tr;
        /* float32 temperature arrays: only the temperatures float32 holds exactly are checked
           (the others are the float64 runs' job) */
        if (per_row && t_type == T_F32 && Tr != TEMPS[tj] && Tr == Tr) continue;
        const ref_t *ref = get_ref(xt, layout == L_MASKED, wi, pat, tj);
        int ok = 1;
        if (kind == KIND_LSE) {
            double got = load(o + r * osr, ot);
            if (!close_enough(got, ref->lse, ot)) {
                fail(LAYOUT_NAME[layout], K->name, xt, ot, kind, n, pat, Tr, threads, r, -1, got, ref->lse);
                ok = 0;
            }
        } else {
            const double *want = kind == KIND_SOFTMAX ? ref->p : ref->lp;
            for (int j = 0; j < n && ok; j++) {
                double got = load(o + r * osr + j * osj, ot);
                if (!close_enough(got, want[j], ot)) {
                    fail(LAYOUT_NAME[layout], K->name, xt, ot, kind, n, pat, Tr, threads, r, j, got, want[j]);
                    ok = 0;
                }
            }
        }
        n_pass += ok;
    }
    free(x);
    free(o);
    free(mk);
    free(Tarr);
}

/* empty rows and no rows: logsumexp of nothing is -inf, nothing else is written */
static void run_empty(const kernels_t *K) {
    double x[1] = {0}, out[3] = {7, 7, 7};
    ts_intp shape[2] = {3, 0}, xstr[2] = {0, 8}, ostr[2] = {8, 0};
    ts_operand xop = {(char *)x, T_F64, xstr, 1}, oop = {(char *)out, T_F64, ostr, 1};
    job_t J;
    ts_job_init(&J, KIND_LSE, 2, shape, 1, &xop, NULL, NULL, 1.0, &oop, K);
    int ok = ts_job_run(&J, 2) == 0 && out[0] == -INFINITY && out[1] == -INFINITY && out[2] == -INFINITY;
    ts_intp shape0[2] = {0, 5};
    ts_job_init(&J, KIND_SOFTMAX, 2, shape0, 1, &xop, NULL, NULL, 1.0, &oop, K);
    ok = ok && ts_job_run(&J, 2) == 0;
    if (ok) n_pass++;
    else {
        n_fail++;
        fprintf(stderr, "FAIL empty rows isa=%s: logsumexp %g %g %g\n", K->name, out[0], out[1], out[2]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * the backward kernel (ts_backward_run): softmax / log_softmax gradients against a long-double
 * evaluation of the same formula on the stored forward output, contract rows giving 0
 * ------------------------------------------------------------------------------------------- */
static void run_backward(const kernels_t *K, int type) {
    enum { R = 6 };
    static const int NS[] = {5, 300};
    for (int ni = 0; ni < 2; ni++)
        for (int kind = 0; kind < 2; kind++)
            for (int ti = 0; ti < 3; ti++) {
                int n = NS[ni];
                double T = ti == 0 ? 0.5 : ti == 1 ? 3.0 : 0.0;
                size_t es = (size_t)TYPE_SIZE[type], sz = es * R * (size_t)n;
                char *x = malloc(sz), *o = malloc(sz), *g = malloc(sz), *dx = malloc(sz);
                double dT[R];
                if (!x || !o || !g || !dx) { fprintf(stderr, "out of memory\n"); exit(2); }
                /* rows: plain, masked entries, +inf, NaN, all masked, ties */
                for (int r = 0; r < R; r++)
                    for (int j = 0; j < n; j++) {
                        double v = unit(r, j);
                        if (r == 1 && j % 3 == 1) v = -INFINITY;
                        if (r == 2 && j == n / 2) v = INFINITY;
                        if (r == 3 && j == 1) v = NAN;
                        if (r == 4) v = -INFINITY;
                        if (r == 5) v = j % 2 ? 1.0 : -1.0;
                        store(x + ((size_t)r * n + j) * es, type, v);
                        store(g + ((size_t)r * n + j) * es, type, unit(r + 7, j));
                    }
                ts_intp shape[2] = {R, n}, st[2] = {(ts_intp)es * n, (ts_intp)es};
                ts_operand xop = {x, type, st, 1}, oop = {o, type, st, 1};
                job_t J;
                ts_job_init(&J, kind, 2, shape, 1, &xop, NULL, NULL, T, &oop, K);
                if (ts_job_run(&J, 1)) { fprintf(stderr, "out of memory\n"); exit(2); }
                bwd_t B;
                memset(&B, 0, sizeof B);
                B.kind = kind; B.type = type; B.n = n; B.nrows = R;
                B.g = g; B.out = o; B.x = x; B.dx = dx;
                B.rg = B.rout = B.rx = B.rdx = st[0];
                B.T = T;
                B.dT = dT;
                B.K = K;
                ts_backward_run(&B, 2);
                for (int r = 0; r < R; r++) {
                    int zero = T == 0.0 || r == 2 || r == 3 || r == 4;
                    long double s = 0.0L, dTw = 0.0L, mx = -INFINITY;
                    for (int j = 0; j < n; j++) {
                        long double ov = load(o + ((size_t)r * n + j) * es, type);
                        long double gv = load(g + ((size_t)r * n + j) * es, type);
                        long double xv = load(x + ((size_t)r * n + j) * es, type);
                        if (kind == KIND_SOFTMAX) s += gv * ov;
                        else if (xv > -INFINITY) s += gv;
                        if (xv > mx) mx = xv;
                    }
                    int ok = 1;
                    for (int j = 0; j < n && ok; j++) {
                        long double ov = load(o + ((size_t)r * n + j) * es, type);
                        long double gv = load(g + ((size_t)r * n + j) * es, type);
                        long double xv = load(x + ((size_t)r * n + j) * es, type);
                        long double want = 0.0L;
                        if (!zero && xv > -INFINITY)
                            want = (kind == KIND_SOFTMAX ? ov * (gv - s) : gv - expl(ov) * s) / T;
                        if (!zero && xv > -INFINITY) dTw -= want * (xv - mx) / T;
                        double got = load(dx + ((size_t)r * n + j) * es, type);
                        /* a few ulps of the output type on the scale of the row */
                        double tol = 8.0 * ulp_of(type, 1.0) * (1.0 + fabs((double)want)) * 4.0;
                        if (!(fabs(got - (double)want) <= tol)) {
                            fail("backward", K->name, type, type, kind, n, r, T, 2, r, j, got, (double)want);
                            ok = 0;
                        }
                    }
                    double tolT = 1e-3 * (1.0 + fabs((double)dTw));
                    if (ok && !(fabs(dT[r] - (double)dTw) <= (type == T_F64 ? 1e-9 : tolT))) {
                        fail("backward dT", K->name, type, type, kind, n, r, T, 2, r, -1, dT[r], (double)dTw);
                        ok = 0;
                    }
                    n_pass += ok;
                }
                free(x); free(o); free(g); free(dx);
            }
}

/* ---------------------------------------------------------------------------------------------
 * the vector 16-bit conversions of each instruction set (K->cvt_in / cvt_out, used by the
 * kernels' passes and the job's gathers / scatters) against the scalar ones: every bfloat16 and
 * float16 bit pattern in, and float32 patterns out (NaN payloads, ties, overflow, subnormals,
 * and pseudo-random ones), at several lengths (vector tails)
 * ------------------------------------------------------------------------------------------- */
static void run_convert(const kernels_t *K) {
    enum { N = 65536 };
    uint16_t *h = malloc(2 * N), *h2 = malloc(2 * N);
    float *f = malloc(4 * N);
    if (!h || !h2 || !f) { fprintf(stderr, "out of memory\n"); exit(2); }
    for (int type = 0; type < 4; type++) {
        if (type == T_F32 || type == T_F64 || (!HAVE_F16 && type == T_F16)) continue;
        int ok = 1;
        /* in: every 16-bit pattern */
        for (int i = 0; i < N; i++) h[i] = (uint16_t)i;
        for (int len = N; len >= N - 17 && ok; len -= 3) {
            memset(f, 0, 4 * N);
            K->cvt_in(h, type, f, len);
            for (int i = 0; i < len && ok; i++) {
                float want = (float)load((const char *)&h[i], type), got = f[i];
                int same = (want != want) ? got != got : memcmp(&got, &want, 4) == 0;
                if (!same) {
                    fprintf(stderr, "FAIL cvt_in %s %s pattern 0x%04x: %a, want %a\n", K->name,
                            TYPE_NAME[type], i, (double)got, (double)want);
                    ok = 0;
                }
            }
        }
        /* out: special float32 patterns, then pseudo-random ones */
        static const uint32_t SPECIAL[] = {
            0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x00008000u, 0x3f808000u,
            0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf818000u, 0x7f7fffffu, 0xff7fffffu,
            0x7f7f8000u, 0x7f800000u, 0xff800000u, 0x7f800001u, 0xff800001u, 0x7fc00000u,
            0x7f810000u, 0xffffffffu, 0x7fbfffffu, 0x33800000u, 0x33000000u, 0x33000001u,
            0x387fc000u, 0x38800000u, 0x477fe000u, 0x477ff000u, 0x477fefffu, 0x47800000u,
            0x387ff000u, 0x3a001000u, 0x3a003000u, 0x3f801000u, 0x3f803000u, 0x3f802fffu};
        const int ns = (int)(sizeof SPECIAL / sizeof SPECIAL[0]);
        uint32_t st = 12345u;
        for (int i = 0; i < N; i++) {
            uint32_t u;
            if (i < ns) u = SPECIAL[i];
            else {
                st = st * 1664525u + 1013904223u;
                u = st ^ (st >> 7);
                if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u;        /* bfloat16 ties */
                if (i % 4 == 2) u = (u & 0x8fffe000u) | 0x38000000u;    /* float16 range, ties */
            }
            memcpy(&f[i], &u, 4);
        }
        for (int len = N; len >= N - 17 && ok; len -= 3) {
            memset(h2, 0xA5, 2 * N);
            K->cvt_out(f, h2, type, len);
            for (int i = 0; i < N && ok; i++) {
                uint16_t want;
                if (i >= len) want = 0xA5A5;
                else if (type == T_BF16) want = f32_to_bf16(f[i]);
                else {
#if HAVE_F16
                    f16_t w = (f16_t)f[i];
                    memcpy(&want, &w, 2);
#else
                    want = 0;
#endif
                }
                int nanw = type == T_BF16 ? (want & 0x7fff) > 0x7f80 : (want & 0x7fff) > 0x7c00;
                int nang = type == T_BF16 ? (h2[i] & 0x7fff) > 0x7f80 : (h2[i] & 0x7fff) > 0x7c00;
                /* NaN: a NaN of the same sign (the payload's top bits may differ by compiler) */
                int same = i < len && nanw ? nang && (h2[i] >> 15) == (want >> 15) : h2[i] == want;
                if (i < len && type == T_BF16 && nanw) same = h2[i] == want;
                if (!same) {
                    uint32_t u;
                    memcpy(&u, &f[i], 4);
                    fprintf(stderr, "FAIL cvt_out %s %s len %d float 0x%08x: 0x%04x, want 0x%04x\n",
                            K->name, TYPE_NAME[type], len, u, h2[i], want);
                    ok = 0;
                }
            }
        }
        if (ok) n_pass++;
        else n_fail++;
    }
    free(h);
    free(h2);
    free(f);
}

/* The scalar float16 conversions of _common.h (f16_to_f32, f32_to_f16, f64_to_f16), every float16
   bit pattern and every float16 rounding boundary (the midpoints between neighbours, 1 ulp either
   side, in float and double), against an independent reference (ldexp / the float16 value grid)
   and, where the compiler has _Float16, against its conversions bit for bit. */
static double h_value(uint16_t h) { /* the exact value of a finite float16 */
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp((double)m, -24) : ldexp((double)(1024 + m), e - 25);
    return (h & 0x8000) ? -v : v;
}
static uint16_t h_round(double v) { /* nearest float16, ties to even, of a non-NaN double */
    uint16_t s = signbit(v) ? 0x8000 : 0;
    double a = fabs(v);
    if (a >= 65520.0) return s | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff; /* largest float16 <= a by bisection over the ordered bits */
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (h_value(mid) <= a) lo = mid; else hi = (uint16_t)(mid - 1);
    }
    if (lo == 0x7bff) return s | (a - 65504.0 < 65536.0 - a ? lo : 0x7c00); /* a < 65520 */
    double d0 = a - h_value(lo), d1 = h_value((uint16_t)(lo + 1)) - a;
    return s | (d0 < d1 || (d0 == d1 && !(lo & 1)) ? lo : (uint16_t)(lo + 1));
}
static void check_half(const char *what, double v, uint16_t got, uint16_t want) {
    if (got == want) { n_pass++; return; }
    n_fail++;
    if (!quiet) fprintf(stderr, "FAIL %s(%a): %04x, expected %04x\n", what, v, got, want);
}
static void run_half_conversions(void) {
    for (uint32_t b = 0; b < 65536; b++) {
        uint16_t h = (uint16_t)b;
        float f = f16_to_f32(h);
        int e = (h >> 10) & 31, m = h & 1023;
        uint32_t fu, want;
        memcpy(&fu, &f, 4);
        if (e == 31) /* inf, or a NaN with the quiet bit set and the payload kept */
            want = ((uint32_t)(h & 0x8000) << 16) | 0x7f800000u | (uint32_t)m << 13 | (m ? 0x400000u : 0);
        else {
            float r = (float)h_value(h);
            memcpy(&want, &r, 4);
        }
        if (fu != want) {
            n_fail++;
            if (!quiet) fprintf(stderr, "FAIL f16_to_f32(%04x): %08x, expected %08x\n", h, fu, want);
        } else n_pass++;
#if HAVE_F16
        f16_t c;
        memcpy(&c, &h, 2);
        float cf = (float)c;
        check_half("f16_to_f32 vs _Float16", (double)b, (uint16_t)(memcmp(&cf, &f, 4) != 0), 0);
#endif
        /* narrowing: a round trip, then each rounding boundary */
        if (e == 31) {
            uint16_t q = m ? (uint16_t)(h | 0x200) : h;
            check_half("f32_to_f16", f, f32_to_f16(f), q);
            check_half("f64_to_f16", f, f64_to_f16((double)f), q);
            continue;
        }
        check_half("f32_to_f16", f, f32_to_f16(f), h);
        check_half("f64_to_f16", f, f64_to_f16((double)f), h);
        if ((h & 0x7fff) == 0x7bff || (h & 0x8000)) continue;
        double mid = 0.5 * (h_value(h) + h_value((uint16_t)(h + 1))); /* exact in float and double */
        double pts[6] = {mid, nextafter(mid, 0.0), nextafter(mid, INFINITY),
                         nextafterf((float)mid, 0.0f), nextafterf((float)mid, INFINITY), -mid};
        for (int k = 0; k < 6; k++) {
            double v = pts[k];
            if (k != 1 && k != 2) check_half("f32_to_f16", v, f32_to_f16((float)v), h_round((float)v));
            check_half("f64_to_f16", v, f64_to_f16(v), h_round(v));
#if HAVE_F16
            volatile float vf = (float)v;
            volatile double vd = v;
            f16_t cf = (f16_t)vf, cd = (f16_t)vd;
            uint16_t uf, ud;
            memcpy(&uf, &cf, 2);
            memcpy(&ud, &cd, 2);
            check_half("f32_to_f16 vs _Float16", v, f32_to_f16((float)v), uf);
            check_half("f64_to_f16 vs _Float16", v, f64_to_f16(v), ud);
#endif
        }
    }
    /* beyond float16's range and below its smallest subnormal */
    const double edge[] = {65504.0, 65519.99, 65520.0, 65536.0, 1e6, 3.4e38, 1e300, INFINITY,
                           0x1p-25, 0x1.000002p-25, 0x1p-26, 0x1p-149, 0x1p-1074, 1e-300, 0.0};
    for (size_t k = 0; k < sizeof edge / sizeof edge[0]; k++)
        for (int sg = 0; sg < 2; sg++) {
            double v = sg ? -edge[k] : edge[k];
            if (fabs(v) <= 3.4e38 || isinf(v)) check_half("f32_to_f16", v, f32_to_f16((float)v), h_round((float)v));
            check_half("f64_to_f16", v, f64_to_f16(v), h_round(v));
        }
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
        else {
            fprintf(stderr, "usage: %s [--isa NAME] [--quiet]\n", argv[0]);
            return 2;
        }
    }
    /* type pairs (input -> output) the Python wrapper uses */
    static const int PAIRS[][2] = {{T_F16, T_F16}, {T_F16, T_F32}, {T_F32, T_F32}, {T_F64, T_F64},
                                   {T_BF16, T_BF16}, {T_BF16, T_F32}};
    const int npairs = (int)(sizeof PAIRS / sizeof PAIRS[0]);
    char isas[128] = "";
    if (ts_isa_best() != ts_isa_kernels(ts_isa_best()->name)) {
        fprintf(stderr, "FAIL ts_isa_best is not a supported ISA\n");
        n_fail++;
    }
    run_half_conversions();
    for (int ii = 0; ii < ts_isa_count; ii++) {
        const char *name = ts_isa_names[ii];
        if (only && strcmp(only, name) != 0) continue;
        const kernels_t *K = ts_isa_kernels(name); /* as the module's set_isa */
        if (!K) continue;                          /* not on this CPU */
        strncat(isas, isas[0] ? "," : "", sizeof isas - strlen(isas) - 1);
        strncat(isas, name, sizeof isas - strlen(isas) - 1);
        run_empty(K);
        run_convert(K);
        for (int ty = 0; ty < 4; ty++)
            if (HAVE_F16 || ty != T_F16) run_backward(K, ty);
        for (int pi = 0; pi < npairs; pi++) {
            int xt = PAIRS[pi][0], ot = PAIRS[pi][1];
            if (!HAVE_F16 && xt == T_F16) continue;
            for (int kind = 0; kind < 3; kind++) {
                for (int wi = 0; wi < NW; wi++) {
                    for (int layout = 0; layout < NLAYOUT; layout++) {
                        for (int ti = 0; ti < NT_SCALAR; ti++)
                            run_case(K, xt, ot, kind, wi, layout, ti, T_F64, 2 * NPAT + 3, 1);
                        run_case(K, xt, ot, kind, wi, layout, -1, T_F64, NPAT * NT_ROW + 5, 1);
                    }
                    run_case(K, xt, ot, kind, wi, L_ROWS, -1, T_F32, NPAT * NT_ROW + 5, 1);
                }
                /* several tasks on the pool: > 65536 entries */
                run_case(K, xt, ot, kind, 1, L_ROWS, -1, T_F64, 20011, 3);
                run_case(K, xt, ot, kind, 4, L_ROWS, -1, T_F64, 1009, 3);
                run_case(K, xt, ot, kind, 4, L_MASKED, 3, T_F64, 1009, 3);
            }
        }
    }
    if (!isas[0]) {
        fprintf(stderr, "no instruction set to test (--isa %s not supported here)\n", only ? only : "?");
        return 2;
    }
#if defined(__aarch64__)
    const char *arch = "aarch64";
#elif defined(__x86_64__)
    const char *arch = "x86-64";
#else
    const char *arch = "other";
#endif
    printf("%lld passed, %lld failed (rows checked; %s; isa %s; float16 %s)\n", n_pass, n_fail,
           arch, isas, HAVE_F16 ? "yes" : "no");
    return n_fail ? 1 : 0;
}
