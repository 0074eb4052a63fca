"""tempscale on PyTorch tensors vs the hand-written ``torch.softmax(x / T)``, side by side.

    python benchmarks/bench_torch_path.py [--device cuda] [--shape 4096 32000] [--repeat 7]

Prints median times and the ratio (torch time / tempscale time: above 1 means tempscale is
faster) for softmax, log_softmax and logsumexp at T = 0.7 and T = 2, float32 (and bfloat16 on
CUDA), plus the largest error of both against float64 on the same (rounded) input.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)

import tempscale as ts


def median_ms(fn, device, repeat):
    fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", type=int, nargs=2, default=(4096, 32000))
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    dev = args.device
    where = torch.cuda.get_device_name() if dev == "cuda" else cpu_model()
    print(f"# {where}; torch {torch.__version__}; threads {torch.get_num_threads()} "
          f"(of {os.cpu_count()}); shape {tuple(args.shape)}")
    x64 = torch.randn(*args.shape, dtype=torch.float64, device=dev) * 3
    dtypes = [torch.float32] + ([torch.bfloat16] if dev == "cuda" else [])
    pairs = {
        "softmax": (lambda x, T: torch.softmax(x / T, -1), ts.softmax),
        "log_softmax": (lambda x, T: torch.log_softmax(x / T, -1), ts.log_softmax),
        "logsumexp": (lambda x, T: T * torch.logsumexp(x / T, -1), ts.logsumexp),
    }
    print("| dtype | T | function | torch ms | tempscale ms | torch / tempscale | max abs err torch "
          "| max abs err tempscale |")
    print("|---|---|---|---|---|---|---|---|")
    for dt in dtypes:
        x = x64.to(dt)
        for T in (0.7, 2.0):
            for name, (ref_fn, ts_fn) in pairs.items():
                a = median_ms(lambda f=ref_fn, x=x, T=T: f(x, T), dev, args.repeat)
                b = median_ms(lambda f=ts_fn, x=x, T=T: f(x, T), dev, args.repeat)
                exact = ref_fn(x.double(), T)
                err_t = (ref_fn(x, T).double() - exact).abs().max().item()
                err = (ts_fn(x, T).double() - exact).abs().max().item()
                print(f"| {str(dt).split('.')[-1]} | {T} | {name} | {a:.2f} | {b:.2f} | {a / b:.2f} "
                      f"| {err_t:.1e} | {err:.1e} |")


if __name__ == "__main__":
    main()
