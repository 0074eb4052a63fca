# Triton's DSL takes no Python annotations (they would change how parameters are specialised)
# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False
# mypy: disallow-untyped-decorators=False
"""The Triton kernels: temperature softmax / log-softmax / logsumexp (forward, backward) and KD rows.

Layout: every kernel works on a tile of ``R`` rows by ``BLOCK`` classes; per-row quantities are
``[R]`` vectors.  ``SINGLE`` (``BLOCK >= n``): the row is loaded once and kept on chip.
Otherwise the row is read block by block: an online (max, count of maxima, rest-sum) pass, then
the output pass (a second read).  Every contract case is decided per row inside the kernel (no
host synchronisation): ``T = 0`` and ``+inf`` maxima (the "tie" rows: mass shared among the
maxima), ``T = inf``, masked and ``-inf`` entries, fully masked rows, NaN rows; the formulas are
those of ``tempscale._softmax._core`` (the generic reference), computed in float32 (float64
where the temperature tensor is float64).
"""

from __future__ import annotations

import triton
import triton.language as tl

#: float32's smallest normal number (``T/2`` is kept at or above it, as the generic path does)
TINY = tl.constexpr(1.1754943508222875e-38)

KIND_SOFTMAX = 0
KIND_LOG_SOFTMAX = 1
KIND_LOGSUMEXP = 2

DIV_FORWARD = 0
DIV_REVERSE = 1
DIV_JSD = 2


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def _temps(T_ptr, T_scalar, rows, rmask, t_stride, HAS_T: tl.constexpr, R: tl.constexpr):
    """Per-row ``(T, tie_t, t, t_half)``: the raw T, ``T == 0``, the divisor, the halved divisor.

    As in the generic path: ``t = 1`` where ``T == 0`` (the tie rows ignore it), NaN where
    ``T < 0`` or NaN (a bad temperature tensor gives NaN rows), ``t_half = max(t/2, tiny)``.
    """
    if HAS_T:
        traw = tl.load(T_ptr + rows.to(tl.int64) * t_stride, mask=rmask, other=1.0)
        if traw.dtype != tl.float64:
            traw = traw.to(tl.float32)
    else:
        traw = tl.zeros([R], dtype=tl.float32) + T_scalar
    tie_t = traw == 0
    t = tl.where(tie_t, 1.0, traw)
    t = tl.where(traw >= 0, t, float("nan"))
    th = t * 0.5
    t_half = tl.where(th > TINY, th, TINY)
    t_half = tl.where(t != t, t, t_half)
    return traw, tie_t, t, t_half


@triton.jit
def _y(x, m, t, t_half):
    """``(x - m) / t``, or ``(x/2 - m/2) / (t/2)`` where ``x - m`` overflows; float32."""
    d = x - m
    ok = d > float("-inf")
    # one division: the numerator and the divisor are chosen first
    return (tl.where(ok, d, x * 0.5 - m * 0.5) / tl.where(ok, t, t_half)).to(tl.float32)


@triton.jit
def _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc, HAS_MASK: tl.constexpr):
    """A tile in float32 with masked entries ``-inf``; returns ``(x, valid, isnan, inside)``."""
    cmask = cols < n
    inside = rmask[:, None] & cmask[None, :]
    r64 = rows.to(tl.int64)[:, None]
    c64 = cols.to(tl.int64)[None, :]
    x = tl.load(X + r64 * sxr + c64 * sxc, mask=inside, other=float("-inf")).to(tl.float32)
    if HAS_MASK:
        keep = tl.load(M + r64 * smr + c64 * smc, mask=inside, other=0)
        x = tl.where(keep != 0, x, float("-inf"))
    isnan = x != x
    valid = x > float("-inf")
    return x, valid, isnan, inside


