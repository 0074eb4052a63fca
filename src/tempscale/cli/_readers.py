"""Inputs of the ``tempscale`` command: numbers on the command line, files, labels.

Files are read without ever unpickling or executing anything, and a ``.npy`` header is checked
against the file's size before anything is allocated.  Every failure is one :class:`CLIError`
line naming the file.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from ._console import CLIError, warn
from ._numbers import is_number, parse_float, parse_floats

__all__ = [
    "LABEL_NAMES",
    "NDArray",
    "PARQUET_SUFFIXES",
    "Table",
    "add_input_args",
    "add_input_kind",
    "as_logits",
    "check_labels",
    "load_array",
    "load_input",
    "load_labels",
    "looks_like_probabilities",
    "read_table",
    "split_key",
    "warn_if_probabilities",
]

#: a NumPy array of any dtype
NDArray = np.ndarray[Any, np.dtype[Any]]
_R = TypeVar("_R")

#: file name endings read as Parquet (with pyarrow)
PARQUET_SUFFIXES = (".parquet", ".pq")
#: header names that mean "this column holds the labels" (matched case-insensitively)
LABEL_NAMES = ("label", "labels", "target", "targets", "y", "class", "classes")


def _read_npy_header(fp: IO[bytes], size: int, where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype, data bytes available) of a .npy stream, all checked.

    ``size`` is the stream's total length in bytes: the header's shape times the item size must
    fit in what follows the header, so a forged header cannot make us allocate anything.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        elif hasattr(fmt, "_read_array_header"):
            shape, fortran, dtype = fmt._read_array_header(fp, version)
        else:  # pragma: no cover - a NumPy without the private reader
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # noqa: BLE001 - a damaged header raises all sorts (TokenError ...)
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise CLIError(f"{where} is not a valid .npy file ({detail})") from None
    if dtype.hasobject:
        raise CLIError(f"{where} holds Python objects (pickled data), which tempscale never loads")
    if dtype.kind not in "biuf":
        raise CLIError(f"{where}: expected numbers, found dtype {dtype}")
    if any(int(d) < 0 for d in shape):
        raise CLIError(f"{where} is not a valid .npy file (negative shape {shape})")
    need = math.prod(int(d) for d in shape) * dtype.itemsize
    have = size - fp.tell()
    if need > have:
        raise CLIError(f"{where} is not a valid .npy file: its header says shape {tuple(shape)} of "
                       f"{dtype} ({need:,} bytes) but only {max(have, 0):,} bytes follow "
                       "(truncated or forged)")
    return shape, fortran, dtype


def _load_npy(path: Path, mmap: bool = False) -> NDArray:
    """A .npy file, its header checked first; ``mmap``: memory-mapped read-only (nothing is read
    into memory until used, so a file larger than memory can be processed in row chunks)."""
    size = path.stat().st_size
    with open(path, "rb") as fp:
        _read_npy_header(fp, size, str(path))
    try:
        arr: NDArray = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        return arr
    except (ValueError, EOFError, OSError) as exc:
        raise CLIError(f"{path} is not a valid .npy file ({' '.join(str(exc).split())[:120]})") from None


def _parquet_table(path: Path) -> Any:
    """A Parquet file as a pyarrow Table (pyarrow is optional: one line if it is missing)."""
    try:
        pq = importlib.import_module("pyarrow.parquet")  # optional; untyped
    except ImportError:
        raise CLIError(f"{path}: reading Parquet files needs pyarrow (pip install pyarrow)") from None
    try:
        return pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own ArrowInvalid & co.
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise CLIError(f"{path} is not a valid Parquet file ({detail})") from None


def _parquet_columns(table: Any, path: Path, names: Sequence[str]) -> NDArray:
    """The named numeric columns of a pyarrow Table as one (n, len(names)) float64 array."""
    cols = []
    for name in names:
        col = table.column(name)
        try:
            arr = np.asarray(col.to_numpy())
        except Exception as exc:  # noqa: BLE001 - nulls, nested types...
            raise CLIError(f"{path}: column {name!r} cannot be read as numbers "
                           f"({' '.join(str(exc).split())[:80]})") from None
        if arr.dtype.kind not in "biuf":
            raise CLIError(f"{path}: column {name!r} holds {arr.dtype} values, not numbers")
        cols.append(arr)
    if not cols:
        raise CLIError(f"{path}: the Parquet file has no columns")
    if len(cols) == 1:
        out = cols[0]
        return out.reshape(-1, 1) if out.ndim == 1 else out
    return np.column_stack([c.astype(np.float64, copy=False) for c in cols])


def _read_parquet(path: Path, what: str, label_column: str | None) -> tuple[NDArray, NDArray | None]:
    """(values, labels) of a Parquet file; ``label_column`` names the labels' column."""
    table = _parquet_table(path)
    names = [str(n) for n in table.column_names]
    labels = None
    if label_column is not None:
        matches = [n for n in names if n == label_column.strip()] or [
            n for n in names if n.lower() == label_column.strip().lower()]
        if len(matches) != 1:
            raise CLIError(f"{path}: --label-column {label_column!r} "
                           + ("matches several columns" if matches else
                              f"is not a column (it has {', '.join(names)[:80]})"))
        labels = _parquet_columns(table, path, matches)[:, 0]
        names = [n for n in names if n != matches[0]]
        if not names:
            raise CLIError(f"{path}: no columns are left for the {what} besides --label-column")
    if what != "labels":
        label_like = _label_like(names)
        if label_like:
            raise CLIError(f"{path}: the Parquet file has a column {label_like[0]!r}, which looks "
                           f"like labels, not {what}; pass --label-column {label_like[0]} "
                           "(tempscale calibrate) or drop that column")
    values = _parquet_columns(table, path, names)
    return values, labels


