"""torch.compile(fullgraph=True) through tempscale.softmax / log_softmax / logsumexp on CPU
tensors: the native kernels are custom ops (tempscale::*) with fake implementations and
registered autograd, so the trace has no graph break and the results equal eager mode.

Compilation is slow on small machines: few, combined functions."""

from __future__ import annotations

import math

import pytest

import tempscale as ts
from tempscale import _native

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.skipif(not _native.available(), reason="native kernels not built"),
    pytest.mark.skipif(not hasattr(torch, "compile") or not hasattr(torch.library, "custom_op"),
                       reason="torch.compile and torch.library.custom_op (torch >= 2.4) needed"),
    # with tests/test_kd_compile.py on one xdist worker: dynamo/inductor warm up once
    pytest.mark.xdist_group("torch_compile"),
]


def _all_kinds(x, t, m):
    a = ts.softmax(x, 0.7)
    b = ts.log_softmax(x, t, mask=m)
    c = ts.logsumexp(x, t, axis=0 if x.ndim == 2 and t.ndim == 2 else -1)
    d = ts.softmax(x, t, mask=m, axis=-1)
    w = torch.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)
    loss = (a * w).sum() + torch.where(m, b, 0.0).mul(w).sum() + c.sum() + (d * w * w).sum()
    return loss, a, b, c, d


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 12, generator=g, dtype=dtype)
    x[1, 3] = -math.inf
    t = (torch.rand(6, generator=g, dtype=dtype) + 0.3)
    m = torch.rand(6, 12, generator=g) > 0.25
    m[2] = False  # a fully masked row
    return x, t, m


def _ops_only(x, t, m):
    """Only tempscale's ops (inductor then generates no C++ kernel: a quick compile)."""
    return (ts.softmax(x, 0.7), ts.log_softmax(x, t, mask=m), ts.logsumexp(x, t),
            ts.softmax(x, t, mask=m, axis=-1))


def _run(fn, x, t, m):
    x = x.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    loss, *outs = fn(x, t, m)
    gx, gt = torch.autograd.grad(loss, (x, t))
    return [o.detach() for o in outs] + [gx, gt]


def _run_ops(fn, x, t, m):
    """fn's outputs, and the gradients of a weighted sum of them (taken outside fn)."""
    x = x.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    outs = fn(x, t, m)
    w = torch.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)
    loss = sum((torch.where(torch.isfinite(o), o, 0.0) * (w if o.ndim == x.ndim else 1)).sum()
               for o in outs)
    gx, gt = torch.autograd.grad(loss, (x, t))
    return [o.detach() for o in outs] + [gx, gt]


def test_no_graph_break():
    x, t, m = _inputs()
    explain = torch._dynamo.explain(_all_kinds)(x.requires_grad_(True), t, m)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1


# inductor's own import of torch.jit warns (not ours)
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
def test_fullgraph_inductor_matches_eager_forward_and_backward():
    torch._dynamo.reset()
    x, t, m = _inputs()
    eager = _run_ops(_ops_only, x, t, m)
    compiled = _run_ops(torch.compile(_ops_only, fullgraph=True), x, t, m)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_fullgraph_per_row_temperature_tensor_keepdims_and_bfloat16():
    torch._dynamo.reset()

    def fn(x, t, m):
        y = ts.log_softmax(x, t[:, None], mask=m)
        z = ts.logsumexp(x, t, keepdims=True)
        return (torch.where(m, y, 0.0).float().sum() + z.float().sum()), y, z

    for dtype in (torch.float64, torch.bfloat16):
        x, t, m = _inputs(dtype)
        t = t.float()
        eager = _run(fn, x, t, m)
        compiled = _run(torch.compile(fn, fullgraph=True, backend="aot_eager"), x, t, m)
        for a, b in zip(compiled, eager, strict=True):
            torch.testing.assert_close(a, b, equal_nan=True)


def test_compiled_call_checks_the_temperature_tensor_at_run_time():
    torch._dynamo.reset()
    fn = torch.compile(lambda x, t: ts.softmax(x, t), fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 4)
    fn(x, torch.ones(3))
    with pytest.raises(ValueError, match="'temperature' parameter of softmax .* Got -1.0"):
        fn(x, torch.tensor([1.0, -1.0, 1.0]))
