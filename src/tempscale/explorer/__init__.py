"""The interactive explorer: one self-contained HTML page that shows what temperature does.

:func:`explorer_html` returns the page as a string and :func:`write_explorer` writes it to a file.
The page holds everything it needs (its CSS and vanilla JavaScript are inlined, the charts are
inline SVG), so it opens from disk in any browser, offline; a Content-Security-Policy that allows
only the page's own script and style (by hash) and no network access is part of it.

What it shows: a log-scale temperature slider (0.01 to 100) with a number box that also takes
``0`` (argmax) and ``inf`` (uniform), editable inputs read either as logits (``softmax(x / T)``)
or as probabilities (``temper(p, T) = p**(1/T) / sum(p**(1/T))``), bars that update live, the
entropy (nats and bits), perplexity, top probability and effective number of classes
(``1 / sum(p**2)``), preset temperatures, and an entropy-against-T curve.  Its JavaScript softmax
follows the library's contract: the maximum is subtracted as ``(x/2 - m/2) / (T/2)`` (no overflow
for any finite input), ``T = 0`` splits the mass among tied maxima, ``-inf`` entries are masked,
an all ``-inf`` row gives zeros, ``+inf`` entries share the mass and NaN makes the row NaN.

Sampling filters: top-nσ, top-k, top-p and min-p boxes (with ``min_tokens_to_keep`` and the two
named orders of :func:`tempscale.sampling.warp`) grey out the removed classes and show the kept ones
renormalised, live.  The page's filters follow ``warp``'s rules and arithmetic in float64: top-k
keeps ties at the ``k``-th logit, top-p decides on exact (multi-part) cumulative sums of
``e * (1 / s)`` in ascending logit order with ties by index, min-p compares with ``min_p * p_max``,
top-nσ is decided on the logits (the population σ of the finite ones), ``T = 0`` keeps the first
maximal logit.  Large inputs (up to 2**20 classes) are drawn as a top-N view (the ``N`` largest,
with the mass of the others) and a search box finds a class by index or label, with its rank.

Everything the caller supplies is escaped: the title is HTML-escaped and the data travel as JSON
inside ``<script type="application/json">`` with ``<``, ``>``, ``&`` and U+2028/U+2029 written
as ``\\u`` escapes; the page builds its DOM with ``textContent`` and ``setAttribute`` only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._args import check_input, check_temperature, deprecated_alias
from .._io import write_file
from .._typing import ArrayLike
from .._validation import check_choice, check_scalar, param_error

__all__ = ["explorer_html", "write_explorer"]

#: the page title when none is given
DEFAULT_TITLE = "Softmax temperature explorer"
#: the most classes a page takes (2**20: a 128k-token vocabulary fits eight times over)
MAX_CLASSES = 1 << 20
#: the page draws every class up to this many; beyond it, the top-N view
FULL_VIEW_MAX = 500
_PLACEHOLDER = re.compile(r"\{\{(CSP|VERSION|TITLE|STYLE|SCRIPT|DATA)\}\}")


@cache
def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def classic_vector() -> np.ndarray:
    """The classic 10-class example: ``p_i`` = the N(4, 1) density at ``i = 0..9`` (sums to 0.99999)."""
    i = np.arange(10, dtype=np.float64)
    return np.exp(-0.5 * (i - 4.0) ** 2) / math.sqrt(2.0 * math.pi)


seed_vector = classic_vector  # the former name, kept for code that imported it


def _json_for_script(obj: Any) -> str:
    """JSON that is inert inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c``/``\\u003e``/``\\u0026`` (so no ``</script>``,
    ``<!--`` or entity can end or confuse the element) and U+2028/U+2029 become escapes too.
    ``JSON.parse`` reads the escapes back as the original characters.
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _encode_float(v: float) -> float | str:
    """JSON has no inf/NaN: those travel as the strings the page's parser reads."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def _check_values(values: Any, input: str, func: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The page's numbers: 1 to MAX_CLASSES reals (one row of a 2-D array is accepted)."""
    expect = f"a 1-D sequence of 1 to {MAX_CLASSES} real numbers, or None"
    try:
        arr = np.asarray(values)
    except Exception:  # noqa: BLE001 - anything array-like may raise anything
        raise param_error("logits", func, expect, values, TypeError) from None
    if arr.dtype.kind not in "biuf":
        raise param_error("logits", func, expect, values, TypeError)
    arr = arr.astype(np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or not 1 <= arr.size <= MAX_CLASSES:
        raise param_error("logits", func, expect, f"an array of shape {arr.shape}")
    if input == "probabilities" and bool(np.any(arr < 0)):
        raise param_error("logits", func, "non-negative probabilities when input='probabilities'",
                          "an array with negative entries")
    out: np.ndarray[Any, np.dtype[np.float64]] = arr
    return out


def _check_labels(labels: Any, n: int, func: str) -> list[str]:
    """One label per class as text (an empty list: number the classes)."""
    if labels is None:
        return []
    expect = f"None or a sequence of {n} labels (one per class)"
    if isinstance(labels, (str, bytes)):
        raise param_error("labels", func, expect, labels, TypeError)
    try:
        out = [str(v) for v in labels]
    except TypeError:
        raise param_error("labels", func, expect, labels, TypeError) from None
    if len(out) != n:
        raise param_error("labels", func, expect, f"{len(out)} labels")
    return out


#: the page's sampling filters when none is given (every filter off)
_FILTERS_OFF = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "top_n_sigma": 0.0, "order": "temperature-first",
                "min_tokens_to_keep": 1}


