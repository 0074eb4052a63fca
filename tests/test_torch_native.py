"""CPU torch tensors through the native kernel (tempscale._torch_ops): forward and autograd
against the generic path (``tempscale._softmax._generic``) on the whole numerical contract, every
float dtype (bfloat16 included), axes, strides, masks and per-row temperatures."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tempscale as ts
from tempscale import _native
from tempscale._softmax import _generic

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not _native.available(), reason="native kernels not built")

inf, nan = math.inf, math.nan
KINDS = ["softmax", "log_softmax", "logsumexp"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
RTOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
TEMPS = [0.0, 1e-300, 1e-40, 1e-30, 0.3, 1.0, 7.0, 1e30, inf]


def _fn(kind):
    return getattr(ts, kind)


def contract_rows(n: int, dtype) -> torch.Tensor:
    """Rows of every contract kind (plain, ties, masked, fully masked, +inf, NaN, +-max, tiny)."""
    g = torch.Generator().manual_seed(n)
    base = torch.randn(10, n, generator=g, dtype=torch.float64) * 3
    big = float(torch.finfo(dtype).max)
    x = base.clone()
    x[1, : n // 2] = 2.0  # ties
    x[1, n // 2:] = -1.0
    x[2, ::3] = -inf  # masked entries
    x[3] = -inf  # fully masked
    x[4, 1 % n] = inf  # a +inf maximum
    x[5, ::2] = inf if n > 1 else 0.0  # several +inf
    x[6, n // 2] = nan  # NaN row
    x[7] = x[7] * big / 4  # huge spread
    x[7, 0] = big
    x[7, -1] = -big
    x[8] = x[8] * 1e-6  # nearly flat
    x[9, 1:] = -inf  # one entry left
    return x.to(dtype)


def close(got, want, dtype, *, grad=False):
    assert got.dtype == want.dtype and got.shape == want.shape
    g = got.double()
    w = want.double()
    assert torch.equal(torch.isnan(g), torch.isnan(w))
    assert torch.equal(torch.isinf(g) & (g > 0), torch.isinf(w) & (w > 0))
    assert torch.equal(torch.isinf(g) & (g < 0), torch.isinf(w) & (w < 0))
    fin = torch.isfinite(w)
    rtol = RTOL[dtype] * (100 if grad else 4)
    scale = w[fin].abs().amax() if fin.any() else 1.0
    atol = float(scale) * rtol if grad else float(torch.finfo(dtype).tiny)
    torch.testing.assert_close(g[fin], w[fin], rtol=rtol, atol=atol)


def uses_native(y) -> bool:
    return y.grad_fn is not None and "tempscale" in type(y.grad_fn).__name__


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 5, 47, 300])
def test_forward_contract_matches_generic(kind, dtype, n):
    x = contract_rows(n, dtype)
    for T in TEMPS:
        got = _fn(kind)(x, T)
        want = _generic(kind, x, T)
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_per_row_temperature_and_masks(kind, dtype):
    x = contract_rows(60, dtype)
    T = torch.tensor([0.0, 0.5, inf, 1e-30, 2.0, 1e30, 1.0, 3.0, 1e-300, 0.7], dtype=torch.float64)
    mask = torch.rand(10, 60, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[0] = False  # a fully masked row by mask
    for t in (T, T.float(), T.reshape(10, 1), T[:, None].to(torch.bfloat16), torch.tensor(0.5)):
        for m in (None, mask, mask[3:4], mask[:, :1].expand(10, 60)):
            got = _fn(kind)(x, t, mask=m)
            want = _generic(kind, x, t, mask=m)
            close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_axes_strides_and_keepdims(kind, dtype):
    g = torch.Generator().manual_seed(3)
    base = (torch.randn(6, 50, 7, generator=g, dtype=torch.float64) * 4).to(dtype)
    views = [base, base.transpose(0, 2), base[:, ::3, :], base[::2, :, 1:],
             base.permute(1, 2, 0)]
    for x in views:
        for axis in (0, 1, -1, None):
            for T in (0.0, 0.6, inf):
                got = _fn(kind)(x, T, axis=axis)
                want = _generic(kind, x, T, axis=axis)
                close(got, want, dtype)
                if kind == "logsumexp":
                    close(ts.logsumexp(x, T, axis=axis, keepdims=True),
                          _generic(kind, x, T, axis=axis, keepdims=True), dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_per_row_temperature_other_axis_and_shapes(kind):
    x = torch.randn(4, 9, 5, dtype=torch.float32)
    for axis, t in ((1, torch.rand(4, 5) + 0.1), (1, torch.rand(4, 1, 5) + 0.1),
                    (0, torch.rand(1, 5) + 0.1), (1, torch.tensor(2, dtype=torch.int64)),
                    (1, torch.tensor([[[2]]], dtype=torch.int32)),
                    (None, torch.tensor([0.5]))):
        got = _fn(kind)(x, t, axis=axis)
        want = _generic(kind, x, t, axis=axis)
        close(got, want, torch.float32)


def test_subnormal_and_huge_temperatures_float32():
    x = contract_rows(100, torch.float32)
    for T in (1e-45, 1e-38, 3e-39, 3e38, 1e39, 1e300):
        for kind in KINDS:
            close(_fn(kind)(x, T), _generic(kind, x, T), torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_inputs(kind):
    for shape in ((0, 5), (3, 0), (0, 0)):
        x = torch.zeros(shape)
        got = _fn(kind)(x, 0.5)
        want = _generic(kind, x, 0.5)
        assert got.shape == want.shape and torch.equal(got, want)
    t = torch.ones(3)
    x = torch.zeros(3, 0)
    assert torch.equal(_fn(kind)(x, t), _generic(kind, x, t))


def test_takes_the_native_path_and_writes_no_input():
    x = torch.randn(8, 100, requires_grad=True)
    before = x.detach().clone()
    for kind in KINDS:
        y = _fn(kind)(x, 0.5)
        assert uses_native(y), kind
    assert torch.equal(x.detach(), before)
    with ts.config(native=False):
        assert not uses_native(ts.softmax(x, 0.5))


def test_bfloat16_rounding_is_nearest_even():
    # the kernel's float32 result rounded once to bfloat16, as torch's .to(bfloat16)
    x = torch.randn(64, 500, dtype=torch.float32).to(torch.bfloat16)
    for kind in KINDS:
        ref = _fn(kind)(x.float(), 0.7)
        got = _fn(kind)(x, 0.7)
        diff = (got.float() - ref.to(torch.bfloat16).float()).abs()
        ulp = ref.abs().clamp_min(1e-30) * 2.0**-7
        assert bool((diff <= ulp).all()), kind


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_half_rows_equal_the_float32_kernel_rounded(kind, dtype):
    # wide 16-bit rows are converted inside the kernel's passes (vector loads / stores per
    # instruction set), blocks of narrow ones as one run: the float32 kernel's values on the
    # converted row rounded once to the 16-bit type (AVX-512's exponentials for 16-bit results
    # are a few float32 ulps apart: one
    # ulp of the 16-bit type where the float32 value lies that close to a rounding boundary, a
    # few in 10^5); odd lengths (vector tails), contract rows, strided rows and rows along axis 0
    # (gathered), masks, float32 outputs (logsumexp's gradient path)
    eps = float(torch.finfo(dtype).eps)
    diff = total = 0
    for n in (1, 5, 10, 16, 17, 47, 48, 49, 63, 64, 65, 127, 300, 1001):
        # narrow rows (< 48) in blocks of back-to-back rows: 40 rows, full blocks and a tail
        x = contract_rows(n, dtype).repeat(4, 1) if n < 48 else contract_rows(n, dtype)
        for T in (0.0, 1e-30, 0.3, 1.0, 7.0, inf):
            got = _fn(kind)(x, T)
            want = _fn(kind)(x.float(), T)
            close(got, _generic(kind, x, T), dtype)
            if kind == "logsumexp":  # rounded once from double (float16) / via float32 (bfloat16)
                close(got, want.to(dtype), dtype)
                continue
            assert torch.equal(torch.isnan(got), torch.isnan(want))
            ok = ~torch.isnan(got)
            g, w = got[ok].double(), want.to(dtype)[ok].double()
            assert torch.equal(torch.isinf(g), torch.isinf(w))
            fin = torch.isfinite(w)
            step = w[fin].abs() * eps + float(torch.finfo(dtype).smallest_normal) * eps
            assert bool(((g[fin] - w[fin]).abs() <= step).all()), (n, T)
            diff += int((g != w).sum())
            total += g.numel()
    assert diff <= total // 1000
    g = torch.Generator().manual_seed(7)
    base = (torch.randn(9, 70, 3, generator=g, dtype=torch.float64) * 4).to(dtype)
    mask = torch.rand(9, 70, 3, generator=g) > 0.25
    mask[2] = False
    for x, axis, m in ((base, 1, None), (base, 1, mask), (base[:, :, 1], -1, mask[:, :, 1]),
                       (base.transpose(0, 1).contiguous()[:, :, 0].T, -1, None)):
        for T in (0.5, torch.rand(x.shape[0], 1, generator=g, dtype=torch.float64) + 0.2):
            close(_fn(kind)(x, T, mask=m, axis=axis), _generic(kind, x, T, mask=m, axis=axis),
                  dtype)
    if kind != "logsumexp":  # float32 output of 16-bit input, as the backward of logsumexp uses
        from tempscale._torch_ops import native_forward

        x = contract_rows(77, dtype)
        got = native_forward(KINDS.index(kind), x, None, 0.6, None, 1, out_dtype=torch.float32)
        want = _fn(kind)(x.float(), 0.6)
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        assert torch.equal(got[~torch.isnan(got)], want[~torch.isnan(want)])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_large_half_softmax_streams_the_same_values(dtype):
    # a 16-bit softmax output of 16 MiB or more (rows of >= 1024) is written with streaming
    # stores (AVX-512), its gradient too: the same values as the cached stores of a small call
    # on the same rows;
    # rows of odd length start at every 2-byte offset (masked head, aligned body, tail)
    for n in (1031, 2048):
        rows = (16 << 20) // (2 * n) + 3
        x = (torch.randn(rows, n, generator=torch.Generator().manual_seed(n)) * 3).to(dtype)
        x[5, 7] = inf  # contract rows keep the reference
        x[9] = -inf
        xr = x.clone().requires_grad_(True)
        got = ts.softmax(xr, 0.7)
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        # a NaN gradient entry where p > 0 makes the row NaN (the bfloat16 store's NaN select)
        g[3, int(x[3].float().argmax())] = nan
        got.backward(g)
        for sl in (slice(0, 40), slice(rows - 37, rows)):
            xs = x[sl].clone().requires_grad_(True)
            want = ts.softmax(xs, 0.7)
            assert torch.equal(got[sl].detach().nan_to_num(7.0), want.detach().nan_to_num(7.0))
            want.backward(g[sl])
            assert torch.equal(torch.isnan(xr.grad[sl]), torch.isnan(xs.grad))
            assert torch.equal(xr.grad[sl].nan_to_num(7.0), xs.grad.nan_to_num(7.0))
        assert bool(torch.isnan(xr.grad[3]).any())
        close(got[:40].detach(), _generic("softmax", x[:40], 0.7), dtype)


def test_half_outputs_round_to_nearest_even_ties_and_subnormals():
    # bfloat16: log_softmax at T = 2/3 of a row [0, x_j <= -128] is x_j * 1.5 exactly in float32
    # (the sum's other terms are below 1e-80), a 9-bit significand: every odd one is a tie that
    # must round to even, as torch's own .to(bfloat16) of the float64 value does
    g = torch.Generator().manual_seed(8)
    sig = torch.randint(128, 256, (4, 301), generator=g).double()
    ex = torch.randint(0, 8, (4, 301), generator=g).double()
    x = -(sig / 128) * 2.0 ** (ex + 7)
    x[:, 0] = 0.0
    xb = x.to(torch.bfloat16)
    assert torch.equal(xb.double(), x)
    want64 = torch.log_softmax(x / (2 / 3), -1)
    torch.testing.assert_close(want64, x * 1.5, rtol=1e-15, atol=0)
    got = ts.log_softmax(xb, 2 / 3)
    assert torch.equal(got, (x * 1.5).to(torch.bfloat16))
    ties = (x * 1.5).to(torch.float32).view(torch.int32) & 0xFFFF == 0x8000
    assert int(ties.sum()) > 100  # many exact ties were rounded
    # float16: subnormal logits in, subnormal probabilities out (below 6.1e-5)
    tiny = torch.tensor([2.0**-24, 2.0**-20, 3 * 2.0**-17, 2.0**-14], dtype=torch.float64)
    xs = torch.cat([tiny.repeat(20), -torch.linspace(9.0, 16.0, 40, dtype=torch.float64)])
    xs = torch.stack([xs, xs.flip(0), torch.cat([torch.zeros(1), xs[1:]])]).to(torch.float16)
    assert bool((xs.double().abs() < 2.0**-14).any() & (xs.double() != 0).any())
    for kind in ("softmax", "log_softmax"):
        got = _fn(kind)(xs, 1.0)
        assert torch.equal(got, _fn(kind)(xs.float(), 1.0).to(torch.float16))
        want = getattr(torch, kind)(xs.double(), -1).to(torch.float16)
        assert float((got.double() - want.double()).abs().max()) <= 2.0**-24 if kind == "softmax" \
            else bool(torch.allclose(got.double(), want.double(), rtol=1e-3))
    p = ts.softmax(xs, 1.0)
    assert bool(((p > 0) & (p < 2.0**-14)).any())  # subnormal outputs were written


def test_temperature_tensor_errors_name_the_value():
    x = torch.randn(3, 4)
    for bad in (torch.tensor([1.0, -2.0, 1.0]), torch.tensor([nan, 1.0, 1.0])):
        with pytest.raises(ValueError) as got:
            ts.softmax(x, bad)
        with ts.config(native=False), pytest.raises(ValueError) as want:
            ts.softmax(x, bad)
        assert str(got.value) == str(want.value)
        assert "'temperature' parameter of softmax" in str(got.value)


def test_fallbacks_keep_the_generic_results():
    x = torch.randn(3, 5)
    # dtype= conversion, integer masks, NumPy temperatures and integer input stay generic
    close(ts.softmax(x, 0.5, dtype=torch.float64), _generic("softmax", x, 0.5,
                                                            dtype=torch.float64), torch.float64)
    im = torch.ones(3, 5, dtype=torch.int64)
    close(ts.softmax(x, 0.5, mask=im), _generic("softmax", x, 0.5, mask=im), torch.float32)
    tn = np.full(3, 0.5)
    close(ts.softmax(x, tn), _generic("softmax", x, tn), torch.float32)
    xi = torch.arange(6).reshape(2, 3)
    assert torch.equal(ts.softmax(xi, 2.0), _generic("softmax", xi, 2.0))


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
def _grads(kind, x, T, mask=None, g=None, native=True, axis=-1):
    x = x.detach().clone().requires_grad_(True)
    tt = T.detach().clone().requires_grad_(True) if isinstance(T, torch.Tensor) else T
    f = _fn(kind) if native else (lambda *a, **k: _generic(kind, *a, **k))
    y = f(x, tt, mask=mask, axis=axis)
    if g is None:
        g = torch.linspace(-1, 2, y.numel(), dtype=torch.float64).reshape(y.shape).to(y.dtype)
        if kind == "log_softmax":
            # g at the constant -inf outputs: the generic path's autograd lets it leak into the
            # row maximum's gradient (test_log_softmax_masked_outputs_do_not_leak)
            valid = x.detach() > -inf if mask is None else (x.detach() > -inf) & mask
            g = torch.where(valid, g, 0.0).to(y.dtype)
    inputs = [x] + ([tt] if isinstance(tt, torch.Tensor) else [])
    return torch.autograd.grad(y, inputs, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_generic_autograd(kind, dtype):
    x = contract_rows(40, dtype)
    for T in TEMPS:
        got = _grads(kind, x, T)
        if 0 < T < torch.finfo(dtype).tiny:
            # the generic path's own float32 gradient divides by T rounded to float32 (0: NaN);
            # the exact gradient (float64, rounded: +-inf where it overflows) is the reference
            want = tuple(w.to(dtype) for w in _grads(kind, x.double(), T, native=False))
        else:
            want = _grads(kind, x, T, native=False)
        for a, b in zip(got, want, strict=True):
            close(a, b, dtype, grad=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_through_per_row_temperature(kind, dtype):
    x = contract_rows(30, dtype)
    T = torch.tensor([0.0, 0.5, inf, 1e-30, 2.0, 1e30, 1.0, 3.0, 1e-3, 0.7], dtype=dtype)
    mask = torch.rand(10, 30, generator=torch.Generator().manual_seed(2)) > 0.25
    for m in (None, mask):
        got = _grads(kind, x, T, mask=m)
        want = _grads(kind, x, T, mask=m, native=False)
        assert uses_native(_fn(kind)(x, T.requires_grad_(True), mask=m))
        for a, b in zip(got, want, strict=True):
            close(a, b, dtype, grad=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_16bit_temperature_and_masked_gradients_match_float64(kind, dtype):
    # the scalar 16-bit row passes (the gradient through T, masked log_softmax with -inf
    # outputs) against the float64 generic path on the same values, rounded to the dtype
    x = contract_rows(70, dtype)
    T = torch.tensor([0.0, 0.5, inf, 1e-3, 2.0, 1e3, 1.0, 3.0, 0.01, 0.7], dtype=dtype)
    mask = torch.rand(10, 70, generator=torch.Generator().manual_seed(4)) > 0.25
    g = torch.randn(10, 70, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    if kind == "logsumexp":
        g = g[:, 0]
    for m in (None, mask):
        for t in (T, T[:, None] if kind != "logsumexp" else T, torch.tensor(0.7, dtype=dtype)):
            gy = g
            if kind == "log_softmax":
                valid = x > -inf if m is None else (x > -inf) & m
                gy = torch.where(valid, g, 0.0)
            got = _grads(kind, x, t, mask=m, g=gy.to(dtype))
            want = _grads(kind, x.double(), t.double(), mask=m, g=gy, native=False)
            for a, b in zip(got, want, strict=True):
                close(a, b.to(dtype), dtype, grad=True)


def test_float16_every_bit_pattern_through_the_scalar_conversions():
    # every float16 (NaN payloads, subnormals, +-inf) loaded and stored by the per-entry
    # paths (a strided row: no vector conversion), against numpy's float16 <-> float conversions
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    h = bits.view(np.float16)
    base = torch.from_numpy(np.stack([h, np.zeros_like(h)], 1).copy())
    x = base[:, :1]  # rows of one entry (logsumexp of one entry is that entry)
    assert not x.is_contiguous() or x.stride(0) != 1
    got = ts.logsumexp(x, 1.0, axis=-1).numpy()
    want = h.astype(np.float32).astype(np.float16)  # numpy: quiet NaNs, otherwise exact
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    nan[0x8000] = True  # -0: the log-sum -0 + 1 * log(1) is +0
    assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
    assert got[0x8000] == 0.0
    # (the rounding of every float16 boundary: tests/c/test_kernels.c, run_half_conversions)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    T = (torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.3).requires_grad_(True)
    mask = torch.ones(3, 6, 4, dtype=torch.bool)
    mask[0, 2] = False

    def f(a, t):
        y = _fn(kind)(a, t, axis=1, mask=mask)
        # log_softmax's masked outputs are the constant -inf (no finite differences there)
        return torch.where(mask, y, 0.0) if kind == "log_softmax" else y

    assert torch.autograd.gradcheck(f, (x, T))
    assert torch.autograd.gradcheck(lambda a: _fn(kind)(a, 0.7, axis=-1), (x,))


def test_gradient_of_broadcast_temperature_sums_over_rows():
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.8]], dtype=torch.float64, requires_grad=True)
    for kind in KINDS:
        got = _grads(kind, x, t)
        want = _grads(kind, x, t, native=False)
        assert got[1].shape == t.shape
        for a, b in zip(got, want, strict=True):
            close(a, b, torch.float64, grad=True)


def test_log_softmax_masked_outputs_do_not_leak():
    # a masked output is the constant -inf: the gradient ignores the g given there
    x = torch.tensor([[-inf, 1.0, 2.0], [5.0, -inf, -inf]], dtype=torch.float64,
                     requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    g1 = torch.tensor([[7.0, 8.0, 9.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    g0 = torch.where(torch.isinf(x.detach()), 0.0, g1)
    for m in (None, mask):
        a, = torch.autograd.grad(ts.log_softmax(x, 0.5, mask=m), x, g1)
        b, = torch.autograd.grad(ts.log_softmax(x, 0.5, mask=m), x, g0)
        assert torch.equal(a, b)
    p = torch.softmax(torch.tensor([1.0, 2.0], dtype=torch.float64) / 0.5, -1)
    want = (torch.tensor([8.0, 9.0], dtype=torch.float64) - 17 * p) / 0.5
    torch.testing.assert_close(a[0, 1:], want)
    assert torch.equal(a[1], torch.zeros(3, dtype=torch.float64))


def test_cuda_route_moves_the_axis_last_for_the_triton_kernels(monkeypatch):
    """CUDA tensors go to tempscale.triton's 2-D kernels (checked here with CPU stand-ins)."""
    pytest.importorskip("triton")
    import tempscale.triton as tt
    from tempscale import _torch_ops

    seen = []

    def fake(kind):
        def fn(x2, T, *, mask=None):
            seen.append((kind, tuple(x2.shape), None if mask is None else tuple(mask.shape),
                         T if isinstance(T, float) else tuple(T.shape)))
            return _generic(kind, x2, T if isinstance(T, float) else T[:, None], mask=mask)
        return fn

    for kind in KINDS:
        monkeypatch.setattr(tt, kind, fake(kind))
    x = torch.randn(3, 7, 5)
    mask = torch.rand(3, 7, 5) > 0.2
    t = torch.rand(3, 5) + 0.5
    for kind in KINDS:
        got = _torch_ops._route_triton(kind, x, 0.5, None, None, 1)
        close(got, _generic(kind, x, 0.5, axis=1), torch.float32)
        got = _torch_ops._route_triton(kind, x, 1.0, t[:, None, :], mask, 1)
        close(got, _generic(kind, x, t, axis=1, mask=mask), torch.float32)
    assert seen[0] == ("softmax", (15, 7), None, 0.5)
    assert seen[1] == ("softmax", (15, 7), (15, 7), (15,))
    with ts.config(triton=False):
        assert _torch_ops._route_triton("softmax", x, 0.5, None, None, 1) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16],
                         ids=str)
