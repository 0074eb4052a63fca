/*
 * Vector kernels of tempscale's native softmax, written once with GCC vector extensions and
 * compiled once per instruction set: _dispatch.c includes this file several times, each time
 * for a different target (`#pragma GCC target(...)`, or `#pragma clang attribute` with clang),
 * with SFX(name) naming the copy (name_avx512, name_avx2, name_base) and VF the number of float
 * lanes of the machine's native vector (16 for AVX-512, 8 for AVX2, 4 for SSE2 / NEON).  The
 * includer also says what the target has: KI_AVX512 (AVX-512 F/DQ/VL/BW intrinsics) and
 * KI_FMA_X86 (AVX2 + FMA intrinsics); neither for the portable copy.  A "vf" holds VF floats, a
 * "vd" VF/2 doubles (the same bytes), so one vf converts to two vd.  Native widths matter: GCC
 * lowers wider generic vectors through memory.
 *
 * Numerics (docs/performance.md has the error analysis):
 *   float32, AVX-512: exp2_tsum.  x - m is kept exactly (TwoSum), t = (x - m) log2(e)/T as a
 *            float pair, 2^t = 2^k 2^f with f accurate to 2^-25, degree-6 polynomial in float,
 *            vscalefps.  Others: t in double (exact x - m), 2^t in double (exp2_lo).
 *            Either way the row sum is accumulated in double and the final scale by 1/sum is
 *            one rounding (float pair + FMA, or double).  Measured <= 2.6 ulp.
 *            AVX-512 uses exp2_tsum only for c in [TSUM_LO, TSUM_HI]; log-sums below 2^-90 are
 *            summed again in double (exp2_hi).
 *   float64: t = (x/2 - m/2) (2 log2(e)/T) (the halving keeps x - m finite; below F64_SMALL_T,
 *            ((x - m) 2^900) (log2(e) / (T 2^900)) instead), with the constant a double-double
 *            and the product kept as th + tl (targ_f64), 2^t with a degree-13 polynomial and a
 *            two-step 2^k so tiny results underflow to subnormals / exact 0; row sums
 *            compensated (Fast2Sum).  Measured <= 4 ulp (softmax), logsumexp as exact as SciPy.
 *   log_softmax / logsumexp: log s = log(k) + log1p(rest / k) with the k maxima counted apart
 *            (log_sum), so logsumexp([0, -40]) = 4.25e-18, not 0.
 * Non-finite cases (NaN, no finite maximum, +inf maximum, T = 0, T = inf) never come out of these
 * loops: the max pass flags NaN, the callers check the maximum and T, and such rows are redone by
 * the scalar reference (_ref_impl.h).
 */

#define AI static inline __attribute__((always_inline))
#define VD (VF / 2)

typedef float SFX(vf_t) __attribute__((vector_size(4 * VF)));
typedef double SFX(vd_t) __attribute__((vector_size(4 * VF)));
typedef int32_t SFX(vi_t) __attribute__((vector_size(4 * VF)));
typedef uint32_t SFX(vui_t) __attribute__((vector_size(4 * VF)));
typedef int64_t SFX(vl_t) __attribute__((vector_size(4 * VF)));
typedef uint64_t SFX(vu_t) __attribute__((vector_size(4 * VF)));
typedef float SFX(hf_t) __attribute__((vector_size(2 * VF)));
#define vf SFX(vf_t)
#define vd SFX(vd_t)
#define vi SFX(vi_t)
#define vui SFX(vui_t)
#define vl SFX(vl_t)
#define vu SFX(vu_t)
#define hf SFX(hf_t)

#ifdef KI_AVX512
#define HAVE_TSUM 1
#endif

AI vf SFX(ldf)(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
AI void SFX(stf)(float *p, vf v) { memcpy(p, &v, sizeof v); }
AI vd SFX(ldd)(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
AI void SFX(std_)(double *p, vd v) { memcpy(p, &v, sizeof v); }
/* VD floats <-> one vd */
AI vd SFX(ldhf)(const float *p) { hf h; memcpy(&h, p, sizeof h); return __builtin_convertvector(h, vd); }
AI void SFX(sthf)(float *p, vd v) { hf h = __builtin_convertvector(v, hf); memcpy(p, &h, sizeof h); }

/* 16-bit storage (bfloat16 / float16) <-> float32, VF entries at a time.  bfloat16 widens by a
   16-bit shift and narrows as f32_to_bf16 does (round to nearest even, NaN kept quiet, overflow
   to inf); float16 with the hardware conversions (F16C / AVX-512: round to nearest even, denormals
   kept whatever MXCSR says), elsewhere the compiler's _Float16 conversions.  ht / ot below are
   T_F32, T_BF16 or T_F16, constants in every inlined caller, so the branches fold. */
typedef uint16_t SFX(vh_t) __attribute__((vector_size(2 * VF)));
#define vh SFX(vh_t)
/* VF 32-bit lanes (each < 2^16) narrowed to 16 bits and stored (the x86 copies with explicit
   instructions: GCC's generic lowering of the conversion splits it at 256 bits) */
AI void SFX(st_u16)(uint16_t *p, vui r) {
#if defined(KI_AVX512)
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16((__m512i)r));
#elif defined(KI_FMA_X86)
    __m256i k = _mm256_packus_epi32((__m256i)r, (__m256i)r);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(_mm256_permute4x64_epi64(k, 0x08)));
#else
    vh h = __builtin_convertvector(r, vh);
    memcpy(p, &h, sizeof h);
#endif
}
AI vf SFX(ld_bf16)(const uint16_t *p) {
#if defined(KI_AVX512)
    return (vf)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
#elif defined(KI_FMA_X86)
    return (vf)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
#else
    vh h;
    memcpy(&h, p, sizeof h);
    return (vf)(__builtin_convertvector(h, vui) << 16);
#endif
}
AI void SFX(st_bf16)(uint16_t *p, vf v) {
    vui u = (vui)v;
    vui r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    vui q = (u >> 16) | 0x40u;
    vui nan = (vui)((vi)(u & 0x7fffffffu) > 0x7f800000);
    SFX(st_u16)(p, (q & nan) | (r & ~nan));
}
/* the same for values known not to be NaN (a softmax's outputs): no NaN select */
AI void SFX(st_bf16_nn)(uint16_t *p, vf v) {
    vui u = (vui)v;
    SFX(st_u16)(p, (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
AI vf SFX(ld_f16)(const uint16_t *p) {
#if defined(KI_AVX512)
    return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(KI_FMA_X86)
    return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#elif HAVE_F16
    typedef f16_t hv_ __attribute__((vector_size(2 * VF)));
    hv_ h;
    memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, vf);
#else
    (void)p;
    return (vf){0} + NAN;
#endif
}
AI void SFX(st_f16)(uint16_t *p, vf v) {
#if defined(KI_AVX512)
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT));
#elif defined(KI_FMA_X86)
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT));
#elif HAVE_F16
    typedef f16_t hv_ __attribute__((vector_size(2 * VF)));
    hv_ h = __builtin_convertvector(v, hv_);
    memcpy(p, &h, sizeof h);
#else
    (void)p;
    (void)v;