@triton.jit
def _update(x, valid, isnan, m, k, r, nan, t, t_half):
    """Fold one tile into the online row statistics.

    ``m`` the maximum over valid entries, ``k`` how many entries equal it, ``r`` the sum of
    ``exp((x - m)/t)`` over the other valid entries, ``nan`` whether a NaN was seen.
    """
    xv = tl.where(valid, x, float("-inf"))
    bm = tl.max(xv, axis=1)
    nm = tl.maximum(m, bm)
    up = nm > m
    # the old maxima and the old rest sum, shifted to the new maximum
    sc = tl.where(m == float("-inf"), 0.0, tl.exp(_y(m, nm, t, t_half)))
    r = tl.where(up, (r + k) * sc, r)
    k = tl.where(up, 0.0, k)
    top = valid & (x == nm[:, None])
    k += tl.sum(top.to(tl.float32), axis=1)
    e = tl.exp(_y(x, nm[:, None], t[:, None], t_half[:, None]))
    r += tl.sum(tl.where(valid & (x != nm[:, None]), e, 0.0), axis=1)
    nan = nan | (tl.max(isnan.to(tl.int32), axis=1) > 0)
    return nm, k, r, nan


@triton.jit
def _log1p(u):
    """``log(1 + u)`` for ``u >= 0``, exact near 0: ``2 atanh(u / (2 + u))`` by its series below
    0.1 (relative error below 1e-14), ``log(1 + u)`` above (libdevice is not in the interpreter)."""
    z = u / (2.0 + u)
    z2 = z * z
    series = z * (2.0 + z2 * (2.0 / 3.0 + z2 * (0.4 + z2 * (2.0 / 7.0 + z2 * (2.0 / 9.0)))))
    return tl.where(u < 0.1, series, tl.log(1.0 + u))


@triton.jit
def _finish(m, k, r, tie_t):
    """``(tie, s, log_s, kk)`` from the online statistics (``log_s = log k + log1p(r / k)``)."""
    tie = (m == float("inf")) | tie_t
    kk = tl.where(k > 0, k, 1.0)
    rr = tl.where(tie, 0.0, r)
    s = kk + rr
    log_s = _log1p(rr / kk) + tl.log(kk)
    return tie, s, log_s, kk


@triton.jit
def _tile_y(x, valid, m, tie, t, t_half):
    """The contract's ``y`` on a tile: ``(y, top)`` (``y = 0`` at the maxima of tie rows)."""
    mm = m[:, None]
    top = valid & (x == mm)
    yg = _y(x, mm, t[:, None], t_half[:, None])
    y = tl.where(tie[:, None], tl.where(top, 0.0, float("-inf")), yg)
    y = tl.where(valid, y, float("-inf"))
    return y, top


@triton.jit
def _row_stats(X, M, rows, rmask, n, sxr, sxc, smr, smc, t, t_half,
               HAS_MASK: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
    """The online pass over a block of rows: ``(m, k, r, nan)``."""
    m = tl.full([R], float("-inf"), tl.float32)
    k = tl.zeros([R], dtype=tl.float32)
    r = tl.zeros([R], dtype=tl.float32)
    nan = tl.zeros([R], dtype=tl.int1)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc, HAS_MASK)
        m, k, r, nan = _update(x, valid, isnan, m, k, r, nan, t, t_half)
    return m, k, r, nan


# --------------------------------------------------------------------------------------------
# softmax / log_softmax / logsumexp: forward
# --------------------------------------------------------------------------------------------
@triton.jit
def _fwd_tile_out(x, valid, m, tie, nan, s, log_s, t, t_half, KIND: tl.constexpr):
    y, top = _tile_y(x, valid, m, tie, t, t_half)
    if KIND == 0:
        out = tl.exp(y) * (1.0 / s)[:, None]
    else:
        out = y - log_s[:, None]
    return tl.where(nan[:, None], float("nan"), out)


