"""The one configuration object for the library's path switches.

Every computation goes validate -> native kernel -> fused backend op -> generic Array-API code;
the switches below turn the fast paths off (to compare them with the generic reference, or to
work around a problem) without touching the public signatures::

    >>> import numpy as np
    >>> import tempscale
    >>> before = tempscale.get_config()
    >>> with tempscale.config(native=False):          # the generic path, on NumPy too
    ...     p = tempscale.softmax(np.array([1.0, 2.0]))
    >>> tempscale.get_config() == before              # restored on leaving the block
    True

The settings live in a :class:`contextvars.ContextVar`, so a ``with tempscale.config(...)``
block affects only the thread (or asyncio task) that entered it; new threads start from the
defaults.  The defaults come from the environment, read once at import:

``TEMPSCALE_DISABLE_NATIVE=1``        ``native=False`` (the compiled kernel is never used)
``TEMPSCALE_DISABLE_TORCH_FUSED=1``   ``torch_fused=False``
``TEMPSCALE_DISABLE_FAST_SAMPLING=1`` ``fast_sampling=False``
``TEMPSCALE_DISABLE_SAMPLING_NUMPY_VIEWS=1`` ``sampling_numpy_views=False``
``TEMPSCALE_DISABLE_JAX_FAST=1``      ``jax_fast=False``
``TEMPSCALE_DISABLE_TRITON=1``        ``triton=False``
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from contextvars import ContextVar

from ._validation import param_error

__all__ = ["Config", "config", "get_config", "current"]


@dataclasses.dataclass(frozen=True)
class Config:
    """The path switches in effect (immutable; :func:`config` makes changed copies).

    Attributes
    ----------
    native : bool
        Use the compiled CPU kernel for NumPy float arrays and CPU torch tensors.
    torch_fused : bool
        Use torch's fused ops for torch tensors (softmax, log_softmax, logsumexp).
    fast_sampling : bool
        Use the sort-free candidate selection and blocked draws of ``warp`` and ``sample``.
    sampling_numpy_views : bool
        On the fast sampling path, CPU torch tensors select their candidates through zero-copy
        NumPy views (off: the torch-operations path that GPU tensors take).
    jax_fast : bool
        JAX arrays take the lean path with a closed-form ``jax.custom_vjp`` backward.
    triton : bool
        CUDA torch tensors take tempscale's Triton kernels (when ``triton`` is installed).
    """

    native: bool = True
    torch_fused: bool = True
    fast_sampling: bool = True
    sampling_numpy_views: bool = True
    jax_fast: bool = True
    triton: bool = True


def _env_off(name: str) -> bool:
    """Whether the environment variable ``name`` is set to 1 (or true/yes/on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _defaults() -> Config:
    return Config(native=not _env_off("TEMPSCALE_DISABLE_NATIVE"),
                  torch_fused=not _env_off("TEMPSCALE_DISABLE_TORCH_FUSED"),
                  fast_sampling=not _env_off("TEMPSCALE_DISABLE_FAST_SAMPLING"),
                  sampling_numpy_views=not _env_off("TEMPSCALE_DISABLE_SAMPLING_NUMPY_VIEWS"),
                  jax_fast=not _env_off("TEMPSCALE_DISABLE_JAX_FAST"),
                  triton=not _env_off("TEMPSCALE_DISABLE_TRITON"))


# Config is a frozen dataclass: an immutable default, which B039 cannot see
_CURRENT: ContextVar[Config] = ContextVar("tempscale_config", default=_defaults())  # noqa: B039


def current() -> Config:
    """The configuration in effect here (one context-variable lookup: cheap in hot paths)."""
    return _CURRENT.get()


def get_config() -> dict[str, bool]:
    """The path switches in effect, as a dict (the fields of :func:`config`).

    Examples
    --------
    >>> import tempscale
    >>> sorted(tempscale.get_config())
    ['fast_sampling', 'jax_fast', 'native', 'sampling_numpy_views', 'torch_fused', 'triton']
    """
    return dataclasses.asdict(current())


def _check(value: bool | None, name: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise param_error(name, "config", "a bool or None (unchanged)", value, TypeError)
    return value


@contextlib.contextmanager
def config(*, native: bool | None = None, torch_fused: bool | None = None,
           fast_sampling: bool | None = None,
           sampling_numpy_views: bool | None = None, jax_fast: bool | None = None,
           triton: bool | None = None) -> Iterator[Config]:
    """Switch the library's fast paths on or off inside a ``with`` block.

    Parameters
    ----------
    native : bool, optional
        The compiled CPU kernel (NumPy float arrays, CPU torch tensors).
    torch_fused : bool, optional
        torch's fused softmax / log_softmax / logsumexp for torch tensors.
    fast_sampling : bool, optional
        The sort-free candidate selection and blocked draws of :func:`tempscale.warp` and :func:`tempscale.sample`.
    sampling_numpy_views : bool, optional
        CPU torch tensors on the fast sampling path go through zero-copy NumPy views.
    jax_fast : bool, optional
        The lean JAX path (closed-form ``custom_vjp`` backward) for JAX arrays.
    triton : bool, optional
        tempscale's Triton kernels for CUDA torch tensors.

    ``None`` leaves a switch as it is.  A function compiled with ``torch.compile`` (or traced
    by ``jax.jit``) keeps the switches in effect when it was compiled.  The results are the
    same either way (the generic path is the reference the fast ones are tested against); only
    the speed changes.  Thread-safe and
    asyncio-safe: the change is seen only by the code running in this context.

    Yields
    ------
    Config
        The configuration in effect inside the block.

    Examples
    --------
    >>> import tempscale
    >>> before = tempscale.get_config()
    >>> with tempscale.config(native=False, torch_fused=False) as cfg:
    ...     cfg.native, tempscale.get_config()["torch_fused"]
    (False, False)
    >>> tempscale.get_config() == before
    True
    """
    changes = {name: v for name, v in (("native", _check(native, "native")),
                                       ("torch_fused", _check(torch_fused, "torch_fused")),
                                       ("fast_sampling", _check(fast_sampling, "fast_sampling")),
                                       ("sampling_numpy_views",
                                        _check(sampling_numpy_views, "sampling_numpy_views")),
                                       ("jax_fast", _check(jax_fast, "jax_fast")),
                                       ("triton", _check(triton, "triton")))
               if v is not None}
    new = dataclasses.replace(current(), **changes)
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)
