"""The argument layer (tempscale._args) and the configuration object (tempscale._config)."""

from __future__ import annotations

import asyncio
import math
import threading
import warnings

import numpy as np
import pytest

from tempscale import _args as A
from tempscale import _config

from .conftest import to_numpy


# --------------------------------------------------------------------------------------------
# temperatures
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, want", [(0, 0.0), (0.5, 0.5), (np.float32(2.0), 2.0),
                                         (np.array(3.0), 3.0), (math.inf, math.inf),
                                         (10**400, math.inf)])
def test_check_temperature_accepts(value, want):
    assert A.check_temperature(value, "f") == want


@pytest.mark.parametrize("value, exc", [(-1.0, ValueError), (math.nan, ValueError),
                                        ("hot", TypeError), (True, TypeError), (None, TypeError),
                                        (-(10**400), ValueError), (1 + 2j, TypeError)])
def test_check_temperature_refuses(value, exc):
    with pytest.raises(exc, match=r"The 'temperature' parameter of f must be a float in \[0, inf\]"):
        A.check_temperature(value, "f")


@pytest.mark.parametrize("value", [0.0, math.inf])
def test_check_temperature_without_edges(value):
    with pytest.raises(ValueError, match=r"'tau' parameter of g must be a float in \(0, inf\)"):
        A.check_temperature(value, "g", param="tau", edges=False)
    assert A.check_temperature(0.25, "g", edges=False) == 0.25


def test_check_temperatures():
    assert A.check_temperatures(2, "p") == (2.0,)
    assert A.check_temperatures([0, 1.5, np.inf], "p") == (0.0, 1.5, math.inf)
    assert A.check_temperatures(np.array([[1.0], [2.0]]), "p") == (1.0, 2.0)
    for bad, exc in (([], ValueError), ([1.0, -1.0], ValueError), ([1.0, math.nan], ValueError),
                     ("hot", TypeError), (["a"], TypeError), (True, TypeError)):
        with pytest.raises(exc, match="'temperatures' parameter of p must be a non-empty sequence"):
            A.check_temperatures(bad, "p")
    with pytest.raises(ValueError, match="at most 3 temperatures. Got '4 temperatures'"):
        A.check_temperatures([1, 2, 3, 4], "p", limit=3)


def test_row_temperature_shapes_and_dtypes(xp):
    x = xp.asarray(np.zeros((2, 3, 4)), dtype=xp.float32)
    assert A.row_temperature(0.5, "f", like=x, axis=1) == 0.5
    # batch shape, keepdims shape, broadcastable, 0-d: all in keepdims form (2, 1, 4)
    for t in (np.ones((2, 4)), np.ones((2, 1, 4)), np.ones((1, 4)), np.ones((2, 1, 1)),
              np.array(2.0)):
        T = A.row_temperature(xp.asarray(t, dtype=xp.float32), "f", like=x, axis=1)
        assert tuple(T.shape) == (2, 1, 4)
        assert T.dtype == xp.float32
        np.testing.assert_array_equal(to_numpy(T), np.broadcast_to(
            t.reshape((1, 1, 1)) if t.ndim == 0 else
            (t[:, None, :] if t.ndim == 2 and t.shape == (2, 4) else
             (t[None] if t.ndim == 2 else t)), (2, 1, 4)))
    # never narrowed: float64 T with a float32 compute dtype stays float64
    if hasattr(xp, "float64"):
        T = A.row_temperature(xp.asarray(np.ones((2, 4)), dtype=xp.float64), "f", like=x, axis=1,
                              dtype=xp.float32)
        assert T.dtype == xp.float64
    # narrower T is widened to the compute dtype; integers become float64 where available
    T = A.row_temperature(xp.asarray(np.ones((2, 4)), dtype=xp.float32), "f", like=x, axis=1,
                          dtype=xp.float64)
    assert T.dtype == xp.float64
    T = A.row_temperature(xp.asarray(np.ones((2, 4), dtype=np.int32)), "f", like=x, axis=1)
    assert xp.isdtype(T.dtype, "real floating")


