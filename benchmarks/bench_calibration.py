"""Temperature-scaling fits: tempscale.fit_temperature vs scikit-learn and PyTorch LBFGS, one run.

What is timed (same float32 logits and int64 labels for everyone, data already in memory):

* ``tempscale``: ``tempscale.calibration.fit_temperature(logits, labels)`` (its NumPy passes run
  in the compiled moments kernel ``tempscale._native._tsmoments`` when it is built; ``--generic``
  also times the NumPy-chunk evaluator, ``tempscale.config(native=False)``).
* ``sklearn``: ``sklearn.calibration._TemperatureScaling().fit(logits, labels)``: the calibrator
  that ``CalibratedClassifierCV(method="temperature")`` fits on the logits of its estimator
  (``_fit_calibrator`` -> ``_TemperatureScaling.fit``: ``minimize_scalar`` bounded over
  ``log(1/T)`` in [-10, 10] with ``HalfMultinomialLoss``).  Timing the calibrator directly leaves
  out the estimator's own predictions and the cross-validation, which would only add to its time.
* ``torch LBFGS (recipe)``: the widespread ``temperature_scaling`` recipe: ``T = nn.Parameter(1.5)``,
  ``optim.LBFGS([T], lr=0.01, max_iter=50)``, ``cross_entropy(logits / T, labels)``.
* ``torch LBFGS (tuned)``: LBFGS on ``log T`` with a strong-Wolfe line search, lr=1,
  ``tolerance_grad=1e-9``, ``tolerance_change=1e-12``, ``max_iter=100`` (a careful user's fit).

Every T is scored with the same exact float64 NLL; "dNLL" is its excess over tempscale's.  The
machine may be shared: each method's time is the best of ``--repeat`` runs (sklearn and torch
run fewer times when slow), ratios are computed in this run.

With ``--device cuda`` the logits are torch tensors on the GPU: tempscale runs its Array-API path
there (float64 accumulation on the device), both LBFGS fits run on the GPU, and scikit-learn
(CPU only) gets the same logits as NumPy.

Run:  python benchmarks/bench_calibration.py [--quick] [--repeat 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)


def make_logits(n, k, seed=0):
    """Over-confident logits (optimal T about 1.7) of a k-class problem (float32).

    x = noise + s * onehot(y) has Bayes logits s * x; we return 1.7 * s * x.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    s = 1.5 if k <= 10 else 3.5
    z = rng.standard_normal((n, k), dtype=np.float32)
    z[np.arange(n), y] += np.float32(s)
    z *= np.float32(1.7 * s)
    return z, y


def exact_nll(z, y, T, chunk=1 << 14):
    """Mean NLL of softmax(z / T) in float64, chunked (independent of all fitted methods)."""
    tot = 0.0
    for a in range(0, len(y), chunk):
        zc = z[a:a + chunk].astype(np.float64) / T
        m = zc.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(zc - m).sum(axis=1))
        tot += float(np.sum(lse - zc[np.arange(len(zc)), y[a:a + chunk]]))
    return tot / len(y)


def best_of(fn, repeat):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fit_tempscale(z, y):
    from tempscale.calibration import fit_temperature

    return fit_temperature(z, y)


def fit_sklearn(z, y):
    from sklearn.calibration import _TemperatureScaling

    cal = _TemperatureScaling().fit(z, y)
    return 1.0 / float(cal.beta_)


def fit_torch_recipe(zt, yt):
    import torch

    T = torch.nn.Parameter(torch.ones(1, device=zt.device) * 1.5)
    opt = torch.optim.LBFGS([T], lr=0.01, max_iter=50)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / T, yt)
        loss.backward()
        return loss

    opt.step(closure)
    return float(T.detach())


def fit_torch_tuned(zt, yt):
    import torch

    logT = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([logT], lr=1.0, max_iter=100, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / torch.exp(logT), yt)
        loss.backward()
        return loss

    opt.step(closure)
    return float(torch.exp(logT.detach()))


