"""Throughput of tempscale's native temperature softmax against the tools users pick instead.

    python benchmarks/bench_softmax.py                 # the issue's shapes, all peers
    python benchmarks/bench_softmax.py --quick         # fewer repeats, smaller shapes
    python benchmarks/bench_softmax.py --threads 1 --markdown
    python benchmarks/bench_softmax.py --threads 1 --clock cpu   # CPU seconds: robust to
                                                                   # neighbours sharing the cores

For each float32 shape and T = 0.7 it prints the median time and the throughput in GB/s
(input + output bytes / time) of

* ``tempscale``  ``tempscale.softmax(x, T)`` (the public function, native kernel underneath)
* ``scipy``      ``scipy.special.softmax(x / T, axis=-1)``
* ``torch``      ``torch.softmax(torch.from_numpy(x) / T, -1)`` with the same thread count
* ``jax``        ``jax.jit(lambda x: jax.nn.softmax(x / T))`` (XLA picks its own threads)
* ``numpy``      the naive ``e = exp((x - max) / T); e / e.sum()``
* ``limit``      a compiled one-read-one-write pass computing ``exp`` of the same bytes on the
                 same threads (tempscale._native._tskernels.exp_pass): the machine's limit.
                 exp_pass is a benchmark-only kernel, left out of normal builds: build with
                 ``TEMPSCALE_BENCH_KERNELS=1 python setup.py build_ext --inplace`` for this
                 column (without it the column is skipped, with a note)

and the ratios measured in the same run (methods are interleaved repeat by repeat, so a noisy
neighbour slows all of them alike).  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)

SHAPES = [(4096, 1024), (512, 32768), (64, 262144), (8192, 32000), (1_000_000, 10),
          (1_000_000, 3), (200_000, 100)]
QUICK_SHAPES = [(4096, 1024), (512, 32768), (64, 262144), (1024, 32000), (1_000_000, 10),
                (1_000_000, 3), (200_000, 100)]
T = 0.7


def build_methods(args, nthreads):
    import tempscale
    from tempscale import _native
    from tempscale._native import _tskernels

    methods = {}
    methods["tempscale"] = lambda x, xt: tempscale.softmax(x, T)

    if "scipy" not in args.skip:
        try:
            import scipy.special

            methods["scipy"] = lambda x, xt: scipy.special.softmax(x / T, axis=-1)
        except ImportError:
            print("# scipy not installed: skipped", file=sys.stderr)
    if "torch" not in args.skip:
        try:
            import torch

            torch.set_num_threads(nthreads)
            methods["torch"] = lambda x, xt: torch.softmax(xt / T, -1)
        except ImportError:
            print("# torch not installed: skipped", file=sys.stderr)
    if "jax" not in args.skip:
        try:
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
            import jax

            f = jax.jit(lambda x: jax.nn.softmax(x / T))

            def run_jax(x, xt, f=f):
                return f(x).block_until_ready()

            methods["jax"] = run_jax
        except ImportError:
            print("# jax not installed: skipped", file=sys.stderr)
    if "numpy" not in args.skip:
        def naive(x, xt):
            e = np.exp((x - x.max(axis=-1, keepdims=True)) / np.float32(T))
            return e / e.sum(axis=-1, keepdims=True)

        methods["numpy"] = naive

    assert _native.available(), "the native extension is not built"
    if not getattr(_tskernels, "bench_kernels", 0):
        print("# limit: skipped (the benchmark-only kernels are not compiled in; rebuild with "
              "TEMPSCALE_BENCH_KERNELS=1 python setup.py build_ext --inplace)", file=sys.stderr)
        return methods

    out_cache = {}

    def limit(x, xt):
        o = out_cache.get(x.shape)
        if o is None:
            out_cache.clear()
            o = out_cache[x.shape] = np.empty_like(x)
        _tskernels.exp_pass(x, o, nthreads)
        return o

    methods["limit"] = limit
    return methods


def bench_shape(shape, methods, args, rng):
    x = rng.standard_normal(shape, dtype=np.float32)
    xt = None
    if "torch" in methods:
        import torch

        xt = torch.from_numpy(x)
    gb = 2 * x.nbytes / 1e9
    times = {name: [] for name in methods}
    for f in methods.values():  # warm-up (jit compile, page faults, thread pools)
        f(x, xt)
    deadline = time.perf_counter() + args.budget
    reps = 0
    while reps < args.min_repeats or (time.perf_counter() < deadline and reps < args.max_repeats):
        for name, f in methods.items():
            t0 = args.timer()
            f(x, xt)
            times[name].append(args.timer() - t0)
        reps += 1
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return gb, med, reps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="threads (default: all available)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    p.add_argument("--skip", nargs="*", default=[], choices=["scipy", "torch", "jax", "numpy"])
    p.add_argument("--budget", type=float, default=None, help="seconds per shape (default 4)")
    p.add_argument("--min-repeats", type=int, default=None)
    p.add_argument("--max-repeats", type=int, default=50)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table too")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default) or process CPU time (use with --threads 1: the "
                        "per-core cost, insensitive to other jobs sharing the machine)")
    args = p.parse_args(argv)
    args.timer = time.perf_counter if args.clock == "wall" else time.process_time
    args.budget = args.budget if args.budget is not None else (1.0 if args.quick else 4.0)
    args.min_repeats = args.min_repeats if args.min_repeats is not None else (3 if args.quick else 5)

    from tempscale import _native

    nthreads = args.threads or len(os.sched_getaffinity(0))
    _native.set_num_threads(nthreads)
    methods = build_methods(args, nthreads)
    cfg = _native.show_config(print_out=False)
    print(f"# CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, affinity "
          f"{len(os.sched_getaffinity(0))})")
    print(f"# tempscale native: isa={cfg['isa']} threads={nthreads} compiler={cfg['compiler']}")
    vers = [f"numpy {np.__version__}"]
    for mod in ("scipy", "torch", "jax"):
        if mod in sys.modules:
            vers.append(f"{mod} {sys.modules[mod].__version__}")
    print(f"# {', '.join(vers)}; float32, T = {T}; median of interleaved repeats; "
          f"GB/s = (input + output bytes) / {args.clock} time")
    names = list(methods)
    peers = [n for n in names if n not in ("tempscale", "limit")]
    has_limit = "limit" in methods
    head = (f"{'shape':>16} {'reps':>4} " + " ".join(f"{n + ' GB/s':>14}" for n in names) + "  "
            + " ".join(f"{'x ' + n:>9}" for n in peers) + (f" {'% limit':>8}" if has_limit else ""))
    print(head)
    rows = []
    rng = np.random.default_rng(0)
    for shape in (QUICK_SHAPES if args.quick else SHAPES):
        gb, med, reps = bench_shape(shape, methods, args, rng)
        ts = med["tempscale"]
        line = f"{str(shape):>16} {reps:>4} " + " ".join(f"{gb / med[n]:>14.2f}" for n in names)
        line += "  " + " ".join(f"{med[n] / ts:>9.1f}" for n in peers)
        if has_limit:
            line += f" {100 * med['limit'] / ts:>7.0f}%"
        print(line, flush=True)
        rows.append((shape, reps, gb, med))
    if args.markdown:
        print()
        heads = (["shape", "tempscale GB/s"] + [f"{n} GB/s" for n in names[1:]]
                 + [f"speed-up vs {n}" for n in peers] + (["% of limit"] if has_limit else []))
        print("| " + " | ".join(heads) + " |")
        print("|---" * len(heads) + "|")
        for shape, _reps, gb, med in rows:
            ts = med["tempscale"]
            cells = [str(shape), f"{gb / ts:.1f}"] + [f"{gb / med[n]:.2f}" for n in names[1:]]
            cells += [f"{med[n] / ts:.1f}x" for n in peers]
            if has_limit:
                cells.append(f"{100 * med['limit'] / ts:.0f}%")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