def test_row_temperature_refuses(xp):
    x = xp.asarray(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"of softmax must be a float in \[0, inf\] or an array of "
                                         r"per-row temperatures. Got -2.0 instead"):
        A.row_temperature(xp.asarray([1.0, -2.0, 3.0]), "softmax", like=x, axis=-1)
    with pytest.raises(ValueError, match="Got nan instead"):
        A.row_temperature(xp.asarray([1.0, math.nan, 3.0]), "softmax", like=x, axis=-1)
    with pytest.raises(ValueError, match=r"per-row temperatures of shape \(3,\) or \(3, 1\)"):
        A.row_temperature(xp.asarray([1.0, 2.0]), "softmax", like=x, axis=-1)
    with pytest.raises(TypeError, match="an array of dtype"):
        A.row_temperature(xp.asarray([True, False, True]), "softmax", like=x, axis=-1)
    with pytest.raises(TypeError, match="Got 'hot' instead"):
        A.row_temperature("hot", "softmax", like=x, axis=-1)
    with pytest.raises(ValueError, match=r"\(0, inf\).*Got 0.0 instead"):
        A.row_temperature(xp.asarray([1.0, 0.0, 3.0]), "kd_loss", like=x, axis=-1, edges=False)
    with pytest.raises(ValueError, match="a scalar when axis=None"):
        A.row_temperature(xp.asarray([1.0, 2.0]), "softmax", like=xp.reshape(x, (-1,)), axis=0,
                          flat=True)


def test_row_param(xp):
    x = xp.asarray(np.zeros((3, 5)), dtype=xp.float32)
    assert A.row_param(None, "sample", param="top_p", like=x, axis=-1, lo=0, hi=1) is None
    assert A.row_param(np.float64(0.5), "sample", param="top_p", like=x, axis=-1, lo=0, hi=1) == 0.5
    assert A.row_param(3.0, "sample", param="top_k", like=x, axis=-1, lo=0, hi=math.inf,
                       integer=True) == 3
    p = A.row_param(xp.asarray([0.1, 0.5, 1.0]), "sample", param="top_p", like=x, axis=-1,
                    lo=0, hi=1, lo_open=True)
    assert tuple(p.shape) == (3, 1) and p.dtype == xp.float32
    k = A.row_param(xp.asarray([1, 2, 3]), "sample", param="top_k", like=x, axis=-1, lo=0,
                    hi=math.inf, integer=True)
    assert tuple(k.shape) == (3, 1) and xp.isdtype(k.dtype, "integral")
    with pytest.raises(ValueError, match="'top_p' parameter of sample must be a float in "
                                         r"\(0, 1\].*Got 0.0 instead"):
        A.row_param(xp.asarray([0.1, 0.0, 1.0]), "sample", param="top_p", like=x, axis=-1, lo=0,
                    hi=1, lo_open=True)
    with pytest.raises(ValueError, match="Got 1.5 instead"):
        A.row_param(1.5, "sample", param="top_p", like=x, axis=-1, lo=0, hi=1)
    with pytest.raises(TypeError, match="'top_k' parameter of sample"):
        A.row_param(xp.asarray([1.0, 2.0, 3.0]), "sample", param="top_k", like=x, axis=-1, lo=0,
                    hi=math.inf, integer=True)
    with pytest.raises(ValueError, match="Got -1 instead"):
        A.row_param(xp.asarray([1, -1, 3]), "sample", param="top_k", like=x, axis=-1, lo=0,
                    hi=math.inf, integer=True)


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------
def test_entry_mask(xp):
    x = xp.asarray(np.zeros((2, 3)))
    assert A.entry_mask(None, x, "softmax") is None
    m = A.entry_mask(xp.asarray([True, False, True]), x, "softmax")
    assert tuple(m.shape) == (2, 3) and m.dtype == xp.bool
    np.testing.assert_array_equal(to_numpy(m), [[True, False, True]] * 2)
    # 0/1 integers are read as booleans
    m = A.entry_mask(xp.asarray([1, 0, 1]), x, "softmax")
    np.testing.assert_array_equal(to_numpy(m), [[True, False, True]] * 2)
    m = A.entry_mask([[1, 0, 1], [0, 1, 1]], x, "softmax")  # a list is read as NumPy
    assert m.dtype == xp.bool
    with pytest.raises(ValueError, match="0/1 integers. Got 2 instead"):
        A.entry_mask(xp.asarray([1, 2, 0]), x, "softmax")
    with pytest.raises(TypeError, match="'mask' parameter of softmax must be a boolean array"):
        A.entry_mask(xp.asarray([1.0, 0.0, 1.0]), x, "softmax")
    # a mask never enlarges the input
    with pytest.raises(ValueError, match=r"broadcastable to the input's shape \(2, 3\)"):
        A.entry_mask(xp.asarray(np.ones((3, 2, 3), dtype=bool)), x, "softmax")
    with pytest.raises(ValueError, match="broadcastable"):
        A.entry_mask(xp.asarray(np.ones((4,), dtype=bool)), x, "softmax")


