"""The Triton kernels (tempscale.triton, tempscale._triton.kd) against the generic path.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``,
set before triton is imported).  With
``TEMPSCALE_TEST_GPU=1`` on a machine with CUDA, the same tests run the compiled kernels on the
GPU.  Shapes are small (the interpreter is slow);
``_block=16`` forces the online (multi-block) pass on rows of 37 classes.
"""

from __future__ import annotations

import math
import os
import sys

import pytest

ON_GPU = False
if os.environ.get("TEMPSCALE_TEST_GPU") == "1":
    try:
        import torch as _torch

        ON_GPU = _torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a test dependency
        ON_GPU = False
#: Triton reads TRITON_INTERPRET when it is imported and when kernels are defined and run.  When
#: another test module imported triton first (torch._dynamo does), the interpreter cannot be
#: switched on in this process: the tests then run in a fresh one (test_in_a_fresh_process).
IN_SUBPROCESS = (not ON_GPU and "triton" in sys.modules
                 and os.environ.get("TRITON_INTERPRET") != "1")
if not ON_GPU and not IN_SUBPROCESS:
    os.environ["TRITON_INTERPRET"] = "1"  # for the rest of the session (Triton needs it at run)

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import tempscale.triton as tt  # noqa: E402
from tempscale._softmax import _generic  # noqa: E402
from tempscale._triton import _common  # noqa: E402
from tempscale._triton.kd import kd_rows  # noqa: E402
from tempscale.distill import kd_loss  # noqa: E402

DEV = "cuda" if ON_GPU else "cpu"


@pytest.fixture(autouse=True)
def _only_where_the_interpreter_runs(request):
    if IN_SUBPROCESS and request.node.name != "test_in_a_fresh_process":
        pytest.skip("run by test_in_a_fresh_process (triton was imported before "
                    "TRITON_INTERPRET=1 could be set)")


@pytest.mark.skipif(not IN_SUBPROCESS, reason="the tests run in this process")
def test_in_a_fresh_process():
    """This file's tests in a new process, with TRITON_INTERPRET=1 set before triton loads."""
    import subprocess

    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
KINDS = ["softmax", "log_softmax", "logsumexp"]
INF, NAN = math.inf, math.nan
#: (classes, block): one-pass rows of 1, 7 and 64 classes, and 37 classes in blocks of 16
SHAPES = [(1, None), (7, None), (64, None), (37, 16)]
#: (rtol, atol) per dtype; on a GPU exp, log and division are the hardware's approximate ones
TOL = {torch.float32: (1e-4, 1e-5) if ON_GPU else (2e-5, 1e-6), torch.float16: (2e-3, 1e-5),
       torch.bfloat16: (1.6e-2, 1e-5)}
#: per-row temperatures: every contract case (0, inf, tiny, huge) in one tensor
ROW_T = [1.0, 0.37, 0.0, INF, 2.5, 1e-3, 7.0, 2.0, 1e30, 1.0, 0.5, 3.0]


