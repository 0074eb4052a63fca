"""The public surface: ``__all__`` complete and sorted, docstrings with examples, lazy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import tempscale

PUBLIC_MODULES = ["tempscale"]


def test_all_is_sorted_and_complete():
    assert list(tempscale.__all__) == sorted(tempscale.__all__)
    for name in tempscale.__all__:
        assert hasattr(tempscale, name), name
    public = {n for n in dir(tempscale) if not n.startswith("_") and callable(getattr(tempscale, n))}
    submodules = {n for n in public if inspect.ismodule(getattr(tempscale, n))}
    assert public - submodules <= set(tempscale.__all__), public - set(tempscale.__all__)


def test_every_public_function_documented_with_examples():
    for name in tempscale.__all__:
        obj = getattr(tempscale, name)
        if name.startswith("__") or not callable(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        assert len(doc) > 80, f"{name} has no real docstring"
        assert "Examples" in doc or inspect.isclass(obj), f"{name} has no Examples section"


def test_temperature_signature_is_uniform():
    for name in ("softmax", "log_softmax", "logsumexp"):
        sig = inspect.signature(getattr(tempscale, name))
        params = list(sig.parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert params[1].name == "temperature" and params[1].default == 1.0
        for p in params[2:]:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
        assert sig.parameters["axis"].default == -1


def test_import_touches_no_framework():
    code = (
        "import sys, tempscale, tempscale.cli\n"
        "heavy = [m for m in ('torch', 'jax', 'matplotlib', 'sklearn', 'scipy', 'dask', 'transformers')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import tempscale imported {out.stdout.strip()}"


def test_signatures_are_visible_and_annotated():
    """The decorator keeps the real signature and its annotations (not ``*args, **kwargs``)."""
    import typing

    for name in ("softmax", "log_softmax", "logsumexp", "temper", "entropy", "perplexity",
                 "solve_temperature"):
        f = getattr(tempscale, name)
        params = inspect.signature(f).parameters
        assert "args" not in params and "kwargs" not in params, name
        hints = typing.get_type_hints(f)
        assert "return" in hints and set(params) <= set(hints), (name, set(params) - set(hints))


_MYPY_CONFIG = """\
[mypy]
follow_imports = skip
ignore_missing_imports = True
[mypy-tempscale,tempscale._softmax,tempscale._entropy,tempscale._typing,tempscale._compat]
follow_imports = silent
"""

_SNIPPET = """\
import numpy as np
from tempscale import entropy, softmax

softmax(np.ones(3), temperature="hot")
softmax(np.ones(3), 0.5, axis=None)
entropy([1.0, 2.0], "cold")
"""


def test_mypy_rejects_a_string_temperature(tmp_path):
    """``softmax(x, temperature="hot")`` is a type error; a float is not (mypy on a snippet:
    only the annotated modules are followed, so this takes seconds)."""
    import pytest

    pytest.importorskip("mypy")
    (tmp_path / "mypy.ini").write_text(_MYPY_CONFIG)
    (tmp_path / "snippet.py").write_text(_SNIPPET)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), "snippet.py"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    errors = [ln for ln in out.stdout.splitlines() if ": error:" in ln]
    assert any(ln.startswith("snippet.py:4:") and 'Argument "temperature" to "softmax"' in ln
               and '"str"' in ln for ln in errors), out.stdout + out.stderr
    assert any(ln.startswith("snippet.py:6:") and '"entropy"' in ln for ln in errors), out.stdout
    assert not any(ln.startswith("snippet.py:5:") for ln in errors), out.stdout  # a float is fine
    assert len(errors) == 2, out.stdout