def test_row_where(xp):
    like = xp.asarray(np.zeros((2, 3, 5)))
    w = A.row_where(xp.asarray([True, False, True]), "kd_loss", like=like, batch_shape=(2, 3))
    assert tuple(w.shape) == (2, 3)
    assert A.row_where(None, "kd_loss", like=like, batch_shape=(2, 3)) is None
    with pytest.raises(ValueError, match=r"'where' parameter of kd_loss must be broadcastable to "
                                         r"the row shape \(2, 3\)"):
        A.row_where(xp.asarray(np.ones((2, 3, 5), dtype=bool)), "kd_loss", like=like,
                    batch_shape=(2, 3))
    with pytest.raises(TypeError, match="a boolean array of rows"):
        A.row_where(xp.asarray([0.5, 1.0, 0.0]), "kd_loss", like=like, batch_shape=(2, 3))


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
def test_labels(xp):
    like = xp.asarray(np.zeros((4, 3)))
    y = A.labels(xp.asarray([0, 2, 1, 1]), "nll", like=like, n_classes=3, batch_shape=(4,))
    assert xp.isdtype(y.dtype, "integral")
    np.testing.assert_array_equal(to_numpy(y), [0, 2, 1, 1])
    y = A.labels([[0.0], [2.0], [1.0], [1.0]], "nll", like=like, n_classes=3, batch_shape=(4,))
    np.testing.assert_array_equal(to_numpy(y), [0, 2, 1, 1])
    y = A.labels(np.array([True, False, True, True]), "nll", like=like, n_classes=2)
    np.testing.assert_array_equal(to_numpy(y), [1, 0, 1, 1])
    with pytest.raises(IndexError, match=r"class indices in \[0, 2\]. Got 3 instead"):
        A.labels(xp.asarray([0, 3, 1, 1]), "nll", like=like, n_classes=3)
    with pytest.raises(IndexError, match="Got 1e\\+300 instead"):  # the value received
        A.labels(np.array([0.0, 1e300, 1.0, 1.0]), "nll", like=like, n_classes=3)
    with pytest.raises(TypeError, match=r"integer class indices \(whole numbers\). Got 1.5"):
        A.labels(np.array([0.0, 1.5, 1.0, 1.0]), "nll", like=like, n_classes=3)
    with pytest.raises(TypeError, match="Got nan"):
        A.labels(np.array([0.0, math.nan, 1.0, 1.0]), "nll", like=like, n_classes=3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        A.labels(xp.asarray([0, 1]), "nll", like=like, n_classes=3, batch_shape=(4,))
    # ignore_index rows are not range-checked; range_error picks the exception
    y = A.labels(xp.asarray([0, -100, 1, 2]), "kd_loss", like=like, n_classes=3, ignore_index=-100)
    np.testing.assert_array_equal(to_numpy(y), [0, -100, 1, 2])
    with pytest.raises(ValueError, match="or ignore_index=-100. Got -1"):
        A.labels(xp.asarray([0, -1, 1, 2]), "kd_loss", like=like, n_classes=3, ignore_index=-100,
                 range_error=ValueError)


def test_labels_without_like_is_numpy():
    y = A.labels([0, 1, 1], "nll", like=None, n_classes=2)
    assert isinstance(y, np.ndarray) and y.dtype.kind in "iu"


# --------------------------------------------------------------------------------------------
# dtype policy, conversion
# --------------------------------------------------------------------------------------------
def test_float_dtypes(xp):
    if hasattr(xp, "float16"):  # array-api-strict has no float16
        x16 = xp.asarray([1.0], dtype=xp.float16)
        assert A.float_dtypes(xp, x16, None, "softmax") == (xp.float32, xp.float16)
    x32 = xp.asarray([1.0], dtype=xp.float32)
    assert A.float_dtypes(xp, x32, None, "softmax") == (xp.float32, xp.float32)
    xi = xp.asarray([1, 2])
    compute, out = A.float_dtypes(xp, xi, None, "softmax")
    assert xp.isdtype(out, "real floating") and compute == out
    with pytest.raises(TypeError, match="'dtype' parameter of softmax must be a real floating"):
        A.float_dtypes(xp, x32, xp.int32, "softmax")


def test_work_dtype(xp):
    x = xp.asarray([1.0], dtype=xp.float32)
    wd = A.work_dtype(xp, x)
    assert wd in (xp.float32, xp.float64)
    if hasattr(xp, "float64") and A.has_float64(xp, x):
        assert wd == xp.float64


def test_to_numpy_and_coerce(xp):
    a = xp.asarray([[1.0, 2.0]])
    n = A.to_numpy(a)
    assert isinstance(n, np.ndarray)
    np.testing.assert_array_equal(n, [[1.0, 2.0]])
    assert A.coerce(a) is a or isinstance(A.coerce(a), np.ndarray)
    assert isinstance(A.coerce([1, 2]), np.ndarray)
    assert A.coerce(None) is None and A.coerce(2.0) == 2.0

    class HasArray:
        def __array__(self, dtype=None, copy=None):
            v = np.arange(3.0)
            v.flags.writeable = False
            return v

    c = A.coerce(HasArray())
    assert isinstance(c, np.ndarray) and c.flags.writeable


def test_to_numpy_torch_bfloat16_and_grad():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, dtype=torch.bfloat16, requires_grad=True)
    n = A.to_numpy(t)
    assert n.dtype == np.float32 and n.tolist() == [1.0, 1.0]