def _load_npz(path: Path, key: str | None) -> NDArray:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise CLIError(f"{path} is not a valid .npz file ({' '.join(str(exc).split())[:80]})") from None
    with zf:
        members = {info.filename[:-4]: info for info in zf.infolist()
                   if info.filename.endswith(".npy")}
        names = sorted(members)
        if not names:
            raise CLIError(f"{path}: the .npz file holds no arrays")
        if key is None:
            if len(names) != 1:
                raise CLIError(f"{path}: the .npz file holds {len(names)} arrays ({', '.join(names)}); "
                               "name one with PATH:KEY")
            key = names[0]
        if key not in members:
            raise CLIError(f"{path}: no array named {key!r} (it has {', '.join(names)})")
        info = members[key]
        where = f"{path}:{key}"
        try:
            with zf.open(info) as fp:
                _read_npy_header(fp, info.file_size, where)
            with zf.open(info) as fp:
                data = fp.read()  # at most the declared size (zipfile stops there)
        except CLIError:
            raise
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError,
                RuntimeError) as exc:  # zlib errors are OSError/ValueError subclasses here
            raise CLIError(f"{where}: cannot read the array "
                           f"({' '.join(str(exc).split())[:80] or type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - zlib.error and friends of a damaged archive
            raise CLIError(f"{where}: cannot read the array ({type(exc).__name__})") from None
    try:
        arr: NDArray = np.load(io.BytesIO(data), allow_pickle=False)
        return arr
    except (ValueError, EOFError, OSError) as exc:
        raise CLIError(f"{where} is not a valid array ({' '.join(str(exc).split())[:80]})") from None


class Table:
    """Numbers read from a CSV file: the values, the header (if any) and where they came from."""

    def __init__(self, values: NDArray, header: list[str] | None, path: Path) -> None:
        self.values = values
        self.header = header
        self.path = path


def _split_rows(text: str, delimiter: str | None) -> list[list[str]]:
    rows: list[list[str]] = []
    if delimiter is None:  # whitespace separated (np.savetxt's default)
        for text_line in text.splitlines():
            if text_line.strip() and not text_line.lstrip().startswith("#"):
                rows.append(text_line.split())
        return rows
    for line in csv.reader(io.StringIO(text), delimiter=delimiter):
        if not line or all(not c.strip() for c in line):
            continue
        if line[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line]
        if len(cells) > 1 and cells[-1] == "":  # a trailing delimiter ("1,2,3,")
            cells.pop()
        rows.append(cells)
    return rows


def _read_csv(path: Path) -> Table:
    raw = path.read_bytes()
    if b"\0" in raw:
        raise CLIError(f"{path} is not a text (CSV) file: it holds binary data")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text (UTF-8 CSV) file") from None
    delimiter: str | None
    if path.suffix.lower() == ".tsv" or ("\t" in text and "," not in text):
        delimiter = "\t"
    else:
        delimiter = "," if "," in text else None  # None: whitespace separated (np.savetxt)
    try:
        rows = _split_rows(text, delimiter)
    except csv.Error as exc:
        raise CLIError(f"{path} is not a valid CSV file ({exc})") from None
    if not rows:
        raise CLIError(f"{path}: the file holds no numbers (it is empty)")
    header = None
    first = rows[0]
    if any(c.strip() and not is_number(c) for c in first):
        header = first
        rows = rows[1:]
        if not rows:
            raise CLIError(f"{path}: the file holds a header row ({', '.join(header)[:60]}) "
                           "but no numbers")
    data = []
    for i, row in enumerate(rows, start=2 if header else 1):
        try:
            data.append([parse_float(c, "entry") for c in row])
        except CLIError as exc:
            raise CLIError(f"{path}: row {i}: {exc}") from None
    widths = sorted({len(r) for r in data})
    if len(widths) != 1:
        bad = next(i for i, r in enumerate(data, start=2 if header else 1) if len(r) != len(data[0]))
        raise CLIError(f"{path}: rows have different numbers of columns ({widths}; first "
                       f"different: row {bad})")
    if header is not None and len(header) != widths[0]:
        raise CLIError(f"{path}: the header row has {len(header)} names but the rows have "
                       f"{widths[0]} columns")
    return Table(np.asarray(data, dtype=np.float64), header, path)


def _label_like(header: Sequence[str]) -> list[str]:
    return [h for h in header if h.strip().lower() in LABEL_NAMES]


def read_table(source: str | os.PathLike[str], *, key: str | None = None, what: str = "input",
               label_column: str | None = None, mmap: bool = False) -> tuple[NDArray, NDArray | None]:
    """``(values, labels)`` from a file; ``labels`` only with ``label_column`` (CSV with a header).

    A CSV header row is detected (a first row that is not all numbers).  A header naming a
    label-like column (``label``, ``target``, ``y``, ``class`` ...) without ``label_column`` is
    refused, since it would otherwise be read as one more column of numbers; any other header is
    reported on stderr and skipped.  Parquet files (``.parquet``, ``.pq``; needs pyarrow) name
    their columns the same way.  ``mmap``: a ``.npy`` file is memory-mapped (read-only).
    """
    path = _check_readable(source, what)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _guard(lambda: _read_parquet(path, what, label_column), path)
    if suffix not in (".csv", ".txt", ".tsv", ""):
        if label_column is not None:
            raise CLIError(f"--label-column reads a column of a CSV file with a header row; "
                           f"{str(path)!r} is a {suffix} file (give the labels as a second file, "
                           "or FILE.npz:KEY)")
        return load_array(path, key=key, what=what, mmap=mmap), None
    table = _guard(lambda: _read_csv(path), path)
    values, header = table.values, table.header
    if label_column is not None:
        if header is None:
            raise CLIError(f"{path} has no header row, so --label-column {label_column!r} names "
                           "no column (add a header row naming the columns)")
        names = [h.strip() for h in header]
        matches = [i for i, h in enumerate(names) if h == label_column.strip()]
        if not matches:
            matches = [i for i, h in enumerate(names) if h.lower() == label_column.strip().lower()]
        if len(matches) != 1:
            raise CLIError(f"{path}: --label-column {label_column!r} "
                           + ("matches several columns" if matches else
                              f"is not a column (the header has {', '.join(names)[:80]})"))
        j = matches[0]
        labels = values[:, j]
        values = np.delete(values, j, axis=1)
        if values.shape[1] == 0:
            raise CLIError(f"{path}: no columns are left for the {what} besides --label-column")
        others = _label_like([h for i, h in enumerate(names) if i != j])
        if others:
            raise CLIError(f"{path}: column {others[0]!r} also looks like labels; drop it from "
                           "the file")
        return values, labels
    if header is not None:
        label_like = _label_like(header) if what != "labels" else []
        if label_like:
            raise CLIError(f"{path}: the header names a column {label_like[0].strip()!r}, which "
                           f"looks like labels, not {what}; pass --label-column "
                           f"{label_like[0].strip()} (tempscale calibrate) or drop that column")
        warn(f"{path}: the first row is a header ({', '.join(h.strip() for h in header)[:80]}); "
             "skipped it")
    return values, None


def _check_readable(source: str | os.PathLike[str], what: str) -> Path:
    path = Path(source)
    if str(source) == "":
        raise CLIError(f"the {what} file name is empty")
    try:
        st = path.stat()
    except FileNotFoundError:
        if os.path.lexists(path):
            raise CLIError(f"{what} file {str(path)!r} is a broken symbolic link") from None
        raise CLIError(f"{what} file {str(path)!r} does not exist") from None
    except PermissionError:
        raise CLIError(f"{what} file {str(path)!r} cannot be read: permission denied") from None
    except (OSError, ValueError) as exc:
        raise CLIError(f"{what} file {str(path)!r} cannot be read: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CLIError(f"{what} {str(path)!r} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"{what} {str(path)!r} is not a regular file")
    return path


def _guard(read: Callable[[], _R], path: Path) -> _R:
    """Run a reader, turning every OS/decoding failure into one readable CLIError."""
    try:
        return read()
    except CLIError:
        raise
    except PermissionError:
        raise CLIError(f"{path} cannot be read: permission denied") from None
    except MemoryError:
        raise CLIError(f"{path}: not enough memory to load it") from None
    except OSError as exc:
        raise CLIError(f"{path} cannot be read: {exc.strerror or exc}") from None


def load_array(source: str | os.PathLike[str], *, key: str | None = None, what: str = "input",
               mmap: bool = False) -> NDArray:
    """Read ``.npy`` / ``.npz`` / ``.csv`` / ``.txt`` / ``.parquet`` into a NumPy array (never
    unpickling); ``mmap``: a ``.npy`` file is memory-mapped read-only instead of read."""
    path = _check_readable(source, what)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _guard(lambda: _load_npy(path, mmap), path)
    elif suffix in PARQUET_SUFFIXES:
        arr, _ = read_table(path, what=what)
    elif suffix == ".npz":
        arr = _guard(lambda: _load_npz(path, key), path)
    elif suffix in (".csv", ".txt", ".tsv", ""):
        arr, _ = read_table(path, what=what)
    else:
        raise CLIError(f"{what} file {str(path)!r}: unsupported format {suffix!r} (use .npy, .npz, "
                       ".csv or .parquet)")
    if arr.dtype.kind not in "biuf":
        raise CLIError(f"{path}: expected numbers, found dtype {arr.dtype}")
    return arr


def split_key(source: str) -> tuple[str, str | None]:
    """``file.npz:logits`` → (``file.npz``, ``logits``)."""
    if ":" in source and not os.path.lexists(source):
        base, _, key = source.rpartition(":")
        if base.lower().endswith(".npz"):
            return base, key
    return source, None


def add_input_args(p: argparse.ArgumentParser, *, what: str = "logits", rows: str = "",
                   input_kind: bool = True) -> None:
    """The positional numbers-or-file argument and ``-f/--file`` every array command takes."""
    p.add_argument("values", nargs="*", metavar="LOGIT_OR_FILE",
                   help=f"{what} as numbers (comma or space separated), or one .npy/.npz/.csv file{rows}")
    p.add_argument("-f", "--file", help=f"read the {what} from this file instead (.npy, .npz[:key], .csv)")
    if input_kind:
        add_input_kind(p)


def add_input_kind(p: argparse.ArgumentParser, dest: str = "input") -> None:
    p.add_argument("--input", choices=("logits", "probabilities"), default=None, dest=dest,
                   help="read the values as logits (softmax; default) or as probabilities "
                        "(re-tempered with temper(p, T) = softmax(log p, T))")


def load_input(values: Sequence[str] | None, file: str | None, *, what: str = "logits") -> NDArray:
    """Numbers from the command line, or an array from ``--file``/a path argument (at least 1-D)."""
    x = np.atleast_1d(_load_input(values, file, what=what))
    if x.size == 0:
        raise CLIError(f"the {what} hold no numbers (an array of shape {x.shape})")
    return x


def _load_input(values: Sequence[str] | None, file: str | None, *, what: str) -> NDArray:
    if file is not None:
        src, key = split_key(file)
        return load_array(src, key=key, what=what)
    if not values:
        raise CLIError(f"give the {what} as numbers or with a file (see --help)")
    if len(values) == 1:
        src, key = split_key(values[0])
        looks_like_path = (Path(src).suffix.lower() in (".npy", ".npz", ".csv", ".txt", ".tsv")
                           or (not all(is_number(v) for v in values[0].replace(",", " ").split())
                               and (os.path.lexists(src) or re.search(r"[/\\]|\.[A-Za-z]\w*$", src))))
        if looks_like_path:
            return load_array(src, key=key, what=what)
    return np.asarray(parse_floats(values, "entry"), dtype=np.float64)


def looks_like_probabilities(x: NDArray) -> bool:
    """Every row (last axis, at least 2 entries) lies in [0, 1] and sums to 1 (to 1e-6).

    Stricter than the library's test for rounded probabilities (the argument layer allows
    5e-4 per column, for values rounded to 3 decimals): on the command line the warning is about
    numbers typed or saved as a distribution, and a row of many zeros must not count.
    """
    x = np.asarray(x)
    if x.size == 0 or x.ndim == 0 or x.shape[-1] < 2 or x.dtype.kind not in "biuf":
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        xf = x.astype(np.float64, copy=False)
        if not (np.all(xf >= 0) and np.all(xf <= 1)):
            return False
        s = xf.sum(axis=-1)
        return bool(np.all(np.abs(s - 1.0) <= 1e-6 * max(1, x.shape[-1]) ** 0.5 + 1e-6))


def warn_if_probabilities(x: NDArray, input_kind: str | None, command: str) -> None:
    """The classic mistake: probabilities fed to softmax as logits; say so (one line)."""
    if input_kind is None and looks_like_probabilities(x):
        warn(f"every row lies in [0, 1] and sums to 1: these look like probabilities, and "
             f"{command} reads them as logits (softmax of probabilities is nearly flat); pass "
             "--input probabilities to re-temper them (temper), or --input logits to silence this")


def as_logits(x: NDArray, input_kind: str | None, what: str = "values") -> NDArray:
    """Logits as given, or ``log p`` (``-inf`` where ``p`` is 0) for ``--input probabilities``."""
    if input_kind != "probabilities":
        return x
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any() or np.any(x < 0) or np.isinf(x).any():
        raise CLIError(f"--input probabilities needs non-negative finite {what}")
    with np.errstate(divide="ignore"):
        logs: NDArray = np.log(x)
    return logs


def load_labels(source: str, *, n_classes: int | None = None, mmap: bool = False) -> NDArray:
    src, key = split_key(source)
    arr = load_array(src, key=key, what="labels", mmap=mmap)
    return check_labels(arr, where=str(src))


def check_labels(arr: NDArray, *, where: str = "labels") -> NDArray:
    """One column of whole numbers as int64 (no silent wrap-around of huge values)."""
    arr = np.asarray(arr)
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise CLIError(f"labels must be one column, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise CLIError(f"{where}: holds no labels")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise CLIError(f"labels must be whole numbers (class indices); found {arr[bad][0]}")
        frac = arr != np.round(arr)
        if frac.any():
            raise CLIError(f"labels must be whole numbers (class indices); found {arr[frac][0]:g}")
    if arr.dtype.kind in "fu" and arr.size:
        big = (arr > 2**62) | (arr < -(2**62))
        if big.any():
            v = arr[big][0]
            raise CLIError(f"labels must be class indices; found {v:g}" if arr.dtype.kind == "f"
                           else f"labels must be class indices; found {v}")
    return arr.astype(np.int64)