def _check_filters(func: str, top_k: Any, top_p: Any, min_p: Any, top_n_sigma: Any, order: Any,
                   min_tokens_to_keep: Any) -> dict[str, Any]:
    """The page's sampling filters, checked as :func:`tempscale.sampling.warp` checks them
    (the "off" value where ``None``)."""
    k = 0 if top_k is None else check_scalar(top_k, "top_k", func, lo=0, integer=True)
    p = 1.0 if top_p is None else check_scalar(top_p, "top_p", func, lo=0, hi=1, lo_open=True)
    mp = 0.0 if min_p is None else check_scalar(min_p, "min_p", func, lo=0, hi=1)
    ns = 0.0 if top_n_sigma is None else check_scalar(top_n_sigma, "top_n_sigma", func, lo=0)
    check_choice(order, ("temperature-first", "temperature-last"), "order", func)
    mtk = check_scalar(min_tokens_to_keep, "min_tokens_to_keep", func, lo=1, integer=True)
    return {"top_k": int(k), "top_p": float(p), "min_p": float(mp), "top_n_sigma": _encode_float(ns),
            "order": order, "min_tokens_to_keep": int(mtk)}


def explorer_html(
    logits: ArrayLike | None = None,
    labels: Sequence[Any] | None = None,
    temperature: float = 1.0,
    *,
    title: str = DEFAULT_TITLE,
    input: str | None = None,
    mode: str | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    top_n_sigma: float | None = None,
    order: str = "temperature-first",
    min_tokens_to_keep: int = 1,
    top: int | None = None,
) -> str:
    """The interactive temperature explorer as one self-contained HTML page.

    Parameters
    ----------
    logits : 1-D array_like, optional
        The numbers the page opens with (at most 2**20 = 1,048,576).  ``-inf`` entries are masked classes.
        By default the classic 10-class example: the N(4, 1) density at classes ``0..9``.
    labels : sequence, optional
        One label per class (turned into text with ``str``; shown escaped, never as HTML).
        By default the classes are numbered from 0.
    temperature : float, default 1.0
        The temperature the page opens at, in ``[0, inf]``.
    title : str, default "Softmax temperature explorer"
        The page title (HTML-escaped).
    input : {"logits", "probabilities"}, optional
        How the page reads the numbers at first (the user can switch): ``"logits"`` shows
        ``softmax(x / T)``, ``"probabilities"`` shows ``temper(p, T) = p**(1/T) / sum(p**(1/T))``
        and requires non-negative numbers.  By default ``"probabilities"`` for the classic example
        (it *is* a distribution; the common mistake is to feed it to softmax as logits, which the
        page explains) and ``"logits"`` when ``logits`` is given.
    mode : {"logits", "probabilities"}, optional
        Deprecated name of ``input`` (a DeprecationWarning); it will be removed in a future
        release.
    top_k, top_p, min_p, top_n_sigma : optional
        The sampling filters the page opens with, as in :func:`tempscale.sampling.warp`
        (``None`` or ``0`` / ``1`` / ``0`` / ``0`` switch one off); the user can change them.
    order : {"temperature-first", "temperature-last"}, default "temperature-first"
        The order of temperature and filters, as in :func:`tempscale.sampling.warp`.
    min_tokens_to_keep : int, default 1
        As in :func:`tempscale.sampling.warp`.
    top : int, optional
        Open in the top-``top`` view: the ``top`` largest classes, largest first, and a note with
        the mass of the others.  By default every class is drawn up to 500 classes, and the
        50 largest beyond.

    Returns
    -------
    str
        The HTML document: no external resources, no network access.

    See Also
    --------
    write_explorer : write the page to a file.

    Examples
    --------
    >>> from tempscale.explorer import explorer_html
    >>> page = explorer_html([-1.0, 0.0, 1.0], labels=["cat", "dog", "<bird>"], temperature=0.5)
    >>> page.startswith("<!doctype html>")
    True
    >>> "<bird>" in page, "\\\\u003cbird\\\\u003e" in page
    (False, True)
    """
    func = "explorer_html"
    if mode is not None:
        input = deprecated_alias({"mode": mode, "input": input}, "mode", "input", func)["input"]
    if input is None:
        input = "probabilities" if logits is None else "logits"
    input = check_input(input, func)
    values = classic_vector() if logits is None else _check_values(logits, input, func)
    labels_out = _check_labels(labels, values.size, func)
    t = check_temperature(temperature, func)
    if not isinstance(title, str):
        raise param_error("title", func, "a str", title, TypeError)
    filters = _check_filters(func, top_k, top_p, min_p, top_n_sigma, order, min_tokens_to_keep)
    if top is not None:
        top = check_scalar(top, "top", func, lo=1, integer=True)

    from .._version import __version__

    style = _asset("explorer.css")
    script = _asset("explorer.js")
    # both are inlined verbatim: neither may close its element early
    if "</style" in style.lower() or "</script" in script.lower():  # pragma: no cover
        raise RuntimeError("the explorer's assets must not contain '</style' or '</script'")
    data = {
        "values": [_encode_float(v) for v in values.tolist()],
        "labels": labels_out,
        "temperature": _encode_float(t),
        "mode": input,   # the page's own name for its logits/probabilities switch
    }
    if filters != _FILTERS_OFF:  # the page's defaults travel implicitly
        data["filters"] = filters
    if top is not None:
        data["top"] = top
    csp = ("default-src 'none'; base-uri 'none'; form-action 'none'; img-src data:; "
           f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}")
    parts = {
        "CSP": csp,
        "VERSION": html.escape(__version__, quote=True),
        "TITLE": html.escape(title, quote=True),
        "STYLE": style,
        "SCRIPT": script,
        "DATA": _json_for_script(data),
    }
    # one pass: nothing substituted is scanned again for placeholders
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _asset("explorer.html"))


