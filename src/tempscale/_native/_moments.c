/* _tsmoments: the sums a temperature fit needs, in one fused pass over the logits.
 *
 * For logits z (n rows x k classes, float32 or float64, any strides), labels y and optional
 * weights w, at beta = 1/T and a power-of-two scale 2**-e (the fit works on z / 2**e), every row
 * gives, with d_j = z_j 2**-e - max_j(z_j 2**-e) over its unmasked (> -inf) entries and
 * p = softmax(beta d):
 *
 *     mu = E_p[d],  var = E_p[(d - mu)^2],  k3 = E_p[(d - mu)^3],  g = mu - d_y
 *
 * (g, var, k3 are the NLL's first three derivatives in beta) and the call returns the weighted
 * sums  (sum w g, sum w var, sum w k3)  plus two counts: rows the kernel cannot take (a NaN or
 * +inf entry, every entry -inf, or -inf at the label: the caller's generic path sorts those
 * out and raises where it should) and rows (of positive weight) whose label is not at the row's
 * maximum (all zero: separable data).  Nothing per row is written anywhere.
 *
 * Arithmetic: "precise" passes compute in float64 with a vectorised exp (Cody-Waite reduction and
 * a degree-13 Taylor polynomial: about 1 ulp, subnormal results included, exactly 0 below
 * exp(-745.2)); the others (float32 input only) compute in float32 (a degree-7 polynomial, row
 * sums in float32, everything after the row sums in float64), good enough to get close to the
 * optimum before the float64 passes.  No -ffast-math: -inf entries (masked classes) are selected
 * out explicitly and NaN/+inf rows are flagged.
 *
 * Threads: rows are split in contiguous ranges over POSIX threads (the GIL released); each
 * thread sums its rows in order and the partial sums are added in thread order (deterministic
 * for a given thread count).  The loops are written with GCC vector extensions once and compiled
 * twice, for AVX2+FMA and for the baseline ISA, chosen at run time.
 *
 * Self-contained: includes only Python's and NumPy's headers (and the C library).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 32-byte generic vectors: one register with AVX2, two with SSE2 (measured: 64-byte vectors
 * were several times slower, with AVX2 and with AVX-512 alike) */
#define VBYTES 32
typedef double vd __attribute__((vector_size(VBYTES)));
typedef long long vl __attribute__((vector_size(VBYTES)));
typedef float vf __attribute__((vector_size(VBYTES)));
typedef int vi __attribute__((vector_size(VBYTES)));
typedef float vfh __attribute__((vector_size(VBYTES / 2)));

#define WD (VBYTES / 8) /* doubles per vector */
#define WF (VBYTES / 4) /* floats per vector */
#define ALWAYS static inline __attribute__((always_inline))

