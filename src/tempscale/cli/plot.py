"""``tempscale plot``: a PNG / SVG / PDF figure of what temperature does to some logits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._console import CLIError
from ._numbers import parse_floats
from ._readers import add_input_args, load_input, warn_if_probabilities
from ._writers import check_output, write_output

if TYPE_CHECKING:
    from ..plot import EntropyCurveDisplay, TemperatureDisplay

#: a NumPy array of any dtype
NDArray = np.ndarray[Any, np.dtype[Any]]

FORMATS = (".png", ".svg", ".pdf")
#: the most classes drawn as bars by the command (the library allows more)
MAX_BARS = 200
#: the --top suggested for a longer row
DEFAULT_TOP = 20
DEFAULT_TEMPERATURES = "0.1,0.5,1,2,10"

EPILOG = """\
examples:
  tempscale plot -- -1 0 1                          bars at T = 0.1, 0.5, 1, 2, 10 -> tempscale-temperature.png
  tempscale plot -T 0.5,1,2 -o bars.svg 2.0 1.0 0.1
  tempscale plot --input probabilities 0.1 0.2 0.7  re-temper probabilities (temper), not softmax(p)
  tempscale plot --kind entropy logits.npy -o entropy.pdf
  tempscale plot --top 15 -T 0.7,1.5 vocab_logits.npy    the 15 largest of a long row, plus the others' mass
  tempscale plot --kind entropy --quantity perplexity --target 3 -- -1 0 1 2
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a distribution at several temperatures (or entropy vs T) as PNG/SVG/PDF",
        description="Draw softmax(x / T) at several temperatures, one bar panel per T "
                    "(--kind temperature), or the entropy / perplexity / top probability against "
                    "log-scaled T (--kind entropy). Needs matplotlib (pip install 'tempscale[plot]').",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p)
    p.add_argument("-T", "--temperature", action="append", metavar="T",
                   help="temperature(s) in [0, inf], comma-separated or repeated "
                        f"(default {DEFAULT_TEMPERATURES})")
    p.add_argument("--kind", choices=("temperature", "entropy"), default="temperature",
                   help="bars per temperature (default) or a curve against T")
    p.add_argument("--labels", help="comma-separated class labels (--kind temperature)")
    p.add_argument("--row", type=int, metavar="N",
                   help="use row N of a 2-D input (--kind temperature needs one row)")
    p.add_argument("--top", type=int, metavar="N",
                   help=f"--kind temperature: draw the N classes with the largest logits and note "
                        f"the probability the others hold (rows longer than {MAX_BARS} classes "
                        "need it)")
    p.add_argument("--grouped", action="store_true",
                   help="grouped bars on one axes instead of one panel per temperature")
    p.add_argument("--quantity", choices=("entropy", "perplexity", "max_prob"), default="entropy",
                   help="what --kind entropy draws (default entropy, in nats)")
    p.add_argument("--target", type=float, metavar="VALUE",
                   help="--kind entropy: mark the temperature reaching this value (solve_temperature)")
    p.add_argument("--title", help="figure title ('' for none)")
    p.add_argument("--dpi", type=float, default=150, help="resolution of PNG output (default 150)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write the figure, .png/.svg/.pdf (default tempscale-KIND.png)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------
# shared with ``tempscale demo``
# --------------------------------------------------------------------------------------------
def pyplot() -> Any:
    """matplotlib.pyplot on a non-interactive backend (works without a display)."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("figures need matplotlib: pip install 'tempscale[plot]'") from None
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # before pyplot is imported: no display needed, no side effects
    import matplotlib.pyplot as plt

    return plt


def check_figure_path(path: str | Path, force: bool) -> Path:
    """A new figure path with a supported suffix (see :func:`check_output`)."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise CLIError(f"cannot write {p.suffix or 'extension-less'!r} figures to {str(p)!r} "
                       "(use .png, .svg or .pdf)")
    return check_output(p, force)


#: the largest side of a PNG in pixels (figure size times --dpi)
MAX_PIXELS = 16_000


def save_figure(fig: Any, path: Path, dpi: float, force: bool = False) -> Path:
    """Save ``fig`` with :func:`write_output` (never through an existing path or link)."""
    plt = pyplot()
    try:
        fmt = path.suffix.lower().lstrip(".")
        w, h = fig.get_size_inches()
        if fmt == "png" and max(w, h) * dpi > MAX_PIXELS:
            raise CLIError(f"the figure would be {w * dpi:.0f} x {h * dpi:.0f} pixels (at most "
                           f"{MAX_PIXELS} per side); lower --dpi")
        meta = {"Creator": "tempscale"}
        return write_output(path, force, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi,
                                                                metadata=meta, facecolor="white"))
    finally:
        plt.close(fig)


