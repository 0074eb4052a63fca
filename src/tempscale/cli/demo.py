"""``tempscale demo``: the classic 10-class example, in numbers, figures and a page.

The classic example takes the N(4, 1) density at classes 0…9 (a probability vector) and passes
it through softmax at T = 0.1, 0.5, 1, 2 and 10.  The demo prints those numbers twice -- reading
the vector as logits (the common mistake: probabilities read as logits) and re-tempering it as
probabilities (``temper``) -- plus the three-class example softmax([-1, 0, 1], T = 0.5), and
writes the figures and the interactive explorer page into ``./tempscale-demo/``.  Every file is
created exclusively (an existing file or link is refused without ``--force``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._console import CLIError, console, print_table, progress
from ._writers import check_output, write_text

CLASSIC_TEMPERATURES = (0.1, 0.5, 1.0, 2.0, 10.0)
THREE_CLASS = (-1.0, 0.0, 1.0)

EPILOG = """\
examples:
  tempscale demo                       numbers, figures and explorer.html in ./tempscale-demo/
  tempscale demo --outdir figs --force write into figs/, replacing earlier files
  tempscale demo --format svg          vector figures instead of PNG
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="the classic 10-class example: numbers, figures and the interactive page",
        description="The classic examples: softmax([-1, 0, 1], T = 0.5) and the 10-class "
                    "N(4, 1) density at T = 0.1, 0.5, 1, 2, 10 (probabilities read as logits, "
                    "the common mistake, and re-tempered as probabilities), the figures and the "
                    "explorer page.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--outdir", default="tempscale-demo", metavar="DIR",
                   help="folder for the figures and the page (default ./tempscale-demo/, created)")
    p.add_argument("--force", action="store_true", help="overwrite files from an earlier run")
    p.add_argument("--format", choices=("png", "svg", "pdf"), default="png",
                   help="figure format (default png)")
    p.add_argument("--dpi", type=float, default=150, help="PNG resolution (default 150)")
    p.set_defaults(func=run)


def classic_vector() -> np.ndarray:
    """p_i = N(i; mean 4, sd 1) density for i = 0..9 (sums to 0.99999 -- almost a distribution)."""
    i = np.arange(10, dtype=np.float64)
    return np.exp(-0.5 * (i - 4.0) ** 2) / math.sqrt(2.0 * math.pi)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _explorer() -> Callable[..., str] | None:
    """``explorer_html`` when the explorer package exists (it is optional for the demo)."""
    try:
        from ..explorer import explorer_html
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("tempscale.explorer"):
            return None
        raise
    except ImportError:
        return None
    return explorer_html


