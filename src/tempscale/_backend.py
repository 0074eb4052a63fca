"""Backend helpers: random numbers per library, stop-gradient, dtypes, torch <-> NumPy views.

The one place where the library asks an array library for something the Array API does not
define.  Like the backend-detection module, nothing here imports torch or jax at import time:
a backend is imported only when its arrays are passed in.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _compat
from ._validation import param_error

__all__ = [
    "check_seed",
    "uniform",
    "gumbel",
    "is_jax_key",
    "stop_gradient",
    "has_autodiff",
    "index_dtype",
    "widest_float",
    "numpy_view",
    "to_torch",
    "torch_exp",
]


# --------------------------------------------------------------------------------------------
# random numbers
# --------------------------------------------------------------------------------------------
def check_seed(seed: Any, rng: Any, func: str) -> None:
    """``seed``: None or a non-negative int, and not together with ``rng``."""
    if seed is not None and rng is not None:
        raise param_error("seed", func, "None when rng is given", seed)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise param_error("seed", func, "a non-negative int or None", seed,
                              ValueError if isinstance(seed, numbers.Integral) else TypeError)


def uniform(xp: Any, shape: tuple[int, ...], dtype: Any, like: Any, seed: Any, rng: Any,
            func: str) -> Any:
    """Uniform numbers in ``[0, 1)`` of ``shape`` from the library's own generator.

    ``rng`` is the library's generator (a :class:`numpy.random.Generator`, a
    :class:`torch.Generator` on ``like``'s device, or a JAX PRNG key); with ``seed`` a fresh one
    is made; with neither, NumPy and torch use fresh entropy / the global torch generator and
    JAX a key from OS entropy.  The result is on ``like``'s namespace and device.
    """
    check_seed(seed, rng, func)
    if _compat.is_torch_namespace(xp):
        import torch

        dev = like.device
        if rng is not None and not isinstance(rng, torch.Generator):
            raise param_error("rng", func, "a torch.Generator for torch tensors", type(rng).__name__,
                              TypeError)
        tgen: Any = rng
        if seed is not None:
            tgen = torch.Generator(device=dev)
            tgen.manual_seed(int(seed))
        return torch.rand(shape, generator=tgen, dtype=dtype, device=dev)
    if _compat.is_jax_namespace(xp):
        import jax

        key = rng
        if key is None:
            s = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
            key = jax.random.key(s)
        elif not is_jax_key(key):
            raise param_error("rng", func, "a JAX PRNG key for JAX arrays", type(rng).__name__, TypeError)
        return jax.random.uniform(key, shape, dtype=dtype)
    gen: Any = rng
    if gen is None:
        gen = np.random.default_rng(seed)
    elif not isinstance(gen, np.random.Generator):
        raise param_error("rng", func, "a numpy.random.Generator", type(rng).__name__, TypeError)
    np_dtype = np.float32 if _compat.float_bits(xp, dtype) == 32 else np.float64
    u = gen.random(shape, dtype=np_dtype)
    return _compat.as_array(u, xp, like=like)


def gumbel(xp: Any, shape: tuple[int, ...], dtype: Any, like: Any, seed: Any, rng: Any,
           func: str) -> Any:
    """Standard Gumbel noise ``-log(-log u)`` with ``u`` in ``[tiny, 1)``: always finite."""
    u = uniform(xp, shape, dtype, like, seed, rng, func)
    tiny = float(xp.finfo(dtype).smallest_normal)
    u = xp.where(u < tiny, xp.full((), tiny, dtype=u.dtype, device=_compat.device(u)), u)
    return -xp.log(-xp.log(u))


def is_jax_key(key: Any) -> bool:
    """Whether ``key`` is a JAX PRNG key (typed, or the legacy ``uint32[2]``)."""
    import jax

    if not isinstance(key, jax.Array):
        return False
    if jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
        return True
    return bool(key.dtype == np.uint32 and key.shape == (2,))


# --------------------------------------------------------------------------------------------
# gradients and dtypes
# --------------------------------------------------------------------------------------------
def stop_gradient(xp: Any, y: Any) -> Any:
    """The library's stop-gradient of ``y`` (``y`` itself where there are no gradients)."""
    if _compat.is_torch_namespace(xp):
        return y.detach()
    if _compat.is_jax_namespace(xp):
        import jax

        return jax.lax.stop_gradient(y)
    return y


def has_autodiff(xp: Any) -> bool:
    """Whether the library differentiates through array operations (torch, JAX)."""
    return bool(_compat.is_torch_namespace(xp) or _compat.is_jax_namespace(xp))


def index_dtype(xp: Any) -> Any:
    """The index dtype: int64, or int32 where JAX runs without x64."""
    if _compat.is_jax_namespace(xp):
        import jax

        return xp.int64 if jax.config.values["jax_enable_x64"] else xp.int32
    return xp.int64


def widest_float(xp: Any) -> Any:
    """The widest float of the library: float64, or float32 where JAX runs without x64."""
    if _compat.is_jax_namespace(xp):
        import jax

        return xp.float64 if jax.config.values["jax_enable_x64"] else xp.float32
    return xp.float64


# --------------------------------------------------------------------------------------------
# CPU torch tensors as NumPy arrays
# --------------------------------------------------------------------------------------------
def numpy_view(t: Any) -> Any:
    """A zero-copy NumPy view of a CPU tensor (detached), or ``t`` when it is not a tensor."""
    if isinstance(t, np.ndarray) or not hasattr(t, "detach"):
        return t
    return t.detach().numpy()


def to_torch(v: Any) -> Any:
    """A NumPy array as a CPU tensor (zero-copy when it is writeable and C-contiguous)."""
    import torch

    if not isinstance(v, np.ndarray):
        return v
    if not v.flags.writeable or not v.flags.c_contiguous:
        v = np.array(v)
    return torch.from_numpy(v)


def torch_exp(z: np.ndarray) -> np.ndarray:
    """``exp`` of a NumPy array computed by torch (element for element torch's CPU ``exp``)."""
    import torch

    out: np.ndarray = torch.exp(torch.from_numpy(np.ascontiguousarray(z))).numpy()
    return out