def write_explorer(
    path: str | os.PathLike[str],
    logits: ArrayLike | None = None,
    labels: Sequence[Any] | None = None,
    temperature: float = 1.0,
    *,
    title: str = DEFAULT_TITLE,
    input: str | None = None,
    overwrite: bool = False,
    mode: str | None = None,
    **options: Any,
) -> Path:
    """Write the interactive explorer page (see :func:`explorer_html`) to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the page (UTF-8).  Its folder must exist.
    logits, labels, temperature, title, input
        As in :func:`explorer_html` (``mode`` is the deprecated name of ``input``).
    **options
        ``top_k``, ``top_p``, ``min_p``, ``top_n_sigma``, ``order``, ``min_tokens_to_keep`` and
        ``top``, as in :func:`explorer_html`.
    overwrite : bool, default False
        Replace an existing file.  Without it an existing ``path`` -- a symbolic link included,
        even a dangling one -- raises ``FileExistsError``.  With it the page is written to a
        temporary file next to ``path`` that then replaces ``path`` itself (a symbolic link is
        replaced; its target is never written).

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from tempscale.explorer import write_explorer
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_explorer(folder / "page.html", [2.0, 1.0, 0.1]).name
    'page.html'
    >>> write_explorer(folder / "page.html", [2.0, 1.0, 0.1])
    Traceback (most recent call last):
    ...
    FileExistsError: ... exists; pass overwrite=True to replace it
    """
    if not isinstance(overwrite, bool):
        raise param_error("overwrite", "write_explorer", "a bool", overwrite, TypeError)
    p = Path(path)
    page = explorer_html(logits, labels, temperature, title=title, input=input, mode=mode, **options)
    if p.is_dir() and not p.is_symlink():
        raise IsADirectoryError(f"{str(p)!r} is a folder; give write_explorer a file path")
    data = page.encode("utf-8")

    def refused(exc: OSError, where: Path) -> OSError:
        if isinstance(exc, FileExistsError):
            return FileExistsError(f"{str(where)!r} exists; pass overwrite=True to replace it")
        return exc

    return write_file(p, lambda fh: fh.write(data), replace=overwrite, create_error=refused)