def test_backward_axes_strides_and_broadcast_gradients(dtype):
    g = torch.Generator().manual_seed(4)
    base = (torch.randn(5, 40, 6, generator=g, dtype=torch.float64) * 3).to(dtype)
    base[1, 3, 2] = -inf
    mask = torch.rand(1, 40, 6, generator=g) > 0.2
    t = torch.rand(5, 1, 6, generator=g, dtype=torch.float64) + 0.4
    for x in (base, base.transpose(0, 2), base[:, ::2, 1:]):
        for axis in (0, 1, -1):
            m = mask.expand(base.shape)
            m = m.transpose(0, 2) if x.shape[0] == 6 else m[:, ::2, 1:] if x.shape[1] == 20 else m
            kshape = tuple(1 if i == axis % 3 else s for i, s in enumerate(x.shape))
            tt = torch.rand(kshape, generator=g, dtype=torch.float64) + 0.4
            for kind in KINDS:
                for T, mm in ((0.8, None), (tt, m)):
                    close_all = zip(_grads(kind, x, T, mask=mm, axis=axis),
                                    _grads(kind, x, T, mask=mm, native=False, axis=axis),
                                    strict=True)
                    for a, b in close_all:
                        close(a, b, dtype, grad=True)
    # an expanded (stride 0) incoming gradient
    w = torch.linspace(-1.0, 1.0, 40, dtype=torch.float64).reshape(1, 40, 1)
    for kind in ("softmax", "log_softmax"):
        grads = []
        for f in (_fn(kind), lambda *a, k=kind, **kw: _generic(k, *a, **kw)):
            x = base.detach().clone().requires_grad_(True)
            tt = t.clone().requires_grad_(True)
            y = f(x, tt, mask=mask, axis=1)
            gy = torch.where(mask, w, 0.0).to(y.dtype).expand(y.shape)
            grads.append(torch.autograd.grad(y, (x, tt), gy))
        close(grads[0][0], grads[1][0], dtype, grad=True)
        # (the saved output is in x's dtype: dT is as exact as that, not as T's float64)
        close(grads[0][1], grads[1][1], dtype, grad=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_half_backward_through_the_c_kernel_with_and_without_contract_cases(dtype, kind,
                                                                             monkeypatch):
    # 16-bit gradients use the C backward (vector passes converting on the fly) whether or not
    # a contract case is present; the values are the generic path's
    from tempscale import _torch_ops

    taken = []
    real = _torch_ops._c_backward

    def spy(*args, **kwargs):
        taken.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(_torch_ops, "_c_backward", spy)
    f = getattr(ts, kind)
    x64 = torch.randn(6, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 3
    g = torch.randn(6, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for special in (False, True):
        x = x64.clone()
        if special:
            x[2, 4] = -math.inf
        xh = x.to(dtype).requires_grad_()
        f(xh, 0.7).backward(g.to(dtype))
        xr = xh.detach().double().requires_grad_()
        with ts.config(native=False):
            f(xr, 0.7).backward(g)
        want = torch.where(torch.isfinite(xr.grad), xr.grad, 0.0)
        torch.testing.assert_close(xh.grad.double(), want, rtol=2e-2, atol=2e-2)
    assert taken == [True, True]


@pytest.mark.parametrize("isa", list(_native._k.supported_isas()) if _native.available() else [])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_backward_vector_passes_on_every_instruction_set(isa, dtype):
    # the C backward's vector row passes (bw_sums / bw_dx of each instruction set): odd lengths
    # (vector tails, rows shorter than a vector), contract rows, masks, other axes, against the
    # generic path's autograd
    _native._k.set_isa(isa)
    try:
        for n in (3, 16, 17, 45, 300):
            x = contract_rows(n, dtype)
            for kind in ("softmax", "log_softmax"):
                for T in (0.0, 0.3, 1.0, 7.0, inf):
                    for a, b in zip(_grads(kind, x, T), _grads(kind, x, T, native=False),
                                    strict=True):
                        close(a, b, dtype, grad=True)
                mask = torch.rand(10, n, generator=torch.Generator().manual_seed(n)) > 0.3
                for a, b in zip(_grads(kind, x, 0.8, mask=mask),
                                _grads(kind, x, 0.8, mask=mask, native=False), strict=True):
                    close(a, b, dtype, grad=True)
                xt = x.T.contiguous().T  # rows strided: along axis 0 of the transposed copy
                for a, b in zip(_grads(kind, xt.T, 0.6, axis=0),
                                _grads(kind, xt.T, 0.6, axis=0, native=False), strict=True):
                    close(a, b, dtype, grad=True)
    finally:
        _native._k.set_isa("best")
