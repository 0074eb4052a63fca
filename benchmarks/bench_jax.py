"""tempscale on JAX under ``jax.jit`` against the one-liners a JAX user writes instead.

    python benchmarks/bench_jax.py                   # 4096 x 32000 float32, T = 0.7
    python benchmarks/bench_jax.py --shape 1024 32000 --repeat 9 --markdown
    python benchmarks/bench_jax.py --per-row --baseline old_jax.py --no-generic

For each function, forward and gradient, it times (median of ``--repeat``, methods interleaved
repeat by repeat so a noisy neighbour slows all alike):

* ``lean``      ``tempscale.<f>(x, T)``: the lean path (closed-form ``custom_jvp`` derivative)
* ``generic``   the same under ``tempscale.config(jax_fast=False)`` (the reference path)
* ``baseline``  with ``--baseline FILE``: an older ``_jax.py`` (before/after in one run)
* ``one-liner`` ``jax.nn.softmax(x / T)``, ``jax.nn.log_softmax(x / T)``,
                ``T * jax.nn.logsumexp(x / T, axis=-1)``

and prints ratios one-liner time / tempscale time (above 1: tempscale is faster).  The gradient
is that of ``sum(f(x)[:, :4])`` (a loss reading a few entries per row, like a cross-entropy).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)


def _load_baseline(path: str) -> Any:
    """An older ``tempscale/_jax.py`` (``git show REV:src/tempscale/_jax.py > FILE``), loaded
    as a module of the installed package, to time it side by side with the current one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tempscale._jax_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=2, default=(4096, 32000))
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", nargs="+", choices=("softmax", "log_softmax", "logsumexp"),
                    help="time these functions only")
    ap.add_argument("--no-generic", action="store_true", help="skip the generic path (faster)")
    ap.add_argument("--baseline", metavar="FILE",
                    help="also time an older _jax.py (its scalar or per-row temperature function)")
    ap.add_argument("--per-row", action="store_true",
                    help="per-row temperatures: an array T (uniform in [0.5, 1.5]), passed to "
                         "the jitted function; one-liner jax.nn.softmax(x / T[:, None])")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    import tempscale as ts

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=tuple(args.shape)).astype(np.float32))
    if args.per_row:
        # an argument of the jitted functions (not a constant XLA could fold)
        t_arr = jnp.asarray(rng.uniform(0.5, 1.5, size=args.shape[0]).astype(np.float32))
        one = {
            "softmax": lambda a, t: jax.nn.softmax(a / t[:, None]),
            "log_softmax": lambda a, t: jax.nn.log_softmax(a / t[:, None]),
            "logsumexp": lambda a, t: t * jax.nn.logsumexp(a / t[:, None], axis=-1),
        }
    else:
        T = args.temperature
        t_arr = jnp.asarray(T, dtype=jnp.float32)  # unused: T is a Python float
        one = {
            "softmax": lambda a, t: jax.nn.softmax(a / T),
            "log_softmax": lambda a, t: jax.nn.log_softmax(a / T),
            "logsumexp": lambda a, t: T * jax.nn.logsumexp(a / T, axis=-1),
        }
    base = _load_baseline(args.baseline) if args.baseline else None

    def grad_of(f: Any) -> Any:
        return jax.grad(lambda a, t: jnp.sum(f(a, t)[..., :4]) if f(a, t).ndim > 1
                        else jnp.sum(f(a, t)))

    cols = ["lean"] + ([] if args.no_generic else ["generic"]) + \
        (["baseline"] if base is not None else []) + ["one-liner"]
    rows = []
    for name, ref in one.items():
        if args.only and name not in args.only:
            continue
        fn = getattr(ts, name)
        if args.per_row:
            fns: dict[str, Any] = {"lean": lambda a, t, fn=fn: fn(a, t), "one-liner": ref}
        else:
            fns = {"lean": lambda a, t, fn=fn: fn(a, T), "one-liner": ref}
        if base is not None:
            def old(a: Any, t: Any, name: str = name) -> Any:
                if args.per_row:
                    r = base._array_fn(name, a.ndim - 1)(a, t[:, None])
                else:
                    r = base._scalar_fn(name, a.ndim - 1, T)(a)
                return r[..., 0] if name == "logsumexp" else r
            fns["baseline"] = old
        for label in ("forward", "gradient"):
            wrap = (lambda f: f) if label == "forward" else grad_of
            methods = {c: jax.jit(wrap(fns[c])) for c in cols if c in fns}
            if "generic" in cols:
                # traced now, so that the generic path is compiled in; a function of its own
                # (jit caches traces by function, and the config is not part of the key)
                gen = lambda a, t, f=fns["lean"]: f(a, t)  # noqa: E731
                with ts.config(jax_fast=False):
                    methods["generic"] = jax.jit(wrap(gen)).lower(x, t_arr).compile()
            times: dict[str, list[float]] = {c: [] for c in cols}
            for c in cols:
                methods[c](x, t_arr).block_until_ready()  # compile / warm up
            for _ in range(args.repeat):
                for c in cols:
                    t0 = time.perf_counter()
                    methods[c](x, t_arr).block_until_ready()
                    times[c].append(time.perf_counter() - t0)
            rows.append((name, label, {c: statistics.median(times[c]) for c in cols}))

    temp = "per-row T in [0.5, 1.5]" if args.per_row else f"T = {args.temperature}"
    print(f"machine: {cpu_model()}; jax {jax.__version__}; shape {tuple(args.shape)} float32, "
          f"{temp}; median of {args.repeat}")
    others = [c for c in cols if c != "one-liner"]
    head = ["function", "pass"] + [f"{c} ms" for c in cols] + [f"one-liner/{c}" for c in others]
    if args.markdown:
        fmt = "| " + " | ".join(["{}"] * len(head)) + " |"
    else:
        fmt = "{:12s} {:9s}" + " {:>12s}" * (len(head) - 2)
    print(fmt.format(*head))
    if args.markdown:
        print("|" + "---|" * len(head))
    for name, label, t in rows:
        print(fmt.format(name, label, *(f"{t[c] * 1e3:.1f}" for c in cols),
                         *(f"{t['one-liner'] / t[c]:.2f}x" for c in others)))


if __name__ == "__main__":
    main()
