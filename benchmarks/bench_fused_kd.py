"""Distillation through the output layer, forward + backward on CPU: peak extra memory and time.

Per shape (tokens x hidden x vocab), float32, T = 2, JSD (beta = 0.5) with hard labels
(alpha = 0.5), the teacher given by its hidden states and output weight:

* ``fused``   -- ``tempscale.torch.FusedLinearKDLoss`` (chunks of tokens, gradients in the
  forward pass);
* ``materialised`` -- ``s = h @ W.T`` (autograd), ``t = th @ tW.T`` (no grad), then
  ``tempscale.distill.kd_loss`` on the logits;
* ``liger``   -- Liger-Kernel's ``LigerFusedLinearJSDLoss`` (``compiled=False``, its default
  chunk of 1024 tokens; no T^2, same beta, weights 0.5/0.5).

Memory: each (method, shape) runs in a fresh child process: the inputs are made and a tiny
warm-up runs, the peak-RSS mark is reset (``/proc/self/clear_refs``), one forward + backward
runs, and its peak extra memory is ``VmHWM - VmRSS(before) - bytes(grad h) - bytes(grad W)``
(the issue's "beyond inputs, weights and their gradients").  Time: one child per shape runs
``--repeat`` rounds in which the methods take turns; the median is reported.  The sparse-teacher
line compares the storage of a top-k teacher (``SparseTeacher``: int64 indices + float32
values) with the dense float32 teacher logits at (8192, 128256), and measures
``sparse_kd_loss`` vs ``kd_loss`` peak memory at a smaller token count.  Run::

    python benchmarks/bench_fused_kd.py            # the issue's shapes (minutes)
    python benchmarks/bench_fused_kd.py --quick    # small shapes

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

SHAPES = [(8192, 512, 32000), (4096, 512, 128256)]
QUICK_SHAPES = [(1024, 256, 32000), (512, 256, 128256)]
METHODS = ["fused", "materialised", "liger"]
T = 2.0
ALPHA = 0.5
BETA = 0.5
K = 64
SPARSE_SHAPE = (8192, 128256)


def _make_fn(method):
    """fn(h, W, th, tW, labels) -> loss."""
    if method == "fused":
        from tempscale.torch import FusedLinearKDLoss

        crit = FusedLinearKDLoss(T, divergence="jsd", beta=BETA, alpha=ALPHA)
        return lambda h, W, th, tW, y: crit(h, W, (th, tW), y)
    if method == "materialised":
        import torch

        from tempscale.distill import kd_loss

        def fn(h, W, th, tW, y):
            s = h @ W.T
            with torch.no_grad():
                t = th @ tW.T
            return kd_loss(s, t, T, labels=y, alpha=ALPHA, divergence="jsd", beta=BETA)
        return fn
    if method == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        crit = LigerFusedLinearJSDLoss(weight_hard_loss=1 - ALPHA, weight_soft_loss=ALPHA,
                                       beta=BETA, temperature=T, compiled=False)
        return lambda h, W, th, tW, y: crit(h, W, th, tW, y)
    raise ValueError(method)


def _inputs(n, hdim, v, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hdim, generator=g).requires_grad_()
    W = (torch.randn(v, hdim, generator=g) / hdim ** 0.5).requires_grad_()
    th = torch.randn(n, hdim, generator=g)
    tW = torch.randn(v, hdim, generator=g) / hdim ** 0.5
    y = torch.randint(0, v, (n,), generator=g)
    y[::17] = -100
    return h, W, th, tW, y


def _warm_up(fn):
    fn(*_inputs(40, 8, 50, seed=1)).backward()


def child_memory(method: str, n: int, hdim: int, v: int, threads: int) -> dict:
    """Peak extra memory of one forward + backward, in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    fn = _make_fn(method)
    _warm_up(fn)
    h, W, th, tW, y = _inputs(n, hdim, v)
    base = proc_status("VmRSS")
    ok = reset_peak_memory()
    loss = fn(h, W, th, tW, y)
    loss.backward()
    peak = proc_status("VmHWM") if ok else float("nan")
    grads = h.numel() * 4 + W.numel() * 4
    return {"method": method, "n": n, "h": hdim, "v": v, "extra_bytes": peak - base - grads,
            "buffer_bytes": n * v * 4, "loss": float(loss.detach())}


def child_time(methods, n: int, hdim: int, v: int, repeat: int, threads: int) -> dict:
    """Wall times of forward + backward, the methods taking turns (fair under varying load)."""
    import torch

    torch.set_num_threads(threads)
    fns = {m: _make_fn(m) for m in methods}
    for fn in fns.values():
        _warm_up(fn)
    h, W, th, tW, y = _inputs(n, hdim, v)
    times = {m: [] for m in methods}
    for _ in range(repeat):
        for m, fn in fns.items():
            h.grad = W.grad = None
            t0 = time.perf_counter()
            loss = fn(h, W, th, tW, y)
            loss.backward()
            times[m].append(time.perf_counter() - t0)
            del loss
    return {"n": n, "h": hdim, "v": v, "times": times}