def test_binary_columns(xp):
    z = xp.asarray([1.0, -2.0])
    got = A.binary_columns(z)
    np.testing.assert_array_equal(to_numpy(got), [[0.0, 1.0], [0.0, -2.0]])
    got = A.binary_columns(xp.asarray([[0.25], [1.0]]), input="probabilities")
    np.testing.assert_array_equal(to_numpy(got), [[0.75, 0.25], [0.0, 1.0]])
    two = xp.asarray([[0.25, 0.75]])
    assert A.binary_columns(two) is two
    np.testing.assert_array_equal(to_numpy(A.binary_columns([0.5, 2.0])), [[0, 0.5], [0, 2.0]])


def test_looks_like_probabilities(xp):
    assert A.looks_like_probabilities(xp.asarray([[0.2, 0.8], [0.5, 0.5]]))
    assert not A.looks_like_probabilities(xp.asarray([[0.2, 0.9], [0.5, 0.5]]))
    assert not A.looks_like_probabilities(xp.asarray([[2.0, -1.0]]))
    assert not A.looks_like_probabilities(xp.asarray([0.2, 0.8]))       # one row: ambiguous
    assert not A.looks_like_probabilities(xp.asarray([[1.0], [1.0]]))   # one column
    big = np.full((2000, 4), 0.25)
    big[1999] = [2.0, -1.0, 0.0, 0.0]  # outside the first sample: the full check finds it
    assert not A.looks_like_probabilities(big)


def test_check_input():
    assert A.check_input("logits", "nll") == "logits"
    assert A.check_input("probabilities", "nll") == "probabilities"
    with pytest.raises(ValueError, match="'input' parameter of nll must be one of "
                                         "{'logits', 'probabilities'}. Got 'probs' instead"):
        A.check_input("probs", "nll")


def _public(**kwargs):
    """Stands for a public function that still accepts ``from_logits=``."""
    A.deprecated_alias(kwargs, "from_logits", "input", "nll",
                       convert=lambda b: "logits" if b else "probabilities")
    return kwargs


