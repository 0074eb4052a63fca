/*
 * Vector kernels of tempscale's native softmax, written once with GCC vector extensions and
 * compiled once per instruction set: _tskernels.c includes this file several times, each time
 * under a different `#pragma GCC target(...)` and with SFX(name) naming the copy
 * (name_avx512, name_avx2, name_base).  The vectors are 64 bytes wide everywhere (16 floats,
 * 8 doubles); GCC maps them to one zmm register, two ymm or four xmm.
 *
 * Numerics (see docs/performance.md):
 *   float32: t = (x - m) * (log2(e) / T) is formed in double precision (no overflow, no
 *            cancellation), 2^t is evaluated in double (Taylor degree 7, |f| <= 1/2) and rounded
 *            once to float; the row sum is accumulated in double.
 *   float64: t = (x/2 - m/2) * (2 log2(e) / T) (the halving keeps x - m finite), 2^t with a
 *            degree-13 polynomial and a two-step 2^k scaling so that tiny results underflow
 *            gracefully to subnormals / exact zero.
 * Non-finite cases (empty / +inf maximum, T = 0, T = inf, NaN) never reach these loops' results:
 * the caller detects them (non-finite max, non-finite sum) and recomputes such rows with the
 * scalar reference code in _tskernels.c.
 */

#define AI static inline __attribute__((always_inline))

