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