def test_deprecated_alias():
    assert _public(input="logits") == {"input": "logits"}
    with pytest.warns(DeprecationWarning, match="nll: the 'from_logits' keyword is deprecated.*"
                                                "use input='logits' instead") as rec:
        assert _public(from_logits=True) == {"input": "logits"}
    assert rec[0].filename == __file__  # pointed at the caller, not at the library
    with pytest.warns(DeprecationWarning):
        assert _public(from_logits=False) == {"input": "probabilities"}
    with pytest.raises(TypeError, match="got both 'from_logits'"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _public(from_logits=True, input="logits")
    kw = {"probs": 1}
    with pytest.warns(DeprecationWarning, match="use prediction= instead"):
        A.deprecated_alias(kw, "probs", "prediction", "nll")
    assert kw == {"prediction": 1}


# --------------------------------------------------------------------------------------------
# the configuration object
# --------------------------------------------------------------------------------------------
def test_config_context_restores_and_nests():
    before = _config.get_config()
    with _config.config(native=False) as cfg:
        assert cfg.native is False and _config.current().native is False
        assert _config.current().torch_fused == before["torch_fused"]
        with _config.config(torch_fused=False, native=None):
            assert _config.get_config()["native"] is False
            assert _config.get_config()["torch_fused"] is False
        assert _config.get_config()["torch_fused"] == before["torch_fused"]
    assert _config.get_config() == before


def test_config_restores_after_an_exception():
    before = _config.get_config()
    with pytest.raises(RuntimeError), _config.config(native=False, fast_sampling=False,
                                                     sampling_numpy_views=False):
        assert _config.current().sampling_numpy_views is False
        raise RuntimeError("inside")
    assert _config.get_config() == before


def test_config_refuses_non_bools():
    with pytest.raises(TypeError, match="'native' parameter of config must be a bool or None"):
        with _config.config(native=1):
            pass


def test_config_is_per_thread():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def other():
        entered.wait()
        seen["other"] = _config.current().native  # not affected by the main thread's block
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with _config.config(native=False):
        entered.set()
        release.wait(timeout=30)
        seen["main"] = _config.current().native
    t.join()
    assert seen == {"other": _config.Config().native if not _config._env_off(
        "TEMPSCALE_DISABLE_NATIVE") else False, "main": False}


def test_config_is_per_task():
    async def task(flag):
        with _config.config(fast_sampling=flag):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return _config.current().fast_sampling

    async def main():
        return await asyncio.gather(task(True), task(False), task(True))

    assert asyncio.run(main()) == [True, False, True]


def test_config_environment_defaults(monkeypatch):
    monkeypatch.setenv("TEMPSCALE_DISABLE_NATIVE", "1")
    monkeypatch.setenv("TEMPSCALE_DISABLE_FAST_SAMPLING", "0")
    monkeypatch.setenv("TEMPSCALE_DISABLE_SAMPLING_NUMPY_VIEWS", "yes")
    d = _config._defaults()
    assert d.native is False and d.fast_sampling is True and d.torch_fused is True
    assert d.sampling_numpy_views is False


def test_generic_path_fixture(generic_path):
    cfg = _config.current()
    assert not cfg.native and not cfg.torch_fused and not cfg.fast_sampling


def test_object_arrays_are_refused_naming_the_parameter():
    x = np.zeros((2, 3))
    obj = [1, None, 0]  # read as NumPy: an object array
    with pytest.raises(TypeError, match="'mask' parameter of .* must be an array of numbers"):
        A.entry_mask(obj, x, "softmax")
    with pytest.raises(TypeError, match="'mask' parameter of softmax must be a boolean array.*"
                                        "Got 'dtype object'"):
        A.entry_mask(np.array(obj, dtype=object), x, "softmax")
    with pytest.raises(TypeError, match="'temperature' parameter of .* must be an array of numbers"):
        A.row_temperature([1.0, None], "softmax", like=x, axis=-1)
    with pytest.raises(TypeError, match="'labels' parameter of .* must be an array of numbers"):
        A.labels(obj, "nll", like=None, n_classes=3)
    with pytest.raises(TypeError, match="'where' parameter of .* must be an array of numbers"):
        A.row_where([True, None], "kd_loss", like=x, batch_shape=(2,))


def test_read_only_views_reach_torch_without_a_warning():
    torch = pytest.importorskip("torch")
    m = np.array([True, False, True])
    m.flags.writeable = False
    got = A.entry_mask(m, torch.zeros(2, 3), "softmax")  # filterwarnings=error: no UserWarning
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3)
