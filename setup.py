"""Build script: only the compiled core lives here; all metadata is in pyproject.toml.

The C extension ``tempscale._native._tskernels`` (multi-threaded softmax kernels for NumPy) needs
only a C compiler and NumPy's headers.  It is built with ``-O3`` and *per-function* target
attributes (AVX-512 / AVX2+FMA / baseline chosen at run time), never ``-march=native`` and never
``-ffast-math`` (the numerical contract relies on inf and NaN), so one wheel runs on any x86-64
and the same source builds on aarch64.

The extension is optional: if it cannot be compiled, the install still succeeds and tempscale
uses its pure Array-API path.  Set ``TEMPSCALE_REQUIRE_NATIVE=1`` to make a failed build an
error (CI does), and ``TEMPSCALE_NATIVE_CFLAGS`` to add flags (e.g. sanitizers).
"""

import os
import shlex
import sys

from setuptools import Extension, setup


class _NumpyInclude:
    """Resolve numpy's include directory lazily (numpy is a build requirement)."""

    def __fspath__(self):
        import numpy

        return numpy.get_include()

    def __str__(self):
        return self.__fspath__()


def _extensions():
    if os.environ.get("TEMPSCALE_NO_NATIVE") == "1":
        return []
    cflags = ["-O3", "-std=gnu11", "-fno-math-errno", "-fvisibility=hidden", "-Wno-psabi"]
    if sys.platform == "win32":  # pragma: no cover - MSVC has no GCC vector extensions
        return []
    cflags += shlex.split(os.environ.get("TEMPSCALE_NATIVE_CFLAGS", ""))
    ldflags = shlex.split(os.environ.get("TEMPSCALE_NATIVE_LDFLAGS", ""))
    return [
        Extension(
            "tempscale._native._tskernels",
            sources=["src/tempscale/_native/_tskernels.c"],
            depends=["src/tempscale/_native/_kern_impl.h"],
            include_dirs=[_NumpyInclude()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=cflags,
            extra_link_args=["-pthread", "-lm"] + ldflags,
            optional=os.environ.get("TEMPSCALE_REQUIRE_NATIVE") != "1",
        )
    ]


setup(ext_modules=_extensions())
