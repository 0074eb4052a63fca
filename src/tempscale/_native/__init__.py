"""Compiled multi-core CPU kernels for NumPy arrays (the fast path behind :func:`tempscale.softmax`).

The extension ``_tskernels`` computes softmax, log-softmax and logsumexp with temperature for
float16/float32/float64 NumPy arrays (and bfloat16 data in ``uint16`` arrays: the zero-copy views
of torch tensors that :mod:`tempscale._torch_ops` passes) along any axis, with per-row
temperatures and masks, under the same numerical contract as the generic Array-API path in
:mod:`tempscale._softmax` (which stays the reference and the fallback). It releases the GIL,
splits rows over a persistent pool of threads and picks the best instruction set at run time:
AVX-512, AVX2+FMA or the portable baseline code on x86-64; the baseline code (NEON vectors) on
aarch64 and other CPUs. The C sources and their layout are described at the top of
``_tskernels.c``; ``tests/c/`` tests the kernels without Python (also on aarch64, under qemu:
``.ci/cross.sh``).

Threads
-------
The kernels use ``get_num_threads()`` threads.  The default is the number of CPUs this process
may run on (``os.sched_getaffinity``); the environment variable ``TEMPSCALE_NUM_THREADS`` (read at
import) or :func:`set_num_threads` change it.  ``threadpoolctl.threadpool_limits(n)`` also limits
it once :func:`register_threadpoolctl` has run (it runs automatically at import when threadpoolctl
is importable; the controller's ``user_api`` is ``"tempscale"``).  Small inputs (under about 64k
elements) always run on the calling thread.  Several Python threads may call the kernels at
once: one call uses the pool, the others run on their own thread.

Environment
-----------
Read once, at import.  A value that cannot be used never stops the import: it gives one
``RuntimeWarning`` naming the variable, the value and what is accepted, and the default is used.

``TEMPSCALE_NUM_THREADS``   default thread count: a positive integer (values above
    ``MAX_THREADS`` = 256 use 256).
``TEMPSCALE_REQUIRE_NATIVE=1``   importing this package raises ``ImportError`` when the extension
    is missing (CI sets it, so a silent fallback to the generic path fails the build).  ``0`` or
    unset: no requirement.
``TEMPSCALE_DISABLE_NATIVE=1``   never use the extension (``try_compute`` returns ``None``).
    ``0`` or unset: use it.
``TEMPSCALE_ISA``   force ``avx512f``, ``avx2`` or ``baseline`` (for testing; ``best`` is the
    default, the best level this CPU supports).
``TEMPSCALE_CACHE_MB``   byte cap (MiB, a non-negative number) of the output-block cache (default
    min(2048, RAM/8 MiB); 0 disables it).

Output memory
-------------
A fresh multi-megabyte ``np.empty`` pays page faults and kernel zeroing when first written, which
on a VM costs about as much as the softmax itself.  Outputs of 1 MiB or more are therefore
allocated through a NumPy memory handler that keeps up to 8 freed blocks (up to the cap above) and
hands a block back to the next output of exactly the same size.  :func:`release_memory` frees the
kept blocks; :func:`set_cache_limit` changes the cap (``0`` turns the cache off).
"""

from __future__ import annotations

import math
import operator
import os
import platform
import sys
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validation import param_error

__all__ = ["available", "get_num_threads", "release_memory", "set_cache_limit", "set_num_threads",
           "show_config", "try_compute"]

_KINDS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2}
_CACHE_MIN = 1 << 20
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
MAX_THREADS = 256          # the pool's size limit (larger requests use this many)
_MAX_CACHE_BYTES = 1 << 62  # larger cache limits mean "no limit" and are capped here


class _ParamTypeError(TypeError, ValueError):
    """A parameter of the wrong type: a TypeError, and a ValueError as these functions raised
    before (so existing ``except ValueError`` code keeps working)."""


def _env_warning(var: str, value: str, accepted: str, default: str) -> None:
    """One RuntimeWarning, reported at this module's import line (so that the one line of
    stderr that names ``var`` is the message itself)."""
    msg = (f"Ignoring the environment variable {var}={value!r}: it must be {accepted}. "
           f"Using {default} instead.")
    warnings.warn_explicit(msg, RuntimeWarning, filename=__file__, lineno=1,
                           module=__name__, registry=None)