#endif
}
/* VF entries of type ht at p + i (elements) as floats, and back */
AI vf SFX(ldx)(const void *p, ts_intp i, int ht) {
    if (ht == T_BF16) return SFX(ld_bf16)((const uint16_t *)p + i);
    if (ht == T_F16) return SFX(ld_f16)((const uint16_t *)p + i);
    return SFX(ldf)((const float *)p + i);
}
AI void SFX(stx)(void *p, ts_intp i, vf v, int ht) {
    if (ht == T_BF16) SFX(st_bf16)((uint16_t *)p + i, v);
    else if (ht == T_F16) SFX(st_f16)((uint16_t *)p + i, v);
    else SFX(stf)((float *)p + i, v);
}
AI void SFX(stx_nn)(void *p, ts_intp i, vf v, int ht) {
    if (ht == T_BF16) SFX(st_bf16_nn)((uint16_t *)p + i, v);
    else SFX(stx)(p, i, v, ht);
}
/* one entry */
AI float SFX(ld1)(const void *p, ts_intp i, int ht) {
    if (ht == T_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
#if HAVE_F16
    if (ht == T_F16) return f16_to_f32(((const uint16_t *)p)[i]);
#endif
    if (ht == T_F32) return ((const float *)p)[i];
    return NAN;
}
AI void SFX(st1)(void *p, ts_intp i, float v, int ht) {
    if (ht == T_BF16) ((uint16_t *)p)[i] = f32_to_bf16(v);
#if HAVE_F16
    else if (ht == T_F16) ((uint16_t *)p)[i] = f32_to_f16(v);
#endif
    else if (ht == T_F32) ((float *)p)[i] = v;
}
/* r (< VF) entries: through a buffer (16-bit types: converted as a whole vector), padded with
   `pad` */
AI vf SFX(ldx_part)(const void *p, ts_intp i, ts_intp r, int ht, float pad) {
#if defined(KI_AVX512)
    __mmask16 k = (__mmask16)((1u << r) - 1u);
    if (ht == T_F32) return (vf)_mm512_mask_loadu_ps(_mm512_set1_ps(pad), k, (const float *)p + i);
    if (ht == T_BF16 || ht == T_F16) {
        /* pad (0 or -inf) as a 16-bit pattern, the r entries by a masked load */
        uint16_t ph = pad == 0.0f ? 0 : ht == T_BF16 ? 0xff80 : 0xfc00;
        __m256i h = _mm256_mask_loadu_epi16(_mm256_set1_epi16((short)ph), k, (const uint16_t *)p + i);
        return ht == T_BF16 ? (vf)_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)
                            : (vf)_mm512_cvtph_ps(h);
    }
#endif
    if (ht == T_BF16 || ht == T_F16) {
        uint16_t ph = pad == 0.0f ? 0 : ht == T_BF16 ? 0xff80 : 0xfc00, hb[VF];
        for (int l = 0; l < VF; l++) hb[l] = ph;
        memcpy(hb, (const uint16_t *)p + i, 2 * (size_t)r);
        return SFX(ldx)(hb, 0, ht);
    }
    float buf[VF];
    for (int l = 0; l < VF; l++) buf[l] = l < r ? SFX(ld1)(p, i + l, ht) : pad;
    return SFX(ldf)(buf);
}
AI void SFX(stx_part)(void *p, ts_intp i, ts_intp r, vf v, int ht) {
#if defined(KI_AVX512)
    __mmask16 k = (__mmask16)((1u << r) - 1u);
    if (ht == T_F32) {
        _mm512_mask_storeu_ps((float *)p + i, k, (__m512)v);
        return;
    }
    if (ht == T_BF16) {
        vui u = (vui)v;
        vui rn = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, q = (u >> 16) | 0x40u;
        vui nan = (vui)((vi)(u & 0x7fffffffu) > 0x7f800000);
        _mm256_mask_storeu_epi16((uint16_t *)p + i, k, _mm512_cvtepi32_epi16((__m512i)((q & nan) | (rn & ~nan))));
        return;
    }
    if (ht == T_F16) {
        _mm256_mask_storeu_epi16((uint16_t *)p + i, k, _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT));
        return;
    }
#endif
    if (ht == T_BF16 || ht == T_F16) {
        uint16_t hb[VF];
        SFX(stx)(hb, 0, v, ht);
        memcpy((uint16_t *)p + i, hb, 2 * (size_t)r);
        return;
    }
    float buf[VF];
    SFX(stf)(buf, v);
    for (ts_intp l = 0; l < r; l++) SFX(st1)(p, i + l, buf[l], ht);
}

/* a contiguous row of n entries of type t <-> float32 (gathers and scatters of the job) */
AI void SFX(cvt_in_t)(const void *src, int t, float *dst, ts_intp n) {
    ts_intp i = 0;
    for (; i + VF <= n; i += VF) SFX(stf)(dst + i, SFX(ldx)(src, i, t));
    if (i < n) {
        float buf[VF];
        SFX(stf)(buf, SFX(ldx_part)(src, i, n - i, t, 0.0f));
        memcpy(dst + i, buf, 4 * (size_t)(n - i));
    }
}

AI void SFX(cvt_out_t)(const float *src, void *dst, int t, ts_intp n) {
    ts_intp i = 0;
    for (; i + VF <= n; i += VF) SFX(stx)(dst, i, SFX(ldf)(src + i), t);
    if (i < n) {
        float buf[VF] = {0};
        memcpy(buf, src + i, 4 * (size_t)(n - i));
        SFX(stx_part)(dst, i, n - i, SFX(ldf)(buf), t);
    }
}

static void SFX(cvt_in)(const void *src, int t, float *dst, ts_intp n) {
    if (t == T_BF16) SFX(cvt_in_t)(src, T_BF16, dst, n);
    else if (t == T_F16) SFX(cvt_in_t)(src, T_F16, dst, n);
    else memcpy(dst, src, 4 * (size_t)n);
}

static void SFX(cvt_out)(const float *src, void *dst, int t, ts_intp n) {
    if (t == T_BF16) SFX(cvt_out_t)(src, dst, T_BF16, n);
    else if (t == T_F16) SFX(cvt_out_t)(src, dst, T_F16, n);
    else memcpy(dst, src, 4 * (size_t)n);
}

/* a > b ? a : b, keeping b when a is NaN (NaN never becomes the maximum) */
#ifdef HAVE_TSUM
AI vf SFX(maxf)(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
AI vi SFX(isnanf)(vf a) { return (vi)_mm512_movm_epi32(_mm512_cmp_ps_mask((__m512)a, (__m512)a, _CMP_UNORD_Q)); }
AI vd SFX(lo2d)(vf v) { return (vd)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v)); }
AI vd SFX(hi2d)(vf v) { return (vd)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)v, 1)); }
AI vf SFX(d2f)(vd a, vd b) {
    return (vf)_mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps((__m512d)a)),
                                  _mm512_cvtpd_ps((__m512d)b), 1);
}
#else
AI vf SFX(maxf)(vf a, vf b) { vi k = (vi)(a > b); return (vf)(((vi)a & k) | ((vi)b & ~k)); }
AI vi SFX(isnanf)(vf a) { return (vi)(a != a); }
AI vd SFX(lo2d)(vf v) { hf h; memcpy(&h, &v, sizeof h); return __builtin_convertvector(h, vd); }
AI vd SFX(hi2d)(vf v) { hf h; memcpy(&h, (char *)&v + sizeof h, sizeof h); return __builtin_convertvector(h, vd); }
AI vf SFX(d2f)(vd a, vd b) {
    hf x = __builtin_convertvector(a, hf), y = __builtin_convertvector(b, hf);
    vf r;
    memcpy(&r, &x, sizeof x);
    memcpy((char *)&r + sizeof x, &y, sizeof y);
    return r;
}
#endif
AI vd SFX(maxd)(vd a, vd b) { vl k = (vl)(a > b); return (vd)(((vl)a & k) | ((vl)b & ~k)); }

#define SHIFTER 6755399441055744.0 /* 1.5 * 2^52: t + SHIFTER rounds t to an integer */

/* 2^t in double for t <= 0 (NaN in, NaN out), ~1e-9 relative (enough for a float result);
   exactly 0 for t < -200 (and -inf). */
AI vd SFX(exp2_lo)(vd t) {
    vd lo = (vd){0} - 200.0;
    vl below = (vl)(t < lo);
    t = (vd)(((vl)t & ~below) | ((vl)lo & below));
    vd kd = t + SHIFTER;
    vd k = kd - SHIFTER;
    vd f = t - k;
    vd p = (vd){0} + 1.5252733804059838e-05;           /* ln2^7 / 7! */
    p = p * f + 1.5403530393381606e-04;
    p = p * f + 1.3333558146428441e-03;
    p = p * f + 9.618129107628477e-03;
    p = p * f + 5.5504108664821576e-02;
    p = p * f + 2.402265069591007e-01;
    p = p * f + 6.931471805599453e-01;
    p = p * f + 1.0;
    vu b = ((vu)kd + 1023) << 52;
    vd e = p * (vd)b;
    return (vd)((vl)e & ~below);
}

#ifdef HAVE_TSUM
/* AVX-512: 2^f * 2^k for |f| <= 1/2 (degree-6 near-minimax polynomial, <= 0.9 ulp in float),
   lanes outside `ok` exactly 0 */
AI vf SFX(exp2_poly_scale)(__m512 f, __m512 kf, __mmask16 ok) {
    __m512 p = _mm512_set1_ps(1.5353357593994588e-04f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887734502554e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437848985195e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503323674201965e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022647738456726e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471824645996e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return (vf)_mm512_maskz_scalef_ps(ok, p, kf);
}

/* AVX-512: 2^((x - m) c) in float arithmetic only, as accurate as a double evaluation.  x - m is
   kept exactly as d + err (TwoSum), c = ch + cl is a float pair, and t = (d + err) c is formed as
   th + tl with th = d*ch rounded (an opaque multiply, so -ffp-contract cannot fuse it) and
   tl = fma(d, ch, -th) + d cl + err ch; f = (th - k) + tl is then accurate to 2^-25; 2^f from a
   degree-6 near-minimax polynomial (<= 0.9 ulp in float).  th < -200 (also -inf and an
   overflowed x - m) gives exactly 0; NaN input gives garbage (callers detect NaN first). */
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
    return SFX(exp2_poly_scale)(f, kf, ok);
}

/* AVX-512, for 16-bit results only: 2^((x - m) c) with x - m and its product by c = ch + cl
   rounded in float (relative error <= |t| 2^-23 on top of exp2_tsum's: below 3e-6 for every
   term that a bfloat16 (2^-133) or float16 (2^-24) result can hold, far below their half-ulps
   of 2^-9 / 2^-12); same polynomial and the same zero for t < -200 */
