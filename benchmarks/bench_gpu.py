"""GPU benchmark: tempscale's Triton kernels vs the one-liners, a copy of the same bytes, and KD losses.

    python benchmarks/bench_gpu.py [--repeat 20] [--quick]
    python benchmarks/bench_gpu.py --compile-check [--arch 90]     (no GPU needed)

Prints Markdown tables (medians of ``--repeat`` timed runs, CUDA events, after a warm-up):

1. softmax at T = 0.7, float32 and bfloat16, shapes (4096, 1024), (4096, 32000),
   (1024, 128256), (1_000_000, 10): ``tempscale.softmax`` (the library's dispatch),
   ``tempscale.triton.softmax`` (the kernel itself), ``torch.softmax(x / T, -1)``,
   ``torch.softmax(x, -1)`` and a device-to-device copy of the same bytes; effective bandwidth
   (bytes read + written / time) and the ratios ``torch.softmax(x/T) time / tempscale time``
   (above 1: tempscale is faster) and ``tempscale bandwidth / copy bandwidth``; then the same
   for forward + backward.
2. Distillation, forward + backward: ``tempscale.torch.KDLoss`` vs the naive
   ``F.kl_div(F.log_softmax(s/T), F.softmax(t/T), "batchmean") * T**2``, the kernel
   ``tempscale._triton.kd.kd_rows`` alone, and Liger-Kernel's ``LigerKLDIVLoss`` (on the
   same log-softmax / softmax inputs) when it imports: time and peak extra memory, in
   logits-sized buffers (``torch.cuda.max_memory_allocated`` above what was allocated before).

Not part of the test suite; needs a CUDA device (exits with a one-line message otherwise).
``--compile-check`` needs no GPU: it compiles every kernel variant (kinds, divergences,
dtypes, one-pass and online, with and without mask / temperature tensor, at the launch
configurations of the shapes above) for ``sm_<arch>`` with ``triton.compile`` and prints
ptxas's register and spill report, so compile errors and register spills show up on a
machine without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

SHAPES = [(4096, 1024), (4096, 32000), (1024, 128256), (1_000_000, 10)]
KD_SHAPES = [(4096, 32000), (1024, 128256)]
T = 0.7


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    """Median time of ``fn`` in milliseconds (CUDA events; one warm-up call first)."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_extra(fn: Callable[[], Any], unit: int) -> float:
    """Peak memory ``fn`` allocates beyond what was allocated before, in units of ``unit`` bytes."""
    import torch

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / unit


