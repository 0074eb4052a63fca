"""Large outputs of the torch CPU path come from the kernels' block cache (``_memcache.c``).

The tensors wrap cached blocks: they must behave as ordinary, independent tensors (no aliasing
between live outputs, a dead output's block reused without leaking old values into results,
every dtype including bfloat16, autograd's ``dx`` too).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import tempscale as ts  # noqa: E402
from tempscale import _native  # noqa: E402

pytestmark = pytest.mark.skipif(not _native.available(), reason="native kernels not built")

ROWS, COLS = 64, 8192  # 2 MiB in float32: above the cache's 1 MiB floor


def _ref(x: torch.Tensor, t: float) -> np.ndarray:
    z = x.double().numpy() / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_large_outputs_are_independent_and_correct(dtype):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(ROWS, COLS, generator=g).to(dtype)
    x2 = (3 * torch.randn(ROWS, COLS, generator=g)).to(dtype)
    y1 = ts.softmax(x1, 0.7)
    y2 = ts.softmax(x2, 0.7)
    assert y1.dtype == dtype and y1.shape == x1.shape and y1.is_contiguous()
    assert y1.data_ptr() != y2.data_ptr()
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-6)
    atol = 6e-8 if dtype == torch.float16 else 1e-30  # float16 results below 6e-5 are subnormal
    np.testing.assert_allclose(y1.double().numpy(), _ref(x1, 0.7), rtol=tol, atol=atol)
    np.testing.assert_allclose(y2.double().numpy(), _ref(x2, 0.7), rtol=tol, atol=atol)
    # a dead output's block is reused: the new result is the new input's, not stale values
    ptr = y1.data_ptr()
    del y1
    y3 = ts.softmax(x2, 2.0)
    np.testing.assert_allclose(y3.double().numpy(), _ref(x2, 2.0), rtol=tol, atol=atol)
    assert y3.data_ptr() != y2.data_ptr()
    y3.mul_(2.0)  # writable, and writing it leaves the other output alone
    np.testing.assert_allclose(y2.double().numpy(), _ref(x2, 0.7), rtol=tol, atol=atol)
    del ptr


def test_large_gradient_and_logsumexp_from_cache():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(ROWS, COLS, generator=g, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(ROWS, COLS, generator=g, dtype=torch.float64)
    ts.log_softmax(x, 1.5).backward(gy)
    xr = x.detach().clone().requires_grad_()
    torch.log_softmax(xr / 1.5, -1).backward(gy)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)
    wide = torch.randn(4, 1 << 17, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ts.logsumexp(wide.T, 0.5, axis=0),
                               0.5 * torch.logsumexp(wide / 0.5, -1), rtol=1e-13, atol=0)
