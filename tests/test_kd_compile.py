"""torch.compile(fullgraph=True) through kd_loss and KDLoss (issue 11 item 4, the distillation
part): zero graph breaks, results equal to eager, no array_api_compat log noise.

The loss is the ``torch.library`` custom op ``tempscale::kd_rows`` (fake implementation and
registered backward) inside plain torch operations.  Compiles are slow: one inductor compile,
the variants on the ``aot_eager`` backend (same tracing, fake tensors and autograd, no codegen).
"""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
dynamo = pytest.importorskip("torch._dynamo")

from tempscale.distill import kd_loss  # noqa: E402
from tempscale.torch import KDLoss  # noqa: E402

# with tests/test_compile.py on one xdist worker: dynamo/inductor warm up once
pytestmark = pytest.mark.xdist_group("torch_compile")


def _inputs(n=8, v=11, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, v, generator=g, dtype=dtype) * 2
    t = torch.randn(n, v, generator=g, dtype=dtype) * 2
    y = torch.randint(0, v, (n,), generator=g)
    y[2] = -100
    return s, t, y


CRIT = KDLoss(2.0, alpha=0.7)
CRIT_JSD = KDLoss(1.5, divergence="jsd", beta=0.3)

VARIANTS = {
    "labels": lambda x, t, y: kd_loss(x, t, 2.0, labels=y, alpha=0.7) + CRIT(x, t, y),
    "int where, per-row T": lambda x, t, y: kd_loss(
        x, t, torch.linspace(0.5, 3.0, x.shape[0]), where=(y >= 0).to(torch.int64),
        divergence="reverse") + CRIT_JSD(x, t, where=(y != 5).to(torch.uint8)),
    "none, teacher T": lambda x, t, y: kd_loss(x, t, 2.0, teacher_temperature=0.7,
                                               reduction="none").sum(),
    "num_items, shift": lambda x, t, y: kd_loss(
        x.reshape(2, 4, -1), t.reshape(2, 4, -1), 2.0, labels=y.reshape(2, 4),
        shift_labels=True, num_items_in_batch=10) + CRIT(x, t, y, num_items_in_batch=7),
}


def _eager_and_compiled(fn, backend, teacher_grad=False):
    s, t, y = _inputs()
    out = []
    for f in (fn, torch.compile(fn, fullgraph=True, backend=backend)):
        x = s.clone().requires_grad_()
        tt = t.clone().requires_grad_(teacher_grad)
        loss = f(x, tt, y)
        loss.backward()
        out.append((loss.detach(), x.grad, tt.grad))
    return out


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_zero_graph_breaks_and_equal_to_eager(name):
    dynamo.reset()
    s, t, y = _inputs()
    explained = dynamo.explain(VARIANTS[name])(s.clone().requires_grad_(), t, y)
    assert explained.graph_break_count == 0, explained.break_reasons
    (l1, g1, _), (l2, g2, _) = _eager_and_compiled(VARIANTS[name], "aot_eager")
    torch.testing.assert_close(l2, l1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g2, g1, rtol=1e-6, atol=1e-7)


def test_teacher_gradient_and_traced_out_of_range_label():
    dynamo.reset()
    (l1, g1, h1), (l2, g2, h2) = _eager_and_compiled(
        lambda x, t, y: kd_loss(x, t, 2.0, divergence="jsd") + CRIT(x, t, y), "aot_eager",
        teacher_grad=True)
    torch.testing.assert_close(l2, l1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g2, g1, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(h2, h1, rtol=1e-6, atol=1e-7)
    # a label the trace cannot check: its row is NaN (never another class's loss)
    s, t, y = _inputs()
    y[0] = 99
    rows = torch.compile(lambda x, t, y: kd_loss(x, t, 2.0, labels=y, reduction="none"),
                         fullgraph=True, backend="aot_eager")(s, t, y)
    assert torch.isnan(rows[0]) and not torch.isnan(rows[1:]).any()


# torch's own inductor imports a deprecated torch.jit helper (not tempscale's doing)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_fullgraph_training_step(caplog):
    """One real (inductor, CPU) compile of a forward + backward step: equal to eager, and no
    array_api_compat cache warnings in the logs."""
    dynamo.reset()
    with caplog.at_level(logging.DEBUG):
        (l1, g1, _), (l2, g2, _) = _eager_and_compiled(VARIANTS["labels"], "inductor")
    torch.testing.assert_close(l2, l1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g2, g1, rtol=1e-6, atol=1e-7)
    assert not [r for r in caplog.records if "lru_cache" in r.getMessage()]
