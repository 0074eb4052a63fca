"""Build script: only the compiled core lives here; all metadata is in pyproject.toml.

The C extension ``tempscale._native._tskernels`` (multi-threaded softmax kernels for NumPy) needs
only a C compiler and NumPy's headers.  It is built with ``-O3`` and *per-function* target
attributes (AVX-512 / AVX2+FMA / baseline chosen at run time), never ``-march=native`` and never
``-ffast-math`` (the numerical contract relies on inf and NaN), so one wheel runs on any x86-64
and the same source builds on aarch64.

The extension is optional: if it cannot be compiled, the install still succeeds and tempscale
uses its pure Array-API path.  Build-time environment:

``TEMPSCALE_REQUIRE_NATIVE=1``   a failed build is an error (CI and the wheels set it)
``TEMPSCALE_NO_NATIVE=1``        do not build the extension
``TEMPSCALE_BENCH_KERNELS=1``    also compile the benchmark-only kernels (``exp_pass``, the
                                 machine limit of benchmarks/bench_softmax.py, and streaming-store
                                 softmax); never in released wheels
``TEMPSCALE_NATIVE_CFLAGS`` / ``TEMPSCALE_NATIVE_LDFLAGS``   extra flags (e.g. sanitizers)
``TEMPSCALE_BUILD_ONLY=name``    build only that extension (``_tskernels`` or ``_tsmoments``), for
                                 development

The sources are listed in src/tempscale/_native/_tskernels.c (one concern per file); the C test
harness tests/c/ builds the same kernels without Python (see .ci/cross.sh).
"""

import os
import shlex
import sys

from setuptools import Extension, setup

NATIVE = "src/tempscale/_native"
# the extension's translation units (Python-free ones first: tests/c/ builds those alone)
SOURCES = ["_dispatch", "_reference", "_job", "_pool", "_parse", "_memcache", "_tskernels"]
HEADERS = ["_common", "_kernels", "_kern_impl", "_ref_impl", "_job", "_pool", "_py"]


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
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if os.environ.get("TEMPSCALE_BENCH_KERNELS") == "1":
        macros.append(("TS_BENCH_KERNELS", "1"))
    exts = [
        Extension(
            "tempscale._native._tskernels",
            sources=[f"{NATIVE}/{name}.c" for name in SOURCES],
            depends=[f"{NATIVE}/{name}.h" for name in HEADERS],
            include_dirs=[_NumpyInclude()],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=["-pthread", "-lm"] + ldflags,
            optional=os.environ.get("TEMPSCALE_REQUIRE_NATIVE") != "1",
        )
    ]
    # the calibration moments kernel (one fused pass per Newton step of the temperature fit)
    if os.path.exists(f"{NATIVE}/_moments.c"):
        exts.append(Extension(
            "tempscale._native._tsmoments",
            sources=[f"{NATIVE}/_moments.c"],
            include_dirs=[_NumpyInclude()],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=["-pthread", "-lm"] + ldflags,
            optional=os.environ.get("TEMPSCALE_REQUIRE_NATIVE") != "1",
        ))
    only = os.environ.get("TEMPSCALE_BUILD_ONLY")
    if only:
        exts = [e for e in exts if e.name.rsplit(".", 1)[-1] == only]
    return exts


setup(ext_modules=_extensions())
