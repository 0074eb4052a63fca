"""Distillation loss, forward + backward on CPU: peak memory above the inputs and median time.

Compares, per shape (tokens x vocab) at T = 2, float32:

* ``KDLoss``  -- ``tempscale.torch.KDLoss`` (chunked, keeps only the gradient);
* ``kd_loss`` -- ``tempscale.distill.kd_loss`` on torch tensors (since issue 12 item 0: the same
  chunked closed-form path as ``KDLoss``);
* ``generic`` -- ``tempscale.distill.kd_loss_generic``: the generic Array-API implementation with
  autograd, which ``kd_loss`` took on torch tensors before;
* ``naive``   -- ``F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T``.

Memory: each (method, shape) runs in a fresh child process: the inputs are made, one small
warm-up call runs, the peak-RSS mark is reset (``/proc/self/clear_refs``), then one forward +
backward runs and ``VmHWM - VmRSS(before)`` is its peak extra memory (the student's ``.grad``
included: one tokens x vocab buffer is the floor).  Time: one child per shape runs ``--repeat``
rounds in which the methods take turns (so a burst of load on a shared machine hits them all),
and the median and minimum wall time are reported.  Run::

    python benchmarks/bench_distill.py                 # both shapes of the issue
    python benchmarks/bench_distill.py --quick         # small shapes, seconds

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# benchmarks/_machine.py (the script's folder is on sys.path)
from _machine import cpu_model, proc_status, reset_peak_memory

SHAPES = [(4096, 32000), (1024, 128256)]
QUICK_SHAPES = [(512, 8000), (128, 32000)]
METHODS = ["KDLoss", "kd_loss", "generic", "naive"]
T = 2.0


def _make_fn(method):
    import torch.nn.functional as F

    if method == "KDLoss":
        from tempscale.torch import KDLoss

        crit = KDLoss(T)
        return lambda s, t: crit(s, t)
    if method == "kd_loss":
        from tempscale.distill import kd_loss

        return lambda s, t: kd_loss(s, t, T)
    if method == "generic":
        from tempscale.distill import kd_loss_generic

        return lambda s, t: kd_loss_generic(s, t, T)
    if method == "naive":
        return lambda s, t: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1),
                                     reduction="batchmean") * T * T
    raise ValueError(method)


def _inputs(n, v):
    import torch

    g = torch.Generator().manual_seed(0)
    s = (torch.randn(n, v, generator=g) * 3).requires_grad_()
    t = torch.randn(n, v, generator=g) * 3
    return s, t


def _warm_up(fn):
    import torch

    ws = torch.randn(64, 1000, requires_grad=True)
    fn(ws, torch.randn(64, 1000)).backward()


def child_memory(method: str, n: int, v: int, threads: int) -> dict:
    """Peak extra memory of one forward + backward, in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    fn = _make_fn(method)
    _warm_up(fn)
    s, t = _inputs(n, v)
    base = proc_status("VmRSS")
    ok = reset_peak_memory()
    loss = fn(s, t)
    loss.backward()
    peak = proc_status("VmHWM") if ok else float("nan")
    return {"method": method, "n": n, "v": v, "extra_bytes": peak - base,
            "buffer_bytes": n * v * 4, "loss": float(loss.detach())}


def child_time(methods, n: int, v: int, repeat: int, threads: int) -> dict:
    """Wall times of forward + backward, the methods taking turns (fair under varying load)."""
    import torch

    torch.set_num_threads(threads)
    fns = {m: _make_fn(m) for m in methods}
    for fn in fns.values():
        _warm_up(fn)
    s, t = _inputs(n, v)
    times = {m: [] for m in methods}
    for _ in range(repeat):
        for m, fn in fns.items():
            s.grad = None
            t0 = time.perf_counter()
            loss = fn(s, t)
            loss.backward()
            times[m].append(time.perf_counter() - t0)
            del loss
    return {"n": n, "v": v, "times": times}


def _run_child(args: list) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds per shape (default 7)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--shapes", help="tokens x vocab list, e.g. 4096x32000,1024x128256")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--child-memory", nargs=3, metavar=("METHOD", "N", "V"), help=argparse.SUPPRESS)
    ap.add_argument("--child-time", nargs=3, metavar=("METHODS", "N", "V"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory:
        m, n, v = args.child_memory
        print(json.dumps(child_memory(m, int(n), int(v), args.threads)))
        return 0
    if args.child_time:
        ms, n, v = args.child_time
        print(json.dumps(child_time(ms.split(","), int(n), int(v), args.repeat, args.threads)))
        return 0

    import torch

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(x) for x in sh.split("x")) for sh in args.shapes.split(",")]
    methods = args.methods.split(",")
    header = (f"CPU: {cpu_model()}; torch {torch.__version__}; threads: {args.threads}; "
              f"T = {T}; float32; forward + backward; {args.repeat} timed rounds")
    print(header)
    results = []
    for n, v in shapes:
        mem = {}
        for m in methods:
            mem[m] = _run_child(["--child-memory", m, n, v, "--threads", args.threads])
            print(f"  memory {m:8s} {n}x{v}: {mem[m]['extra_bytes'] / 2**20:.0f} MiB extra",
                  file=sys.stderr)
        tm = _run_child(["--child-time", ",".join(methods), n, v, "--repeat", args.repeat,
                         "--threads", args.threads])
        for m in methods:
            ts = tm["times"][m]
            results.append(dict(mem[m], median_s=statistics.median(ts), min_s=min(ts), times=ts))
            print(f"  time   {m:8s} {n}x{v}: median {statistics.median(ts):.3f} s", file=sys.stderr)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"distillation loss, forward + backward (CPU, float32, T = {T}, "
                        f"{args.threads} threads)")
    for c in ("tokens x vocab", "method", "median time", "min time", "median / naive",
              "peak extra", "extra / one buffer", "loss"):
        table.add_column(c, justify="left" if c in ("method", "tokens x vocab") else "right")
    for n, v in shapes:
        rows = [r for r in results if (r["n"], r["v"]) == (n, v)]
        naive = next((r for r in rows if r["method"] == "naive"), None)
        for r in rows:
            ratio = r["median_s"] / naive["median_s"] if naive else float("nan")
            table.add_row(f"{n} x {v}", r["method"], f"{r['median_s'] * 1e3:.0f} ms",
                          f"{r['min_s'] * 1e3:.0f} ms", f"{ratio:.2f}",
                          f"{r['extra_bytes'] / 2**20:.0f} MiB",
                          f"{r['extra_bytes'] / r['buffer_bytes']:.2f}", f"{r['loss']:.6g}")
    Console(width=140).print(table)
    print("one buffer = tokens x vocab x 4 bytes (float32); the student's gradient alone is "
          "one buffer.  Peak extra: fresh process per case, VmHWM - VmRSS around one "
          "forward + backward.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