@triton.jit
def _softmax_fwd(X, M, Y, STATS, T_ptr, T_scalar, n_rows, n, sxr, sxc, smr, smc, syr, t_stride,
                 KIND: tl.constexpr, HAS_MASK: tl.constexpr, HAS_T: tl.constexpr,
                 SINGLE: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
    """Forward of ``KIND``; writes ``Y`` ((rows, n) or (rows,) for logsumexp) and ``STATS``.

    ``STATS`` (4, rows) float32 holds what the backward needs: ``m`` (NaN for NaN rows),
    ``s``, ``log_s`` and ``k`` (the number of maxima).
    """
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    rmask = rows < n_rows
    traw, tie_t, t, t_half = _temps(T_ptr, T_scalar, rows, rmask, t_stride, HAS_T, R)
    if SINGLE:
        # the whole row on chip: y and exp(y) once per entry, reused for the output
        cols = tl.arange(0, BLOCK)
        x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc, HAS_MASK)
        m = tl.max(tl.where(valid, x, float("-inf")), axis=1)
        nan = tl.max(isnan.to(tl.int32), axis=1) > 0
        y1, top1 = _tile_y(x, valid, m, (m == float("inf")) | tie_t, t, t_half)
        e1 = tl.exp(y1)
        k = tl.sum(top1.to(tl.float32), axis=1)
        r = tl.sum(tl.where(top1, 0.0, e1), axis=1)
    else:
        m, k, r, nan = _row_stats(X, M, rows, rmask, n, sxr, sxc, smr, smc, t, t_half,
                                  HAS_MASK, R, BLOCK)
    tie, s, log_s, kk = _finish(m, k, r, tie_t)
    r64 = rows.to(tl.int64)
    tl.store(STATS + r64, tl.where(nan, float("nan"), m), mask=rmask)
    tl.store(STATS + n_rows + r64, s, mask=rmask)
    tl.store(STATS + 2 * n_rows + r64, log_s, mask=rmask)
    tl.store(STATS + 3 * n_rows + r64, kk, mask=rmask)
    if KIND == 2:
        empty = m == float("-inf")
        zero = log_s == 0
        tsafe = tl.where(zero | tie_t, 1.0, traw)
        scaled = tl.where(zero, 0.0, tsafe * log_s)
        ms = tl.where(empty | tie, 0.0, m)
        total = ms + scaled
        half = 2.0 * (ms * 0.5 + tl.where(zero, 0.0, (tsafe * 0.5) * log_s))
        total = tl.where((total == float("inf")) | (total == float("-inf")), half, total)
        out = tl.where(tie | empty, m, total)
        out = tl.where(nan, float("nan"), out)
        tl.store(Y + r64, out.to(Y.dtype.element_ty), mask=rmask)
    else:
        if SINGLE:
            if KIND == 0:
                out = e1 * (1.0 / s)[:, None]
            else:
                out = y1 - log_s[:, None]
            out = tl.where(nan[:, None], float("nan"), out)
            ptr = Y + r64[:, None] * syr + cols.to(tl.int64)[None, :]
            tl.store(ptr, out.to(Y.dtype.element_ty), mask=inside)
        else:
            for start in range(0, n, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc,
                                                HAS_MASK)
                out = _fwd_tile_out(x, valid, m, tie, nan, s, log_s, t, t_half, KIND)
                ptr = Y + r64[:, None] * syr + cols.to(tl.int64)[None, :]
                tl.store(ptr, out.to(Y.dtype.element_ty), mask=inside)


# --------------------------------------------------------------------------------------------
# softmax / log_softmax / logsumexp: backward
# --------------------------------------------------------------------------------------------
@triton.jit
def _bwd_tile(x, valid, g, inside, m, tie, s, t, t_half, KIND: tl.constexpr):
    """Per-tile pieces: ``(y_fin, p, nt, top)`` with ``nt`` the entries ``y`` depends on."""
    y, top = _tile_y(x, valid, m, tie, t, t_half)
    p = tl.exp(y) * (1.0 / s)[:, None]
    nt = valid & (tie[:, None] == 0)
    yf = tl.where(nt & (y > float("-inf")), y, 0.0)
    return yf, p, nt, top