AI vf SFX(exp2_f16out)(vf xv, vf mv, vf chv, vf clv) {
    __m512 d = _mm512_sub_ps((__m512)xv, (__m512)mv);
    __m512 t = _mm512_fmadd_ps(d, (__m512)chv, _mm512_mul_ps(d, (__m512)clv));
    __mmask16 ok = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-200.0f), _CMP_GE_OQ);
    __m512 kf = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, kf);
    return SFX(exp2_poly_scale)(f, kf, ok);
}
#endif

/* 2^(t + tl) for t <= 0 (or NaN) and |tl| << 1, double accuracy (~2 ulp); subnormal / zero
   results below -1022; exactly 0 for t < -1100 (and -inf) whatever tl is. */
AI vd SFX(exp2_hi2)(vd t, vd tl) {
    vd lo = (vd){0} - 1100.0;
    vl below = (vl)(t < lo);
    t = (vd)(((vl)t & ~below) | ((vl)lo & below));
    vd kd = t + SHIFTER;
    vd k = kd - SHIFTER;
    vd f = (t - k) + tl;
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

AI vd SFX(exp2_hi)(vd t) { return SFX(exp2_hi2)(t, (vd){0}); }

/* a * b - p exactly, for p = a * b rounded (FMA where the target has it, else Dekker's product;
   there a lane whose split overflows gets 0: only |a| > 1e300, where the caller's term has
   |t| >> 1 or a tiny c anyway.  Dekker's splits are only reached without hardware FMA, so no
   -ffp-contract can fuse them) */
AI vd SFX(prod_err)(vd a, vd b, vd p) {
#if defined(KI_AVX512)
    return (vd)_mm512_fmsub_pd((__m512d)a, (__m512d)b, (__m512d)p);
#elif defined(KI_FMA_X86)
    return (vd)_mm256_fmsub_pd((__m256d)a, (__m256d)b, (__m256d)p);
#elif defined(__aarch64__) || defined(__FP_FAST_FMA)
    vd e;
    for (int l = 0; l < VD; l++) e[l] = __builtin_fma(a[l], b[l], -p[l]);
    return e;
#else
    vd sa = a * 134217729.0, sb = b * 134217729.0;
    vd ah = sa - (sa - a), al = a - ah, bh = sb - (sb - b), bl = b - bh;
    vd e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    return (vd)((vl)e & (vl)(e == e));
#endif
}

/* the rounded product a * b, kept opaque so that -ffp-contract cannot fuse it into the next add
   (prod_err must see the same rounded value) */
AI vd SFX(mul_opaque)(vd a, vd b) {
    vd p = a * b;
#if defined(__x86_64__) || defined(__i386__)
#if VF == 16
    __asm__("" : "+v"(p));
#else
    __asm__("" : "+x"(p));
#endif
#elif defined(__aarch64__)
    __asm__("" : "+w"(p));
#else
    __asm__("" : "+m"(p)); /* any other target: through memory */
#endif
    return p;
}

/* t = (x - m) log2(e) / T as th + tl: d = (x h - m h) A rounded once (as x - m is in any
   exp(x - m) evaluation), times c = ch + cl, the double-double log2(e) / (T h A), exactly.
   Rounding t = d c once instead would cost |t| 2^-53 relative in 2^t beyond that (48 ulps for
   exp(-57) where x - m is exact, unlike exp(x - m) in natural units).  An overflowed
   (x - m) A gives th = -inf (a zero term). */
AI vd SFX(targ_f64)(vd x, vd h, vd mh, vd A, vd ch, vd cl, vd *tl) {
    vd dA = (x * h - mh) * A;
    vd th = SFX(mul_opaque)(dA, ch);
    *tl = SFX(prod_err)(dA, ch, th) + dA * cl;
    return th;
}

#ifdef TS_BENCH_KERNELS
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
#endif

/* ------------------------------------------------------------------------------------------ */
/* wide rows, float32, contiguous                                                             */
/* ------------------------------------------------------------------------------------------ */
/* row maximum ignoring NaN; *nan set when a NaN is present */
AI float SFX(rowmax_x)(const void *x, ts_intp n, int *nan, int ht) {
    vf ninf = (vf){0} - INFINITY;
    vf a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    vi bad = (vi){0};
    ts_intp i = 0;
    for (; i + 4 * VF <= n; i += 4 * VF) {
        vf v0 = SFX(ldx)(x, i, ht), v1 = SFX(ldx)(x, i + VF, ht);
        vf v2 = SFX(ldx)(x, i + 2 * VF, ht), v3 = SFX(ldx)(x, i + 3 * VF, ht);
        a0 = SFX(maxf)(v0, a0);
        a1 = SFX(maxf)(v1, a1);
        a2 = SFX(maxf)(v2, a2);
        a3 = SFX(maxf)(v3, a3);
        bad |= SFX(isnanf)(v0) | SFX(isnanf)(v1) | SFX(isnanf)(v2) | SFX(isnanf)(v3);
    }
    for (; i + VF <= n; i += VF) {
        vf v = SFX(ldx)(x, i, ht);
        a0 = SFX(maxf)(v, a0);
        bad |= SFX(isnanf)(v);
    }
    a0 = SFX(maxf)(a1, a0);
    a2 = SFX(maxf)(a3, a2);
    a0 = SFX(maxf)(a2, a0);
    float m = -INFINITY;
    int nn = 0;
    for (int l = 0; l < VF; l++) {
        if (a0[l] > m) m = a0[l];
        nn |= bad[l];
    }
    for (; i < n; i++) {
        float v = SFX(ld1)(x, i, ht);
        if (v > m) m = v;
        nn |= v != v;
    }
    *nan = nn != 0;
    return m;
}

AI float SFX(rowmax_f32)(const float *x, ts_intp n, int *nan) { return SFX(rowmax_x)(x, n, nan, T_F32); }

/* sum (in double) of 2^((x - m) c); with store, also writes the unnormalised values to o.
   With cnt (log_softmax / logsumexp), the entries equal to the maximum (whose term is exactly 1)
   are left out of the sum and counted in *cnt instead, so that log(sum) can be formed as
   log(k) + log1p(rest / k) without losing the small terms (log_sum in _common.h).
   AVX-512 evaluates with exp2_tsum when c is in [TSUM_LO, TSUM_HI] (the float pair (ch, cl)
   is then normal and an overflowed x - m still means a zero term); otherwise, and on other
   instruction sets, t = (x - m) c is formed in double (exact x - m, c un-narrowed).  precise:
   always in double, with exp2_hi (terms down to 2^-1074 instead of float subnormals / the 2^-200
   cut-off of exp2_lo), for log-sums whose non-maximal terms add up to less than PRECISE_BELOW. */
AI double SFX(expsum_x)(const void *x, float *o, ts_intp n, double m, double c, int store,
                        double *cnt, int precise, int ht, int fast) {
    (void)fast; /* exp2_f16out: AVX-512 only */
    vd s0 = (vd){0}, s1 = (vd){0};
    ts_intp i = 0;
#define EXP2D(t) (precise ? SFX(exp2_hi)(t) : SFX(exp2_lo)(t))
#ifdef HAVE_TSUM
    if (!precise && c >= TSUM_LO && c <= TSUM_HI) {
        float chs = (float)c;
        vf mv = (vf){0} + (float)m, nmv = (vf){0} - (float)m;
        vf chv = (vf){0} + chs, clv = (vf){0} + (float)(c - (double)chs);
        int64_t k = 0;
        __mmask16 q;
#define EXPV(v) (fast ? SFX(exp2_f16out)(v, mv, chv, clv) : SFX(exp2_tsum)(v, mv, nmv, chv, clv))
#define SPLIT(e, v)                                                                              \
    if (cnt) {                                                                                   \
        q = _mm512_cmp_ps_mask((__m512)(v), (__m512)mv, _CMP_EQ_OQ);                             \
        e = (vf)_mm512_maskz_mov_ps((__mmask16)~q, (__m512)e);                                   \
        k += __builtin_popcount((unsigned)q);                                                    \
    }
        for (; i + 64 <= n; i += 64) {
            vf v0 = SFX(ldx)(x, i, ht), v1 = SFX(ldx)(x, i + 16, ht);
            vf v2 = SFX(ldx)(x, i + 32, ht), v3 = SFX(ldx)(x, i + 48, ht);
            vf e0 = EXPV(v0), e1 = EXPV(v1), e2 = EXPV(v2), e3 = EXPV(v3);
            if (store) {
                SFX(stf)(o + i, e0);
                SFX(stf)(o + i + 16, e1);
                SFX(stf)(o + i + 32, e2);
                SFX(stf)(o + i + 48, e3);
            }
            SPLIT(e0, v0) SPLIT(e1, v1) SPLIT(e2, v2) SPLIT(e3, v3)
            vf fs = (e0 + e1) + (e2 + e3);   /* 4 terms in float: <= 1.5 ulp on a partial sum */
            s0 += SFX(lo2d)(fs);
            s1 += SFX(hi2d)(fs);
        }
        for (; i + 16 <= n; i += 16) {
            vf v0 = SFX(ldx)(x, i, ht);
            vf e0 = EXPV(v0);
            if (store) SFX(stf)(o + i, e0);
            SPLIT(e0, v0)
            s0 += SFX(lo2d)(e0);
            s1 += SFX(hi2d)(e0);
        }
        if (i < n) {
            float ob[16];
            ts_intp r = n - i;
            vf v0 = SFX(ldx_part)(x, i, r, ht, -INFINITY);
            vf e0 = EXPV(v0);
            if (store) {
                SFX(stf)(ob, e0);
                for (ts_intp l = 0; l < r; l++) o[i + l] = ob[l];
            }
            SPLIT(e0, v0)
            s0 += SFX(lo2d)(e0);
            s1 += SFX(hi2d)(e0);
        }
#undef SPLIT
#undef EXPV
        if (cnt) *cnt = (double)k;
    } else
#endif
    {
        vl k0 = (vl){0}, k1 = (vl){0};
        for (; i + VF <= n; i += VF) {
            vf xv = SFX(ldx)(x, i, ht);
            vd x0 = SFX(lo2d)(xv), x1 = SFX(hi2d)(xv);
            vd e0 = EXP2D((x0 - m) * c);
            vd e1 = EXP2D((x1 - m) * c);
            if (store) {
                SFX(sthf)(o + i, e0);
                SFX(sthf)(o + i + VD, e1);
            }
            if (cnt) {
                vl q0 = (vl)(x0 == m), q1 = (vl)(x1 == m);
                e0 = (vd)((vl)e0 & ~q0);
                e1 = (vd)((vl)e1 & ~q1);
                k0 -= q0;
                k1 -= q1;
            }
            s0 += e0;
            s1 += e1;
        }
        if (i < n) {
            float ob[VF];
            ts_intp r = n - i;
            vf xv = SFX(ldx_part)(x, i, r, ht, -INFINITY);
            vd x0 = SFX(lo2d)(xv), x1 = SFX(hi2d)(xv);
            vd e0 = EXP2D((x0 - m) * c);
            vd e1 = EXP2D((x1 - m) * c);
            if (store) {
                SFX(sthf)(ob, e0);
                SFX(sthf)(ob + VD, e1);
                for (ts_intp l = 0; l < r; l++) o[i + l] = ob[l];
            }
            if (cnt) {
                vl q0 = (vl)(x0 == m), q1 = (vl)(x1 == m);
                e0 = (vd)((vl)e0 & ~q0);
                e1 = (vd)((vl)e1 & ~q1);
                k0 -= q0;
                k1 -= q1;
            }
            s0 += e0;
            s1 += e1;
        }
        if (cnt) {
            k0 += k1;
            int64_t k = 0;
            for (int l = 0; l < VD; l++) k += k0[l];
            *cnt = (double)k;
        }
    }
#undef EXP2D
    s0 += s1;
    double s = 0.0;
    for (int l = 0; l < VD; l++) s += s0[l];
    return s;
}

AI double SFX(expsum_f32)(const float *x, float *o, ts_intp n, double m, double c, int store,
                          double *cnt, int precise) {
    return SFX(expsum_x)(x, o, n, m, c, store, cnt, precise, T_F32, 0);
}

/* v*ah + v*al: one rounding with FMA (explicit on AVX-512, by contraction elsewhere) */
#ifdef HAVE_TSUM
AI vf SFX(mul2)(vf v, vf ah, vf al) { return (vf)_mm512_fmadd_ps((__m512)v, (__m512)ah, _mm512_mul_ps((__m512)v, (__m512)al)); }
#else
AI vf SFX(mul2)(vf v, vf ah, vf al) { return v * ah + v * al; }
#endif

/* o *= a, with a = ah + al a float pair */
AI void SFX(scale_f32)(float *o, ts_intp n, double a) {
    float ahs = (float)a, als = (float)(a - (double)ahs);
    vf ah = (vf){0} + ahs, al = (vf){0} + als;
    ts_intp i = 0;
    for (; i + 2 * VF <= n; i += 2 * VF) {
        vf v0 = SFX(ldf)(o + i), v1 = SFX(ldf)(o + i + VF);
        SFX(stf)(o + i, SFX(mul2)(v0, ah, al));
        SFX(stf)(o + i + VF, SFX(mul2)(v1, ah, al));
    }
    for (; i + VF <= n; i += VF) {
        vf v0 = SFX(ldf)(o + i);
        SFX(stf)(o + i, SFX(mul2)(v0, ah, al));
    }
    for (; i < n; i++) o[i] = (float)((double)o[i] * a);
}

/* o = (x - m) * invT - ls, in double, rounded once */
AI void SFX(logsm_f32)(const float *x, float *o, ts_intp n, double m, double invT, double ls) {
    ts_intp i = 0;
    for (; i + VD <= n; i += VD) SFX(sthf)(o + i, (SFX(ldhf)(x + i) - m) * invT - ls);
    for (; i < n; i++) o[i] = (float)(((double)x[i] - m) * invT - ls);
}

/* o (type ot) = src * a, rounded as scale_f32 rounds (then to ot); no NaN in src */
AI void SFX(scale_to)(const float *src, void *o, int ot, ts_intp n, double a, int nt) {
    float ahs = (float)a, als = (float)(a - (double)ahs);
    vf ah = (vf){0} + ahs, al = (vf){0} + als;
    ts_intp i = 0;
#if defined(KI_AVX512)
    if (nt && ot != T_F32) {
        /* streaming (non-temporal) stores of a 16-bit o: no read for ownership of its lines.
           The same values as below: vector arithmetic on [0, nv) (masked at both ends, the
           body 32-byte aligned), the scalar form on the last n % VF */
        uint16_t *oh = (uint16_t *)o;
        ts_intp nv = n - n % VF, h = (ts_intp)(((32 - ((uintptr_t)oh & 31)) & 31) / 2);
        if (h > nv) h = nv;
#define TO16(v) (ot == T_BF16 ? _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(          \
            _mm512_add_epi32((__m512i)(v), _mm512_set1_epi32(0x7fff)),                             \
            _mm512_and_si512(_mm512_srli_epi32((__m512i)(v), 16), _mm512_set1_epi32(1))), 16))     \
                              : _mm512_cvtps_ph((__m512)(v), _MM_FROUND_TO_NEAREST_INT))
        if (h) {
            __mmask16 k = (__mmask16)((1u << h) - 1u);
            vf v = SFX(mul2)((vf)_mm512_maskz_loadu_ps(k, src), ah, al);
            _mm256_mask_storeu_epi16(oh, k, TO16(v));
        }
        for (i = h; i + VF <= nv; i += VF) {
            vf v = SFX(mul2)(SFX(ldf)(src + i), ah, al);
            _mm256_stream_si256((__m256i *)(oh + i), TO16(v));
        }
        if (i < nv) {
            __mmask16 k = (__mmask16)((1u << (nv - i)) - 1u);
            vf v = SFX(mul2)((vf)_mm512_maskz_loadu_ps(k, src + i), ah, al);
            _mm256_mask_storeu_epi16(oh + i, k, TO16(v));
        }
