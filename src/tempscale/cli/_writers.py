"""Outputs of the ``tempscale`` command: files written without following an existing path.

Files are written only through :func:`write_output`, the command's face of the library's one
no-follow writer: a new file is created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), so an
existing path -- a dangling symbolic link included -- is never written through; with ``--force``
the new content goes to a temporary file in the same folder that then replaces the path itself
(a link is replaced, its target is left alone).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._io import write_file
from ._console import CLIError

__all__ = ["add_output_args", "check_output", "write_array", "write_array_chunks", "write_output",
           "write_text"]


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse an existing path -- a symbolic link, even a dangling one, included -- unless ``force``."""
    if str(path) == "":
        raise CLIError("the output file name is empty")
    p = Path(path)
    if os.path.lexists(p):
        link = os.path.islink(p)
        if not force:
            kind = "a symbolic link" if link else ("a folder" if p.is_dir() else "a file")
            raise CLIError(f"{str(p)!r} already exists ({kind}); pass --force to replace it")
        if not link and p.is_dir():
            raise CLIError(f"{str(p)!r} is a folder; give a file path")
    parent = p.parent
    if not parent.is_dir():
        raise CLIError(f"the folder {str(parent)!r} does not exist")
    return p


def write_output(path: str | os.PathLike[str], force: bool, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file through ``write(binary_file)`` without ever following an existing path.

    Without ``force`` the file is created exclusively (``O_CREAT | O_EXCL``, and ``O_NOFOLLOW``
    where the system has it): an existing file or symbolic link -- dangling or not -- is refused.
    With ``force`` the content goes to a temporary file in the same folder, which then replaces
    the path itself with ``os.replace`` (a link is replaced; its target is never written).
    A failed write leaves nothing behind.
    """
    p = check_output(path, force)

    def refused(exc: OSError, where: Path) -> CLIError:
        if isinstance(exc, FileExistsError):
            return CLIError(f"{str(where)!r} already exists; pass --force to replace it")
        if force:
            return CLIError(f"cannot write in {str(where.parent)!r}: {exc.strerror or exc}")
        return CLIError(f"cannot create {str(where)!r}: {exc.strerror or exc}")

    return write_file(p, write, replace=force, create_error=refused)


def write_text(path: str | os.PathLike[str], force: bool, text: str) -> Path:
    """:func:`write_output` of UTF-8 text."""
    data = text.encode("utf-8")
    return write_output(path, force, lambda fh: fh.write(data))


def write_array(path: str | os.PathLike[str], arr: np.ndarray[Any, np.dtype[Any]], force: bool = False) -> Path:
    """An array as ``.npy`` (exact) or ``.csv``/``.txt`` (``%.9g``... ``%.17g`` for float64)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return write_output(p, force, lambda fh: np.save(fh, arr, allow_pickle=False))
    if suffix in (".csv", ".txt", ""):
        a = np.atleast_2d(arr)
        fmt_ = "%.17g" if a.dtype == np.float64 else "%.9g"
        return write_output(p, force, lambda fh: np.savetxt(fh, a, delimiter=",", fmt=fmt_))
    raise CLIError(f"cannot write {suffix!r} files (use .npy or .csv)")


def write_array_chunks(path: str | os.PathLike[str], force: bool, shape: tuple[int, ...],
                       chunks: Iterable[np.ndarray[Any, np.dtype[Any]]],
                       dtype: np.dtype[Any] | type[np.floating[Any]] = np.float64) -> Path:
    """An array given as consecutive row chunks (never whole in memory), as :func:`write_array`
    writes it: ``.npy`` (the header from ``shape`` and ``dtype``, then the chunks' bytes) or
    ``.csv``/``.txt``.  The chunks must add up to ``shape``'s rows (a CLIError otherwise, and
    nothing is left behind)."""
    p = Path(path)
    suffix = p.suffix.lower()
    dt = np.dtype(dtype)
    if suffix not in (".npy", ".csv", ".txt", ""):
        raise CLIError(f"cannot write {suffix!r} files (use .npy or .csv)")

    def write(fh: IO[bytes]) -> None:
        rows = 0
        if suffix == ".npy":
            header = {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False,
                      "shape": tuple(int(d) for d in shape)}
            np.lib.format.write_array_header_2_0(fh, header)
        fmt_ = "%.17g" if dt == np.float64 else "%.9g"
        for chunk in chunks:
            c = np.ascontiguousarray(chunk, dtype=dt)
            rows += c.shape[0]
            if suffix == ".npy":
                fh.write(c.tobytes())
            else:
                np.savetxt(fh, np.atleast_2d(c), delimiter=",", fmt=fmt_)
        if rows != shape[0]:
            raise CLIError(f"internal: wrote {rows} rows of {shape[0]}")

    return write_output(p, force, write)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``-o/--output PATH`` and ``--force``."""
    p.add_argument("-o", "--output", metavar="PATH", help="write the result to PATH (.npy or .csv)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file (or link: the link itself is replaced)")