def contract_rows(n, dtype=torch.float32, seed=0):
    """12 rows of ``n`` logits, one contract case each (rows 0 and 11: plain random rows)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, n, generator=g) * 3
    big = 0.9 * torch.finfo(dtype).max
    x[1, ::3] = -INF                       # masked entries
    x[2] = -INF                            # fully masked
    x[3, n // 2] = NAN                     # NaN row
    x[4, -1] = INF                         # one +inf
    x[5, :2] = INF                         # +inf twice (or once, n = 1)
    x[6, : min(n, 3)] = x[6].max() + 1     # tied maxima
    x[7, ::2] = big                        # a span beyond the dtype's max: x - m overflows
    x[7, 1::2] = -big
    x[8] = 0.25                            # a constant row
    x[9] = -INF                            # one valid entry
    x[9, n - 1] = 1.5
    x[10, 0] = -INF
    return x.to(dtype).to(DEV)


def row_mask(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(12, n, generator=g) > 0.25
    m[0] = True
    m[11] = False                          # fully masked by the mask
    return m.to(DEV)


def check(a, b, dtype=torch.float32):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,block", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_contract_matrix(kind, n, block):
    """Every contract case against the generic path, scalar and per-row temperatures."""
    x = contract_rows(n)
    mask = row_mask(n)
    T_rows = torch.tensor(ROW_T, device=DEV)
    f = getattr(tt, kind)
    cases = [(T_rows, mask), (0.0, None), (INF, mask)]
    if n in (7, 37):  # every temperature form on a short and a multi-block row
        cases += [(1.0, None), (0.37, mask), (1e-40, None), (T_rows[:, None].double(), None)]
    for T, m in cases:
        got = f(x, T, mask=m, _block=block)
        want = _generic(kind, x, T, mask=m)
        assert got.shape == want.shape and got.dtype == x.dtype
        check(got, want.to(got.dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,block", [(7, None), (37, 16)])
def test_forward_half_dtypes(dtype, n, block):
    """float16 / bfloat16 in and out, float32 inside: as the generic path (which rounds once)."""
    x = contract_rows(n, dtype)
    T_rows = torch.tensor(ROW_T, device=DEV, dtype=dtype)
    mask = row_mask(n)[:1]                 # broadcast (1, n)
    for kind in KINDS:
        got = getattr(tt, kind)(x, T_rows, mask=mask, _block=block)
        want = _generic(kind, x, T_rows, mask=mask)
        assert got.dtype == dtype
        check(got, want, dtype)


def test_forward_strided_and_broadcast_inputs():
    """Non-contiguous logits, a (rows, 1) mask and a one-value temperature tensor."""
    base = contract_rows(14)
    x = base[:, ::2]                       # stride 2 along the classes
    mask = row_mask(7)[:, :1]
    T = torch.tensor([0.6], device=DEV)
    got = tt.log_softmax(x, T, mask=mask)
    check(got, _generic("log_softmax", x, 0.6, mask=mask))
    xt = contract_rows(7).t().contiguous().t()  # column-major
    check(tt.softmax(xt, 0.8), _generic("softmax", xt, 0.8))


def test_empty_shapes():
    x = torch.zeros(3, 0, device=DEV)
    assert tt.softmax(x, 0.5).shape == (3, 0)
    lse = tt.logsumexp(x, 0.5)
    assert lse.shape == (3,) and bool(torch.all(lse == -INF))
    assert tt.log_softmax(torch.zeros(0, 5, device=DEV)).shape == (0, 5)


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------
def _grads(f, x0, T0, mask, g_seed=3):
    x = x0.clone().requires_grad_()
    T = T0.clone().requires_grad_() if isinstance(T0, torch.Tensor) else T0
    y = f(x, T, mask)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(g_seed)).to(DEV)
    # the upstream gradient is 0 where y is not finite (as a loss that ignores those entries)
    (torch.where(torch.isfinite(y), y, 0).float() * g).sum().backward()
    return y.detach(), x.grad, (T.grad if isinstance(T, torch.Tensor) else None)


@pytest.mark.parametrize("n,block", [(7, None), (37, 16)])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_generic_autograd(kind, n, block):
    """d/dx and d/dT (per-row T tensor) against autograd through the generic path."""
    x = contract_rows(n)
    mask = row_mask(n)
    # logsumexp at T = inf is +inf: its generic gradient is NaN (0 * inf), see the next test
    row_t = [3.0 if (kind == "logsumexp" and t == INF) else t for t in ROW_T]
    T = torch.tensor(row_t, device=DEV)
    for T_used, m in [(T, mask), (0.45, None)]:
        mine = _grads(lambda a, t, mk: getattr(tt, kind)(a, t, mask=mk, _block=block), x, T_used, m)
        ref = _grads(lambda a, t, mk: _generic(kind, a, t, mask=mk), x, T_used, m)
        for got, want in zip(mine, ref, strict=True):
            if want is not None:
                check(got, want)


def test_logsumexp_gradient_at_infinite_temperature():
    """T = inf: logsumexp is +inf (two or more entries); its gradient is the limit's, finite:
    d/dx = 1/n over the unmasked entries, d/dT = log n (the generic path gives 0 * inf = NaN)."""
    x = torch.randn(2, 5, device=DEV)
    x[1, 0] = -INF
    x.requires_grad_()
    T = torch.full((2,), INF, device=DEV, requires_grad=True)
    y = tt.logsumexp(x, T)
    assert bool(torch.all(y == INF))
    y.sum().backward()
    want_dx = torch.tensor([[0.2] * 5, [0.0] + [0.25] * 4], device=DEV)
    check(x.grad, want_dx)
    check(T.grad, torch.tensor([math.log(5), math.log(4)], device=DEV))


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_gradients_half_dtype(dtype):
    x = contract_rows(37, dtype)
    T = torch.tensor([1.0, 2.0, 0.0] * 4, device=DEV)  # row 7 (huge span): y stays finite
    for kind in ("softmax", "log_softmax"):
        mine = _grads(lambda a, t, mk, kind=kind: getattr(tt, kind)(a, t, _block=16), x, T, None)
        ref = _grads(lambda a, t, mk, kind=kind: _generic(kind, a, t), x, T, None)
        assert mine[1].dtype == dtype
        for got, want in zip(mine, ref, strict=True):
            check(got, want.to(got.dtype), dtype)


# --------------------------------------------------------------------------------------------
# knowledge distillation rows
# --------------------------------------------------------------------------------------------
def kd_pair(n, dtype=torch.float32):
    g = torch.Generator().manual_seed(5)
    s = torch.randn(10, n, generator=g)
    t = torch.randn(10, n, generator=g) * 2
    t[1, ::3] = -INF                       # teacher-masked classes
    s[2, n // 2] = -INF                    # a student-masked class the teacher weighs: KL = inf
    t[3] = -INF                            # a fully masked teacher row
    s[4, 0] = NAN                          # NaN student row
    t[5, -1] = NAN                         # NaN teacher row
    t[6, 0] = INF                          # +inf teacher logit
    s[7, :2] = s[7].max() + 1              # tied student maxima
    s[8, -1] = t[8, -1] = -INF             # a class both mask
    return s.to(dtype).to(DEV), t.to(dtype).to(DEV)


KD_T = [1.0, 0.5, 2.0, 1.0, 1.5, 3.0, 2.0, 0.7, 1.0, 4.0]
KD_TT = [1.0, 0.0, 2.0, 1.0, 1.5, INF, 2.0, 0.7, INF, 0.0]


@pytest.mark.parametrize("n,block", [(7, None), (37, 16)])
@pytest.mark.parametrize("divergence,beta", [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3),
                                             ("jsd", 0.0), ("jsd", 1.0)])
def test_kd_rows_match_kd_loss(divergence, beta, n, block):
    """Loss rows vs kd_loss(reduction="none", t2_scale=False); gradient vs its autograd."""
    s, t = kd_pair(n)
    Ts = torch.tensor(KD_T, device=DEV)
    cases = [(Ts, torch.tensor(KD_TT, device=DEV))]
    if divergence == "forward":
        cases += [(0.8, 0.0), (1.3, INF)]
    for T_s, T_t in cases:
        loss, grad = kd_rows(s, t, T_s, T_t, divergence=divergence, beta=beta, _block=block)
        s_ref = s.clone().requires_grad_()
        ref = kd_loss(s_ref, t, T_s, teacher_temperature=T_t, divergence=divergence, beta=beta,
                      reduction="none", t2_scale=False)
        ref.sum().backward()
        assert loss.dtype == torch.float32 and loss.shape == (10,)
        assert grad.shape == s.shape and grad.dtype == s.dtype
        check(loss, ref.detach())
        finite = torch.isfinite(ref.detach())
        check(grad[finite], s_ref.grad[finite])
        if divergence == "forward":
            assert bool(torch.all(torch.isfinite(grad[2])))  # infinite KL, finite gradient


def test_kd_rows_half_student_and_teacher():
    s, t = kd_pair(37, torch.bfloat16)
    loss, grad = kd_rows(s, t, 2.0, 2.0, divergence="jsd", beta=0.5, _block=16)
    s_ref = s.clone().requires_grad_()
    ref = kd_loss(s_ref, t, 2.0, divergence="jsd", reduction="none", t2_scale=False)
    ref.float().sum().backward()
    check(loss, ref.detach().float(), torch.bfloat16)
    finite = torch.isfinite(ref.detach())
    check(grad[finite], s_ref.grad[finite], torch.bfloat16)


# --------------------------------------------------------------------------------------------
# arguments, and no host synchronisation
# --------------------------------------------------------------------------------------------
def test_argument_errors(monkeypatch):
    x = torch.randn(3, 4, device=DEV)
    with pytest.raises(TypeError, match="'x' parameter of softmax must be a 2-D torch tensor"):
        tt.softmax([[1.0, 2.0]])
    with pytest.raises(ValueError, match="'x' parameter of log_softmax .* shape \\(4,\\)"):
        tt.log_softmax(torch.randn(4, device=DEV))
    with pytest.raises(TypeError, match="dtype torch.float64"):
        tt.softmax(x.double())
    with pytest.raises(ValueError, match="'temperature' parameter of softmax .* Got -1.0"):
        tt.softmax(x, -1.0)
    with pytest.raises(ValueError, match="Got nan"):
        tt.logsumexp(x, NAN)
    with pytest.raises(TypeError, match="'temperature'"):
        tt.softmax(x, "hot")
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(3, 1\)"):
        tt.softmax(x, torch.ones(4, device=DEV))
    with pytest.raises(TypeError, match="'mask' parameter of softmax must be a bool"):
        tt.softmax(x, mask=torch.ones(3, 4, device=DEV))
    with pytest.raises(ValueError, match="'mask' parameter .* broadcastable"):
        tt.softmax(x, mask=torch.ones(3, 5, dtype=torch.bool, device=DEV))
    with pytest.raises(ValueError, match="'divergence' parameter of kd_rows"):
        kd_rows(x, x, 1.0, 1.0, divergence="kl")
    with pytest.raises(ValueError, match="'beta' parameter of kd_rows"):
        kd_rows(x, x, 1.0, 1.0, beta=1.5)
    with pytest.raises(ValueError, match="'teacher' parameter of kd_rows"):
        kd_rows(x, x[:2], 1.0, 1.0)
    monkeypatch.setattr(_common, "interpreting", lambda: False)  # compiled kernels: CUDA only
    with pytest.raises(ValueError, match="a CUDA tensor .* Got 'a tensor on cpu'"):
        tt.softmax(torch.randn(3, 4))


def test_no_host_synchronisation(monkeypatch):
    """Reading a tensor's value on the host (item, tolist, bool) is never needed, even for the
    contract cases, per-row temperatures and gradients."""
    x = contract_rows(7).requires_grad_()
    T = torch.tensor(ROW_T, device=DEV, requires_grad=True)
    s, t = kd_pair(7)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    y = tt.log_softmax(x, T, mask=row_mask(7))
    y.backward(torch.ones_like(y))
    tt.logsumexp(x, T).sum().backward()
    kd_rows(s, t, torch.tensor(KD_T, device=DEV), 0.0, divergence="reverse")
    monkeypatch.undo()
    assert x.grad is not None and T.grad is not None


def test_several_programs_per_launch():
    """More rows than one program's tile (rows 8 at a time, KD 2 at a time): the row offsets."""
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(20, 300, generator=g) * 4).to(DEV)
    x[::7, ::5] = -INF
    T = (torch.rand(20, generator=g) + 0.2).to(DEV)
    for kind in ("log_softmax", "logsumexp"):
        mine = _grads(lambda a, t, mk, kind=kind: getattr(tt, kind)(a, t), x, T, None)
        ref = _grads(lambda a, t, mk, kind=kind: _generic(kind, a, t), x, T, None)
        for got, want in zip(mine, ref, strict=True):
            check(got, want)
    t = torch.randn(20, 300, generator=g).to(DEV)
    loss, grad = kd_rows(x, t, T, 1.5, divergence="reverse")
    s_ref = x.clone().requires_grad_()
    ref = kd_loss(s_ref, t, T, teacher_temperature=1.5, divergence="reverse", reduction="none",
                  t2_scale=False)
    ref.sum().backward()
    check(loss, ref.detach())
    check(grad, s_ref.grad)


def test_bad_temperature_tensor_values_give_nan_rows():
    """A negative or NaN entry of a temperature tensor is not checked on the host (that would
    synchronise): its row is NaN, in every kind, the others are unaffected."""
    x = torch.randn(3, 6, device=DEV)
    T = torch.tensor([-1.0, NAN, 0.5], device=DEV)
    for kind in KINDS:
        got = getattr(tt, kind)(x, T)
        assert bool(torch.all(torch.isnan(got[:2])))
        check(got[2], _generic(kind, x[2:], 0.5)[0])
    loss, grad = kd_rows(x, x.flip(1), T, 1.0)
    assert bool(torch.all(torch.isnan(loss[:2]))) and bool(torch.isfinite(loss[2]))