#undef TO16
        for (i = nv; i < n; i++) SFX(st1)(o, i, (float)((double)src[i] * a), ot);
        _mm_sfence();
        return;
    }
#else
    (void)nt;
#endif
    for (; i + 2 * VF <= n; i += 2 * VF) {
        vf v0 = SFX(ldf)(src + i), v1 = SFX(ldf)(src + i + VF);
        SFX(stx_nn)(o, i, SFX(mul2)(v0, ah, al), ot);
        SFX(stx_nn)(o, i + VF, SFX(mul2)(v1, ah, al), ot);
    }
    for (; i + VF <= n; i += VF) SFX(stx_nn)(o, i, SFX(mul2)(SFX(ldf)(src + i), ah, al), ot);
    for (; i < n; i++) SFX(st1)(o, i, (float)((double)src[i] * a), ot);
}

/* o (type ot) = (x - m) * invT - ls for x of type ht, in double, rounded to float (then to ot);
   no NaN in x */
AI void SFX(logsm_x)(const void *x, int ht, void *o, int ot, ts_intp n, double m, double invT,
                     double ls) {
    ts_intp i = 0;
    for (; i + VF <= n; i += VF) {
        vf xv = SFX(ldx)(x, i, ht);
        vd a = (SFX(lo2d)(xv) - m) * invT - ls, b = (SFX(hi2d)(xv) - m) * invT - ls;
        SFX(stx_nn)(o, i, SFX(d2f)(a, b), ot);
    }
    for (; i < n; i++) SFX(st1)(o, i, (float)(((double)SFX(ld1)(x, i, ht) - m) * invT - ls), ot);
}

/* row_f32 for a row x of 16-bit type xt (T_BF16 / T_F16) converted on the fly: the max and
   exp-sum passes read x itself, the last pass writes o (type ot: xt or T_F32) directly; a
   softmax into a 16-bit o keeps its unnormalised values in scratch (n floats) and, with nt
   (AVX-512), writes o with streaming stores.  The values are
   those of row_f32 on the row converted to float32, then rounded to ot, except that for a 16-bit
   ot AVX-512 evaluates the exponentials with exp2_f16out (within a few float32 ulps: at most one
   ulp of ot apart, where the float32 value lies that close to a rounding boundary). */
