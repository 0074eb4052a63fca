"""tempscale on PyTorch tensors vs the hand-written ``torch.softmax(x / T, -1)``, side by side.

    python benchmarks/bench_torch_path.py [--quick] [--threads 2] [--repeat 7] [--device cpu]
                                          [--dtypes float32,bfloat16,float16]

For each shape and dtype (default float32, bfloat16) it times, in the same run and interleaved:

* forward: ``ts.softmax(x, 0.7)`` vs ``torch.softmax(x / 0.7, -1)``;
* forward + backward: the same with ``x.requires_grad_()`` and ``y.backward(g)``;

and prints the medians and the ratio torch / tempscale (above 1: tempscale is faster), plus the
largest error of both against float64 on the same (rounded) input.  On CPU, torch and tempscale
run with ``--threads`` threads (default 2, the issue's setting).  Shapes: (4096, 1024),
(4096, 32000), (1024, 128256), (1_000_000, 10); ``--quick`` uses shapes 8x smaller in rows.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)

import tempscale as ts

SHAPES = [(4096, 1024), (4096, 32000), (1024, 128256), (1_000_000, 10)]
T = 0.7


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def medians(fns, dev: str, repeat: int) -> list[float]:
    """Median ms of each function, timed interleaved (one of each per round)."""
    for f in fns:
        f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, f in enumerate(fns):
            _sync(dev)
            t0 = time.perf_counter()
            f()
            _sync(dev)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="8x fewer rows per shape")
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="comma-separated torch dtypes (float32, bfloat16, float16, float64)")
    args = ap.parse_args()
    dev = args.device
    if dev == "cpu":
        torch.set_num_threads(args.threads)
        ts.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if dev == "cuda" else cpu_model()
    print(f"# {where}; torch {torch.__version__}; threads torch {torch.get_num_threads()}, "
          f"tempscale {ts.get_num_threads()} (of {os.cpu_count()} CPUs); T = {T}; "
          f"median of {args.repeat}, interleaved")
    print("| shape | dtype | pass | torch ms | tempscale ms | torch / tempscale "
          "| max abs err torch | max abs err tempscale |")
    print("|---|---|---|---|---|---|---|---|")
    dtypes = [getattr(torch, name.strip()) for name in args.dtypes.split(",") if name.strip()]
    gen = torch.Generator(device=dev).manual_seed(0)
    for rows, n in SHAPES:
        if args.quick:
            rows = max(1, rows // 8)
        x32 = torch.randn(rows, n, device=dev, generator=gen) * 3
        g32 = torch.randn(rows, n, device=dev, generator=gen)
        for dt in dtypes:
            x = x32.to(dt)
            g = g32.to(dt)
            head = x[: max(1, 2**22 // n)]  # the errors on the first rows (memory)
            exact = torch.softmax(head.double() / T, -1)
            err_t = (torch.softmax(head / T, -1).double() - exact).abs().max().item()
            err_s = (ts.softmax(head, T).double() - exact).abs().max().item()

            def fwd_torch(x=x):
                return torch.softmax(x / T, -1)

            def fwd_ts(x=x):
                return ts.softmax(x, T)

            def bwd_torch(x=x, g=g):
                xr = x.detach().requires_grad_(True)
                torch.softmax(xr / T, -1).backward(g)

            def bwd_ts(x=x, g=g):
                xr = x.detach().requires_grad_(True)
                ts.softmax(xr, T).backward(g)

            shape = f"{rows}x{n}"
            name = str(dt).split(".")[-1]
            a, b = medians([fwd_torch, fwd_ts], dev, args.repeat)
            print(f"| {shape} | {name} | forward | {a:.2f} | {b:.2f} | {a / b:.2f} "
                  f"| {err_t:.1e} | {err_s:.1e} |", flush=True)
            a, b = medians([bwd_torch, bwd_ts], dev, args.repeat)
            print(f"| {shape} | {name} | fwd+bwd | {a:.2f} | {b:.2f} | {a / b:.2f} | | |",
                  flush=True)
            del exact


if __name__ == "__main__":
    main()
