"""tempscale on JAX under ``jax.jit`` against the one-liners a JAX user writes instead.

    python benchmarks/bench_jax.py                   # 4096 x 32000 float32, T = 0.7
    python benchmarks/bench_jax.py --shape 1024 32000 --repeat 9 --markdown

For each function, forward and gradient, it times (median of ``--repeat``, methods interleaved
repeat by repeat so a noisy neighbour slows all alike):

* ``lean``      ``tempscale.<f>(x, T)``: the lean path (closed-form ``custom_vjp`` backward)
* ``generic``   the same under ``tempscale.config(jax_fast=False)`` (the reference path)
* ``one-liner`` ``jax.nn.softmax(x / T)``, ``jax.nn.log_softmax(x / T)``,
                ``T * jax.nn.logsumexp(x / T, axis=-1)``

and prints ratios one-liner time / tempscale time (above 1: tempscale is faster).  The gradient
is that of ``sum(f(x)[:, :4])`` (a loss reading a few entries per row, like a cross-entropy).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=2, default=(4096, 32000))
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", nargs="+", choices=("softmax", "log_softmax", "logsumexp"),
                    help="time these functions only")
    ap.add_argument("--no-generic", action="store_true",
                    help="skip the generic path (faster; its columns print as -)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    import tempscale as ts

    T = args.temperature
    x = jnp.asarray(np.random.default_rng(0).normal(size=tuple(args.shape)).astype(np.float32))
    one = {
        "softmax": lambda a: jax.nn.softmax(a / T),
        "log_softmax": lambda a: jax.nn.log_softmax(a / T),
        "logsumexp": lambda a: T * jax.nn.logsumexp(a / T, axis=-1),
    }

    def grad_of(f):
        return jax.grad(lambda a: jnp.sum(f(a)[..., :4]) if f(a).ndim > 1 else jnp.sum(f(a)))

    rows = []
    for name, ref in one.items():
        if args.only and name not in args.only:
            continue
        fn = getattr(ts, name)
        lean_f = jax.jit(lambda a, fn=fn: fn(a, T))
        lean_g = jax.jit(grad_of(lambda a, fn=fn: fn(a, T)))
        gen_f = gen_g = None
        if not args.no_generic:
            with ts.config(jax_fast=False):  # traced now: the generic path is compiled in
                gen_f = jax.jit(lambda a, fn=fn: fn(a, T)).lower(x).compile()
                gen_g = jax.jit(grad_of(lambda a, fn=fn: fn(a, T))).lower(x).compile()
        ref_f, ref_g = jax.jit(ref), jax.jit(grad_of(ref))
        for label, methods in (("forward", (lean_f, gen_f, ref_f)),
                               ("gradient", (lean_g, gen_g, ref_g))):
            times: list[list[float]] = [[], [], []]
            for m in methods:
                if m is not None:
                    m(x).block_until_ready()  # compile / warm up
            for _ in range(args.repeat):
                for i, m in enumerate(methods):
                    if m is None:
                        times[i].append(math.nan)
                        continue
                    t0 = time.perf_counter()
                    m(x).block_until_ready()
                    times[i].append(time.perf_counter() - t0)
            lean, gen, ref_t = (statistics.median(t) for t in times)
            rows.append((name, label, lean, gen, ref_t))

    print(f"machine: {cpu_model()}; jax {jax.__version__}; shape {tuple(args.shape)} float32, "
          f"T = {T}; median of {args.repeat}")
    head = ("function", "pass", "lean ms", "generic ms", "one-liner ms", "one-liner/lean",
            "one-liner/generic")
    fmt = "| " + " | ".join(["{}"] * len(head)) + " |" if args.markdown else \
        "{:12s} {:9s} {:>9s} {:>11s} {:>13s} {:>15s} {:>18s}"
    print(fmt.format(*head))
    if args.markdown:
        print("|" + "---|" * len(head))
    for name, label, lean, gen, ref_t in rows:
        print(fmt.format(name, label, f"{lean * 1e3:.1f}", f"{gen * 1e3:.1f}", f"{ref_t * 1e3:.1f}",
                         f"{ref_t / lean:.2f}x", f"{ref_t / gen:.2f}x"))


if __name__ == "__main__":
    main()