ALWAYS vd seld(vl m, vd a, vd b) { return (vd)(((vl)a & m) | ((vl)b & ~m)); }
ALWAYS vf self_(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
ALWAYS vd splatd(double v) { return (vd){} + v; }
ALWAYS vf splatf(float v) { return (vf){} + v; }
ALWAYS vl splatl(long long v) { return (vl){} + v; }
ALWAYS vi splati(int v) { return (vi){} + v; }
ALWAYS double hsumd(vd v) {
    double t = 0.0;
    for (int i = 0; i < WD; i++) t += v[i];
    return t;
}
ALWAYS double hsumf(vf v) {
    double t = 0.0;
    for (int i = 0; i < WF; i++) t += (double)v[i];
    return t;
}
ALWAYS long long hsuml(vl v) {
    long long t = 0;
    for (int i = 0; i < WD; i++) t += v[i];
    return t;
}

/* exp(x) for x <= 0 (any value: -huge gives 0), float64, about 1 ulp */
ALWAYS vd vexpd(vd x) {
    const vd magic = splatd(0x1.8p52);
    vd xc = seld(x < splatd(-746.0), splatd(-746.0), x);
    vd t = xc * splatd(1.4426950408889634) + magic;
    vd kd = t - magic;
    vl n = (vl)t - (vl)magic;
    vd r = xc - kd * splatd(6.93147180369123816490e-01);
    r = r - kd * splatd(1.90821492927058770002e-10);
    vd p = splatd(1.0 / 6227020800.0);
    p = p * r + splatd(1.0 / 479001600.0);
    p = p * r + splatd(1.0 / 39916800.0);
    p = p * r + splatd(1.0 / 3628800.0);
    p = p * r + splatd(1.0 / 362880.0);
    p = p * r + splatd(1.0 / 40320.0);
    p = p * r + splatd(1.0 / 5040.0);
    p = p * r + splatd(1.0 / 720.0);
    p = p * r + splatd(1.0 / 120.0);
    p = p * r + splatd(1.0 / 24.0);
    p = p * r + splatd(1.0 / 6.0);
    p = p * r + splatd(0.5);
    p = p * r + splatd(1.0);
    p = p * r + splatd(1.0);
    vl small = n < splatl(-1000);
    vl nn = n + (small & splatl(64));
    vd sc = (vd)((nn + splatl(1023)) << 52);
    vd res = p * sc;
    res = seld(small, res * splatd(0x1p-64), res);
    return seld(x < splatd(-745.2), splatd(0.0), res);
}

/* exp(x) for x <= 0, float32, about 1-2 ulp (0 below exp(-103.9)) */
ALWAYS vf vexpf_(vf x) {
    const vf magic = splatf(0x1.8p23f);
    vf xc = self_(x < splatf(-104.0f), splatf(-104.0f), x);
    vf t = xc * splatf(1.44269504f) + magic;
    vf kd = t - magic;
    vi n = (vi)t - (vi)magic;
    vf r = xc - kd * splatf(0.693145752f);
    r = r - kd * splatf(1.42860677e-06f);
    vf p = splatf(1.0f / 5040.0f);
    p = p * r + splatf(1.0f / 720.0f);
    p = p * r + splatf(1.0f / 120.0f);
    p = p * r + splatf(1.0f / 24.0f);
    p = p * r + splatf(1.0f / 6.0f);
    p = p * r + splatf(0.5f);
    p = p * r + splatf(1.0f);
    p = p * r + splatf(1.0f);
    vi small = n < splati(-120);
    vi nn = n + (small & splati(32));
    vf sc = (vf)((nn + splati(127)) << 23);
    vf res = p * sc;
    res = self_(small, res * splatf(0x1p-32f), res);
    return self_(x < splatf(-103.9f), splatf(0.0f), res);
}

/* loads of WD elements (as doubles) or WF floats; "n" valid ones, the rest -inf */
ALWAYS vd loadd(const char *p, int f32, npy_intp n) {
    if (n >= WD) {
        if (f32) {
            vfh a;
            memcpy(&a, p, sizeof a);
            return __builtin_convertvector(a, vd);
        }
        vd a;
        memcpy(&a, p, sizeof a);
        return a;
    }
    vd a = splatd(-INFINITY);
    for (npy_intp i = 0; i < n; i++)
        a[i] = f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
    return a;
}

ALWAYS vf loadf(const float *p, npy_intp n) {
    if (n >= WF) {
        vf a;
        memcpy(&a, p, sizeof a);
        return a;
    }
    vf a = splatf(-INFINITY);
    for (npy_intp i = 0; i < n; i++) a[i] = p[i];
    return a;
}

typedef struct {
    double g, h, k3;
    npy_intp bad, nonmax;
} sums_t;

/* one contiguous row: 0 if taken (sums added), 1 if flagged */
ALWAYS int row_double(const char *row, int f32, npy_intp k, npy_intp lab, double wt, double sc,
                      double beta, sums_t *acc) {
    const npy_intp isz = f32 ? 4 : 8;
    vd mx = splatd(-INFINITY);
    vl badv = splatl(0);
    for (npy_intp j = 0; j < k; j += WD) {
        vd v = loadd(row + j * isz, f32, k - j);
        badv |= (v != v) | (v == splatd(INFINITY));
        mx = seld(v > mx, v, mx);
    }
    double m = mx[0];
    for (int i = 1; i < WD; i++) m = mx[i] > m ? mx[i] : m;
    double zy = f32 ? (double)((const float *)row)[lab] : ((const double *)row)[lab];
    if (hsuml(badv) || m == -INFINITY || zy == -INFINITY) return 1;
    const double ms = m * sc;
    const double dy = zy * sc - ms;
    const vd vsc = splatd(sc), vms = splatd(ms), vb = splatd(beta), zero = splatd(0.0);
    vd s = zero, a1 = zero, a2 = zero, a3 = zero;
    for (npy_intp j = 0; j < k; j += WD) {
        vd v = loadd(row + j * isz, f32, k - j);
        vl valid = v > splatd(-INFINITY);
        vd d = seld(valid, v * vsc - vms, zero);
        vd e = seld(valid, vexpd(vb * d), zero);
        s += e;
        vd ed = e * d;
        a1 += ed;
        ed *= d;
        a2 += ed;
        a3 += ed * d;
    }
    double S = hsumd(s), mu = hsumd(a1) / S, m2 = hsumd(a2) / S, m3 = hsumd(a3) / S;
    double var = m2 - mu * mu;
    double k3 = m3 - mu * (3.0 * m2 - 2.0 * mu * mu);
    acc->g += wt * (mu - dy);
    acc->h += wt * var;
    acc->k3 += wt * k3;
    acc->nonmax += (dy != 0.0 && wt > 0.0);
    return 0;
}

ALWAYS int row_float(const float *row, npy_intp k, npy_intp lab, double wt, float scf, double sc,
                     double beta, sums_t *acc) {
    vf mx = splatf(-INFINITY);
    vi badv = splati(0);
    for (npy_intp j = 0; j < k; j += WF) {
        vf v = loadf(row + j, k - j);
        badv |= (v != v) | (v == splatf(INFINITY));
        mx = self_(v > mx, v, mx);
    }
    float m = mx[0];
    int anybad = badv[0];
    for (int i = 1; i < WF; i++) {
        m = mx[i] > m ? mx[i] : m;
        anybad |= badv[i];
    }
    float zy = row[lab];
    if (anybad || m == -INFINITY || zy == -INFINITY) return 1;
    const float msf = m * scf;
    const double dy = (double)zy * sc - (double)m * sc;
    const vf vsc = splatf(scf), vms = splatf(msf), vb = splatf((float)beta), zero = splatf(0.0f);
    vf s = zero, a1 = zero, a2 = zero, a3 = zero;
    for (npy_intp j = 0; j < k; j += WF) {
        vf v = loadf(row + j, k - j);
        vi valid = v > splatf(-INFINITY);
        vf d = self_(valid, v * vsc - vms, zero);
        vf e = self_(valid, vexpf_(vb * d), zero);
        s += e;
        vf ed = e * d;
        a1 += ed;
        ed *= d;
        a2 += ed;
        a3 += ed * d;
    }
    double S = hsumf(s), mu = hsumf(a1) / S, m2 = hsumf(a2) / S, m3 = hsumf(a3) / S;
    double var = m2 - mu * mu;
    double k3 = m3 - mu * (3.0 * m2 - 2.0 * mu * mu);
    acc->g += wt * (mu - dy);
    acc->h += wt * var;
    acc->k3 += wt * k3;
    acc->nonmax += (dy != 0.0 && wt > 0.0);
    return 0;
}

/* Short rows (k <= SMALLK): WD (double) or WF (float) rows at a time, one row per vector lane,
 * so that no lane is wasted on a row shorter than a vector: columns are gathered with the
 * arrays' strides, and every per-row quantity (max, sums, moments) is computed lane-wise. */
#define SMALLK 32

ALWAYS vd gatherd(const char *p, npy_intp rs, int f32) {
    vd a;
    for (int i = 0; i < WD; i++)
        a[i] = f32 ? (double)*(const float *)(p + i * rs) : *(const double *)(p + i * rs);
    return a;
}

ALWAYS vf gatherf(const char *p, npy_intp rs) {
    vf a;
    for (int i = 0; i < WF; i++) a[i] = *(const float *)(p + i * rs);
    return a;
}

/* rows r .. r+WD-1 of a short-row matrix, float64 arithmetic */
ALWAYS void block_double(const char *base, npy_intp rs, npy_intp cs, int f32, npy_intp k,
                         const npy_intp *y, const double *w, double sc, double beta, vd *acc_g,
                         vd *acc_h, vd *acc_k, vl *bad, vl *nonmax) {
    vd col[SMALLK];
    const vd ninf = splatd(-INFINITY), zero = splatd(0.0);
    vd mx = ninf;
    vl badv = splatl(0);
    for (npy_intp j = 0; j < k; j++) {
        vd v = gatherd(base + j * cs, rs, f32);
        col[j] = v;
        badv |= (v != v) | (v == splatd(INFINITY));
        mx = seld(v > mx, v, mx);
    }
    vd zy;
    for (int i = 0; i < WD; i++) {
        const char *p = base + i * rs + y[i] * cs;
        zy[i] = f32 ? (double)*(const float *)p : *(const double *)p;
    }
    badv |= (mx == ninf) | (zy == ninf);
    const vd vsc = splatd(sc), vb = splatd(beta);
    vd ms = seld(badv, zero, mx * vsc);
    vd s = zero, a1 = zero, a2 = zero, a3 = zero;
    for (npy_intp j = 0; j < k; j++) {
        vd v = col[j];
        vl valid = (v > ninf) & ~badv;
        vd d = seld(valid, v * vsc - ms, zero);
        vd e = seld(valid, vexpd(vb * d), zero);
        s += e;
        vd ed = e * d;
        a1 += ed;
        ed *= d;
        a2 += ed;
        a3 += ed * d;
    }
    s = seld(badv, splatd(1.0), s);
    vd dy = seld(badv, zero, zy * vsc - ms);
    vd mu = a1 / s, m2 = a2 / s, m3 = a3 / s;
    vd var = m2 - mu * mu;
    vd k3 = m3 - mu * (splatd(3.0) * m2 - splatd(2.0) * mu * mu);
    vd wt = splatd(1.0);
    if (w) memcpy(&wt, w, sizeof wt);
    wt = seld(badv, zero, wt);
    *acc_g += wt * (mu - dy);
    *acc_h += wt * var;
    *acc_k += wt * k3;
    *bad -= badv;
    *nonmax -= (dy != zero) & (wt > zero);
}

/* rows r .. r+WF-1, float32 arithmetic (float32 input), per-row results in float64 */
ALWAYS void block_float(const char *base, npy_intp rs, npy_intp cs, npy_intp k, const npy_intp *y,
                        const double *w, float scf, double sc, double beta, vd *acc_g, vd *acc_h,
                        vd *acc_k, vl *bad, vl *nonmax) {
    vf col[SMALLK];
    const vf ninf = splatf(-INFINITY), zero = splatf(0.0f);
    vf mx = ninf;
    vi badv = splati(0);
    for (npy_intp j = 0; j < k; j++) {
        vf v = gatherf(base + j * cs, rs);
        col[j] = v;
        badv |= (v != v) | (v == splatf(INFINITY));
        mx = self_(v > mx, v, mx);
    }
    vf zy;
    for (int i = 0; i < WF; i++) zy[i] = *(const float *)(base + i * rs + y[i] * cs);
    badv |= (mx == ninf) | (zy == ninf);
    const vf vsc = splatf(scf), vb = splatf((float)beta);
    vf ms = self_(badv, zero, mx * vsc);
    vf s = zero, a1 = zero, a2 = zero, a3 = zero;
    for (npy_intp j = 0; j < k; j++) {
        vf v = col[j];
        vi valid = (v > ninf) & ~badv;
        vf d = self_(valid, v * vsc - ms, zero);
        vf e = self_(valid, vexpf_(vb * d), zero);
        s += e;
        vf ed = e * d;
        a1 += ed;
        ed *= d;
        a2 += ed;
        a3 += ed * d;
    }
    s = self_(badv, splatf(1.0f), s);
    for (int h = 0; h < 2; h++) { /* two halves of WD lanes, in float64 */
        vd S, A1, A2, A3, MX, ZY;
        vl B;
        for (int i = 0; i < WD; i++) {
            int l = h * WD + i;
            S[i] = s[l];
            A1[i] = a1[l];
            A2[i] = a2[l];
            A3[i] = a3[l];
            MX[i] = mx[l];
            ZY[i] = zy[l];
            B[i] = badv[l] ? -1 : 0;
        }
        const vd vsd = splatd(sc), zd = splatd(0.0);
        vd dy = seld(B, zd, ZY * vsd - MX * vsd);
        vd mu = A1 / S, m2 = A2 / S, m3 = A3 / S;
        vd var = m2 - mu * mu;
        vd k3 = m3 - mu * (splatd(3.0) * m2 - splatd(2.0) * mu * mu);
        vd wt = splatd(1.0);
        if (w) memcpy(&wt, w + h * WD, sizeof wt);
        wt = seld(B, zd, wt);
        mu = seld(B, zd, mu);
        var = seld(B, zd, var);
        k3 = seld(B, zd, k3);
        *acc_g += wt * (mu - dy);
        *acc_h += wt * var;
        *acc_k += wt * k3;
        *bad -= B;
        *nonmax -= (dy != zd) & (wt > zd);
    }
}

typedef struct {
    const char *base;
    npy_intp rs, cs, k, r0, r1;
    int f32, fmode;
    const npy_intp *y;
    const double *w;
    double sc, beta;
    float scf;
    char *buf; /* a row gathered when columns are strided */
    int isa; /* 0 baseline, 1 AVX2+FMA, 2 AVX-512 */
    sums_t out;
} job_t;

ALWAYS void run_rows(job_t *J) {
    const npy_intp isz = J->f32 ? 4 : 8;
    sums_t acc = {0.0, 0.0, 0.0, 0, 0};
    npy_intp i = J->r0;
    if (J->k <= SMALLK) {
        const vd zero = splatd(0.0);
        vd g = zero, h = zero, k3 = zero;
        vl bad = splatl(0), nonmax = splatl(0);
        const npy_intp W = J->fmode ? WF : WD;
        for (; i + W <= J->r1; i += W) {
            const char *b = J->base + i * J->rs;
            const double *w = J->w ? J->w + i : NULL;
            if (J->fmode)
                block_float(b, J->rs, J->cs, J->k, J->y + i, w, J->scf, J->sc, J->beta, &g, &h,
                            &k3, &bad, &nonmax);
            else
                block_double(b, J->rs, J->cs, J->f32, J->k, J->y + i, w, J->sc, J->beta, &g, &h,
                             &k3, &bad, &nonmax);
        }
        acc.g = hsumd(g);
        acc.h = hsumd(h);
        acc.k3 = hsumd(k3);
        acc.bad = (npy_intp)hsuml(bad);
        acc.nonmax = (npy_intp)hsuml(nonmax);
    }
    for (; i < J->r1; i++) {
        const char *row = J->base + i * J->rs;
        if (J->cs != isz) {
            for (npy_intp j = 0; j < J->k; j++) memcpy(J->buf + j * isz, row + j * J->cs, isz);
            row = J->buf;
        }
        double wt = J->w ? J->w[i] : 1.0;
        int bad = J->fmode ? row_float((const float *)row, J->k, J->y[i], wt, J->scf, J->sc,
                                       J->beta, &acc)
                           : row_double(row, J->f32, J->k, J->y[i], wt, J->sc, J->beta, &acc);
        acc.bad += bad;
    }
    J->out = acc;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f,avx512dq,avx2,fma"))) static void run_rows_avx512(job_t *J) {
    run_rows(J);
}
__attribute__((target("avx2,fma"))) static void run_rows_avx2(job_t *J) { run_rows(J); }
#else
static void run_rows_avx512(job_t *J) { run_rows(J); }
static void run_rows_avx2(job_t *J) { run_rows(J); }
#endif
static void run_rows_base(job_t *J) { run_rows(J); }

static int best_isa = 0;
static const char *isa_names[] = {"baseline", "avx2", "avx512"};

static void *thread_main(void *arg) {
    job_t *J = (job_t *)arg;
    if (J->isa == 2)
        run_rows_avx512(J);
    else if (J->isa == 1)
        run_rows_avx2(J);
    else
        run_rows_base(J);
    return NULL;
}

#define MAX_THREADS 64

PyDoc_STRVAR(moments_doc,
             "moments(z, y, w, beta, exp2, precise, threads, /, isa=None)\n--\n\n"
             "Weighted sums (g, h, k3, bad, nonmax) of the NLL derivatives of temperature-scaled\n"
             "logits z / 2**exp2 at beta (see the module's C source for the definitions).\n"
             "z: 2-D float32/float64 (any strides); y: intp labels; w: float64 weights or None;\n"
             "precise: float64 arithmetic (float32 input may otherwise use float32); isa: None\n"
             "(best), 'avx512', 'avx2' or 'baseline' (capped at what the CPU has).");

static PyObject *moments(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"z", "y", "w", "beta", "exp2", "precise", "threads", "isa", NULL};
    PyObject *zo, *yo, *wo, *isao = Py_None;
    double beta;
    int exp2, precise, threads;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOdipi|O", kwlist, &zo, &yo, &wo, &beta, &exp2,
                                     &precise, &threads, &isao))
        return NULL;
    if (!PyArray_Check(zo) || PyArray_NDIM((PyArrayObject *)zo) != 2) {
        PyErr_SetString(PyExc_TypeError, "moments: z must be a 2-D NumPy array");
        return NULL;
    }
    PyArrayObject *z = (PyArrayObject *)zo;
    int tn = PyArray_TYPE(z);
    if (tn != NPY_FLOAT32 && tn != NPY_FLOAT64) {
        PyErr_SetString(PyExc_TypeError, "moments: z must be float32 or float64");
        return NULL;
    }
    int isa = best_isa;
    if (isao != Py_None) {
        const char *s = PyUnicode_AsUTF8(isao);
        if (!s) return NULL;
        int want = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(s, isa_names[i]) == 0) want = i;
        if (want < 0) {
            PyErr_Format(PyExc_ValueError,
                         "moments: isa must be None, 'avx512', 'avx2' or 'baseline', got %R", isao);
            return NULL;
        }
        isa = want < best_isa ? want : best_isa; /* only what the CPU has */
    }
    npy_intp n = PyArray_DIM(z, 0), k = PyArray_DIM(z, 1);
    PyArrayObject *y = (PyArrayObject *)PyArray_FROMANY(yo, NPY_INTP, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (!y) return NULL;
    PyArrayObject *w = NULL;
    if (wo != Py_None) {
        w = (PyArrayObject *)PyArray_FROMANY(wo, NPY_FLOAT64, 1, 1, NPY_ARRAY_IN_ARRAY);
        if (!w) {
            Py_DECREF(y);
            return NULL;
        }
    }
    if (PyArray_DIM(y, 0) != n || (w && PyArray_DIM(w, 0) != n) || k < 1) {
        PyErr_SetString(PyExc_ValueError, "moments: y and w must have one entry per row of z, "
                                          "and z at least one column");
        Py_DECREF(y);
        Py_XDECREF(w);
        return NULL;
    }
    const npy_intp *yp = (const npy_intp *)PyArray_DATA(y);
    for (npy_intp i = 0; i < n; i++) {
        if (yp[i] < 0 || yp[i] >= k) {
            PyErr_SetString(PyExc_ValueError, "moments: labels out of range");
            Py_DECREF(y);
            Py_XDECREF(w);
            return NULL;
        }
    }
    int f32 = tn == NPY_FLOAT32;
    double sc = ldexp(1.0, -exp2);
    /* float32 arithmetic only for float32 input and a scale that is a normal float */
    int fmode = f32 && !precise && exp2 > -120 && exp2 < 120;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if ((double)n * (double)k < 65536.0) threads = 1;
    if (threads > n) threads = (int)(n > 0 ? n : 1);
    job_t jobs[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS];
    npy_intp isz = f32 ? 4 : 8;
    int ok = 1;
    for (int t = 0; t < threads; t++) {
        job_t *J = &jobs[t];
        J->base = (const char *)PyArray_DATA(z);
        J->rs = PyArray_STRIDE(z, 0);
        J->cs = PyArray_STRIDE(z, 1);
        J->k = k;
        J->r0 = n * t / threads;
        J->r1 = n * (t + 1) / threads;
        J->f32 = f32;
        J->fmode = fmode;
        J->y = yp;
        J->w = w ? (const double *)PyArray_DATA(w) : NULL;
        J->sc = sc;
        J->scf = (float)sc;
        J->beta = beta;
        J->buf = NULL;
        started[t] = 0;
        if (J->cs != isz) {
            J->buf = (char *)malloc((size_t)(k * isz + 64));
            if (!J->buf) ok = 0;
        }
    }
    if (!ok) {
        for (int t = 0; t < threads; t++) free(jobs[t].buf);
        Py_DECREF(y);
        Py_XDECREF(w);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (int t = 0; t < threads; t++) jobs[t].isa = isa;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tids[t], NULL, thread_main, &jobs[t]) == 0;
    thread_main(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            thread_main(&jobs[t]); /* no thread: run its rows here */
    }
    Py_END_ALLOW_THREADS
    sums_t tot = {0.0, 0.0, 0.0, 0, 0};
    for (int t = 0; t < threads; t++) {
        tot.g += jobs[t].out.g;
        tot.h += jobs[t].out.h;
        tot.k3 += jobs[t].out.k3;
        tot.bad += jobs[t].out.bad;
        tot.nonmax += jobs[t].out.nonmax;
        free(jobs[t].buf);
    }
    Py_DECREF(y);
    Py_XDECREF(w);
    return Py_BuildValue("dddnn", tot.g, tot.h, tot.k3, tot.bad, tot.nonmax);
}

static PyObject *isa_name(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(isa_names[best_isa]);
}

static PyMethodDef methods[] = {
    {"moments", (PyCFunction)(void (*)(void))moments, METH_VARARGS | METH_KEYWORDS, moments_doc},
    {"isa", isa_name, METH_NOARGS, "The instruction set the kernel uses by default."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_tsmoments",
    "Fused NLL-derivative sums of temperature-scaled logits (the temperature fit's passes).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tsmoments(void) {
    import_array();
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best_isa = 1;
    if (best_isa == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        best_isa = 2;
    const char *force = getenv("TEMPSCALE_ISA"); /* the same variable as _tskernels */
    if (force && strcmp(force, "baseline") == 0) best_isa = 0;
    if (force && strcmp(force, "avx2") == 0 && best_isa > 1) best_isa = 1;
#endif
    return PyModule_Create(&moddef);
}