@triton.jit
def _bwd_sums(x, valid, g, inside, m, tie, s, t, t_half, KIND: tl.constexpr):
    """Row sums of one tile: softmax ``(sum p g, sum p g y, sum p y, 0)``; log_softmax
    ``(sum g, sum_valid g, sum_valid g y, sum p y)``; logsumexp ``(0, 0, 0, sum p y)``."""
    yf, p, nt, top = _bwd_tile(x, valid, g, inside, m, tie, s, t, t_half, KIND)
    py = tl.sum(tl.where(nt, p * yf, 0.0), axis=1)
    if KIND == 0:
        pg = tl.where(nt, p * g, 0.0)
        a = tl.sum(pg, axis=1)
        b = tl.sum(pg * yf, axis=1)
        c = py
        d = tl.zeros_like(a)
    elif KIND == 1:
        a = tl.sum(tl.where(inside, g, 0.0), axis=1)
        gv = tl.where(nt, g, 0.0)
        b = tl.sum(gv, axis=1)
        c = tl.sum(gv * yf, axis=1)
        d = py
    else:
        a = tl.zeros_like(py)
        b = tl.zeros_like(py)
        c = tl.zeros_like(py)
        d = py
    return a, b, c, d


@triton.jit
def _bwd_tile_dx(x, valid, g, inside, m, tie, s, k, t, t_half, a, b, gl, KIND: tl.constexpr):
    yf, p, nt, top = _bwd_tile(x, valid, g, inside, m, tie, s, t, t_half, KIND)
    tt = t[:, None]
    if KIND == 0:
        dx = tl.where(nt, p * (g - a[:, None]) / tt, 0.0)
    elif KIND == 1:
        dx = tl.where(nt, (g - p * a[:, None]) / tt, 0.0)
        # the generic path's gradient through the row maximum: the upstream gradient of the
        # masked entries (sum g - sum_valid g) reaches the maxima, shared equally
        extra = (a - b) / (k * t)
        dx += tl.where(nt & top, extra[:, None], 0.0)
    else:
        gg = gl[:, None]
        dx = tl.where(nt, gg * p, tl.where(tie[:, None] & top, gg / k[:, None], 0.0))
    return dx