def breakdown(z, y):
    """tempscale's evaluations (rows, beta, float64?, seconds) for one fit."""
    import tempscale.calibration as C
    from tempscale.calibration import _nll  # the NumPy evaluator whose passes are timed

    classes = (_nll.NumpyNLL, _nll.NativeNLL)  # the NumPy-chunk and compiled-kernel evaluators
    origs = [cls.evaluate for cls in classes]
    calls = []

    def timer(orig):
        def timed(self, beta, precise):
            t0 = time.perf_counter()
            r = orig(self, beta, precise)
            calls.append((self.n, beta, precise or self.z.dtype == np.float64,
                          time.perf_counter() - t0))
            return r
        return timed

    for cls, orig in zip(classes, origs, strict=True):
        cls.evaluate = timer(orig)
    try:
        t0 = time.perf_counter()
        C.fit_temperature(z, y)
        total = time.perf_counter() - t0
    finally:
        for cls, orig in zip(classes, origs, strict=True):
            cls.evaluate = orig
    for n, beta, f64, t in calls:
        print(f"{'':>16}   pass over {n:>9,} rows  beta {beta:.8f}  {'float64' if f64 else 'float32'}"
              f"  {t:.4f} s")
    print(f"{'':>16}   total {total:.4f} s (passes {sum(c[3] for c in calls):.4f} s)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast method (best counts)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print tempscale's passes over the data and their times")
    ap.add_argument("--generic", action="store_true",
                    help="also time tempscale with native=False (the NumPy-chunk passes)")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated NxK sizes instead of the defaults, e.g. 1000000x10")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch LBFGS fits")
    ap.add_argument("--device", default="cpu", help="torch device of the logits (cpu, cuda)")
    ap.add_argument("--recipe-all", action="store_true",
                    help="also time the slow LBFGS recipe on inputs over 10M logits (minutes)")
    args = ap.parse_args(argv)
    sizes = [(100_000, 10), (10_000, 1000)] if args.quick else [(1_000_000, 10), (100_000, 1000)]
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    import sklearn
    import torch

    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info()}))
    except Exception:  # pragma: no cover
        blas = "?"
    print(f"CPU: {cpu_model()}   logical CPUs: {os.cpu_count()}   load average: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"threads: torch {torch.get_num_threads()}, thread pools [{blas}], tempscale "
          f"{min(os.cpu_count() or 1, 4)}")
    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, torch {torch.__version__}")
    gpu = args.device != "cpu"
    if gpu:
        print(f"device: {torch.cuda.get_device_name(args.device)} (tempscale and torch on the GPU, "
              "sklearn on the CPU)")
    print()
    header = f"{'logits':>16} {'method':<22} {'T':>12} {'NLL':>12} {'dNLL':>10} {'time s':>9} {'x slower':>9}"
    print(header)
    print("-" * len(header))
    for n, k in sizes:
        z, y = make_logits(n, k)
        zt, yt = torch.from_numpy(z).to(args.device), torch.from_numpy(y).to(args.device)
        zin, yin = (zt, yt) if gpu else (z, y)
        fit_tempscale(zin[:1000], yin[:1000])  # warm up (thread pool, imports, CUDA context)
        fit_torch_tuned(zt[:1000], yt[:1000])
        slow_rep = 1 if n * k >= 10_000_000 else 2
        rows = []
        t_ts, T_ts = best_of(lambda zin=zin, yin=yin: fit_tempscale(zin, yin), args.repeat)
        rows.append(("tempscale", T_ts, t_ts))
        if args.generic and not gpu:
            import tempscale

            with tempscale.config(native=False):
                t, T = best_of(lambda z=z, y=y: fit_tempscale(z, y), args.repeat)
            rows.append(("tempscale native=False", T, t))
        try:
            t, T = best_of(lambda z=z, y=y: fit_sklearn(z, y), slow_rep)
            rows.append(("sklearn temperature", T, t))
        except ImportError:  # scikit-learn < 1.8 has no temperature scaling
            print(f"scikit-learn {sklearn.__version__} has no temperature scaling; skipped")
        if (n * k <= 10_000_000 or args.recipe_all) and not args.no_torch:
            t, T = best_of(lambda zt=zt, yt=yt: fit_torch_recipe(zt, yt), 1)
            rows.append(("torch LBFGS (recipe)", T, t))
        if not args.no_torch:
            t, T = best_of(lambda zt=zt, yt=yt: fit_torch_tuned(zt, yt), slow_rep)
            rows.append(("torch LBFGS (tuned)", T, t))
        if args.breakdown and not gpu:
            breakdown(z, y)
        nll_ts = exact_nll(z, y, T_ts)
        for name, T, t in rows:
            v = exact_nll(z, y, T) if T > 0 and math.isfinite(T) else math.nan
            print(f"{f'{n:,} x {k}':>16} {name:<22} {T:>12.8f} {v:>12.8f} {v - nll_ts:>10.2e} "
                  f"{t:>9.3f} {t / t_ts:>9.1f}")
        print()
        del zt, yt, zin, yin
    print("dNLL = NLL(method) - NLL(tempscale), both exact float64 means; x slower = time / "
          "tempscale's time in this run.")


if __name__ == "__main__":
    main()
