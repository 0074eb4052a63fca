"""Draws per second of tempscale's sampler against the transformers warper chain + torch.multinomial.

    python benchmarks/bench_sampling.py                       # 64 x 128256 float32, all methods
    python benchmarks/bench_sampling.py --threads 1 --repeat 7 --markdown
    python benchmarks/bench_sampling.py --quick               # 16 x 32000, fewer repeats
    python benchmarks/bench_sampling.py --batch 8 --repeat 3 --no-generic --filters top-p,min-p
    python benchmarks/bench_sampling.py --suite new --repeat 3 --markdown   # issue 14's new rules

``--suite new`` times the rules added by issue 14 (typical-p, epsilon, eta, top-H against
transformers' warpers; top-nσ, dynamic temperature and XTC, which transformers lacks, alone) and
the cost of the counter-based generator (``generator="hash"``, batch-invariant draws) against the
library generator on the same filters, on peaked logits.

One call draws one token per row of a batch of float32 logits at T = 0.7 with top-p 0.9, with and
without top-k 50, or with min-p 0.05 (``--filters`` picks among ``top-p``, ``top-k+top-p`` and
``min-p``).  Methods (all start from the raw logits and end with token indices):

* ``hf``              transformers' ``TemperatureLogitsWarper`` -> (``TopKLogitsWarper``) ->
                      ``TopPLogitsWarper`` (or ``MinPLogitsWarper``), then ``torch.softmax`` +
                      ``torch.multinomial``
* ``ts-numpy``        ``tempscale.sampling.sample`` on a NumPy array (NumPy Generator)
* ``ts-torch``        the same on a CPU torch tensor (torch.Generator); the candidate selection
                      runs on zero-copy NumPy views, the draws in torch
* ``ts-torch-ops``    the torch-operations-only path (the one GPU tensors take), on the CPU
                      (``tempscale.config(sampling_numpy_views=False)``)
* ``ts-generic``      tempscale's generic Array-API path (one full sort per filter) on NumPy,
                      ``tempscale.config(fast_sampling=False)``

Two kinds of logits: ``peaked`` (N(0, 3^2): at T = 0.7 top-p 0.9 keeps tens of tokens, like a
language model) and ``flat`` (N(0, 1): top-p 0.9 keeps ~45% of the vocabulary, the worst case for
a sort-free top-p).  Methods are interleaved repeat by repeat so a noisy neighbour slows all of
them alike; the table shows median times, draws/s and the ratio to ``hf`` measured in the same
run, plus a check that the warped distributions agree.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)

T = 0.7
TOP_P = 0.9
TOP_K = 50
MIN_P = 0.05
FILTERS = {
    "top-p": ("T+top-p", dict(top_p=TOP_P)),
    "top-k+top-p": (f"T+top-k {TOP_K}+top-p", dict(top_k=TOP_K, top_p=TOP_P)),
    "min-p": (f"T+min-p {MIN_P}", dict(min_p=MIN_P)),
}


def hf_chain(kw):
    import torch
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = [TemperatureLogitsWarper(T)]
    if kw.get("top_k"):
        procs.append(TopKLogitsWarper(kw["top_k"]))
    if kw.get("top_p"):
        procs.append(TopPLogitsWarper(kw["top_p"]))
    if kw.get("min_p"):
        procs.append(MinPLogitsWarper(kw["min_p"]))

    def warp(xt):
        s = xt
        for p in procs:
            s = p(None, s)
        return torch.softmax(s, dim=-1)

    def draw(xt, gen):
        return torch.multinomial(warp(xt), 1, generator=gen)[:, 0]

    return warp, draw


NEW_RULES = {
    "typical-p 0.9": (dict(typical_p=0.9), "TypicalLogitsWarper", dict(mass=0.9)),
    "epsilon 3e-4": (dict(epsilon=3e-4), "EpsilonLogitsWarper", dict(epsilon=3e-4)),
    "eta 3e-4": (dict(eta=3e-4), "EtaLogitsWarper", dict(epsilon=3e-4)),
    "top-h 0.4": (dict(top_h=0.4), "TopHLogitsWarper", dict(top_h=0.4)),
    "top-n-sigma 1": (dict(top_n_sigma=1.0), None, None),
    "dynatemp 0.5": (dict(dynatemp_range=0.5), None, None),
    "xtc 0.1 / 0.5": (dict(xtc_threshold=0.1, xtc_probability=0.5), None, None),
}


def new_suite(args, x, xt):
    """Rows of (filters, method, seconds per call) for the new rules and the generators."""
    import torch
    from transformers.generation import logits_process as lp

    import tempscale.sampling as S

    gen_t = torch.Generator().manual_seed(0)
    gen_np = np.random.default_rng(0)
    cases = []
    for label, (kw, hf_name, hf_kw) in NEW_RULES.items():
        methods = {}
        if hf_name is not None:
            procs = [lp.TemperatureLogitsWarper(T), getattr(lp, hf_name)(**hf_kw)]

            def hf(x, xt, procs=procs):
                s = xt
                for p in procs:
                    s = p(None, s)
                return torch.multinomial(torch.softmax(s, -1), 1, generator=gen_t)[:, 0]

            methods["hf"] = hf
        methods["ts-torch"] = lambda x, xt, kw=kw: S.sample(xt, T, rng=gen_t, **kw)
        cases.append((f"T+{label}", methods))
    for label, kw in (("T only", {}), (f"T+top-p {TOP_P}", dict(top_p=TOP_P)),
                      (f"T+top-k {TOP_K}+top-p", dict(top_k=TOP_K, top_p=TOP_P))):
        cases.append((label, {
            "ts-numpy library": lambda x, xt, kw=kw: S.sample(x, T, rng=gen_np, **kw),
            "ts-numpy hash": lambda x, xt, kw=kw: S.sample(x, T, seed=1, generator="hash", **kw),
            "ts-torch library": lambda x, xt, kw=kw: S.sample(xt, T, rng=gen_t, **kw),
            "ts-torch hash": lambda x, xt, kw=kw: S.sample(xt, T, seed=1, generator="hash", **kw),
        }))
    rows = []
    for label, methods in cases:
        for f in methods.values():  # warm up
            f(x, xt)
        times = {name: [] for name in methods}
        for _ in range(args.repeat):
            for name, f in methods.items():
                t0 = time.perf_counter()
                f(x, xt)
                times[name].append(time.perf_counter() - t0)
        base_name = "hf" if "hf" in times else next(iter(times))
        base = statistics.median(times[base_name])
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append((label, name, med * 1e3, args.batch / med, base / med, base_name))
        print(f"# done: {label}", file=sys.stderr)
    print("| filters | method | ms/call | draws/s | speed vs first |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:,.0f} | {r[4]:.2f} x {r[5]} |")
    return 0


def build_methods(args, kw):
    import torch

    import tempscale.sampling as S
    from tempscale._config import config

    gen_np = np.random.default_rng(0)
    gen_t = torch.Generator().manual_seed(0)
    methods = {}
    try:
        _warp, draw = hf_chain(kw)
        methods["hf"] = lambda x, xt: draw(xt, gen_t)
    except ImportError:
        print("# transformers not installed: hf skipped", file=sys.stderr)
    methods["ts-numpy"] = lambda x, xt: S.sample(x, T, rng=gen_np, **kw)
    methods["ts-torch"] = lambda x, xt: S.sample(xt, T, rng=gen_t, **kw)

    def torch_ops(x, xt):
        with config(sampling_numpy_views=False):
            return S.sample(xt, T, rng=gen_t, **kw)

    methods["ts-torch-ops"] = torch_ops
    if not args.no_generic:
        def generic(x, xt):
            with config(fast_sampling=False):
                return S.sample(x, T, rng=gen_np, **kw)

        methods["ts-generic"] = generic
    return methods


def check(x, xt, kw):
    """Max |difference| of the warped distributions and the kept-token counts."""
    import tempscale.sampling as S

    w = S.warp(x, T, **kw)
    kept = (w > 0).sum(-1)
    try:
        warp, _ = hf_chain(kw)
        ref = warp(xt).numpy()
        diff = float(np.abs(ref - w).max())
        disagree = int(((ref > 0) != (w > 0)).sum())
    except ImportError:
        diff, disagree = float("nan"), -1
    return int(np.median(kept)), diff, disagree


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="16 x 32000, 3 repeats")
    ap.add_argument("--no-generic", action="store_true", help="skip the full-sort generic path")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--filters", default="top-p,top-k+top-p",
                    help=f"comma-separated filter sets among {', '.join(FILTERS)} (default: %(default)s)")
    ap.add_argument("--kinds", default="peaked,flat", help="logits kinds: peaked, flat (default: both)")
    ap.add_argument("--suite", default="core", choices=("core", "new"),
                    help="core: top-k/top-p/min-p; new: issue 14's rules and the hash generator")
    args = ap.parse_args(argv)
    filters = [f.strip() for f in args.filters.split(",") if f.strip()]
    for f in filters:
        if f not in FILTERS:
            ap.error(f"--filters: unknown filter set {f!r} (choose among {', '.join(FILTERS)})")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.quick:
        args.batch, args.vocab, args.repeat = 16, 32000, 3

    import torch

    nthreads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(nthreads)
    print(f"# CPU: {cpu_model()} ({os.cpu_count()} logical cores); torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; numpy {np.__version__} (tempscale's NumPy path is "
          f"single-threaded)")
    print(f"# batch {args.batch} x vocab {args.vocab} float32, T = {T}, top-p {TOP_P}, min-p {MIN_P}; one "
          f"draw per row per call; median of {args.repeat} interleaved repeats")
    rng = np.random.default_rng(0)
    if args.suite == "new":
        x = (rng.standard_normal((args.batch, args.vocab)) * 3.0).astype(np.float32)
        return new_suite(args, x, torch.from_numpy(x))
    rows = []
    for kind, scale in (("peaked", 3.0), ("flat", 1.0)):
        x = (rng.standard_normal((args.batch, args.vocab)) * scale).astype(np.float32)
        if kind not in kinds:
            continue
        xt = torch.from_numpy(x)
        for label, kw in (FILTERS[f] for f in filters):
            methods = build_methods(args, kw)
            for f in methods.values():  # warm up
                f(x, xt)
            times = {name: [] for name in methods}
            for _ in range(args.repeat):
                for name, f in methods.items():
                    t0 = time.perf_counter()
                    f(x, xt)
                    times[name].append(time.perf_counter() - t0)
            kept, diff, disagree = check(x, xt, kw)
            base = statistics.median(times["hf"]) if "hf" in times else None
            for name, ts in times.items():
                med = statistics.median(ts)
                rows.append((kind, label, name,
                             med * 1e3, args.batch / med, (base / med) if base else float("nan"),
                             kept, diff, disagree))
    header = ("logits", "filters", "method", "ms/call", "draws/s", "x hf", "kept (median)",
              "max abs dp vs hf", "kept-set diffs")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:,.0f} | {r[5]:.2f} | {r[6]} | "
                  f"{r[7]:.1e} | {r[8]} |")
    else:
        print(f"{header[0]:<8}{header[1]:<22}{header[2]:<14}{header[3]:>10}{header[4]:>11}{header[5]:>8}"
              f"{header[6]:>15}{header[7]:>15}{header[8]:>15}")
        for r in rows:
            print(f"{r[0]:<8}{r[1]:<22}{r[2]:<14}{r[3]:>10.1f}{r[4]:>11,.0f}{r[5]:>8.2f}{r[6]:>15}"
                  f"{r[7]:>15.1e}{r[8]:>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
