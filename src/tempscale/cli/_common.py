"""Shared plumbing of the ``tempscale`` command: loading arrays, errors, tables, progress.

Every subcommand module in this package defines ``register(subparsers)``, which adds its
parser and sets ``func=run`` on it; ``run(args)`` returns an exit code.  Errors are raised as
:class:`CLIError` (or ``ValueError``/``TypeError``/``IndexError``/``OSError``) and printed by
``main`` as one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "CLIError",
    "add_input_args",
    "add_output_args",
    "check_output",
    "console",
    "err_console",
    "load_array",
    "load_labels",
    "parse_floats",
    "print_table",
    "progress",
    "write_array",
]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def console():
    from rich.console import Console

    return Console(highlight=False)


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def parse_float(text: str, what: str = "value") -> float:
    t = text.strip().lower()
    aliases = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan,
               "infinity": math.inf, "-infinity": -math.inf}
    if t in aliases:
        return aliases[t]
    try:
        return float(t)
    except ValueError:
        raise CLIError(f"{what} {text!r} is not a number") from None


def parse_floats(items: Iterable[str], what: str = "value") -> list[float]:
    out: list[float] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            out.append(parse_float(part, what))
    return out


def _read_csv(path: Path) -> np.ndarray:
    text = path.read_text()
    rows = []
    for line in csv.reader(io.StringIO(text)):
        if not line or all(not c.strip() for c in line):
            continue
        rows.append(line)
    if not rows:
        raise CLIError(f"{path}: the CSV file holds no numbers")
    try:
        data = [[parse_float(c, "entry") for c in row] for row in rows]
    except CLIError:
        # allow one header line
        try:
            data = [[parse_float(c, "entry") for c in row] for row in rows[1:]]
        except CLIError as exc:
            raise CLIError(f"{path}: {exc}") from None
        if not data:
            raise CLIError(f"{path}: the CSV file holds no numbers")
    widths = {len(r) for r in data}
    if len(widths) != 1:
        raise CLIError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    return np.asarray(data, dtype=np.float64)


def load_array(source: str | os.PathLike, *, key: str | None = None, what: str = "input") -> np.ndarray:
    """Read ``.npy`` / ``.npz`` / ``.csv`` / ``.txt`` into a NumPy array (never unpickling)."""
    path = Path(source)
    if not path.exists():
        raise CLIError(f"{what} file {str(path)!r} does not exist")
    if path.is_dir():
        raise CLIError(f"{what} {str(path)!r} is a directory, not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if key is None:
                    if len(names) != 1:
                        raise CLIError(
                            f"{path}: the .npz file holds {len(names)} arrays ({', '.join(names)}); "
                            "name one with PATH:KEY")
                    key = names[0]
                if key not in names:
                    raise CLIError(f"{path}: no array named {key!r} (it has {', '.join(names)})")
                arr = z[key]
        elif suffix in (".csv", ".txt", ".tsv", ""):
            arr = _read_csv(path)
        else:
            raise CLIError(f"{what} file {str(path)!r}: unsupported format {suffix!r} (use .npy, .npz or .csv)")
    except CLIError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise CLIError(f"{path}: holds pickled objects, which tempscale never loads") from None
        raise CLIError(f"{path}: cannot read: {exc}") from None
    except OSError as exc:
        raise CLIError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if arr.dtype.kind not in "biuf":
        raise CLIError(f"{path}: expected numbers, found dtype {arr.dtype}")
    return arr


def split_key(source: str) -> tuple[str, str | None]:
    """``file.npz:logits`` → (``file.npz``, ``logits``)."""
    if ":" in source and not Path(source).exists():
        base, _, key = source.rpartition(":")
        if base.lower().endswith(".npz"):
            return base, key
    return source, None


def add_input_args(p: argparse.ArgumentParser, *, what: str = "logits", rows: str = "") -> None:
    """The positional numbers-or-file argument and ``-f/--file`` every array command takes."""
    p.add_argument("values", nargs="*", metavar="LOGIT_OR_FILE",
                   help=f"{what} as numbers (comma or space separated), or one .npy/.npz/.csv file{rows}")
    p.add_argument("-f", "--file", help=f"read the {what} from this file instead (.npy, .npz[:key], .csv)")


def load_input(values: Sequence[str] | None, file: str | None, *, what: str = "logits") -> np.ndarray:
    """Numbers from the command line, or an array from ``--file``/a path argument (at least 1-D)."""
    return np.atleast_1d(_load_input(values, file, what=what))


def _load_input(values, file, *, what):
    if file is not None:
        src, key = split_key(file)
        return load_array(src, key=key, what=what)
    if not values:
        raise CLIError(f"give the {what} as numbers or with a file (see --help)")
    if len(values) == 1:
        src, key = split_key(values[0])
        if Path(src).suffix.lower() in (".npy", ".npz", ".csv", ".txt", ".tsv"):
            return load_array(src, key=key, what=what)
    return np.asarray(parse_floats(values, "entry"), dtype=np.float64)


def load_labels(source: str) -> np.ndarray:
    src, key = split_key(source)
    arr = load_array(src, key=key, what="labels")
    arr = np.asarray(arr).reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise CLIError(f"labels must be one column, got an array of shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise CLIError("labels must be whole numbers")
    return arr.astype(np.int64)


def check_output(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing file unless ``force``."""
    p = Path(path)
    if p.exists() and not force:
        raise CLIError(f"{str(p)!r} exists; pass --force to overwrite it")
    if p.parent and not p.parent.exists():
        raise CLIError(f"the folder {str(p.parent)!r} does not exist")
    return p


def write_array(path: Path, arr: np.ndarray) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, arr, allow_pickle=False)
    elif suffix in (".csv", ".txt", ""):
        a = np.atleast_2d(arr)
        np.savetxt(path, a, delimiter=",", fmt="%.9g")
    else:
        raise CLIError(f"cannot write {suffix!r} files (use .npy or .csv)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="PATH", help="write the result to PATH (.npy or .csv)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def fmt(v: float, digits: int = 6) -> str:
    if isinstance(v, (int, np.integer)):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table on stdout (plain text when stdout is not a terminal is handled by rich)."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for i, c in enumerate(columns):
        table.add_column(str(c), justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[c if isinstance(c, str) else fmt(c) for c in r])
    console().print(table)


@contextlib.contextmanager
def progress(description: str, total: int | None = None, *, disable: bool = False):
    """A rich progress bar on stderr; yields ``advance(n=1)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console(), disable=disable, transient=True) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        yield advance