@triton.jit
def _softmax_bwd(X, M, G, DX, DT, STATS, T_ptr, T_scalar, n_rows, n, sxr, sxc, smr, smc,
                 sgr, sgc, t_stride,
                 KIND: tl.constexpr, HAS_MASK: tl.constexpr, HAS_T: tl.constexpr,
                 NEED_DX: tl.constexpr, NEED_DT: tl.constexpr,
                 SINGLE: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
    """Backward of ``KIND``: ``DX`` (rows, n) float32-or-x-dtype, ``DT`` (rows,) float32."""
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    rmask = rows < n_rows
    r64 = rows.to(tl.int64)
    traw, tie_t, t, t_half = _temps(T_ptr, T_scalar, rows, rmask, t_stride, HAS_T, R)
    m = tl.load(STATS + r64, mask=rmask, other=0.0)
    s = tl.load(STATS + n_rows + r64, mask=rmask, other=1.0)
    log_s = tl.load(STATS + 2 * n_rows + r64, mask=rmask, other=0.0)
    k = tl.load(STATS + 3 * n_rows + r64, mask=rmask, other=1.0)
    nan = m != m
    empty = m == float("-inf")
    tie = (m == float("inf")) | tie_t
    if KIND == 2:
        gl = tl.load(G + r64 * sgr, mask=rmask, other=0.0).to(tl.float32)
    else:
        gl = tl.zeros([R], dtype=tl.float32)
    gl = tl.where(nan, 0.0, gl)
    a = tl.zeros([R], dtype=tl.float32)
    b = tl.zeros([R], dtype=tl.float32)
    c = tl.zeros([R], dtype=tl.float32)
    d = tl.zeros([R], dtype=tl.float32)
    if SINGLE:
        cols = tl.arange(0, BLOCK)
        x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc, HAS_MASK)
        if KIND == 2:
            g = tl.zeros([R, BLOCK], dtype=tl.float32)
        else:
            g = tl.load(G + r64[:, None] * sgr + cols.to(tl.int64)[None, :] * sgc, mask=inside,
                        other=0.0).to(tl.float32)
        if (KIND != 2) | NEED_DT:
            a, b, c, d = _bwd_sums(x, valid, g, inside, m, tie, s, t, t_half, KIND)
        if NEED_DX:
            dx = _bwd_tile_dx(x, valid, g, inside, m, tie, s, k, t, t_half, a, b, gl, KIND)
            dx = tl.where(nan[:, None], 0.0, dx)
            tl.store(DX + r64[:, None] * n + cols.to(tl.int64)[None, :],
                     dx.to(DX.dtype.element_ty), mask=inside)
    else:
        if (KIND != 2) | NEED_DT:
            for start in range(0, n, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc,
                                                HAS_MASK)
                if KIND == 2:
                    g = tl.zeros([R, BLOCK], dtype=tl.float32)
                else:
                    g = tl.load(G + r64[:, None] * sgr + cols.to(tl.int64)[None, :] * sgc,
                                mask=inside, other=0.0).to(tl.float32)
                a1, b1, c1, d1 = _bwd_sums(x, valid, g, inside, m, tie, s, t, t_half, KIND)
                a += a1
                b += b1
                c += c1
                d += d1
        if NEED_DX:
            for start in range(0, n, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                x, valid, isnan, inside = _load(X, M, rows, cols, rmask, n, sxr, sxc, smr, smc,
                                                HAS_MASK)
                if KIND == 2:
                    g = tl.zeros([R, BLOCK], dtype=tl.float32)
                else:
                    g = tl.load(G + r64[:, None] * sgr + cols.to(tl.int64)[None, :] * sgc,
                                mask=inside, other=0.0).to(tl.float32)
                dx = _bwd_tile_dx(x, valid, g, inside, m, tie, s, k, t, t_half, a, b, gl, KIND)
                dx = tl.where(nan[:, None], 0.0, dx)
                tl.store(DX + r64[:, None] * n + cols.to(tl.int64)[None, :],
                         dx.to(DX.dtype.element_ty), mask=inside)
    if NEED_DT:
        live = (tie == 0) & (empty == 0) & (nan == 0)
        if KIND == 0:
            dt = -(b - a * c) / t
        elif KIND == 1:
            dt = -(c - a * d) / t
        else:
            dt = tl.where(log_s == 0, 0.0, gl * (log_s - d))
        dt = tl.where(live, dt, 0.0)
        tl.store(DT + r64, dt.to(tl.float32), mask=rmask)


# --------------------------------------------------------------------------------------------
# knowledge distillation rows
# --------------------------------------------------------------------------------------------
@triton.jit
def _kd_tile(s, valid_s, ms, tie_s, log_ss, ts, ths, tv, valid_t, mt, tie_t, log_st, tt, tht,
             beta, DIV: tl.constexpr):
    """Per-entry loss terms and the pieces of the student gradient: ``(term, q, logq, logp, b)``.

    ``b`` is the per-entry quantity the gradient needs besides the row sums: forward ``p``,
    reverse ``logq - logp``, jsd ``logq - log m``.
    """
    ys, top_s = _tile_y(s, valid_s, ms, tie_s, ts, ths)
    yt, top_t = _tile_y(tv, valid_t, mt, tie_t, tt, tht)
    logq = ys - log_ss[:, None]
    logp = yt - log_st[:, None]
    q = tl.exp(logq)
    p = tl.exp(logp)
    pz = p != 0
    qz = q != 0
    if DIV == 0:
        term = tl.where(pz, p * (tl.where(pz, logp, 0.0) - tl.where(pz, logq, 0.0)), 0.0)
        bb = p
    elif DIV == 1:
        diff = tl.where(qz, logq, 0.0) - tl.where(qz, logp, 0.0)
        term = tl.where(qz, q * diff, 0.0)
        bb = diff
    else:
        mix = beta * p + (1.0 - beta) * q
        logm = tl.log(tl.where(mix > 0, mix, 1.0))
        kp = tl.where(pz, p * (tl.where(pz, logp, 0.0) - tl.where(pz, logm, 0.0)), 0.0)
        dq = tl.where(qz, logq, 0.0) - tl.where(qz, logm, 0.0)
        kq = tl.where(qz, q * dq, 0.0)
        term = beta * kp + (1.0 - beta) * kq
        bb = dq
    return term, q, bb, _kq(q, bb, DIV)


@triton.jit
def _kq(q, bb, DIV: tl.constexpr):
    """The per-entry summand of the row sum the gradient needs (reverse: the KL itself; jsd:
    ``KL(q || m)``; forward: nothing)."""
    if DIV == 0:
        return tl.zeros_like(q)
    else:
        return tl.where(q != 0, q * bb, 0.0)


@triton.jit
def _kd_dx(q, bb, valid_s, tie_s, ts, sp, red, beta, DIV: tl.constexpr):
    """The student gradient on a tile (``red``: the row sum from :func:`kq_or`)."""
    if DIV == 0:
        gy = q * sp[:, None] - bb
    elif DIV == 1:
        gy = tl.where(q != 0, q * (bb - red[:, None]), 0.0)
    else:
        gy = tl.where(q != 0, (1.0 - beta) * q * (bb - red[:, None]), 0.0)
    nt = valid_s & (tie_s[:, None] == 0)
    return tl.where(nt, gy / ts[:, None], 0.0)


@triton.jit
def _kd_fwd_bwd(S, Tch, LOSS, GS, TS_ptr, TS_scalar, TT_ptr, TT_scalar, n_rows, n,
                ssr, ssc, str_, stc, ts_stride, tt_stride, beta,
                DIV: tl.constexpr, HAS_TS: tl.constexpr, HAS_TT: tl.constexpr,
                SINGLE: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
    """Per-row divergence between tempered teacher and student and its gradient in the student.

    ``LOSS`` (rows,) float32; ``GS`` (rows, n) contiguous, the student's dtype.
    """
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    rmask = rows < n_rows
    r64 = rows.to(tl.int64)
    _a, tie_ts, ts, ths = _temps(TS_ptr, TS_scalar, rows, rmask, ts_stride, HAS_TS, R)
    _b, tie_tt, tt, tht = _temps(TT_ptr, TT_scalar, rows, rmask, tt_stride, HAS_TT, R)
    ms = tl.full([R], float("-inf"), tl.float32)
    ks = tl.zeros([R], dtype=tl.float32)
    rs = tl.zeros([R], dtype=tl.float32)
    nans = tl.zeros([R], dtype=tl.int1)
    mt = tl.full([R], float("-inf"), tl.float32)
    kt = tl.zeros([R], dtype=tl.float32)
    rt = tl.zeros([R], dtype=tl.float32)
    nant = tl.zeros([R], dtype=tl.int1)
    if SINGLE:
        cols = tl.arange(0, BLOCK)
        s, valid_s, isnan_s, inside = _load(S, S, rows, cols, rmask, n, ssr, ssc, 0, 0, False)
        tv, valid_t, isnan_t, inside = _load(Tch, Tch, rows, cols, rmask, n, str_, stc, 0, 0,
                                             False)
        ms, ks, rs, nans = _update(s, valid_s, isnan_s, ms, ks, rs, nans, ts, ths)
        mt, kt, rt, nant = _update(tv, valid_t, isnan_t, mt, kt, rt, nant, tt, tht)
    else:
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            s, valid_s, isnan_s, inside = _load(S, S, rows, cols, rmask, n, ssr, ssc, 0, 0, False)
            tv, valid_t, isnan_t, inside = _load(Tch, Tch, rows, cols, rmask, n, str_, stc, 0, 0,
                                                 False)
            ms, ks, rs, nans = _update(s, valid_s, isnan_s, ms, ks, rs, nans, ts, ths)
            mt, kt, rt, nant = _update(tv, valid_t, isnan_t, mt, kt, rt, nant, tt, tht)
    tie_s, ss_, log_ss, kks = _finish(ms, ks, rs, tie_ts)
    tie_t, st_, log_st, kkt = _finish(mt, kt, rt, tie_tt)
    # NaN rows: the log-probabilities are NaN (the loss too); a NaN student row has no gradient
    # (the generic log_softmax's NaN is a constant), a NaN teacher row a NaN one
    log_ss = tl.where(nans, float("nan"), log_ss)
    log_st = tl.where(nant, float("nan"), log_st)
    sp = tl.where(mt == float("-inf"), 0.0, 1.0)  # the teacher's total mass
    loss = tl.zeros([R], dtype=tl.float32)
    red = tl.zeros([R], dtype=tl.float32)
    if SINGLE:
        term, q, bb, kq = _kd_tile(s, valid_s, ms, tie_s, log_ss, ts, ths, tv, valid_t, mt,
                                   tie_t, log_st, tt, tht, beta, DIV)
        loss = tl.sum(tl.where(inside, term, 0.0), axis=1)
        red = tl.sum(tl.where(inside, kq, 0.0), axis=1)
        dx = _kd_dx(q, bb, valid_s, tie_s, ts, sp, red, beta, DIV)
        dx = tl.where(nans[:, None], 0.0, dx)
        tl.store(GS + r64[:, None] * n + cols.to(tl.int64)[None, :], dx.to(GS.dtype.element_ty),
                 mask=inside)
    else:
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            s, valid_s, isnan_s, inside = _load(S, S, rows, cols, rmask, n, ssr, ssc, 0, 0, False)
            tv, valid_t, isnan_t, inside = _load(Tch, Tch, rows, cols, rmask, n, str_, stc, 0, 0,
                                                 False)
            term, q, bb, kq = _kd_tile(s, valid_s, ms, tie_s, log_ss, ts, ths, tv, valid_t, mt,
                                       tie_t, log_st, tt, tht, beta, DIV)
            loss += tl.sum(tl.where(inside, term, 0.0), axis=1)
            red += tl.sum(tl.where(inside, kq, 0.0), axis=1)
            if DIV == 0:  # the forward KL's gradient needs no row sum: written in this pass
                dx = _kd_dx(q, bb, valid_s, tie_s, ts, sp, red, beta, DIV)
                dx = tl.where(nans[:, None], 0.0, dx)
                tl.store(GS + r64[:, None] * n + cols.to(tl.int64)[None, :],
                         dx.to(GS.dtype.element_ty), mask=inside)
        if DIV != 0:
            for start in range(0, n, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                s, valid_s, isnan_s, inside = _load(S, S, rows, cols, rmask, n, ssr, ssc, 0, 0,
                                                    False)
                tv, valid_t, isnan_t, inside = _load(Tch, Tch, rows, cols, rmask, n, str_, stc,
                                                     0, 0, False)
                term, q, bb, kq = _kd_tile(s, valid_s, ms, tie_s, log_ss, ts, ths, tv, valid_t,
                                           mt, tie_t, log_st, tt, tht, beta, DIV)
                dx = _kd_dx(q, bb, valid_s, tie_s, ts, sp, red, beta, DIV)
                dx = tl.where(nans[:, None], 0.0, dx)
                tl.store(GS + r64[:, None] * n + cols.to(tl.int64)[None, :],
                         dx.to(GS.dtype.element_ty), mask=inside)
    tl.store(LOSS + r64, loss, mask=rmask)