def softmax_table(repeat: int, shapes: list[tuple[int, int]]) -> None:
    import torch

    import tempscale as ts
    import tempscale.triton as tt

    print("\n### softmax, T = 0.7 (forward)\n")
    print("| shape | dtype | tempscale.softmax GB/s | tempscale.triton GB/s | torch.softmax(x/T) "
          "GB/s | torch.softmax(x) GB/s | copy GB/s | tempscale.softmax vs softmax(x/T) | "
          "triton vs softmax(x/T) | triton vs copy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows_bwd = []
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape, device="cuda", dtype=dtype) * 3
            out = torch.empty_like(x)
            nbytes = 2 * x.numel() * x.element_size()
            gbs = {}
            cands: dict[str, Callable[[], Any]] = {
                "ts": lambda x=x: ts.softmax(x, T),
                "triton": lambda x=x: tt.softmax(x, T),
                "torch_T": lambda x=x: torch.softmax(x / T, -1),
                "torch": lambda x=x: torch.softmax(x, -1),
                "copy": lambda x=x, out=out: out.copy_(x),
            }
            ms = {}
            for name, fn in cands.items():
                try:
                    ms[name] = median_ms(fn, repeat)
                    gbs[name] = nbytes / ms[name] / 1e6
                except Exception as exc:  # report, keep measuring the others
                    ms[name] = float("nan")
                    gbs[name] = float("nan")
                    print(f"<!-- {name} {shape} {dtype}: {type(exc).__name__}: {exc} -->")
            print(f"| {shape} | {str(dtype).replace('torch.', '')} | {gbs['ts']:.0f} | "
                  f"{gbs['triton']:.0f} | {gbs['torch_T']:.0f} | {gbs['torch']:.0f} | "
                  f"{gbs['copy']:.0f} | {ms['torch_T'] / ms['ts']:.2f}x | "
                  f"{ms['torch_T'] / ms['triton']:.2f}x | {gbs['triton'] / gbs['copy']:.0%} |")
            # forward + backward
            g = torch.randn_like(x)
            xr = x.detach().requires_grad_()

            def fb(f: Callable[[Any], Any], xr: Any = xr, g: Any = g) -> None:
                xr.grad = None
                f(xr).backward(g)

            fbs = {}
            for name, f in (("ts", lambda a: ts.softmax(a, T)), ("triton", lambda a: tt.softmax(a, T)),
                            ("torch_T", lambda a: torch.softmax(a / T, -1))):
                try:
                    fbs[name] = median_ms(lambda f=f: fb(f), max(3, repeat // 2))
                except Exception as exc:
                    fbs[name] = float("nan")
                    print(f"<!-- fwd+bwd {name} {shape} {dtype}: {type(exc).__name__}: {exc} -->")
            rows_bwd.append((shape, dtype, fbs))
            del x, out, g, xr
            torch.cuda.empty_cache()
    print("\n### softmax, T = 0.7 (forward + backward)\n")
    print("| shape | dtype | tempscale.softmax ms | tempscale.triton ms | torch.softmax(x/T) ms "
          "| tempscale.softmax vs softmax(x/T) | triton vs softmax(x/T) |")
    print("|---|---|---|---|---|---|---|")
    for shape, dtype, fbs in rows_bwd:
        print(f"| {shape} | {str(dtype).replace('torch.', '')} | {fbs['ts']:.3f} | "
              f"{fbs['triton']:.3f} | {fbs['torch_T']:.3f} | {fbs['torch_T'] / fbs['ts']:.2f}x | "
              f"{fbs['torch_T'] / fbs['triton']:.2f}x |")


def kd_table(repeat: int, shapes: list[tuple[int, int]]) -> None:
    import torch

    from tempscale._triton.kd import kd_rows
    from tempscale.torch import KDLoss

    try:
        from liger_kernel.transformers import LigerKLDIVLoss

        liger: Any = LigerKLDIVLoss(reduction="batchmean")
    except Exception as exc:  # not installed, or no working build
        liger = None
        print(f"\n<!-- Liger-Kernel not measured: {type(exc).__name__}: {exc} -->")
    print("\n### distillation loss, forward + backward, T = 2 (time ms / peak extra memory in "
          "logits-sized buffers)\n")
    print("| shape | dtype | KDLoss | naive kl_div | kd_rows kernel | Liger KLDIV | "
          "KDLoss vs naive |")
    print("|---|---|---|---|---|---|---|")
    kd = KDLoss(2.0)
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            _kd_row(kd, liger, kd_rows, shape, dtype, repeat)
            torch.cuda.empty_cache()


def _kd_row(kd: Any, liger: Any, kd_rows: Any, shape: tuple[int, int], dtype: Any,
            repeat: int) -> None:
    """One line of the distillation table."""
    import torch
    import torch.nn.functional as F

    s = (torch.randn(shape, device="cuda", dtype=dtype) * 2).requires_grad_()
    t = torch.randn(shape, device="cuda", dtype=dtype) * 2
    unit = s.numel() * s.element_size()

    def run_kd() -> None:
        s.grad = None
        kd(s, t).backward()

    def run_naive() -> None:
        s.grad = None
        loss = F.kl_div(F.log_softmax(s.float() / 2.0, -1), F.softmax(t.float() / 2.0, -1),
                        reduction="batchmean") * 4.0
        loss.backward()

    def run_rows() -> None:
        kd_rows(s.detach(), t, 2.0, 2.0)

    def run_liger() -> None:
        s.grad = None
        loss = liger(F.log_softmax(s.float() / 2.0, -1), F.softmax(t.float() / 2.0, -1)) * 4.0
        loss.backward()

    res: dict[str, str] = {}
    times: dict[str, float] = {}
    for name, fn in (("kd", run_kd), ("naive", run_naive), ("rows", run_rows),
                     ("liger", run_liger if liger is not None else None)):
        if fn is None:
            res[name] = "n/a"
            continue
        try:
            ms = median_ms(fn, repeat)
            s.grad = None
            torch.cuda.empty_cache()
            mem = peak_extra(fn, unit)
            res[name] = f"{ms:.3f} / {mem:.2f}"
            times[name] = ms
        except Exception as exc:
            res[name] = "error"
            print(f"<!-- {name} {shape} {dtype}: {type(exc).__name__}: {exc} -->")
    ratio = f"{times['naive'] / times['kd']:.2f}x" if "kd" in times and "naive" in times else "n/a"
    print(f"| {shape} | {str(dtype).replace('torch.', '')} | {res['kd']} | {res['naive']} "
          f"| {res['rows']} | {res['liger']} | {ratio} |")


def _ptxas_report(ptx: str) -> str:
    """ptxas's register / spill line for ``ptx`` (Triton's bundled ptxas), or why there is none."""
    import glob
    import os
    import subprocess
    import tempfile

    import triton

    tools = sorted(glob.glob(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                          "bin", "ptxas*")), reverse=True)  # ptxas-blackwell first
    arch = next((line.split()[1] for line in ptx.splitlines() if line.startswith(".target")), "")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        for tool in tools:
            r = subprocess.run([tool, f"-arch={arch}", "-v", src, "-o", os.path.join(tmp, "k.o")],
                               capture_output=True, text=True)
            if r.returncode == 0:
                lines = [ln.split(":", 1)[-1].strip() for ln in r.stderr.splitlines()
                         if "Used" in ln or "spill" in ln]
                return "; ".join(lines)
    return "no ptxas could assemble it"


def compile_check(arch: int) -> None:
    """Compile every kernel variant for sm_<arch> (no GPU needed) and print ptxas's report."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tempscale._triton import _kernels as K
    from tempscale._triton._common import launch_config

    target = GPUTarget("cuda", arch, 32)
    ints = ("n_rows", "n", "sxr", "sxc", "smr", "smc", "syr", "t_stride", "sgr", "sgc", "ssr",
            "ssc", "str_", "stc", "ts_stride", "tt_stride")
    print(f"## compile check: triton {triton.__version__}, sm_{arch}\n")
    print("| kernel | variant | ptxas |")
    print("|---|---|---|")
    failures = 0

    def build(fn: Any, ptrs: dict[str, str], const: dict[str, Any], warps: int, label: str) -> None:
        nonlocal failures
        sig = {}
        for p in fn.params:
            if p.name in const:
                sig[p.name] = "constexpr"
            elif p.name in ptrs:
                sig[p.name] = ptrs[p.name]
            else:
                sig[p.name] = "i32" if p.name in ints else "fp32"
        try:
            ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const), target=target,
                                options={"num_warps": warps, "enable_fp_fusion": False})
            report = _ptxas_report(ck.asm["ptx"])
        except Exception as exc:
            failures += 1
            report = f"**FAILED**: {type(exc).__name__}: {str(exc).splitlines()[-1][:200]}"
        print(f"| {fn.fn.__name__} | {label} | {report} |", flush=True)

    for (rows, n), kind, xd, mask, tdt in [((4096, 1024), 0, "bf16", False, None),
                                           ((4096, 1024), 1, "fp32", True, "fp32"),
                                           ((4096, 1024), 2, "fp16", True, "fp64"),
                                           ((4096, 32000), 0, "bf16", False, None),
                                           ((4096, 32000), 1, "fp32", True, "fp32"),
                                           ((1024, 128256), 2, "bf16", False, "fp32"),
                                           ((1_000_000, 10), 0, "fp32", True, None)]:
        for kernel in ("fwd", "bwd"):
            c = launch_config(rows, n, None, kernel)
            const: dict[str, Any] = dict(KIND=kind, HAS_MASK=mask, HAS_T=tdt is not None,
                                         SINGLE=c.single, R=c.R, BLOCK=c.BLOCK)
            ptrs = {"X": f"*{xd}", "M": "*i1", "Y": f"*{xd}", "G": f"*{xd}", "DX": f"*{xd}",
                    "DT": "*fp32", "STATS": "*fp32", "T_ptr": f"*{tdt or 'fp32'}"}
            if not mask:
                const["M"] = None
            if tdt is None:
                const["T_ptr"] = None
            if kernel == "bwd":
                const.update(NEED_DX=True, NEED_DT=tdt is not None)
                if tdt is None:
                    const["DT"] = None
            fn = K._softmax_fwd if kernel == "fwd" else K._softmax_bwd
            build(fn, ptrs, const, c.num_warps, f"{kernel} kind={kind} {(rows, n)} {xd} "
                  f"mask={mask} T={tdt or 'float'} R={c.R} BLOCK={c.BLOCK} single={c.single}")
    for (rows, n), div, xd, tdt in [((4096, 1024), 0, "bf16", None), ((4096, 32000), 1, "fp32", "fp32"),
                                    ((1024, 128256), 2, "bf16", "fp64"), ((1_000_000, 10), 0, "fp32", None)]:
        c = launch_config(rows, n, None, "kd")
        const = dict(DIV=div, HAS_TS=tdt is not None, HAS_TT=tdt is not None, SINGLE=c.single,
                     R=c.R, BLOCK=c.BLOCK)
        if tdt is None:
            const.update(TS_ptr=None, TT_ptr=None)
        ptrs = {"S": f"*{xd}", "Tch": f"*{xd}", "LOSS": "*fp32", "GS": f"*{xd}",
                "TS_ptr": f"*{tdt or 'fp32'}", "TT_ptr": f"*{tdt or 'fp32'}"}
        build(K._kd_fwd_bwd, ptrs, const, c.num_warps, f"kd div={div} {(rows, n)} {xd} "
              f"T={tdt or 'float'} R={c.R} BLOCK={c.BLOCK} single={c.single}")
    if failures:
        sys.exit(f"bench_gpu.py --compile-check: {failures} kernel variant(s) failed to compile.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="the two smaller shapes only")
    ap.add_argument("--compile-check", action="store_true",
                    help="compile every kernel variant for sm_<arch> (no GPU needed)")
    ap.add_argument("--arch", type=int, default=90, help="with --compile-check: 90 = H100/H200")
    args = ap.parse_args()
    if args.compile_check:
        compile_check(args.arch)
        return
    try:
        import torch
    except ImportError:
        sys.exit("bench_gpu.py: torch is not installed; nothing measured.")
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device (torch.cuda.is_available() is False); nothing measured.")
    try:
        import triton
    except ImportError:
        sys.exit("bench_gpu.py: triton is not installed; nothing measured.")
    props = torch.cuda.get_device_properties(0)
    print(f"## {props.name} ({props.total_memory / 2**30:.0f} GiB); torch {torch.__version__}; "
          f"triton {triton.__version__}; median of {args.repeat} runs")
    shapes = SHAPES[:2] if args.quick else SHAPES
    softmax_table(args.repeat, shapes)
    kd_table(max(3, args.repeat // 2), KD_SHAPES[:1] if args.quick else KD_SHAPES)


if __name__ == "__main__":
    main()