def _env_flag(var: str) -> bool:
    """``1`` -> True; unset, empty or ``0`` -> False; anything else warns (False)."""
    raw = os.environ.get(var)
    if raw is None:
        return False
    val = raw.strip()
    if val in ("", "0"):
        return False
    if val == "1":
        return True
    _env_warning(var, raw, "0 or 1", "0")
    return False


_k: Any
try:
    from . import _tskernels as _k  # type: ignore[attr-defined,no-redef]  # compiled module, no stub
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _k = None
    _import_error: BaseException | None = exc
    if _env_flag("TEMPSCALE_REQUIRE_NATIVE"):
        raise ImportError(
            "TEMPSCALE_REQUIRE_NATIVE=1 but the compiled extension tempscale._native._tskernels "
            f"could not be imported ({exc}); rebuild with `pip install .` or "
            "`python setup.py build_ext --inplace`") from exc
else:
    _import_error = None
    _env_flag("TEMPSCALE_REQUIRE_NATIVE")  # only to warn about an unusable value

_DISABLED = _env_flag("TEMPSCALE_DISABLE_NATIVE")


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _default_threads() -> int:
    """``TEMPSCALE_NUM_THREADS`` when it is a positive integer, else the usable CPU count."""
    raw = os.environ.get("TEMPSCALE_NUM_THREADS")
    default = _cpu_count()
    if raw is None or not raw.strip():
        return default
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if n < 1:
        _env_warning("TEMPSCALE_NUM_THREADS", raw, "a positive integer",
                     f"the number of CPUs ({default})")
        return default
    return min(n, MAX_THREADS)


def _env_cache_bytes() -> int | None:
    """``TEMPSCALE_CACHE_MB`` in bytes, or None (unset or unusable: keep the default)."""
    raw = os.environ.get("TEMPSCALE_CACHE_MB")
    if raw is None or not raw.strip():
        return None
    try:
        mb = float(raw.strip())
    except ValueError:
        mb = math.nan
    if not (mb >= 0 and math.isfinite(mb)):
        _env_warning("TEMPSCALE_CACHE_MB", raw, "a non-negative number of MiB",
                     "the default (min(2048, RAM/8) MiB)")
        return None
    return int(min(mb * 2**20, _MAX_CACHE_BYTES))


def _env_isa() -> str | None:
    """``TEMPSCALE_ISA`` when it names an instruction set this CPU supports, else None."""
    raw = os.environ.get("TEMPSCALE_ISA")
    if raw is None or not raw.strip() or _k is None:
        return None
    name = raw.strip().lower()
    supported = list(_k.supported_isas())
    if name in ("best", "auto"):
        return "best"
    if name not in supported:
        what = ("one of " + ", ".join(repr(s) for s in supported + ["best"])
                + (" (the instruction sets this CPU supports)"))
        _env_warning("TEMPSCALE_ISA", raw, what, f"the best one ({supported[0]!r})")
        return None
    return name