def child_sparse(method: str, n: int, v: int, threads: int) -> dict:
    """The teacher's storage, and the peak extra memory of sparse_kd_loss (top-k teacher) or
    kd_loss (dense teacher) forward + backward beyond the student logits, their gradient and
    the teacher."""
    import torch

    from tempscale.distill import SparseTeacher, kd_loss, sparse_kd_loss

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(n, v, generator=g).requires_grad_()
    if method == "sparse":
        idx = torch.rand(n, v, generator=g).topk(K, dim=-1).indices
        vals = torch.randn(n, K, generator=g)
        teacher_bytes = idx.numel() * idx.element_size() + vals.numel() * vals.element_size()
    else:
        t = torch.randn(n, v, generator=g)
        teacher_bytes = t.numel() * t.element_size()
    base = proc_status("VmRSS")
    ok = reset_peak_memory()
    if method == "sparse":
        loss = sparse_kd_loss(s, teacher=SparseTeacher(idx, vals), temperature=T)
    else:
        loss = kd_loss(s, t, T)
    loss.backward()
    peak = proc_status("VmHWM") if ok else float("nan")
    return {"method": method, "n": n, "v": v, "teacher_bytes": teacher_bytes,
            "extra_bytes": peak - base - s.numel() * 4}


def _run_child(args: list) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per shape (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-sparse", action="store_true", help="skip the sparse-teacher lines")
    ap.add_argument("--memory-only", action="store_true", help="skip the timed rounds")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--child-memory", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--child-time", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--child-sparse", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory:
        m, n, hd, v = args.child_memory
        print(json.dumps(child_memory(m, int(n), int(hd), int(v), args.threads)))
        return 0
    if args.child_time:
        ms, n, hd, v = args.child_time
        print(json.dumps(child_time(ms.split(","), int(n), int(hd), int(v), args.repeat,
                                    args.threads)))
        return 0
    if args.child_sparse:
        m, n, v = args.child_sparse
        print(json.dumps(child_sparse(m, int(n), int(v), args.threads)))
        return 0

    import torch

    shapes = QUICK_SHAPES if args.quick else SHAPES
    methods = args.methods.split(",")
    header = (f"CPU: {cpu_model()}; {os.cpu_count()} cores; torch {torch.__version__}; "
              f"threads: {args.threads}; T = {T}; JSD beta = {BETA}, alpha = {ALPHA}; float32; "
              f"forward + backward; {args.repeat} timed rounds")
    print(header, flush=True)
    results = []
    for n, hd, v in shapes:
        mem = {m: _run_child(["--child-memory", m, n, hd, v, "--threads", args.threads])
               for m in methods}
        tm = {} if args.memory_only else _run_child(
            ["--child-time", ",".join(methods), n, hd, v, "--repeat", args.repeat,
             "--threads", args.threads])
        for m in methods:
            r = dict(method=m, n=n, h=hd, v=v, buffer_bytes=n * v * 4)
            r.update(mem[m])
            if "times" in tm:
                ts = tm["times"][m]
                r.update(median_s=statistics.median(ts), times=ts)
            results.append(r)
            print(f"  {n}x{hd}x{v} {m}: {json.dumps({k: r.get(k) for k in ('extra_bytes', 'median_s', 'error')})}",
                  file=sys.stderr, flush=True)
    print(f"\n{'tokens x hidden x vocab':>24} {'method':>13} {'median':>9} {'/ mat.':>7} "
          f"{'/ liger':>8} {'peak extra':>11} {'/ buffer':>9} {'/ liger':>8} {'loss':>9}")
    for n, hd, v in shapes:
        rows = {r["method"]: r for r in results if (r["n"], r["h"], r["v"]) == (n, hd, v)}
        mat, lig = rows.get("materialised", {}), rows.get("liger", {})
        for m, r in rows.items():
            med = r.get("median_s", float("nan"))
            ex = r.get("extra_bytes", float("nan"))
            print(f"{f'{n} x {hd} x {v}':>24} {m:>13} {med:8.2f}s "
                  f"{med / mat.get('median_s', float('nan')):7.2f} "
                  f"{med / lig.get('median_s', float('nan')):8.2f} "
                  f"{ex / 2**20:9.0f}Mi {ex / r['buffer_bytes']:9.3f} "
                  f"{ex / lig.get('extra_bytes', float('nan')):8.2f} "
                  f"{r.get('loss', float('nan')):9.4g}" + (f"  {r['error']}" if "error" in r else ""))
    print("buffer = tokens x vocab x 4 bytes; peak extra excludes the inputs, the weights and "
          "the gradients of h and W.  Losses differ by design: Liger has no T^2 and its own "
          "normalisation.")
    sparse = []
    if not args.no_sparse:
        n_full, v = SPARSE_SHAPE
        dense_bytes, sparse_bytes = n_full * v * 4, n_full * K * (8 + 4)
        print(f"\nsparse teacher, k = {K}, {n_full} x {v}: teacher storage {sparse_bytes / 2**20:.1f} "
              f"MiB (int64 indices + float32 values) vs dense float32 {dense_bytes / 2**20:.0f} "
              f"MiB: {100 * sparse_bytes / dense_bytes:.3f} %")
        n_small = 256 if args.quick else 1024
        for m in ("sparse", "dense"):
            r = _run_child(["--child-sparse", m, n_small, v, "--threads", args.threads])
            sparse.append(r)
            if "error" in r:
                print(f"  measured {m} at {n_small} x {v}: {r['error']}")
                continue
            print(f"  measured at {n_small} x {v} ({m} teacher): teacher {r['teacher_bytes'] / 2**20:.1f} MiB, "
                  f"peak extra of loss + backward beyond student logits and their gradient "
                  f"{r['extra_bytes'] / 2**20:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results, "sparse": sparse}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