AI int SFX(row_x)(const void *x, int xt, void *o, int ot, ts_intp n, double T, int kind,
                  double *lse, float *scratch, int nt) {
    int nan;
    float mf = SFX(rowmax_x)(x, n, &nan, xt);
    if (nan || !isfinite(mf) || !(T >= TMIN_F32 && T < INFINITY)) return 1;
    double m = mf, c = LOG2E / T;
    int fast = ot != T_F32; /* 16-bit results: exp2_f16out (AVX-512) */
    if (kind == KIND_SOFTMAX) {
        float *e = ot == T_F32 ? (float *)o : scratch;
        double s = SFX(expsum_x)(x, e, n, m, c, 1, NULL, 0, xt, fast);
        if (!isfinite(s)) return 1;
        SFX(scale_to)(e, o, ot, n, 1.0 / s, nt);
    } else {
        double k;
        double rest = SFX(expsum_x)(x, NULL, n, m, c, 0, &k, 0, xt, fast);
        if (rest < PRECISE_BELOW) rest = SFX(expsum_x)(x, NULL, n, m, c, 0, &k, 1, xt, 0);
        if (!isfinite(rest) || !(k >= 1.0)) return 1;
        double ls = log_sum(k, rest);
        if (kind == KIND_LOGSOFTMAX) SFX(logsm_x)(x, xt, o, ot, n, m, 1.0 / T, ls);
        else *lse = lse_combine(m, T, ls);
    }
    return 0;
}

static int SFX(row_h16)(const void *x, int xt, void *o, int ot, ts_intp n, double T, int kind,
                        double *lse, float *scratch, int nt) {
    if (xt == T_BF16) {
        if (ot == T_BF16) return SFX(row_x)(x, T_BF16, o, T_BF16, n, T, kind, lse, scratch, nt);
        return SFX(row_x)(x, T_BF16, o, T_F32, n, T, kind, lse, scratch, 0);
    }
#if HAVE_F16
    if (xt == T_F16) {
        if (ot == T_F16) return SFX(row_x)(x, T_F16, o, T_F16, n, T, kind, lse, scratch, nt);
        return SFX(row_x)(x, T_F16, o, T_F32, n, T, kind, lse, scratch, 0);
    }
#endif
    return 1;
}

#if defined(HAVE_TSUM) && defined(TS_BENCH_KERNELS)
/* o = src * a (a = ah + al) with streaming stores: the output of a large softmax bypasses the
   caches, so it costs one write instead of a read-for-ownership plus a write */
AI void SFX(scale_stream_f32)(const float *src, float *o, ts_intp n, double a) {
    float ahs = (float)a, als = (float)(a - (double)ahs);
    __m512 ah = _mm512_set1_ps(ahs), al = _mm512_set1_ps(als);
    ts_intp i = 0;
    for (; i < n && ((uintptr_t)(o + i) & 63); i++) o[i] = (float)((double)src[i] * a);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        _mm512_stream_ps(o + i, _mm512_fmadd_ps(v, ah, _mm512_mul_ps(v, al)));
    }
    for (; i < n; i++) o[i] = (float)((double)src[i] * a);
    _mm_sfence();
}
#endif

/* returns 0 when handled, 1 when the row needs the scalar reference (NaN, no finite maximum,
   T = 0 / inf / NaN, and T < TMIN_F32: there every float gap is an exact zero term);
   scratch (NULL, except in benchmark builds (TS_BENCH_KERNELS) with streaming stores on, for
   AVX-512 softmax): n floats for the unnormalised values, then the result is streamed to o */