def parse_temperatures(items: Sequence[str] | None) -> list[float]:
    """The -T values (default the classic five), each in [0, inf], at most one panel each."""
    from ..plot import MAX_TEMPERATURES

    temps = parse_floats(items or [DEFAULT_TEMPERATURES], "-T/--temperature value")
    if not temps:
        raise CLIError("give at least one temperature")
    for t in temps:
        if not t >= 0:  # also catches NaN
            raise CLIError(f"-T/--temperature must be in [0, inf], got {t:g}")
    if len(temps) > MAX_TEMPERATURES:
        raise CLIError(f"-T/--temperature gives {len(temps)} temperatures; a figure shows at most "
                       f"{MAX_TEMPERATURES} (one panel or mark each): pick fewer")
    return temps


# --------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    if not args.dpi > 0 or args.dpi > 2400:
        raise CLIError(f"--dpi must be in (0, 2400], got {args.dpi:g}")
    x = load_input(args.values, args.file, what="logits")
    temps = parse_temperatures(args.temperature)
    if args.top is not None:
        if not 1 <= args.top <= MAX_BARS:
            raise CLIError(f"--top must be an integer in [1, {MAX_BARS}], got {args.top}")
        if args.kind != "temperature":
            raise CLIError("--top applies to --kind temperature (bars); --kind entropy uses every class")
    if args.target is not None and not np.isfinite(args.target):
        raise CLIError(f"--target must be a finite number, got {args.target}")
    out = check_figure_path(args.output or f"tempscale-{args.kind}.png", args.force)
    if args.row is not None:
        if x.ndim != 2:
            raise CLIError(f"--row needs a 2-D input, got shape {x.shape}")
        if not -x.shape[0] <= args.row < x.shape[0]:
            raise CLIError(f"--row {args.row} is out of range for {x.shape[0]} rows")
        x = x[args.row]
    if not np.all(np.isfinite(x) | (x == -np.inf)):
        raise CLIError("the values must be finite numbers (or -inf for masked classes)")
    if args.input == "probabilities" and np.any(x < 0):
        raise CLIError("--input probabilities needs non-negative values")
    warn_if_probabilities(x, args.input, "plot")
    kind = args.input or "logits"
    if args.kind == "temperature":
        save_figure(_temperature_figure(x, temps, kind, args).figure_, out, args.dpi, args.force)
    else:
        disp = _entropy_figure(x, temps, kind, args)
        save_figure(disp.figure_, out, args.dpi, args.force)
        if args.target is not None and disp.target_temperatures is not None:
            _print_target_temperatures(disp.target_temperatures, args.quantity, args.target)
    print(f"wrote {out}")
    return 0


def _temperature_figure(x: NDArray, temps: list[float], kind: str,
                        args: argparse.Namespace) -> TemperatureDisplay:
    """``--kind temperature``: one distribution as bars at each temperature."""
    plt = pyplot()
    from ..plot import MAX_FIGSIZE, TemperatureDisplay

    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise CLIError(f"--kind temperature draws one distribution; the input has shape "
                       f"{x.shape} (pick one with --row N)")
    top = args.top
    if top is None and x.size > MAX_BARS:
        raise CLIError(f"{x.size} classes are too many to draw as bars (at most {MAX_BARS}); draw "
                       f"the largest with --top N (e.g. --top {DEFAULT_TOP}) or try --kind entropy")
    labels = None
    if args.labels:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != x.size:
            raise CLIError(f"--labels has {len(labels)} names for {x.size} classes")
    kw: dict[str, Any] = {} if args.title is None else {"title": args.title}
    if args.grouped:
        shown = x.size if top is None else min(top, x.size)
        width = min(MAX_FIGSIZE, max(6.0, 2.0 + 0.35 * shown * max(1, len(temps) / 3)))
        fig, ax = plt.subplots(figsize=(width, 3.8),
                               layout="constrained")
        kw["ax"] = ax
    return TemperatureDisplay.from_logits(x, temps, labels=labels, input=kind, top=top, **kw)


def _entropy_figure(x: NDArray, temps: list[float], kind: str,
                    args: argparse.Namespace) -> EntropyCurveDisplay:
    """``--kind entropy``: entropy (perplexity, top probability) against T, one curve per row."""
    pyplot()
    from ..plot import MAX_CURVES, EntropyCurveDisplay

    if x.ndim > 2:
        raise CLIError(f"--kind entropy takes one row or a 2-D array of rows, got shape {x.shape}")
    rows = 1 if x.ndim == 1 else x.shape[0]
    if rows > MAX_CURVES:
        raise CLIError(f"{rows} rows are too many curves for one figure (at most {MAX_CURVES}; "
                       "pick one with --row N)")
    kw = {} if args.title is None else {"title": args.title}
    return EntropyCurveDisplay.from_logits(x, temps, quantity=args.quantity, target=args.target,
                                           input=kind, **kw)


def _print_target_temperatures(temperatures: NDArray, quantity: str, target: float) -> None:
    """The temperature reaching ``--target`` on each row (or that none does)."""
    for i, t in enumerate(temperatures):
        row = f"row {i}: " if len(temperatures) > 1 else ""
        if np.isnan(t):
            print(f"{row}no temperature reaches {quantity} = {target:g}")
        else:
            print(f"{row}T = {t:.6g} reaches {quantity} = {target:g}")