def run(args: argparse.Namespace) -> int:
    from .._softmax import softmax, temper

    if not args.dpi > 0 or args.dpi > 2400:
        raise CLIError(f"--dpi must be in (0, 2400], got {args.dpi:g}")
    out = console()

    # refuse before doing anything if earlier files are in the way
    if not str(args.outdir).strip():
        raise CLIError("--outdir is empty; give a folder name")
    outdir = Path(args.outdir)
    if os.path.lexists(outdir) and not outdir.is_dir():
        kind = "a broken symbolic link" if os.path.islink(outdir) else "not a folder"
        raise CLIError(f"{str(outdir)!r} exists and is {kind}")
    ext = args.format
    explorer_html = _explorer()
    jobs = [
        (outdir / f"probabilities-as-logits.{ext}", "figure",
         "softmax(p, T): probabilities read as logits (the common mistake)"),
        (outdir / f"tempered-probabilities.{ext}", "figure", "temper(p, T), p read as probabilities"),
        (outdir / f"entropy-vs-temperature.{ext}", "figure", "entropy against T, both readings"),
    ]
    if explorer_html is not None:
        jobs.append((outdir / "explorer.html", "page", "the interactive explorer: open it in a browser"))
    existing = [path for path, _, _ in jobs if os.path.lexists(path)]  # links too, even broken
    if existing and not args.force:
        more = f" (and {len(existing) - 1} more files)" if len(existing) > 1 else ""
        raise CLIError(f"{str(existing[0])!r}{more} exists; pass --force to overwrite")
    for path in existing:
        check_output(path, True)  # a folder in the way

    # 1. the three-class numbers --------------------------------------------------------
    x3 = np.asarray(THREE_CLASS)
    s3 = np.asarray(softmax(x3, 0.5))
    out.print("[bold]softmax([-1, 0, 1], T = 0.5)[/bold] = "
              + "[" + ", ".join(f"{v:.8f}" for v in s3) + "]")
    out.print()

    # 2. the classic 10-class vector -------------------------------------------------------
    p = classic_vector()
    temps = CLASSIC_TEMPERATURES
    as_logits = [np.asarray(softmax(p, t)) for t in temps]
    tempered = [np.asarray(temper(p, t)) for t in temps]
    rows = [[f"{t:g}", f"{_entropy(a):.4f}", f"{a.max():.4f}", f"{_entropy(b):.4f}", f"{b.max():.4f}"]
            for t, a, b in zip(temps, as_logits, tempered, strict=True)]
    print_table(
        "10 classes: p_i = N(i; 4, 1) density, i = 0..9",
        ["T", "softmax(p, T) H", "top p", "temper(p, T) H", "top p"],
        rows,
    )
    print(f"H: entropy in nats (uniform over 10 classes: {math.log(10):.4f}). "
          "softmax(p, T) reads p as logits (the common mistake); temper(p, T) reads p as "
          "probabilities.")
    t1 = as_logits[temps.index(1.0)]
    print(f"Why T = 1 already looks flat: read as logits, p's entries differ by at most "
          f"{p.max() - p.min():.2f}, so exp() barely separates them (top p {t1.max():.3f} vs uniform "
          f"0.100); temper(p, T) = softmax(log p, T) gives p back at T = 1 (top p "
          f"{p.max() / p.sum():.3f}).")
    print()

    # 3. files -------------------------------------------------------------------------------
    outdir.mkdir(parents=True, exist_ok=True)

    from .plot import pyplot, save_figure

    try:
        pyplot()
        have_mpl = True
    except CLIError:
        have_mpl = False
        jobs = [j for j in jobs if j[1] != "figure"]
        out.print("[yellow]matplotlib is not installed: no figures "
                  "(pip install 'tempscale[plot]')[/yellow]")

    labels = [str(i) for i in range(p.size)]
    written = []
    # a live bar on a terminal; nothing (not even a blank line) in logs and pipes
    with progress("writing files", total=len(jobs), disable=not sys.stderr.isatty()) as advance:
        for path, kind, what in jobs:
            if kind == "figure" and have_mpl:
                _write_figure(path, p, labels, temps, args.dpi, save_figure, args.force)
            elif kind == "page" and explorer_html is not None:
                _write_page(path, args.force, explorer_html)
            written.append((path, what))
            advance()

    for path, what in written:
        print(f"wrote {path}  ({what})")
    return 0


def _write_figure(path: Path, p: np.ndarray, labels: list[str], temps: Sequence[float], dpi: float,
                  save_figure: Callable[[Any, Path, float, bool], Path], force: bool) -> None:
    """One of the demo's figures, chosen by the file name."""
    from ..plot import EntropyCurveDisplay, TemperatureDisplay

    disp: TemperatureDisplay | EntropyCurveDisplay
    name = path.stem
    if name == "probabilities-as-logits":
        disp = TemperatureDisplay.from_logits(
            p, temps, labels=labels,
            title="softmax(p / T) with p = N(4, 1) density: probabilities read as logits, "
                  "already nearly flat at T = 1")
    elif name == "tempered-probabilities":
        disp = TemperatureDisplay.from_logits(
            p, temps, labels=labels, input="probabilities",
            title="temper(p, T) = p^(1/T) / Σ p^(1/T): the same p read as probabilities "
                  "(T = 1 gives p back)")
    else:
        z = np.stack([p, np.log(p)])
        disp = EntropyCurveDisplay.from_logits(
            z, temps, row_labels=["softmax(p, T): p as logits", "temper(p, T): p as probabilities"],
            target=1.0, title="Entropy of the 10-class example against temperature")
    save_figure(disp.figure_, path, dpi, force)


def _write_page(path: Path, force: bool, explorer_html: Callable[..., str]) -> None:
    """The explorer opens on the classic 10-class example by default (read as probabilities, with
    a switch to reading them as logits), so the demo passes no numbers."""
    write_text(path, force, explorer_html())
