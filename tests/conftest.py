"""Shared fixtures: the ``xp`` fixture runs a test on every array library we promise."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

# JAX computes in float64 when asked (the references are float64); set before jax is imported.
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Without a GPU, Triton kernels (tests/test_triton.py, Liger-Kernel parity) run in Triton's
# interpreter on CPU tensors; Triton reads this when it is imported, so set it first.
if os.environ.get("TEMPSCALE_TEST_GPU") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (-p no:xdist) this hook is unknown
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one pytest-xdist worker per CPU this process may run
    on (``os.sched_getaffinity``, not psutil's physical cores, which are 1 on a 2-vCPU machine
    with hyper-threads), at most 8 (each worker imports torch, JAX and Triton);
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides it."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if env.isdigit():
        return int(env)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(usable or 1, 8))


BACKENDS = ["numpy", "array_api_strict", "torch", "jax"]
# On a machine with a CUDA GPU, TEMPSCALE_TEST_GPU=1 adds torch-on-CUDA and CuPy (JAX then
# runs on its default device, the GPU).  CI has no GPU; the device checks set this variable.
if os.environ.get("TEMPSCALE_TEST_GPU") == "1":
    BACKENDS += ["torch-cuda", "cupy"]


class _OnDevice:
    """A namespace whose ``asarray`` puts arrays on ``device`` (all else delegates)."""

    def __init__(self, xp, device):
        self._wrapped, self._device = xp, device

    def asarray(self, obj, **kwargs):
        kwargs.setdefault("device", self._device)
        return self._wrapped.asarray(obj, **kwargs)

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


def _namespace(name):
    if name == "numpy":
        import array_api_compat.numpy as xp
        return xp
    if name == "array_api_strict":
        xp = pytest.importorskip("array_api_strict")
        return xp
    if name == "torch":
        pytest.importorskip("torch")
        import array_api_compat.torch as xp
        return xp
    if name == "jax":
        pytest.importorskip("jax")
        import jax.numpy as xp
        return xp
    if name == "torch-cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        import array_api_compat.torch as xp
        return _OnDevice(xp, "cuda")
    if name == "cupy":
        pytest.importorskip("cupy")
        import array_api_compat.cupy as xp
        return xp
    raise AssertionError(name)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """An array namespace; tests build inputs with ``xp.asarray`` and compare via NumPy."""
    return _namespace(request.param)


def to_numpy(a) -> np.ndarray:
    if type(a).__module__.startswith("cupy"):
        a = a.get()
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
    if type(a).__module__.startswith("array_api_strict"):
        return np.from_dlpack(a)
    return np.asarray(a)


def tol(dtype) -> float:
    name = str(dtype).split(".")[-1]
    return {"float64": 1e-12, "float32": 3e-6, "float16": 2e-3, "bfloat16": 2e-2}.get(name, 1e-12)


def assert_close(actual, expected, *, xp=None, dtype=None, rtol=None, atol=None, shape=None):
    """Namespace, dtype and shape of ``actual``, then values within a dtype-aware tolerance."""
    if xp is not None:
        from tempscale._compat import array_namespace

        got_ns = array_namespace(actual)
        assert _same_library(got_ns, xp), f"result namespace {got_ns} is not {xp}"
        if getattr(xp, "_device", None) is not None:
            assert str(actual.device).startswith(xp._device), f"result on {actual.device}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    a = to_numpy(actual).astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if shape is not None:
        assert tuple(a.shape) == tuple(shape), f"shape {a.shape} != {shape}"
    else:
        assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    t = tol(actual.dtype)
    np.testing.assert_allclose(a, e, rtol=t if rtol is None else rtol,
                               atol=t if atol is None else atol, equal_nan=True)


def _same_library(a, b) -> bool:
    import array_api_compat

    a, b = getattr(a, "_wrapped", a), getattr(b, "_wrapped", b)
    for check in (array_api_compat.is_numpy_namespace, array_api_compat.is_torch_namespace,
                  array_api_compat.is_jax_namespace, array_api_compat.is_array_api_strict_namespace):
        if check(a) or check(b):
            return check(a) and check(b)
    return a is b


@pytest.fixture
def generic_path():
    """Run the test with every fast path off (native kernel, fused torch ops, fast sampling),
    so that the generic Array-API reference is what the test exercises."""
    from tempscale._config import config

    with config(native=False, torch_fused=False, fast_sampling=False):
        yield


INF = math.inf


@pytest.fixture
def cli_tmp(tmp_path, monkeypatch):
    """The command-line tests' working folder: each test in its own empty ``tmp_path``
    (tests/_cli_helpers.py, ``in_tmp_folder``)."""
    from ._cli_helpers import in_tmp_folder

    yield from in_tmp_folder(tmp_path, monkeypatch)


#: the Dask cluster and client of this process while tests that use them run (see dask_client)
_DASK: dict = {}


@pytest.fixture
def dask_client():
    """A real dask.distributed cluster: 2 worker processes, 1 thread each.

    Started by the first test that asks for it and shared by the tests that follow it directly;
    closed as soon as the next test does not ask for it (pytest_runtest_teardown below): idle,
    its two worker processes and the scheduler would poll each other for the rest of the session
    (a few per cent of a CPU each).  The Dask test files are one xdist_group, so one worker runs
    them one after another on one cluster."""
    distributed = pytest.importorskip("distributed")
    if "client" not in _DASK:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", memory_limit="1GiB")
        _DASK["cluster"], _DASK["client"] = cluster, distributed.Client(cluster)
    return _DASK["client"]


def _close_dask() -> None:
    client, cluster = _DASK.pop("client", None), _DASK.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)  # the test's own fixtures first
    finally:
        if _DASK and "dask_client" not in getattr(nextitem, "fixturenames", ()):
            _close_dask()


def pytest_sessionfinish(session):
    _close_dask()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """``--dist loadgroup`` on pytest >= 9.2: pytest-xdist (3.8) groups a test marked
    ``xdist_group(name)`` by appending ``@name`` to its node id through ``item._nodeid``, which
    pytest 9.2 no longer reads (the id lives in ``item._id``, a ``NodeId``); without this, the
    groups are silently spread over the workers (two Dask clusters, two browsers).  Does
    nothing where xdist already did it, or where the id cannot be set."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers only
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if not names:
            continue
        nodeid = item.nodeid
        suffix = "@" + "_".join(names)
        if nodeid.endswith(suffix):
            continue  # pytest-xdist did it (pytest < 9.2)
        node_id = getattr(item, "_id", None)
        if hasattr(type(node_id), "parse"):
            item._id = type(node_id).parse(nodeid + suffix)
