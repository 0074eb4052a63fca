/*
 * The scalar reference of the numerical contract, written once and compiled once per element
 * type: _reference.c includes this file with REF_T (float / double, the compute type) and
 * REF_NAME (the function's name) defined.  It handles every row, including those the vector
 * kernels decline (NaN, no finite maximum, +inf maxima, T = 0, T = inf, tiny float32 T), in
 * double arithmetic.  x / o are strided in elements.
 */
#if !defined(REF_T) || !defined(REF_NAME)
#error "define REF_T and REF_NAME before including _ref_impl.h"
#endif

void REF_NAME(const REF_T *x, ts_intp xs, ts_intp n, double T, int kind, REF_T *o, ts_intp os,
              double *lse) {
    int nan = !(T >= 0.0); /* NaN / negative T (the wrapper never passes one): NaN row */
    double m = -INFINITY;
    for (ts_intp i = 0; i < n; i++) {
        double v = (double)x[i * xs];
        if (v != v) nan = 1;
        else if (v > m) m = v;
    }
    if (nan) {
        if (kind == KIND_LSE) *lse = NAN;
        else for (ts_intp i = 0; i < n; i++) o[i * os] = NAN;
        return;
    }
    if (m == -INFINITY) { /* empty or fully masked */
        if (kind == KIND_LSE) *lse = -INFINITY;
        else for (ts_intp i = 0; i < n; i++)
            o[i * os] = kind == KIND_SOFTMAX ? (REF_T)0 : (REF_T)-INFINITY;
        return;
    }
    int tie = m == INFINITY || T == 0.0;
    if (tie || T == INFINITY) {
        ts_intp cnt = 0;
        for (ts_intp i = 0; i < n; i++) {
            double v = (double)x[i * xs];
            cnt += tie ? v == m : v > -INFINITY;
        }
        if (kind == KIND_LSE) {
            *lse = tie || cnt == 1 ? m : INFINITY;
            return;
        }
        double p = 1.0 / (double)cnt;
        double lp = cnt == 1 ? 0.0 : -log((double)cnt);
        for (ts_intp i = 0; i < n; i++) {
            double v = (double)x[i * xs];
            int on = tie ? v == m : v > -INFINITY;
            o[i * os] = kind == KIND_SOFTMAX ? (REF_T)(on ? p : 0.0) : (REF_T)(on ? lp : -INFINITY);
        }
        return;
    }
    /* finite maximum, 0 < T < inf: y = ((x h - m h) A) / (T h A), see f64_regime */
    double h, A;
    f64_regime(T, &h, &A);
    double iT = 1.0 / (T * h * A), mh = m * h, k = 0.0, rest = 0.0;
    for (ts_intp i = 0; i < n; i++) {
        double v = (double)x[i * xs];
        if (v == m) k += 1.0;
        else rest += exp(((v * h - mh) * A) * iT);
    }
    double ls = log_sum(k, rest);
    if (kind == KIND_LSE) { *lse = lse_combine(m, T, ls); return; }
    double s = k + rest;
    for (ts_intp i = 0; i < n; i++) {
        double y = (((double)x[i * xs] * h - mh) * A) * iT;
        o[i * os] = kind == KIND_SOFTMAX ? (REF_T)(exp(y) / s) : (REF_T)(y - ls);
    }
}
