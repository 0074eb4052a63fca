"""entropy, perplexity and solve_temperature against float64 / mpmath references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tempscale._entropy import entropy, perplexity, solve_temperature

from .conftest import assert_close, to_numpy

mpmath = pytest.importorskip("mpmath")


def ref_entropy(row, T, base=None):
    """mpmath entropy of softmax(row / T) over the finite entries (50 digits)."""
    mpmath.mp.dps = 50
    vals = [mpmath.mpf(float(v)) for v in row if v != -math.inf]
    if not vals:
        return 0.0
    m = max(vals)
    if T == 0:
        k = sum(1 for v in vals if v == m)
        h = mpmath.log(k)
    elif T == math.inf:
        h = mpmath.log(len(vals))
    else:
        e = [mpmath.exp((v - m) / mpmath.mpf(T)) for v in vals]
        s = mpmath.fsum(e)
        h = -mpmath.fsum([(x / s) * mpmath.log(x / s) for x in e if x > 0])
    if base is not None:
        h = h / mpmath.log(base)
    return float(h)


def ref_probs(row, T):
    mpmath.mp.dps = 50
    vals = [mpmath.mpf(float(v)) for v in row]
    m = max(vals)
    e = [mpmath.exp((v - m) / mpmath.mpf(float(T))) for v in vals]
    s = mpmath.fsum(e)
    return [float(x / s) for x in e]


X = np.array([[1.0, 2.0, 3.0, 4.0],
              [0.0, 0.5, 0.0, 8.0],
              [-3.0, -3.0, 7.0, 7.0],
              [5.0, -np.inf, 1.0, 2.0]])


@pytest.mark.parametrize("T", [0.0, 0.1, 1.0, 3.7, 1e3, np.inf])
def test_entropy_matches_mpmath(xp, T):
    got = entropy(xp.asarray(X), T)
    ref = [ref_entropy(r, T) for r in X]
    assert_close(got, ref, xp=xp, dtype=xp.float64, rtol=1e-12, atol=1e-13)


def test_entropy_base_and_perplexity(xp):
    x = xp.asarray(X)
    assert_close(entropy(x, 2.0, base=2), [ref_entropy(r, 2.0, base=2) for r in X], xp=xp,
                 rtol=1e-12, atol=1e-13)
    assert_close(perplexity(x, 2.0), [math.exp(ref_entropy(r, 2.0)) for r in X], xp=xp,
                 rtol=1e-12)


def test_entropy_float32_and_mask(xp):
    x = xp.asarray(X[:3].astype(np.float32))
    mask = xp.asarray(np.array([True, True, False, True]))
    got = entropy(x, 1.5, mask=mask)
    xm = np.where([True, True, False, True], X[:3], -np.inf)
    assert_close(got, [ref_entropy(r, 1.5) for r in xm], xp=xp, dtype=xp.float32)


def test_entropy_edge_rows():
    x = np.array([[-np.inf, -np.inf], [np.nan, 1.0], [2.0, 2.0]])
    h = entropy(x)
    assert h[0] == 0.0 and np.isnan(h[1]) and h[2] == pytest.approx(math.log(2))
    assert entropy(np.array([1.0, 2.0, 3.0]), axis=None).shape == ()
    np.testing.assert_allclose(entropy(X.T, axis=0), entropy(X), rtol=1e-14)
    with pytest.raises(ValueError, match="'base' parameter of entropy"):
        entropy(X, base=1.0)
    with pytest.raises(ValueError, match="'temperature'"):
        entropy(X, -1.0)


def test_entropy_per_row_temperature():
    T = np.array([0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(entropy(X, T), [ref_entropy(r, t) for r, t in zip(X, T, strict=True)],
                               rtol=1e-12, atol=1e-13)


def test_entropy_gradients_torch():
    torch = pytest.importorskip("torch")
    x = torch.tensor(X[:2], dtype=torch.float64, requires_grad=True)
    T = torch.tensor([0.7, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: entropy(a, t), (x, T))
    # dH/dlogT = beta^2 Var_p(x) (the formula the solver's Newton step uses)
    t = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    xr = torch.tensor(X[0], dtype=torch.float64)
    h = entropy(xr, t)
    (g,) = torch.autograd.grad(h, t)
    p = torch.softmax(xr / 1.3, -1)
    var = (p * xr ** 2).sum() - (p * xr).sum() ** 2
    assert float(g * 1.3) == pytest.approx(float(var / 1.3 ** 2), rel=1e-10)


def test_entropy_jax_grad():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    g = jax.grad(lambda x: entropy(x, 2.0).sum())(jnp.asarray(X[:3]))
    assert np.all(np.isfinite(np.asarray(g)))


# --------------------------------------------------------------------------------------------
# solve_temperature
# --------------------------------------------------------------------------------------------
Y = np.array([[1.0, 2.0, 3.0, 4.0],
              [0.0, 0.5, 0.0, 8.0],
              [-3.0, -3.0, 7.0, 7.0],
              [5.0, -np.inf, 1.0, 2.0],
              [1e3, 0.0, -1e3, 2.0]])


@pytest.mark.parametrize("target", [0.05, 0.7, 1.0, 1.3])
def test_solve_entropy_hits_target(xp, target):
    T = solve_temperature(xp.asarray(Y), entropy=target, on_unreachable="nan")
    assert T.dtype == xp.float64 and tuple(T.shape) == (5,)
    Tn = to_numpy(T)
    for row, t in zip(Y, Tn, strict=True):
        lo = math.log(int(np.sum(row == row.max())))
        if target < lo or target > math.log(int(np.sum(row > -np.inf))):
            assert np.isnan(t)
            continue
        assert ref_entropy(row, t) == pytest.approx(target, abs=1e-9)


def test_solve_unreachable_raises_with_rows():
    with pytest.raises(ValueError, match=r"rows \[2\]") as exc:
        solve_temperature(Y, entropy=0.5)   # row 2 has two tied maxima: H >= log 2
    assert "entropy" in str(exc.value) and "on_unreachable='nan'" in str(exc.value)
    T = solve_temperature(Y, entropy=0.5, on_unreachable="nan")
    assert np.isnan(T[2]) and np.all(np.isfinite(np.delete(T, 2)))
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        solve_temperature(Y, entropy=math.log(3.5))   # row 3 has 3 unmasked entries


def test_solve_perplexity_and_max_prob(xp):
    x = xp.asarray(Y)
    T = to_numpy(solve_temperature(x, perplexity=2.5))
    for row, t in zip(Y, T, strict=True):
        assert math.exp(ref_entropy(row, t)) == pytest.approx(2.5, rel=1e-9)
    T = to_numpy(solve_temperature(x, max_prob=0.45))
    for row, t in zip(Y, T, strict=True):
        assert max(ref_probs(row, t)) == pytest.approx(0.45, abs=1e-9)


def test_solve_endpoints():
    x = np.array([[1.0, 3.0, 3.0, 0.0]])
    assert solve_temperature(x, entropy=math.log(2))[0] == 0.0
    assert solve_temperature(x, entropy=math.log(4))[0] == math.inf
    assert solve_temperature(x, max_prob=0.5)[0] == 0.0
    assert solve_temperature(x, max_prob=0.25)[0] == math.inf
    assert solve_temperature(x, perplexity=4.0)[0] == math.inf
    for bad in (dict(max_prob=0.6), dict(max_prob=0.2), dict(perplexity=1.5)):
        with pytest.raises(ValueError, match="unreachable"):
            solve_temperature(x, **bad)


def test_solve_constant_masked_nan_rows():
    x = np.array([[2.0, 2.0, 2.0], [-np.inf, -np.inf, -np.inf], [np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"rows \[0, 1\]"):
        solve_temperature(x, entropy=0.5)
    T = solve_temperature(x, entropy=0.5, on_unreachable="nan")
    assert np.isnan(T[:3]).all() and np.isfinite(T[3])


def test_solve_per_row_targets_axis_mask_base_dtype(xp):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 5)) * 3
    targets = rng.uniform(0.2, 1.4, size=(3, 5))
    T = solve_temperature(xp.asarray(x), entropy=xp.asarray(targets), axis=0)
    assert tuple(T.shape) == (3, 5)
    Tn = to_numpy(T)
    for i in range(3):
        for j in range(5):
            assert ref_entropy(x[:, i, j], Tn[i, j]) == pytest.approx(targets[i, j], abs=1e-9)
    # bits, and a mask
    m = np.array([True, True, False, True, True])
    xs = x[0]
    Tb = to_numpy(solve_temperature(xp.asarray(xs), entropy=1.5, base=2, mask=xp.asarray(m)))
    for row, t in zip(xs, Tb, strict=True):
        assert ref_entropy(np.where(m, row, -np.inf), t, base=2) == pytest.approx(1.5, abs=1e-9)
    # float32 in, float32 out (solved in float64 where the backend has it)
    T32 = solve_temperature(xp.asarray(xs.astype(np.float32)), entropy=1.0)
    assert T32.dtype == xp.float32


def test_solve_extreme_scales():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(4, 6))
    for s in (1e-200, 1e-8, 1.0, 1e8, 1e200):
        T = solve_temperature(base * s, entropy=1.0)
        T1 = solve_temperature(base, entropy=1.0)
        np.testing.assert_allclose(T / s, T1, rtol=1e-8)
    # targets very close to the ends of the range
    x = np.array([[0.0, 1.0, 2.0, 3.0]])
    for h in (1e-8, math.log(4) - 1e-8):
        t = solve_temperature(x, entropy=h)[0]
        assert ref_entropy(x[0], t) == pytest.approx(h, abs=1e-10)


def test_solve_errors():
    with pytest.raises(ValueError, match="exactly one"):
        solve_temperature(Y)
    with pytest.raises(ValueError, match="exactly one"):
        solve_temperature(Y, entropy=1.0, max_prob=0.5)
    with pytest.raises(ValueError, match="'on_unreachable'"):
        solve_temperature(Y, entropy=1.0, on_unreachable="ignore")
    with pytest.raises(ValueError, match="'base'"):
        solve_temperature(Y, perplexity=2.0, base=2)
    with pytest.raises(ValueError, match="broadcastable"):
        solve_temperature(Y, entropy=np.ones(3))


def test_solve_dask():
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(3).normal(size=(20, 7))
    T = solve_temperature(da.from_array(x, chunks=(5, 7)), entropy=1.2)
    assert isinstance(T, da.Array)   # lazy: rows are solved block by block
    np.testing.assert_allclose(T.compute(), solve_temperature(x, entropy=1.2), rtol=1e-12)
    tg = np.linspace(0.5, 1.5, 20)
    T = solve_temperature(da.from_array(x.T, chunks=(3, 5)), entropy=da.from_array(tg, chunks=4),
                          axis=0)
    np.testing.assert_allclose(T.compute(), solve_temperature(x, entropy=tg), rtol=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.lists(st.floats(-50, 50), min_size=2, max_size=12),
       frac=st.floats(0.001, 0.999), kind=st.sampled_from(["entropy", "perplexity", "max_prob"]))
def test_solve_property_hits_target(row, frac, kind):
    x = np.array(row)
    n = len(x)
    k = int(np.sum(x == x.max()))
    assume(k < n and np.ptp(x) > 1e-6)
    gaps = np.diff(np.unique(x))
    assume(gaps.min() > 1e-100)   # a gap of 5e-324 needs a T below the representable range
    if kind == "entropy":
        target = math.log(k) + frac * (math.log(n) - math.log(k))
    elif kind == "perplexity":
        target = k + frac * (n - k)
    else:
        target = 1 / n + frac * (1 / k - 1 / n)
    T = float(solve_temperature(x, **{kind: target}))
    assert 0 < T < math.inf
    if kind == "entropy":
        assert ref_entropy(x, T) == pytest.approx(target, abs=1e-9)
    elif kind == "perplexity":
        assert math.exp(ref_entropy(x, T)) == pytest.approx(target, rel=1e-9)
    else:
        assert max(ref_probs(x, T)) == pytest.approx(target, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), a=st.floats(0.05, 0.95), b=st.floats(0.05, 0.95))
def test_solve_property_monotone(seed, a, b):
    x = np.random.default_rng(seed).normal(size=(3, 8)) * 2
    lo, hi = sorted((a, b))
    assume(hi - lo > 1e-6)
    h = math.log(8)
    T_lo = solve_temperature(x, entropy=lo * h)
    T_hi = solve_temperature(x, entropy=hi * h)
    assert np.all(T_lo < T_hi)
    assert np.all(solve_temperature(x, max_prob=0.3) <= solve_temperature(x, max_prob=0.2))


def test_cli_solve(tmp_path, capsys):
    from tempscale.cli import main

    assert main(["solve", "--entropy", "1", "--", "1", "2", "3", "4"]) == 0
    assert "1.09239" in capsys.readouterr().out
    x = np.random.default_rng(5).normal(size=(30, 6)) * 2
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "T.npy"
    assert main(["solve", "--max-prob", "0.5", str(tmp_path / "x.npy"), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), solve_temperature(x, max_prob=0.5), rtol=1e-12)
    assert main(["solve", "--perplexity", "9", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err and len(err.strip().splitlines()) == 1
    assert main(["solve", "--perplexity", "9", "--nan", str(tmp_path / "x.npy")]) == 0
    assert "30 rows" in capsys.readouterr().out


def test_solve_warns_when_the_solution_is_not_representable():
    with pytest.warns(RuntimeWarning, match="did not reach"):
        solve_temperature(np.array([0.0, 5e-324, -1.0]), entropy=0.5)