AI vf SFX(ldf)(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
AI void SFX(stf)(float *p, vf v) { memcpy(p, &v, sizeof v); }
AI vd SFX(ldd)(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
AI void SFX(std_)(double *p, vd v) { memcpy(p, &v, sizeof v); }
AI vd SFX(ld8f)(const float *p) { hf h; memcpy(&h, p, sizeof h); return __builtin_convertvector(h, vd); }
AI void SFX(st8f)(float *p, vd v) { hf h = __builtin_convertvector(v, hf); memcpy(p, &h, sizeof h); }

/* a > b ? a : b, keeping b when a is NaN (so NaN never becomes the maximum) */
AI vf SFX(maxf)(vf a, vf b) { vi k = (vi)(a > b); return (vf)(((vi)a & k) | ((vi)b & ~k)); }
AI vd SFX(maxd)(vd a, vd b) { vl k = (vl)(a > b); return (vd)(((vl)a & k) | ((vl)b & ~k)); }

#define SHIFTER 6755399441055744.0 /* 1.5 * 2^52: t + SHIFTER rounds t to an integer */

/* 2^t for t <= 0 (or NaN), accurate to ~1e-9 relative; exactly 0 for t < -200. */
AI vd SFX(exp2_lo)(vd t) {
    vd lo = (vd){0} - 200.0;
    vl below = (vl)(t < lo);
    t = (vd)(((vl)t & ~below) | ((vl)lo & below));
    vd kd = t + SHIFTER;
    vd k = kd - SHIFTER;
    vd f = t - k;
    vd p = (vd){0} + 1.5252733804059838e-05;           /* ln2^7 / 7! */
    p = p * f + 1.5403530393381606e-04;                /* ln2^6 / 6! */
    p = p * f + 1.3333558146428441e-03;                /* ln2^5 / 5! */
    p = p * f + 9.618129107628477e-03;                /* ln2^4 / 4! */
    p = p * f + 5.5504108664821576e-02;                /* ln2^3 / 3! */
    p = p * f + 2.402265069591007e-01;                /* ln2^2 / 2! */
    p = p * f + 6.931471805599453e-01;                /* ln2 */
    p = p * f + 1.0;
    vu b = ((vu)kd + 1023) << 52;
    vd e = p * (vd)b;
    return (vd)((vl)e & ~below);                       /* exact 0 below -200 (and for -inf) */
}

/* 2^t for t <= 0 (or NaN), double accuracy (~2 ulp); subnormal / zero results below -1022. */
AI vd SFX(exp2_hi)(vd t) {
    vd lo = (vd){0} - 1100.0;
    vl below = (vl)(t < lo);
    t = (vd)(((vl)t & ~below) | ((vl)lo & below));
    vd kd = t + SHIFTER;
    vd k = kd - SHIFTER;
    vd f = t - k;
    vd p = (vd){0} + 1.3691488853904124e-12;           /* ln2^13 / 13! */
    p = p * f + 2.5678435993488196e-11;
    p = p * f + 4.44553827187081e-10;
    p = p * f + 7.054911620801121e-09;
    p = p * f + 1.0178086009239696e-07;
    p = p * f + 1.3215486790144305e-06;
    p = p * f + 1.5252733804059838e-05;
    p = p * f + 1.5403530393381606e-04;
    p = p * f + 1.3333558146428441e-03;
    p = p * f + 9.618129107628477e-03;
    p = p * f + 5.5504108664821576e-02;
    p = p * f + 2.402265069591007e-01;
    p = p * f + 6.931471805599453e-01;
    p = p * f + 1.0;
    vl ki = (vl)kd - (vl)((vd){0} + SHIFTER);
    vl k1 = ki >> 1;
    vl k2 = ki - k1;
    vd s1 = (vd)((vu)(k1 + 1023) << 52);
    vd s2 = (vd)((vu)(k2 + 1023) << 52);
    vd e = (p * s1) * s2;
    return (vd)((vl)e & ~below);
}

/* float-only exp(x) for the benchmark's "machine limit" pass (one read, one write). */
AI vf SFX(expf_fast)(vf x) {
    vf hi = (vf){0} + 88.0f, lo = (vf){0} - 103.0f;
    vi a = (vi)(x > hi), b = (vi)(x < lo);
    x = (vf)(((vi)x & ~(a | b)) | ((vi)hi & a) | ((vi)lo & b));
    vf t = x * 1.44269504f;
    vf kd = (t + 12582912.0f) - 12582912.0f;           /* round to nearest integer */
    vf r = x - kd * 0.693145751953125f;
    r = r - kd * 1.428606765330187e-06f;
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi k = __builtin_convertvector(kd, vi);
    vi k1 = k >> 1, k2 = k - k1;
    vf e = p * (vf)((vui)(k1 + 127) << 23) * (vf)((vui)(k2 + 127) << 23);
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* wide rows, float32, contiguous                                                             */
/* ------------------------------------------------------------------------------------------ */
AI float SFX(rowmax_f32)(const float *x, npy_intp n) {
    vf ninf = (vf){0} - INFINITY;
    vf a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    npy_intp i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = SFX(maxf)(SFX(ldf)(x + i), a0);
        a1 = SFX(maxf)(SFX(ldf)(x + i + 16), a1);
        a2 = SFX(maxf)(SFX(ldf)(x + i + 32), a2);
        a3 = SFX(maxf)(SFX(ldf)(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = SFX(maxf)(SFX(ldf)(x + i), a0);
    a0 = SFX(maxf)(a1, a0);
    a2 = SFX(maxf)(a3, a2);
    a0 = SFX(maxf)(a2, a0);
    float m = -INFINITY;
    for (int l = 0; l < 16; l++) if (a0[l] > m) m = a0[l];
    for (; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

/* sum of 2^((x - m) c); with store, also writes the (unnormalised) values to o */
AI double SFX(expsum_f32)(const float *x, float *o, npy_intp n, double m, double c, int store) {
    vd s0 = (vd){0}, s1 = (vd){0};
    npy_intp i = 0;
    for (; i + 16 <= n; i += 16) {
        vd e0 = SFX(exp2_lo)((SFX(ld8f)(x + i) - m) * c);
        vd e1 = SFX(exp2_lo)((SFX(ld8f)(x + i + 8) - m) * c);
        s0 += e0;
        s1 += e1;
        if (store) {
            SFX(st8f)(o + i, e0);
            SFX(st8f)(o + i + 8, e1);
        }
    }
    if (i < n) {
        float buf[16], ob[16];
        npy_intp r = n - i;
        for (int l = 0; l < 16; l++) buf[l] = l < r ? x[i + l] : -INFINITY;
        vd e0 = SFX(exp2_lo)((SFX(ld8f)(buf) - m) * c);
        vd e1 = SFX(exp2_lo)((SFX(ld8f)(buf + 8) - m) * c);
        s0 += e0;
        s1 += e1;
        if (store) {
            SFX(st8f)(ob, e0);
            SFX(st8f)(ob + 8, e1);
            for (npy_intp l = 0; l < r; l++) o[i + l] = ob[l];
        }
    }
    s0 += s1;
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += s0[l];
    return s;
}

AI void SFX(scale_f32)(float *o, npy_intp n, float a) {
    npy_intp i = 0;
    for (; i + 32 <= n; i += 32) {
        SFX(stf)(o + i, SFX(ldf)(o + i) * a);
        SFX(stf)(o + i + 16, SFX(ldf)(o + i + 16) * a);
    }
    for (; i + 16 <= n; i += 16) SFX(stf)(o + i, SFX(ldf)(o + i) * a);
    for (; i < n; i++) o[i] *= a;
}

/* o = (x - m) * invT - ls, in double, rounded once */
AI void SFX(logsm_f32)(const float *x, float *o, npy_intp n, double m, double invT, double ls) {
    npy_intp i = 0;
    for (; i + 8 <= n; i += 8) SFX(st8f)(o + i, (SFX(ld8f)(x + i) - m) * invT - ls);
    for (; i < n; i++) o[i] = (float)(((double)x[i] - m) * invT - ls);
}

/* returns 0 when handled, 1 when the row needs the scalar reference (non-finite cases) */
static int SFX(row_f32)(const float *x, float *o, npy_intp n, double T, int kind, double *lse) {
    float mf = SFX(rowmax_f32)(x, n);
    double c = LOG2E / T;
    if (!(isfinite(mf) && c > 0.0 && c < INFINITY && T < INFINITY)) return 1;
    double m = mf;
    if (kind == KIND_SOFTMAX) {
        double s = SFX(expsum_f32)(x, o, n, m, c, 1);
        if (!isfinite(s)) return 1;
        SFX(scale_f32)(o, n, (float)(1.0 / s));
    } else {
        double s = SFX(expsum_f32)(x, NULL, n, m, c, 0);
        if (!isfinite(s)) return 1;
        double ls = log(s);
        if (kind == KIND_LOGSOFTMAX) SFX(logsm_f32)(x, o, n, m, 1.0 / T, ls);
        else *lse = m + T * ls;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* wide rows, float64, contiguous                                                             */
/* ------------------------------------------------------------------------------------------ */
AI double SFX(rowmax_f64)(const double *x, npy_intp n) {
    vd ninf = (vd){0} - INFINITY;
    vd a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    npy_intp i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = SFX(maxd)(SFX(ldd)(x + i), a0);
        a1 = SFX(maxd)(SFX(ldd)(x + i + 8), a1);
        a2 = SFX(maxd)(SFX(ldd)(x + i + 16), a2);
        a3 = SFX(maxd)(SFX(ldd)(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = SFX(maxd)(SFX(ldd)(x + i), a0);
    a0 = SFX(maxd)(a1, a0);
    a2 = SFX(maxd)(a3, a2);
    a0 = SFX(maxd)(a2, a0);
    double m = -INFINITY;
    for (int l = 0; l < 8; l++) if (a0[l] > m) m = a0[l];
    for (; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

AI double SFX(expsum_f64)(const double *x, double *o, npy_intp n, double mh, double c2, int store) {
    vd s0 = (vd){0}, s1 = (vd){0};
    npy_intp i = 0;
    for (; i + 16 <= n; i += 16) {
        vd e0 = SFX(exp2_hi)((SFX(ldd)(x + i) * 0.5 - mh) * c2);
        vd e1 = SFX(exp2_hi)((SFX(ldd)(x + i + 8) * 0.5 - mh) * c2);
        s0 += e0;
        s1 += e1;
        if (store) {
            SFX(std_)(o + i, e0);
            SFX(std_)(o + i + 8, e1);
        }
    }
    for (; i < n; i += 8) {
        double buf[8], ob[8];
        npy_intp r = n - i < 8 ? n - i : 8;
        for (int l = 0; l < 8; l++) buf[l] = l < r ? x[i + l] : -INFINITY;
        vd e0 = SFX(exp2_hi)((SFX(ldd)(buf) * 0.5 - mh) * c2);
        s0 += e0;
        if (store) {
            SFX(std_)(ob, e0);
            for (npy_intp l = 0; l < r; l++) o[i + l] = ob[l];
        }
    }
    s0 += s1;
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += s0[l];
    return s;
}

AI void SFX(scale_f64)(double *o, npy_intp n, double a) {
    npy_intp i = 0;
    for (; i + 8 <= n; i += 8) SFX(std_)(o + i, SFX(ldd)(o + i) * a);
    for (; i < n; i++) o[i] *= a;
}

AI void SFX(logsm_f64)(const double *x, double *o, npy_intp n, double mh, double invTh, double ls) {
    npy_intp i = 0;
    for (; i + 8 <= n; i += 8) SFX(std_)(o + i, (SFX(ldd)(x + i) * 0.5 - mh) * invTh - ls);
    for (; i < n; i++) o[i] = (x[i] * 0.5 - mh) * invTh - ls;
}

static int SFX(row_f64)(const double *x, double *o, npy_intp n, double T, int kind, double *lse) {
    double m = SFX(rowmax_f64)(x, n);
    double c2 = (2.0 * LOG2E) / T;
    if (!(isfinite(m) && c2 > 0.0 && c2 < INFINITY && T < INFINITY)) return 1;
    double mh = m * 0.5;
    if (kind == KIND_SOFTMAX) {
        double s = SFX(expsum_f64)(x, o, n, mh, c2, 1);
        if (!isfinite(s)) return 1;
        SFX(scale_f64)(o, n, 1.0 / s);
    } else {
        double s = SFX(expsum_f64)(x, NULL, n, mh, c2, 0);
        if (!isfinite(s)) return 1;
        double ls = log(s);
        if (kind == KIND_LOGSOFTMAX) SFX(logsm_f64)(x, o, n, mh, 1.0 / (T * 0.5), ls);
        else *lse = m + T * ls;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* narrow rows: a block of BR rows held transposed (XT[j*BR + r]), vectorised across rows      */
/* ------------------------------------------------------------------------------------------ */
/* float32: BR = 16 rows.  Tr: per-row T (double[16]).  Writes PT (softmax/log_softmax) or
   lse[16]; spec[r] = 1 for rows the scalar reference must redo. */
static void SFX(block_f32)(const float *XT, float *PT, npy_intp n, const double *Tr, int kind,
                           double *lse, unsigned char *spec) {
    vf mv = (vf){0} - INFINITY;
    for (npy_intp j = 0; j < n; j++) mv = SFX(maxf)(SFX(ldf)(XT + j * 16), mv);
    hf mlo = __builtin_shufflevector(mv, mv, 0, 1, 2, 3, 4, 5, 6, 7);
    hf mhi = __builtin_shufflevector(mv, mv, 8, 9, 10, 11, 12, 13, 14, 15);
    vd m0 = __builtin_convertvector(mlo, vd), m1 = __builtin_convertvector(mhi, vd);
    vd T0 = SFX(ldd)(Tr), T1 = SFX(ldd)(Tr + 8);
    vd c0 = LOG2E / T0, c1 = LOG2E / T1;
    vd s0 = (vd){0}, s1 = (vd){0};
    for (npy_intp j = 0; j < n; j++) {
        vd e0 = SFX(exp2_lo)((SFX(ld8f)(XT + j * 16) - m0) * c0);
        vd e1 = SFX(exp2_lo)((SFX(ld8f)(XT + j * 16 + 8) - m1) * c1);
        s0 += e0;
        s1 += e1;
        if (kind == KIND_SOFTMAX) {
            SFX(st8f)(PT + j * 16, e0);
            SFX(st8f)(PT + j * 16 + 8, e1);
        }
    }
    double sl[16], ml[16];
    SFX(std_)(sl, s0); SFX(std_)(sl + 8, s1);
    SFX(std_)(ml, m0); SFX(std_)(ml + 8, m1);
    double cl[16];
    SFX(std_)(cl, c0); SFX(std_)(cl + 8, c1);
    for (int r = 0; r < 16; r++)
        spec[r] = !(isfinite(ml[r]) && cl[r] > 0.0 && cl[r] < INFINITY && Tr[r] < INFINITY && isfinite(sl[r]));
    if (kind == KIND_SOFTMAX) {
        vd i0 = 1.0 / s0, i1 = 1.0 / s1;
        hf f0 = __builtin_convertvector(i0, hf), f1 = __builtin_convertvector(i1, hf);
        vf inv = __builtin_shufflevector(f0, f1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (npy_intp j = 0; j < n; j++) SFX(stf)(PT + j * 16, SFX(ldf)(PT + j * 16) * inv);
    } else {
        double ls[16];
        for (int r = 0; r < 16; r++) ls[r] = spec[r] ? 0.0 : log(sl[r]);
        if (kind == KIND_LOGSOFTMAX) {
            vd l0 = SFX(ldd)(ls), l1 = SFX(ldd)(ls + 8);
            vd i0 = 1.0 / T0, i1 = 1.0 / T1;
            for (npy_intp j = 0; j < n; j++) {
                SFX(st8f)(PT + j * 16, (SFX(ld8f)(XT + j * 16) - m0) * i0 - l0);
                SFX(st8f)(PT + j * 16 + 8, (SFX(ld8f)(XT + j * 16 + 8) - m1) * i1 - l1);
            }
        } else {
            for (int r = 0; r < 16; r++) lse[r] = ml[r] + Tr[r] * ls[r];
        }
    }
}

/* float64: BR = 8 rows */
static void SFX(block_f64)(const double *XT, double *PT, npy_intp n, const double *Tr, int kind,
                           double *lse, unsigned char *spec) {
    vd mv = (vd){0} - INFINITY;
    for (npy_intp j = 0; j < n; j++) mv = SFX(maxd)(SFX(ldd)(XT + j * 8), mv);
    vd T0 = SFX(ldd)(Tr);
    vd c2 = (2.0 * LOG2E) / T0;
    vd mh = mv * 0.5;
    vd s0 = (vd){0};
    for (npy_intp j = 0; j < n; j++) {
        vd e0 = SFX(exp2_hi)((SFX(ldd)(XT + j * 8) * 0.5 - mh) * c2);
        s0 += e0;
        if (kind == KIND_SOFTMAX) SFX(std_)(PT + j * 8, e0);
    }
    double sl[8], ml[8];
    SFX(std_)(sl, s0);
    SFX(std_)(ml, mv);
    double cl[8];
    SFX(std_)(cl, c2);
    for (int r = 0; r < 8; r++)
        spec[r] = !(isfinite(ml[r]) && cl[r] > 0.0 && cl[r] < INFINITY && Tr[r] < INFINITY && isfinite(sl[r]));
    if (kind == KIND_SOFTMAX) {
        vd inv = 1.0 / s0;
        for (npy_intp j = 0; j < n; j++) SFX(std_)(PT + j * 8, SFX(ldd)(PT + j * 8) * inv);
    } else {
        double ls[8];
        for (int r = 0; r < 8; r++) ls[r] = spec[r] ? 0.0 : log(sl[r]);
        if (kind == KIND_LOGSOFTMAX) {
            vd l0 = SFX(ldd)(ls);
            vd ih = 1.0 / (T0 * 0.5);
            for (npy_intp j = 0; j < n; j++)
                SFX(std_)(PT + j * 8, (SFX(ldd)(XT + j * 8) * 0.5 - mh) * ih - l0);
        } else {
            for (int r = 0; r < 8; r++) lse[r] = ml[r] + Tr[r] * ls[r];
        }
    }
}

/* the benchmark's limit: o = exp(x), float32, contiguous */
static void SFX(exp_pass)(const float *x, float *o, npy_intp n) {
    npy_intp i = 0;
    for (; i + 32 <= n; i += 32) {
        SFX(stf)(o + i, SFX(expf_fast)(SFX(ldf)(x + i)));
        SFX(stf)(o + i + 16, SFX(expf_fast)(SFX(ldf)(x + i + 16)));
    }
    for (; i < n; i++) o[i] = expf(x[i]);
}

#undef AI