def _count_param(value: object, param: str, func: str, *, lo: int, hi: int) -> int:
    """An integer >= lo (ValueError below it), capped at hi; a non-integer is a type error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        raise param_error(param, func, what, value, _ParamTypeError)
    n = operator.index(value)
    if n < lo:
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        raise param_error(param, func, what, value)
    return min(n, hi)


def available() -> bool:
    """Whether the compiled kernels are importable and enabled."""
    return _k is not None and not _DISABLED


def get_num_threads() -> int:
    """Number of threads the native kernels use for large inputs.

    The default is the number of CPUs this process may run on; ``TEMPSCALE_NUM_THREADS`` or
    :func:`set_num_threads` change it.  Inputs under about 64k elements always run on the
    calling thread.

    Examples
    --------
    >>> import tempscale
    >>> tempscale.get_num_threads() >= 1
    True
    """
    if _k is None:
        return 1
    return int(_k.get_num_threads())


def set_num_threads(n: int) -> int:
    """Set the number of threads of the native kernels; returns the previous value.

    Parameters
    ----------
    n : int
        A positive integer; values above ``MAX_THREADS`` (256) use 256.

    Raises
    ------
    ValueError
        ``n < 1``.
    TypeError
        ``n`` is not an integer (a float, ``bool``, string...); also a ``ValueError``.

    Examples
    --------
    >>> from tempscale import _native
    >>> old = _native.set_num_threads(1)
    >>> _native.get_num_threads()
    1
    >>> _ = _native.set_num_threads(old)
    """
    n = _count_param(n, "n", "set_num_threads", lo=1, hi=MAX_THREADS)
    old = get_num_threads()
    if _k is not None:
        _k.set_num_threads(n)
    return old


def release_memory() -> None:
    """Free the output blocks kept for reuse (see "Output memory" in the module docstring)."""
    if _k is not None:
        _k.release_memory()


def set_cache_limit(nbytes: int) -> None:
    """Cap, in bytes, of the kept output blocks; ``0`` disables the cache.

    ``nbytes`` is a non-negative integer (ValueError below 0, TypeError, also a ValueError, for a
    non-integer); values above 2**62 mean "no limit" and are capped there.
    """
    nbytes = _count_param(nbytes, "nbytes", "set_cache_limit", lo=0, hi=_MAX_CACHE_BYTES)
    if _k is not None:
        _k.set_cache_limit(nbytes)


def show_config(*, print_out: bool = True) -> dict[str, Any]:
    """Describe the native path: built or not, instruction set, threads, compiler.

    Returns
    -------
    dict
        Keys ``native`` (bool), ``isa`` (``"avx512f"``, ``"avx2"``, ``"baseline"`` or None),
        ``supported_isas``, ``num_threads``, ``compiler``, ``float16_kernels``,
        ``output_cache`` (cached bytes, limit, blocks), ``machine``, ``error`` (why the
        extension is missing, or None).

    Examples
    --------
    >>> import tempscale
    >>> cfg = tempscale.show_config(print_out=False)
    >>> sorted(cfg)[:3]
    ['compiler', 'error', 'float16_kernels']
    """
    cfg = {
        "native": available(),
        "isa": _k.isa() if _k is not None else None,
        "supported_isas": list(_k.supported_isas()) if _k is not None else [],
        "num_threads": get_num_threads(),
        "compiler": getattr(_k, "compiler", None),
        "float16_kernels": bool(getattr(_k, "has_float16", 0)),
        "output_cache": dict(_k.cache_info()) if _k is not None else None,
        "machine": platform.machine(),
        "error": None if _import_error is None else repr(_import_error),
    }
    if _DISABLED:
        cfg["error"] = "disabled by TEMPSCALE_DISABLE_NATIVE=1"
    if print_out:
        width = max(len(k) for k in cfg)
        for key, val in cfg.items():
            print(f"{key:<{width}}  {val}")
    return cfg


def try_compute(kind: str, x: NDArray[Any], temperature: float | NDArray[Any] | None, axis: int,
                mask: NDArray[Any] | None, out_dtype: np.dtype[Any]) -> NDArray[Any] | None:
    """Run ``kind`` natively, or return ``None`` when this case is not handled here.

    Parameters
    ----------
    kind : {"softmax", "log_softmax", "logsumexp"}
    x : numpy.ndarray
        float16, float32 or float64, any strides (read-only / unaligned / negative strides fine).
    temperature : float or numpy.ndarray
        Validated ``T >= 0`` (0 and inf allowed), or a real array broadcastable to the keepdims
        shape (``x.shape`` with 1 at ``axis``).  It is used as given, never narrowed to x's
        dtype: a float64 temperature with float32 / float16 ``x`` scales at double precision.
    axis : int
        Normalised, non-negative.
    mask : numpy.ndarray of bool or None
        Broadcastable to ``x``; ``False`` excludes an entry like a ``-inf`` logit.
    out_dtype : numpy dtype
        The result's dtype (float16/float32 for float16/float32 input, float64 for float64).

    Returns
    -------
    numpy.ndarray or None
        Same shape as ``x`` (``logsumexp``: ``x.shape`` without ``axis``).
    """
    if _k is None or _DISABLED or kind not in _KINDS:
        return None
    if type(x) is not np.ndarray or x.dtype not in _FLOATS or not x.dtype.isnative:
        return None
    try:
        out_dtype = np.dtype(out_dtype)
    except TypeError:
        return None
    if out_dtype not in _FLOATS or not out_dtype.isnative:
        return None
    if x.dtype == np.float64 and out_dtype != np.float64:
        return None
    if x.dtype != np.float64 and out_dtype == np.float64:
        return None
    nd = x.ndim
    if nd == 0 or nd > 32 or not isinstance(axis, (int, np.integer)) or not 0 <= axis < nd:
        return None
    if x.dtype == np.float16 and not _k.has_float16:
        return None
    if (isinstance(temperature, np.ndarray) and temperature.size == 1 and temperature.ndim <= nd
            and temperature.dtype.kind in "fiu"):
        temperature = float(temperature.reshape(-1)[0])  # exact for every float dtype here
    T: float | NDArray[Any]
    if isinstance(temperature, np.ndarray):
        kind_t = temperature.dtype.kind
        if kind_t not in "fiu" or temperature.dtype.itemsize > 8:
            return None  # bool, complex, long double...: the generic path decides
        if temperature.dtype not in (np.float32, np.float64) or not temperature.dtype.isnative:
            temperature = temperature.astype(np.float64)  # float16 / integers: exactly
        kshape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
        try:
            T = np.broadcast_to(temperature, kshape)
        except ValueError:
            return None
        T = np.broadcast_to(T, x.shape) if x.shape[axis] else T
    elif isinstance(temperature, (float, int, np.floating, np.integer)) and not isinstance(
            temperature, bool):
        T = float(temperature)
        if not T >= 0:  # NaN / negative: validation is the caller's job; stay generic
            return None
    else:
        return None
    if mask is not None:
        if type(mask) is not np.ndarray or mask.dtype != np.bool_:
            return None
        try:
            mask = np.broadcast_to(mask, x.shape)
        except ValueError:
            return None
    if kind == "logsumexp":
        out = np.empty(x.shape[:axis] + x.shape[axis + 1:], dtype=out_dtype)
        strides = out.strides[:axis] + (0,) + out.strides[axis:]
        view = np.lib.stride_tricks.as_strided(out, shape=x.shape, strides=strides, writeable=True)
    elif x.size * out_dtype.itemsize >= _CACHE_MIN:
        out = view = _k.empty(x.shape, out_dtype)
    else:
        out = view = np.empty(x.shape, dtype=out_dtype)
    if x.shape[axis] == 0 and isinstance(T, np.ndarray):
        T = 1.0  # no entries: the temperature is never read
    _k.compute(_KINDS[kind], x, T, mask, view, int(axis), 0)  # C: no NumPy FP-flag checks
    return out


def register_threadpoolctl() -> bool:
    """Let ``threadpoolctl.threadpool_limits`` control this library's thread pool.

    Called at import when threadpoolctl is importable; returns whether it registered.
    """
    if _k is None:
        return False
    try:
        import threadpoolctl
    except ImportError:
        return False
    register = getattr(threadpoolctl, "register", None)
    if register is None:  # threadpoolctl < 3.5
        return False
    global _REGISTERED
    if _REGISTERED:
        return True

    class TempscaleController(threadpoolctl.LibController):  # type: ignore[misc]  # untyped base
        user_api = "tempscale"
        internal_api = "tempscale"
        filename_prefixes = ("_tskernels",)

        # the loaded module's own functions, not threadpoolctl's ctypes handle (``self.dynlib``):
        # that one reopens the file at the library's path, a different copy (its own thread
        # count) once the file there was replaced, e.g. by a rebuild while this process runs
        def get_num_threads(self) -> int:
            return get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            if _k is not None:
                _k.set_num_threads(max(1, min(int(num_threads), MAX_THREADS)))

        def get_version(self) -> str:
            from .._version import __version__

            return __version__

    register(TempscaleController)
    _REGISTERED = True
    return True


_REGISTERED = False

if _k is not None:
    _k.set_num_threads(_default_threads())
    _cache_bytes = _env_cache_bytes()
    if _cache_bytes is not None:
        _k.set_cache_limit(_cache_bytes)
    _isa = _env_isa()
    if _isa is not None:
        _k.set_isa(_isa)
    if "threadpoolctl" in sys.modules:
        register_threadpoolctl()