static int SFX(row_f32)(const float *x, float *o, ts_intp n, double T, int kind, double *lse,
                        float *scratch) {
    int nan;
    float mf = SFX(rowmax_f32)(x, n, &nan);
    if (nan || !isfinite(mf) || !(T >= TMIN_F32 && T < INFINITY)) return 1;
    double m = mf, c = LOG2E / T;
    if (kind == KIND_SOFTMAX) {
#if defined(HAVE_TSUM) && defined(TS_BENCH_KERNELS)
        if (scratch) {
            double s = SFX(expsum_f32)(x, scratch, n, m, c, 1, NULL, 0);
            if (!isfinite(s)) return 1;
            SFX(scale_stream_f32)(scratch, o, n, 1.0 / s);
            return 0;
        }
#else
        (void)scratch;
#endif
        double s = SFX(expsum_f32)(x, o, n, m, c, 1, NULL, 0);
        if (!isfinite(s)) return 1;
        SFX(scale_f32)(o, n, 1.0 / s);
    } else {
        double k;
        double rest = SFX(expsum_f32)(x, NULL, n, m, c, 0, &k, 0);
        if (rest < PRECISE_BELOW) rest = SFX(expsum_f32)(x, NULL, n, m, c, 0, &k, 1);
        if (!isfinite(rest) || !(k >= 1.0)) return 1;
        double ls = log_sum(k, rest);
        if (kind == KIND_LOGSOFTMAX) SFX(logsm_f32)(x, o, n, m, 1.0 / T, ls);
        else *lse = lse_combine(m, T, ls);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* wide rows, float64, contiguous                                                             */
/* ------------------------------------------------------------------------------------------ */
AI double SFX(rowmax_f64)(const double *x, ts_intp n) {
    vd ninf = (vd){0} - INFINITY;
    vd a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    ts_intp i = 0;
    for (; i + 4 * VD <= n; i += 4 * VD) {
        a0 = SFX(maxd)(SFX(ldd)(x + i), a0);
        a1 = SFX(maxd)(SFX(ldd)(x + i + VD), a1);
        a2 = SFX(maxd)(SFX(ldd)(x + i + 2 * VD), a2);
        a3 = SFX(maxd)(SFX(ldd)(x + i + 3 * VD), a3);
    }
    for (; i + VD <= n; i += VD) a0 = SFX(maxd)(SFX(ldd)(x + i), a0);
    a0 = SFX(maxd)(a1, a0);
    a2 = SFX(maxd)(a3, a2);
    a0 = SFX(maxd)(a2, a0);
    double m = -INFINITY;
    for (int l = 0; l < VD; l++) if (a0[l] > m) m = a0[l];
    for (; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

/* s + e as the pair (s, r), compensated summation (a float64 row of 70000 equal terms stays
   within a few ulps): Fast2Sum, exact because the accumulators start at 1 (removed at the end)
   and every term is in [0, 1], so |s| >= |e| */
AI void SFX(twosum)(vd *s, vd *r, vd e) {
    vd t = *s + e;
    *r += e - (t - *s);
    *s = t;
}

/* t = ((x h - m h) A) c: h = 1/2 keeps x - m finite for any two doubles; for T < F64_SMALL_T,
   h = 1 and A = F64_SCALE instead (T h would underflow there): x - m is then rounded once and a
   product overflowing to -inf still means a zero term.  c = log2(e) / (T h A), finite for every
   T in (0, inf).  NaN propagates through exp2_hi into the sum, which the caller checks.  With
   cnt, the maxima are counted instead of summed (see expsum_f32). */
AI double SFX(expsum_f64)(const double *x, double *o, ts_intp n, double mh, double h, double A,
                          double ch, double cl, double m, int store, double *cnt) {
    vd hv = (vd){0} + h, mhv = (vd){0} + mh, Av = (vd){0} + A, chv = (vd){0} + ch;
    vd clv = (vd){0} + cl, t0l, t1l;
    vd s0 = (vd){0} + 1.0, s1 = (vd){0} + 1.0, r0 = (vd){0}, r1 = (vd){0}; /* see twosum */
    vl k0 = (vl){0}, k1 = (vl){0};
    ts_intp i = 0;
    for (; i + 2 * VD <= n; i += 2 * VD) {
        vd x0 = SFX(ldd)(x + i), x1 = SFX(ldd)(x + i + VD);
        vd t0 = SFX(targ_f64)(x0, hv, mhv, Av, chv, clv, &t0l);
        vd t1 = SFX(targ_f64)(x1, hv, mhv, Av, chv, clv, &t1l);
        vd e0 = SFX(exp2_hi2)(t0, t0l);
        vd e1 = SFX(exp2_hi2)(t1, t1l);
        if (store) {
            SFX(std_)(o + i, e0);
            SFX(std_)(o + i + VD, e1);
        }
        if (cnt) {
            vl q0 = (vl)(x0 == m), q1 = (vl)(x1 == m);
            e0 = (vd)((vl)e0 & ~q0);
            e1 = (vd)((vl)e1 & ~q1);
            k0 -= q0;
            k1 -= q1;
        }
        SFX(twosum)(&s0, &r0, e0);
        SFX(twosum)(&s1, &r1, e1);
    }
    for (; i < n; i += VD) {
        double buf[VD], ob[VD];
        ts_intp r = n - i < VD ? n - i : VD;
        for (int l = 0; l < VD; l++) buf[l] = l < r ? x[i + l] : -INFINITY;
        vd x0 = SFX(ldd)(buf);
        vd t0 = SFX(targ_f64)(x0, hv, mhv, Av, chv, clv, &t0l);
        vd e0 = SFX(exp2_hi2)(t0, t0l);
        if (store) {
            SFX(std_)(ob, e0);
            for (ts_intp l = 0; l < r; l++) o[i + l] = ob[l];
        }
        if (cnt) {
            vl q0 = (vl)(x0 == m);
            e0 = (vd)((vl)e0 & ~q0);
            k0 -= q0;
        }
        SFX(twosum)(&s0, &r0, e0);
    }
    s0 -= 1.0; /* exact: 1 <= s < 2^53 */
    s1 -= 1.0;
    vd t01 = s0 + s1, bp01 = t01 - s0; /* TwoSum: either may be the larger now */
    r0 += ((s0 - (t01 - bp01)) + (s1 - bp01)) + r1;
    s0 = t01;
    double s = 0.0, r = 0.0;
    for (int l = 0; l < VD; l++) {
        double t = s + s0[l], bp = t - s;
        r += (s - (t - bp)) + (s0[l] - bp) + r0[l];
        s = t;
    }
    s += r;
    if (cnt) {
        k0 += k1;
        int64_t k = 0;
        for (int l = 0; l < VD; l++) k += k0[l];
        *cnt = (double)k;
    }
    return s;
}

AI void SFX(scale_f64)(double *o, ts_intp n, double a) {
    ts_intp i = 0;
    for (; i + VD <= n; i += VD) SFX(std_)(o + i, SFX(ldd)(o + i) * a);
    for (; i < n; i++) o[i] *= a;
}

/* o = ((x h - m h) A) / (T h A) - ls, as ((x h - mh) A) iT - ls */
AI void SFX(logsm_f64)(const double *x, double *o, ts_intp n, double mh, double h, double A,
                       double iT, double ls) {
    ts_intp i = 0;
    for (; i + VD <= n; i += VD) SFX(std_)(o + i, ((SFX(ldd)(x + i) * h - mh) * A) * iT - ls);
    for (; i < n; i++) o[i] = ((x[i] * h - mh) * A) * iT - ls;
}

static int SFX(row_f64)(const double *x, double *o, ts_intp n, double T, int kind, double *lse) {
    double m = SFX(rowmax_f64)(x, n);
    if (!isfinite(m) || !(T > 0.0 && T < INFINITY)) return 1;
    double h, A;
    f64_regime(T, &h, &A);
    double Ts = T * h * A; /* exact: scaling by powers of two inside the normal range */
    double mh = m * h, cl, c = log2e_over(Ts, &cl);
    if (kind == KIND_SOFTMAX) {
        double s = SFX(expsum_f64)(x, o, n, mh, h, A, c, cl, m, 1, NULL);
        if (!isfinite(s)) return 1;
        SFX(scale_f64)(o, n, 1.0 / s);
    } else {
        double k;
        double rest = SFX(expsum_f64)(x, NULL, n, mh, h, A, c, cl, m, 0, &k);
        if (!isfinite(rest) || !(k >= 1.0)) return 1;
        double ls = log_sum(k, rest);
        if (kind == KIND_LOGSOFTMAX) SFX(logsm_f64)(x, o, n, mh, h, A, 1.0 / Ts, ls);
        else *lse = lse_combine(m, T, ls);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* narrow rows: a block of BR rows held transposed (XT[j*BR + r]), vectorised across rows      */
/* ------------------------------------------------------------------------------------------ */
/* float32: BR = VF rows.  Tr: per-row T (double[VF], used un-narrowed).  Writes PT
   (softmax/log_softmax) or lse[VF]; spec[r] = 1 for rows the scalar reference must redo (NaN,
   no finite maximum, T not in [TMIN_F32, inf)); such rows compute with T = 1 here, so that one
   odd row does not move the whole block off the exp2_tsum path. */
static void SFX(block_f32)(const float *XT, float *PT, ts_intp n, const double *Tr, int kind,
                           double *lse, unsigned char *spec) {
    vf mv = (vf){0} - INFINITY;
    vi bad = (vi){0};
    for (ts_intp j = 0; j < n; j++) {
        vf v = SFX(ldf)(XT + j * VF);
        mv = SFX(maxf)(v, mv);
        bad |= SFX(isnanf)(v);
    }
    double Tl[VF], cl[VF], ml[VF], sl[VF], kl[VF];
    int tsum = 1;
    for (int r = 0; r < VF; r++) {
        double T = Tr[r];
        int sp = bad[r] != 0 || !isfinite(mv[r]) || !(T >= TMIN_F32 && T < INFINITY);
        spec[r] = (unsigned char)sp;
        Tl[r] = sp ? 1.0 : T;
        cl[r] = LOG2E / Tl[r];
        tsum &= cl[r] >= TSUM_LO && cl[r] <= TSUM_HI;
        kl[r] = 0.0;
    }
    (void)tsum;
    vd m0 = SFX(lo2d)(mv), m1 = SFX(hi2d)(mv);
    vd c0 = SFX(ldd)(cl), c1 = SFX(ldd)(cl + VD);
    vd s0 = (vd){0}, s1 = (vd){0};
    int split = kind != KIND_SOFTMAX;
    for (int pass = 0; pass < 2; pass++) { /* pass 1: precise log-sums (see expsum_f32) */
        int precise = pass == 1;
        s0 = s1 = (vd){0};
#ifdef HAVE_TSUM
        if (tsum && !precise) {
            vf chv = SFX(d2f)(c0, c1);
            vf clv = SFX(d2f)(c0 - SFX(lo2d)(chv), c1 - SFX(hi2d)(chv));
            vf nmv = -mv;
            vi kv = (vi){0};
            for (ts_intp j = 0; j < n; j++) {
                vf v = SFX(ldf)(XT + j * VF);
                vf e = SFX(exp2_tsum)(v, mv, nmv, chv, clv);
                if (kind == KIND_SOFTMAX) SFX(stf)(PT + j * VF, e);
                if (split) {
                    vi q = (vi)(v == mv);
                    e = (vf)((vi)e & ~q);
                    kv -= q;
                }
                s0 += SFX(lo2d)(e);
                s1 += SFX(hi2d)(e);
            }
            for (int r = 0; r < VF; r++) kl[r] = (double)kv[r];
        } else
#endif
        {
            vl k0 = (vl){0}, k1 = (vl){0};
            for (ts_intp j = 0; j < n; j++) {
                vd x0 = SFX(ldhf)(XT + j * VF), x1 = SFX(ldhf)(XT + j * VF + VD);
                vd t0 = (x0 - m0) * c0, t1 = (x1 - m1) * c1;
                vd e0 = precise ? SFX(exp2_hi)(t0) : SFX(exp2_lo)(t0);
                vd e1 = precise ? SFX(exp2_hi)(t1) : SFX(exp2_lo)(t1);
                if (kind == KIND_SOFTMAX) {
                    SFX(sthf)(PT + j * VF, e0);
                    SFX(sthf)(PT + j * VF + VD, e1);
                }
                if (split) {
                    vl q0 = (vl)(x0 == m0), q1 = (vl)(x1 == m1);
                    e0 = (vd)((vl)e0 & ~q0);
                    e1 = (vd)((vl)e1 & ~q1);
                    k0 -= q0;
                    k1 -= q1;
                }
                s0 += e0;
                s1 += e1;
            }
            for (int r = 0; r < VD; r++) {
                kl[r] = (double)k0[r];
                kl[r + VD] = (double)k1[r];
            }
        }
        SFX(std_)(sl, s0);
        SFX(std_)(sl + VD, s1);
        int again = 0;
        if (split && !precise)
            for (int r = 0; r < VF; r++) again |= !spec[r] && sl[r] < PRECISE_BELOW;
        if (!again) break;
    }
    if (kind == KIND_SOFTMAX) {
        vd i0 = 1.0 / s0, i1 = 1.0 / s1;
        vf ih = SFX(d2f)(i0, i1);
        vf il = SFX(d2f)(i0 - SFX(lo2d)(ih), i1 - SFX(hi2d)(ih));
        for (ts_intp j = 0; j < n; j++) {
            vf v = SFX(ldf)(PT + j * VF);
            SFX(stf)(PT + j * VF, SFX(mul2)(v, ih, il));
        }
    } else {
        double ls[VF], il[VF];
        for (int r = 0; r < VF; r++) {
            ls[r] = spec[r] || !(kl[r] >= 1.0) ? 0.0 : log_sum(kl[r], sl[r]);
            spec[r] |= !isfinite(sl[r]) || !(kl[r] >= 1.0);
            il[r] = 1.0 / Tl[r];
        }
        if (kind == KIND_LOGSOFTMAX) {
            vd l0 = SFX(ldd)(ls), l1 = SFX(ldd)(ls + VD);
            vd i0 = SFX(ldd)(il), i1 = SFX(ldd)(il + VD);
            for (ts_intp j = 0; j < n; j++) {
                SFX(sthf)(PT + j * VF, (SFX(ldhf)(XT + j * VF) - m0) * i0 - l0);
                SFX(sthf)(PT + j * VF + VD, (SFX(ldhf)(XT + j * VF + VD) - m1) * i1 - l1);
            }
        } else {
            SFX(std_)(ml, m0);
            SFX(std_)(ml + VD, m1);
            for (int r = 0; r < VF; r++) lse[r] = lse_combine(ml[r], Tr[r], ls[r]);
        }
    }
}

/* float64: BR = VD rows; per row the (h, A) scaling of expsum_f64 */
static void SFX(block_f64)(const double *XT, double *PT, ts_intp n, const double *Tr, int kind,
                           double *lse, unsigned char *spec) {
    vd mv = (vd){0} - INFINITY;
    vl bad = (vl){0};
    for (ts_intp j = 0; j < n; j++) {
        vd v = SFX(ldd)(XT + j * VD);
        mv = SFX(maxd)(v, mv);
        bad |= (vl)(v != v);
    }
    double hl[VD], Al[VD], cl[VD], cll[VD], il[VD], sl[VD], ml[VD], kl[VD];
    SFX(std_)(ml, mv);
    for (int r = 0; r < VD; r++) {
        double T = Tr[r];
        int sp = bad[r] != 0 || !isfinite(ml[r]) || !(T > 0.0 && T < INFINITY);
        spec[r] = (unsigned char)sp;
        if (sp) T = 1.0;
        f64_regime(T, &hl[r], &Al[r]);
        double Ts = T * hl[r] * Al[r];
        cl[r] = log2e_over(Ts, &cll[r]);
        il[r] = 1.0 / Ts;
    }
    vd hv = SFX(ldd)(hl), Av = SFX(ldd)(Al), cv = SFX(ldd)(cl), clv = SFX(ldd)(cll), tl;
    vd mh = mv * hv;
    vd s0 = (vd){0};
    vl k0 = (vl){0};
    for (ts_intp j = 0; j < n; j++) {
        vd v = SFX(ldd)(XT + j * VD);
        vd th = SFX(targ_f64)(v, hv, mh, Av, cv, clv, &tl);
        vd e0 = SFX(exp2_hi2)(th, tl);
        if (kind == KIND_SOFTMAX) SFX(std_)(PT + j * VD, e0);
        else {
            vl q = (vl)(v == mv);
            e0 = (vd)((vl)e0 & ~q);
            k0 -= q;
        }
        s0 += e0;
    }
    SFX(std_)(sl, s0);
    if (kind == KIND_SOFTMAX) {
        vd inv = 1.0 / s0;
        for (ts_intp j = 0; j < n; j++) SFX(std_)(PT + j * VD, SFX(ldd)(PT + j * VD) * inv);
    } else {
        double ls[VD];
        for (int r = 0; r < VD; r++) {
            kl[r] = (double)k0[r];
            ls[r] = spec[r] || !(kl[r] >= 1.0) ? 0.0 : log_sum(kl[r], sl[r]);
            spec[r] |= !isfinite(sl[r]) || !(kl[r] >= 1.0);
        }
        if (kind == KIND_LOGSOFTMAX) {
            vd l0 = SFX(ldd)(ls), iv = SFX(ldd)(il);
            for (ts_intp j = 0; j < n; j++)
                SFX(std_)(PT + j * VD, ((SFX(ldd)(XT + j * VD) * hv - mh) * Av) * iv - l0);
        } else {
            for (int r = 0; r < VD; r++) lse[r] = lse_combine(ml[r], Tr[r], ls[r]);
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

/* Softmax of 16 contiguous-row float32 rows of n <= 16 values, all in registers: masked row
   loads, transpose, vertical max / exp / sum / scale, transpose back, masked row stores.
   c = log2(e)/T as the float pair (chv, clv).  Returns 1 (nothing written) when a row needs the
   scalar reference (NaN, no finite maximum). */
static int SFX(nblock16_sm_f32)(const char *xb, ts_intp rs, int n, char *ob, ts_intp os,
                                const float *cpair) {
    __mmask16 k = (__mmask16)((1u << n) - 1u);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(k, (const float *)(xb + i * rs));
    SFX(tr16)(r);
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 bad = 0;
    for (int j = 0; j < n; j++) {
        bad |= _mm512_cmp_ps_mask(r[j], r[j], _CMP_UNORD_Q);
        m = _mm512_max_ps(r[j], m);
    }
    __m512 am = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(m), _mm512_set1_epi32(0x7fffffff)));
    bad |= _mm512_cmp_ps_mask(am, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
    if (bad) return 1;
    vf mv = (vf)m, nmv = -(vf)m, chv = (vf){0} + cpair[0], clv = (vf){0} + cpair[1];
    vd s0 = (vd){0}, s1 = (vd){0};
    for (int j = 0; j < n; j++) {
        vf e = SFX(exp2_tsum)((vf)r[j], mv, nmv, chv, clv);
        r[j] = (__m512)e;
        s0 += SFX(lo2d)(e);
        s1 += SFX(hi2d)(e);
    }
    vd i0 = 1.0 / s0, i1 = 1.0 / s1;
    __m512 ih = (__m512)SFX(d2f)(i0, i1);
    __m512 il = (__m512)SFX(d2f)(i0 - SFX(lo2d)((vf)ih), i1 - SFX(hi2d)((vf)ih));
    for (int j = 0; j < 16; j++)
        r[j] = j < n ? _mm512_fmadd_ps(r[j], ih, _mm512_mul_ps(r[j], il)) : _mm512_setzero_ps();
    SFX(tr16)(r);
    for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps((float *)(ob + i * os), k, r[i]);
    return 0;
}

/* 16 rows (row r at xb + r*rs bytes, n contiguous floats) -> XT[j*16 + r] */
static void SFX(tr_in_f32)(const char *xb, ts_intp rs, ts_intp n, float *XT) {
    for (ts_intp j0 = 0; j0 < n; j0 += 16) {
        int w = (int)(n - j0 < 16 ? n - j0 : 16);
        __mmask16 k = (__mmask16)((1u << w) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(k, (const float *)(xb + i * rs) + j0);
        SFX(tr16)(r);
        for (int j = 0; j < w; j++) _mm512_storeu_ps(XT + (j0 + j) * 16, r[j]);
    }
}

/* PT[j*16 + r] -> 16 rows (row r at ob + r*os bytes) */
static void SFX(tr_out_f32)(const float *PT, ts_intp n, char *ob, ts_intp os) {
    for (ts_intp j0 = 0; j0 < n; j0 += 16) {
        int w = (int)(n - j0 < 16 ? n - j0 : 16);
        __mmask16 k = (__mmask16)((1u << w) - 1u);
        __m512 r[16];
        for (int j = 0; j < 16; j++) r[j] = j < w ? _mm512_loadu_ps(PT + (j0 + j) * 16) : _mm512_setzero_ps();
        SFX(tr16)(r);
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps((float *)(ob + i * os) + j0, k, r[i]);
    }
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* backward of softmax / log_softmax: the two row passes of bw_row (_job.c) for rows of type   */
/* t = T_F32, T_BF16 or T_F16 (converted on the fly), p the forward's output (log p for        */
/* log_softmax), g the incoming gradient                                                       */
/* ------------------------------------------------------------------------------------------ */
/* pass 1.  softmax: *s = sum of g p over p != 0 (products exact: in float for the 16-bit types,
   whose significands fit twice in a float's, in double for float32); log_softmax: *s = sum of g
   over log p > -inf, *nneg = the number of the others.  *h = the largest p (NaN skipped).
   Sums in double. */
AI void SFX(bw_acc)(vf p, vf gv, int t, int lsm, vd *a0, vd *a1, vi *cnt, vf *hv) {
    if (!lsm && t == T_F32) {
        vd p0 = SFX(lo2d)(p), p1 = SFX(hi2d)(p);
        *a0 += (vd)((vl)(SFX(lo2d)(gv) * p0) & (vl)(p0 != 0.0));
        *a1 += (vd)((vl)(SFX(hi2d)(gv) * p1) & (vl)(p1 != 0.0));
    } else if (!lsm) {
        vf gp = (vf)((vi)(gv * p) & (vi)(p != 0.0f));
        *a0 += SFX(lo2d)(gp);
        *a1 += SFX(hi2d)(gp);
    } else {
        vi fin = (vi)(p > (vf){0} - INFINITY);
        vf gs = (vf)((vi)gv & fin);
        *a0 += SFX(lo2d)(gs);
        *a1 += SFX(hi2d)(gs);
        *cnt += ~fin & 1;
    }
    *hv = SFX(maxf)(p, *hv);
}

AI void SFX(bw_sums_t)(const void *g, const void *o, ts_intp n, int t, int lsm, double *s,
                       double *h, ts_intp *nneg) {
    vd a0 = (vd){0}, a1 = (vd){0};
    vf hv = (vf){0} - INFINITY;
    vi cnt = (vi){0};
    ts_intp i = 0;
    for (; i + VF <= n; i += VF)
        SFX(bw_acc)(SFX(ldx)(o, i, t), SFX(ldx)(g, i, t), t, lsm, &a0, &a1, &cnt, &hv);
    ts_intp k = 0;
    if (i < n) { /* the tail: one padded vector (p = 0 / log p = -inf, g = 0) */
        vf p = SFX(ldx_part)(o, i, n - i, t, lsm ? -INFINITY : 0.0f);
        SFX(bw_acc)(p, SFX(ldx_part)(g, i, n - i, t, 0.0f), t, lsm, &a0, &a1, &cnt, &hv);
        if (lsm) k -= VF - (n - i); /* the padding */
        i = n;
    }
    a0 += a1;
    double acc = 0.0, hh = -INFINITY;
    for (int l = 0; l < VD; l++) acc += a0[l];
    for (int l = 0; l < VF; l++) {
        k += cnt[l];
        if (hv[l] > hh) hh = hv[l];
    }
    for (; i < n; i++) {
        double v = SFX(ld1)(o, i, t), gd = SFX(ld1)(g, i, t);
        if (!lsm) acc += v != 0.0 ? gd * v : 0.0;
        else if (v > -INFINITY) acc += gd;
        else k++;
        if (v > hh) hh = v;
    }
    *s = acc;
    *h = hh;
    *nneg = k;
}

#if defined(KI_AVX512)
/* float32 bits -> 16 bfloat16 (round to nearest even; NaN kept quiet unless nn) */
AI __m256i SFX(bf16_bits)(vui u, int nn) {
    vui r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    if (!nn) {
        vui nan = (vui)((vi)(u & 0x7fffffffu) > 0x7f800000);
        r = (((u >> 16) | 0x40u) & nan) | (r & ~nan);
    }
    return _mm512_cvtepi32_epi16((__m512i)r);
}
#endif

/* pass 2.  softmax: dx = p (g - s) / T in float (0 where p = 0), as bw_row's float lanes (the
   same operations, so the same roundings); log_softmax (rows without a -inf output):
   dx = (g - exp(log p) s) / T in double, exp(log p) as 2^(log p log2(e)) with the product kept
   as a double pair (exp2_hi2), rounded once to float (then to t) */
AI void SFX(bw_dx_t)(const void *g, const void *o, void *dx, ts_intp n, int t, int lsm, double s,
                     double inv, int nt) {
    ts_intp i = 0;
    if (!lsm) {
        float sfs = (float)s, invs = (float)inv;
        vf sf = (vf){0} + sfs, invf = (vf){0} + invs;
#if defined(KI_AVX512)
        if (nt && t != T_F32) {
            /* a large 16-bit dx: streaming stores (masked head to 32-byte alignment, masked
               tail), the same values.  A finite s means a finite g wherever p != 0, so no NaN
               can come out (0 elsewhere): the bfloat16 store needs no NaN select then */
            uint16_t *oh = (uint16_t *)dx;
            int nn = isfinite(s);
            ts_intp h = (ts_intp)(((32 - ((uintptr_t)oh & 31)) & 31) / 2);
            if (h > n) h = n;
#define DXV(p, gv) ((vf)((vi)((p) * ((gv) - sf) * invf) & (vi)((p) != 0.0f)))
#define TO16(v) (t == T_F16 ? _mm512_cvtps_ph((__m512)(v), _MM_FROUND_TO_NEAREST_INT)             \
                            : SFX(bf16_bits)((vui)(v), nn))
            if (h) {
                vf p = SFX(ldx_part)(o, 0, h, t, 0.0f), v = DXV(p, SFX(ldx_part)(g, 0, h, t, 0.0f));
                _mm256_mask_storeu_epi16(oh, (__mmask16)((1u << h) - 1u), TO16(v));
            }
            for (i = h; i + VF <= n; i += VF) {
                vf p = SFX(ldx)(o, i, t), v = DXV(p, SFX(ldx)(g, i, t));
                _mm256_stream_si256((__m256i *)(oh + i), TO16(v));
            }
            if (i < n) {
                vf p = SFX(ldx_part)(o, i, n - i, t, 0.0f);
                vf v = DXV(p, SFX(ldx_part)(g, i, n - i, t, 0.0f));
                _mm256_mask_storeu_epi16(oh + i, (__mmask16)((1u << (n - i)) - 1u), TO16(v));
            }
#undef TO16
#undef DXV
            _mm_sfence();
            return;
        }
#else
        (void)nt;
#endif
        for (; i + VF <= n; i += VF) {
            vf p = SFX(ldx)(o, i, t), v = p * (SFX(ldx)(g, i, t) - sf) * invf;
            SFX(stx)(dx, i, (vf)((vi)v & (vi)(p != 0.0f)), t);
        }
        if (i < n) {
            vf p = SFX(ldx_part)(o, i, n - i, t, 0.0f);
            vf v = p * (SFX(ldx_part)(g, i, n - i, t, 0.0f) - sf) * invf;
            SFX(stx_part)(dx, i, n - i, (vf)((vi)v & (vi)(p != 0.0f)), t);
            return;
        }
        for (; i < n; i++) {
            float p = SFX(ld1)(o, i, t), v = p * (SFX(ld1)(g, i, t) - sfs) * invs;
            SFX(st1)(dx, i, p != 0.0f ? v : 0.0f, t);
        }
        return;
    }
    const double l2e_hi = 1.4426950408889634, l2e_lo = 2.0355273740931033e-17;
    vd sv = (vd){0} + s, iv = (vd){0} + inv, lh = (vd){0} + l2e_hi;
    for (; i + VF <= n; i += VF) {
        vf lp = SFX(ldx)(o, i, t), gv = SFX(ldx)(g, i, t);
        vd r[2];
        for (int half = 0; half < 2; half++) {
            vd l = half ? SFX(hi2d)(lp) : SFX(lo2d)(lp);
            vd gd = half ? SFX(hi2d)(gv) : SFX(lo2d)(gv);
            vd th = SFX(mul_opaque)(l, lh);
            vd tl = SFX(prod_err)(l, lh, th) + l * l2e_lo;
            r[half] = (gd - SFX(exp2_hi2)(th, tl) * sv) * iv;
        }
        SFX(stx)(dx, i, SFX(d2f)(r[0], r[1]), t);
    }
    for (; i < n; i++) {
        double lp = SFX(ld1)(o, i, t), gd = SFX(ld1)(g, i, t);
        SFX(st1)(dx, i, (float)((gd - exp(lp) * s) * inv), t);
    }
}

/* BW_TYPES(t, CASE): CASE(tt) for the storage type t, with tt a constant, so that each always-
   inlined row pass is specialised per type (float16 only where the compiler has it) */
#if HAVE_F16
#define BW_TYPES(t, CASE) if (t == T_F32) CASE(T_F32) else if (t == T_BF16) CASE(T_BF16) else if (t == T_F16) CASE(T_F16)
#else
#define BW_TYPES(t, CASE) if (t == T_F32) CASE(T_F32) else if (t == T_BF16) CASE(T_BF16)
#endif

static void SFX(bw_sums)(const void *g, const void *o, ts_intp n, int t, int lsm, double *s,
                         double *h, ts_intp *nneg) {
#define BW_SUMS(tt)                                                                              \
    {                                                                                            \
        if (lsm) SFX(bw_sums_t)(g, o, n, tt, 1, s, h, nneg);                                     \
        else SFX(bw_sums_t)(g, o, n, tt, 0, s, h, nneg);                                         \
    }
    BW_TYPES(t, BW_SUMS)
#undef BW_SUMS
}

static void SFX(bw_dx)(const void *g, const void *o, void *dx, ts_intp n, int t, int lsm, double s,
                       double inv, int nt) {
#define BW_DX(tt)                                                                                \
    {                                                                                            \
        if (lsm) SFX(bw_dx_t)(g, o, dx, n, tt, 1, s, inv, 0);                                    \
        else if (nt) SFX(bw_dx_t)(g, o, dx, n, tt, 0, s, inv, 1);                                \
        else SFX(bw_dx_t)(g, o, dx, n, tt, 0, s, inv, 0);                                        \
    }
    BW_TYPES(t, BW_DX)
#undef BW_DX
}
#undef BW_TYPES

#ifdef TS_BENCH_KERNELS
/* the benchmark's limit: o = exp(x), float32, contiguous */
static void SFX(exp_pass)(const float *x, float *o, ts_intp n, int nt) {
    ts_intp i = 0;
#ifdef HAVE_TSUM
    if (nt) {
        for (; i < n && ((uintptr_t)(o + i) & 63); i++) o[i] = expf(x[i]);
        for (; i + 16 <= n; i += 16) _mm512_stream_ps(o + i, (__m512)SFX(expf_fast)(SFX(ldf)(x + i)));
        for (; i < n; i++) o[i] = expf(x[i]);
        _mm_sfence();
        return;
    }
#else
    (void)nt;
#endif
    for (; i + 2 * VF <= n; i += 2 * VF) {
        SFX(stf)(o + i, SFX(expf_fast)(SFX(ldf)(x + i)));
        SFX(stf)(o + i + VF, SFX(expf_fast)(SFX(ldf)(x + i + VF)));
    }
    for (; i < n; i++) o[i] = expf(x[i]);
}
#endif

#undef AI
#undef VD
#undef HAVE_TSUM
#undef vf
#undef vd
#undef vi
#undef vui
#undef vl
#undef vu
#undef hf
#undef vh
