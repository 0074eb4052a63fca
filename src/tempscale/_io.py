"""Writing files without following an existing path (shared by the CLI and the explorer).

:func:`write_file` is the one writer: a new file is created exclusively (``O_CREAT | O_EXCL``,
and ``O_NOFOLLOW`` where the system has it), so an existing path -- a dangling symbolic link
included -- is never written through; with ``replace=True`` the content goes to a temporary file
in the same folder that then replaces the path itself with ``os.replace`` (a link is replaced,
its target is left alone).  A failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["write_file"]

#: flags of the exclusive, no-follow creation of a new file
_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reraise(exc: OSError, path: Path) -> BaseException:
    return exc


def write_file(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *,
               replace: bool = False,
               create_error: Callable[[OSError, Path], BaseException] = _reraise) -> Path:
    """Write ``path`` through ``write(binary_file)`` without ever following an existing path.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist.
    write : callable
        Called once with the open binary file.
    replace : bool, default False
        False: create the file exclusively; an existing file or symbolic link (dangling or
        not) makes the creation fail with ``FileExistsError``.  True: write a temporary file in
        the same folder (mode 0o666 less the umask, as a new file gets) and move it onto
        ``path`` with ``os.replace``.
    create_error : callable, optional
        Maps a failure to create the file (or, with ``replace``, the temporary file) to the
        exception to raise, given the ``OSError`` and ``path``; by default the ``OSError``
        itself.  Exceptions raised by ``write`` propagate unchanged.

    Returns
    -------
    pathlib.Path
    """
    p = Path(path)
    if not replace:
        try:
            fd = os.open(p, _CREATE_FLAGS, 0o666)
        except OSError as exc:
            raise create_error(exc, p) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(p)
            raise
        return p
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    except OSError as exc:
        raise create_error(exc, p) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p
