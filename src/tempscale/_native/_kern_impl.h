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
#if defined(__AVX512F__)
AI vf SFX(maxf)(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); } /* NaN a -> b */
#else
AI vf SFX(maxf)(vf a, vf b) { vi k = (vi)(a > b); return (vf)(((vi)a & k) | ((vi)b & ~k)); }
#endif
AI vd SFX(maxd)(vd a, vd b) { vl k = (vl)(a > b); return (vd)(((vl)a & k) | ((vl)b & ~k)); }

/* 16 floats <-> two halves of 8 doubles; max without NaN care; int64 -> int32 truncation */
#if defined(__AVX512F__) && defined(__AVX512DQ__)
AI vd SFX(lo2d)(vf v) { return (vd)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v)); }
AI vd SFX(hi2d)(vf v) { return (vd)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)v, 1)); }
AI vf SFX(d2f)(vd a, vd b) {
    return (vf)_mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps((__m512d)a)),
                                  _mm512_cvtpd_ps((__m512d)b), 1);
}
AI vi SFX(l2i)(vl a, vl b) {
    return (vi)_mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32((__m512i)a)),
                                  _mm512_cvtepi64_epi32((__m512i)b), 1);
}
AI vd SFX(fmaxd)(vd a, vd b) { return (vd)_mm512_max_pd((__m512d)a, (__m512d)b); }
#else
AI vd SFX(lo2d)(vf v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), vd); }
AI vd SFX(hi2d)(vf v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), vd); }
AI vf SFX(d2f)(vd a, vd b) {
    hf x = __builtin_convertvector(a, hf), y = __builtin_convertvector(b, hf);
    return __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
AI vi SFX(l2i)(vl a, vl b) {
    hi x = __builtin_convertvector(a, hi), y = __builtin_convertvector(b, hi);
    return __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#if defined(__AVX__)
AI vd SFX(fmaxd)(vd a, vd b) {
    __m256d a0, a1, b0, b1;
    memcpy(&a0, &a, 32); memcpy(&a1, (char *)&a + 32, 32);
    memcpy(&b0, &b, 32); memcpy(&b1, (char *)&b + 32, 32);
    a0 = _mm256_max_pd(a0, b0); a1 = _mm256_max_pd(a1, b1);
    vd r; memcpy(&r, &a0, 32); memcpy((char *)&r + 32, &a1, 32);
    return r;
}
#else
AI vd SFX(fmaxd)(vd a, vd b) { vl k = (vl)(a > b); return (vd)(((vl)a & k) | ((vl)b & ~k)); }
#endif
#endif

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

/* float 2^t for 16 lanes given as two double halves, t <= 0 (NaN gives garbage: callers detect
   NaN separately).  The reduction t = k + f is exact in double; f (|f| <= 1/2) is rounded to
   float (error <= 2^-25) and 2^f comes from a degree-6 near-minimax polynomial evaluated in
   float (<= 0.9 ulp); 2^k is applied in two steps so results below 2^-126 are correctly
   subnormal and t <= -200 (including -inf) gives exactly 0. */
AI vf SFX(exp2_mixed)(vd t0, vd t1) {
    vd lo = (vd){0} - 200.0;
    t0 = SFX(fmaxd)(t0, lo);
    t1 = SFX(fmaxd)(t1, lo);
    vd kd0 = t0 + SHIFTER, kd1 = t1 + SHIFTER;
    vd f0 = t0 - (kd0 - SHIFTER), f1 = t1 - (kd1 - SHIFTER);
    vf f = SFX(d2f)(f0, f1);
    vi k = SFX(l2i)((vl)kd0, (vl)kd1);   /* low 32 bits of kd's bits are k */
    vf p = (vf){0} + 1.5353357593994588e-04f;
    p = p * f + 1.339887734502554e-03f;
    p = p * f + 9.618437848985195e-03f;
    p = p * f + 5.5503323674201965e-02f;
    p = p * f + 2.4022647738456726e-01f;
    p = p * f + 6.931471824645996e-01f;
    p = p * f + 1.0f;
    vi k1 = k >> 1, k2 = k - k1;
    vf s1 = (vf)((vui)(k1 + 127) << 23), s2 = (vf)((vui)(k2 + 127) << 23);
    return (p * s1) * s2;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define HAVE_TSUM 1
/* AVX-512: 2^((x - m) c) in float arithmetic only, as accurate as exp2_mixed.  x - m is kept
   exactly as d + err (TwoSum), c = ch + cl is a float pair, and t = (d + err) c is formed as
   th + tl with th = d*ch rounded (an opaque multiply, so -ffp-contract cannot fuse it) and
   tl = fma(d, ch, -th) + d cl + err ch; f = (th - k) + tl is then accurate to 2^-25.  Results
   for th < -200 (including -inf and any overflowed x - m) are exactly 0. */
AI vf SFX(exp2_tsum)(vf xv, vf mv, vf nmv, vf chv, vf clv) {
    __m512 x = (__m512)xv, m = (__m512)mv, nm = (__m512)nmv, ch = (__m512)chv, cl = (__m512)clv;
    __m512 d = _mm512_sub_ps(x, m);
    __m512 bv = _mm512_sub_ps(d, x);
    __m512 err = _mm512_add_ps(_mm512_sub_ps(x, _mm512_sub_ps(d, bv)), _mm512_sub_ps(nm, bv));
    __m512 th = _mm512_mul_round_ps(d, ch, _MM_FROUND_CUR_DIRECTION);
    __m512 te = _mm512_fmsub_ps(d, ch, th);
    __m512 tl = _mm512_fmadd_ps(err, ch, _mm512_fmadd_ps(d, cl, te));
    __mmask16 ok = _mm512_cmp_ps_mask(th, _mm512_set1_ps(-200.0f), _CMP_GE_OQ);
    __m512 kf = _mm512_roundscale_ps(th, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_add_ps(_mm512_sub_round_ps(th, kf, _MM_FROUND_CUR_DIRECTION), tl);
    __m512 p = _mm512_set1_ps(1.5353357593994588e-04f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887734502554e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437848985195e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503323674201965e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022647738456726e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471824645996e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return (vf)_mm512_maskz_scalef_ps(ok, p, kf);
}
#endif

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
/* row maximum ignoring NaN; *nan set when a NaN is present */
AI float SFX(rowmax_f32)(const float *x, npy_intp n, int *nan) {
    vf ninf = (vf){0} - INFINITY;
    vf a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    vi bad = (vi){0};
    npy_intp i = 0;
    for (; i + 64 <= n; i += 64) {
        vf v0 = SFX(ldf)(x + i), v1 = SFX(ldf)(x + i + 16), v2 = SFX(ldf)(x + i + 32), v3 = SFX(ldf)(x + i + 48);
        a0 = SFX(maxf)(v0, a0);
        a1 = SFX(maxf)(v1, a1);
        a2 = SFX(maxf)(v2, a2);
        a3 = SFX(maxf)(v3, a3);
        bad |= (vi)(v0 != v0) | (vi)(v1 != v1) | (vi)(v2 != v2) | (vi)(v3 != v3);
    }
    for (; i + 16 <= n; i += 16) {
        vf v = SFX(ldf)(x + i);
        a0 = SFX(maxf)(v, a0);
        bad |= (vi)(v != v);
    }
    a0 = SFX(maxf)(a1, a0);
    a2 = SFX(maxf)(a3, a2);
    a0 = SFX(maxf)(a2, a0);
    float m = -INFINITY;
    int nn = 0;
    for (int l = 0; l < 16; l++) {
        if (a0[l] > m) m = a0[l];
        nn |= bad[l];
    }
    for (; i < n; i++) {
        if (x[i] > m) m = x[i];
        nn |= x[i] != x[i];
    }
    *nan = nn != 0;
    return m;
}

/* sum (in double) of 2^((x - m) c); with store, also writes the unnormalised values to o */
AI double SFX(expsum_f32)(const float *x, float *o, npy_intp n, double m, double c, int store) {
    vd s0 = (vd){0}, s1 = (vd){0};
    npy_intp i = 0;
#ifdef HAVE_TSUM
    float chs = (float)c;
    vf mv = (vf){0} + (float)m, nmv = (vf){0} - (float)m;
    vf chv = (vf){0} + chs, clv = (vf){0} + (float)(c - (double)chs);
#define EXPV(v) SFX(exp2_tsum)(v, mv, nmv, chv, clv)
#else
#define EXPV(v) SFX(exp2_mixed)((SFX(lo2d)(v) - m) * c, (SFX(hi2d)(v) - m) * c)
#endif
    for (; i + 64 <= n; i += 64) {
        vf e0 = EXPV(SFX(ldf)(x + i));
        vf e1 = EXPV(SFX(ldf)(x + i + 16));
        vf e2 = EXPV(SFX(ldf)(x + i + 32));
        vf e3 = EXPV(SFX(ldf)(x + i + 48));
        if (store) {
            SFX(stf)(o + i, e0);
            SFX(stf)(o + i + 16, e1);
            SFX(stf)(o + i + 32, e2);
            SFX(stf)(o + i + 48, e3);
        }
        vf fs = (e0 + e1) + (e2 + e3);
        s0 += SFX(lo2d)(fs);
        s1 += SFX(hi2d)(fs);
    }
    for (; i + 16 <= n; i += 16) {
        vf e0 = EXPV(SFX(ldf)(x + i));
        if (store) SFX(stf)(o + i, e0);
        s0 += SFX(lo2d)(e0);
        s1 += SFX(hi2d)(e0);
    }
    if (i < n) {
        float buf[16], ob[16];
        npy_intp r = n - i;
        for (int l = 0; l < 16; l++) buf[l] = l < r ? x[i + l] : -INFINITY;
        vf e0 = EXPV(SFX(ldf)(buf));
        s0 += SFX(lo2d)(e0);
        s1 += SFX(hi2d)(e0);
        if (store) {
            SFX(stf)(ob, e0);
            for (npy_intp l = 0; l < r; l++) o[i + l] = ob[l];
        }
    }
#undef EXPV
    s0 += s1;
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += s0[l];
    return s;
}

/* o *= a, with a = ah + al a float pair: o*ah + o*al, one rounding when FMA contracts it */
AI void SFX(scale_f32)(float *o, npy_intp n, double a) {
    float ahs = (float)a, als = (float)(a - (double)ahs);
    vf ah = (vf){0} + ahs, al = (vf){0} + als;
    npy_intp i = 0;
    for (; i + 32 <= n; i += 32) {
        vf v0 = SFX(ldf)(o + i), v1 = SFX(ldf)(o + i + 16);
        SFX(stf)(o + i, v0 * ah + v0 * al);
        SFX(stf)(o + i + 16, v1 * ah + v1 * al);
    }
    for (; i + 16 <= n; i += 16) {
        vf v0 = SFX(ldf)(o + i);
        SFX(stf)(o + i, v0 * ah + v0 * al);
    }
    for (; i < n; i++) o[i] = (float)((double)o[i] * a);
}

/* o = (x - m) * invT - ls, in double, rounded once */
AI void SFX(logsm_f32)(const float *x, float *o, npy_intp n, double m, double invT, double ls) {
    npy_intp i = 0;
    for (; i + 8 <= n; i += 8) SFX(st8f)(o + i, (SFX(ld8f)(x + i) - m) * invT - ls);
    for (; i < n; i++) o[i] = (float)(((double)x[i] - m) * invT - ls);
}

/* returns 0 when handled, 1 when the row needs the scalar reference (non-finite cases) */
static int SFX(row_f32)(const float *x, float *o, npy_intp n, double T, int kind, double *lse) {
    int nan;
    float mf = SFX(rowmax_f32)(x, n, &nan);
    double c = LOG2E / T;
    if (nan || !(isfinite(mf) && c > 0.0 && c < INFINITY && T < INFINITY)) return 1;
    double m = mf;
    if (kind == KIND_SOFTMAX) {
        double s = SFX(expsum_f32)(x, o, n, m, c, 1);
        if (!isfinite(s)) return 1;
        SFX(scale_f32)(o, n, 1.0 / s);
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
    vi bad = (vi){0};
    for (npy_intp j = 0; j < n; j++) {
        vf v = SFX(ldf)(XT + j * 16);
        mv = SFX(maxf)(v, mv);
        bad |= (vi)(v != v);
    }
    hf mlo = __builtin_shufflevector(mv, mv, 0, 1, 2, 3, 4, 5, 6, 7);
    hf mhi = __builtin_shufflevector(mv, mv, 8, 9, 10, 11, 12, 13, 14, 15);
    vd m0 = __builtin_convertvector(mlo, vd), m1 = __builtin_convertvector(mhi, vd);
    vd T0 = SFX(ldd)(Tr), T1 = SFX(ldd)(Tr + 8);
    vd c0 = LOG2E / T0, c1 = LOG2E / T1;
    vd s0 = (vd){0}, s1 = (vd){0};
#ifdef HAVE_TSUM
    vf chv = SFX(d2f)(c0, c1);
    vf clv = SFX(d2f)(c0 - SFX(lo2d)(chv), c1 - SFX(hi2d)(chv));
    vf nmv = -mv;
#endif
    for (npy_intp j = 0; j < n; j++) {
        vf v = SFX(ldf)(XT + j * 16);
#ifdef HAVE_TSUM
        vf e = SFX(exp2_tsum)(v, mv, nmv, chv, clv);
#else
        vf e = SFX(exp2_mixed)((SFX(lo2d)(v) - m0) * c0, (SFX(hi2d)(v) - m1) * c1);
#endif
        s0 += SFX(lo2d)(e);
        s1 += SFX(hi2d)(e);
        if (kind == KIND_SOFTMAX) SFX(stf)(PT + j * 16, e);
    }
    /* rows for the scalar reference: NaN, no finite maximum, T = 0 / inf (c not in (0, inf)) */
    vl ok0 = (vl)((m0 - m0) == 0.0) & (vl)(c0 > 0.0) & (vl)(c0 < INFINITY) & (vl)(T0 < INFINITY);
    vl ok1 = (vl)((m1 - m1) == 0.0) & (vl)(c1 > 0.0) & (vl)(c1 < INFINITY) & (vl)(T1 < INFINITY);
    vi okf = SFX(l2i)(ok0, ok1) & ~bad;
    int anysp = 0;
    for (int r = 0; r < 16; r++) anysp |= okf[r] == 0;
    double sl[16], ml[16];
    SFX(std_)(sl, s0); SFX(std_)(sl + 8, s1);
    if (anysp) for (int r = 0; r < 16; r++) spec[r] = okf[r] == 0;
    else memset(spec, 0, 16);
    if (kind == KIND_LSE) { SFX(std_)(ml, m0); SFX(std_)(ml + 8, m1); }
    if (kind == KIND_SOFTMAX) {
        vd i0 = 1.0 / s0, i1 = 1.0 / s1;
        vf ih = SFX(d2f)(i0, i1);
        vf il = SFX(d2f)(i0 - SFX(lo2d)(ih), i1 - SFX(hi2d)(ih));
        for (npy_intp j = 0; j < n; j++) {
            vf v = SFX(ldf)(PT + j * 16);
            SFX(stf)(PT + j * 16, v * ih + v * il);
        }
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
    vl bad = (vl){0};
    for (npy_intp j = 0; j < n; j++) {
        vd v = SFX(ldd)(XT + j * 8);
        mv = SFX(maxd)(v, mv);
        bad |= (vl)(v != v);
    }
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
        spec[r] = bad[r] || !(isfinite(ml[r]) && cl[r] > 0.0 && cl[r] < INFINITY && Tr[r] < INFINITY);
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


#ifdef HAVE_TSUM
/* 16 x 16 float transpose in registers (unpack / unpack / shuffle / shuffle) */
AI void SFX(tr16)(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 4; k++) {
            t[8 * i + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0x88);
            t[8 * i + 4 + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0xdd);
        }
    }
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
    }
}

/* 16 rows (row r at xb + r*rs bytes, n contiguous floats) -> XT[j*16 + r] */
static void SFX(tr_in_f32)(const char *xb, npy_intp rs, npy_intp n, float *XT) {
    for (npy_intp j0 = 0; j0 < n; j0 += 16) {
        int w = (int)(n - j0 < 16 ? n - j0 : 16);
        __mmask16 k = (__mmask16)((1u << w) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(k, (const float *)(xb + i * rs) + j0);
        SFX(tr16)(r);
        for (int j = 0; j < w; j++) _mm512_storeu_ps(XT + (j0 + j) * 16, r[j]);
    }
}

/* PT[j*16 + r] -> 16 rows (row r at ob + r*os bytes) */
static void SFX(tr_out_f32)(const float *PT, npy_intp n, char *ob, npy_intp os) {
    for (npy_intp j0 = 0; j0 < n; j0 += 16) {
        int w = (int)(n - j0 < 16 ? n - j0 : 16);
        __mmask16 k = (__mmask16)((1u << w) - 1u);
        __m512 r[16];
        for (int j = 0; j < 16; j++) r[j] = j < w ? _mm512_loadu_ps(PT + (j0 + j) * 16) : _mm512_setzero_ps();
        SFX(tr16)(r);
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps((float *)(ob + i * os) + j0, k, r[i]);
    }
}
#endif

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
#undef HAVE_TSUM
