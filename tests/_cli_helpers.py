"""Helpers shared by the command-line tests (tests/test_cli*.py, tests/test_explorer_static.py).

``run_cli`` runs ``tempscale ARGV`` in-process through :func:`tempscale.cli.main` and returns
what a shell would see; the ``cli_tmp`` fixture (tests/conftest.py, built on
:func:`in_tmp_folder`) gives each test its own empty working folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``tempscale ARGV``, run in-process.

    Arguments are passed as strings (``Path`` objects and numbers are fine).  A ``SystemExit``
    (argparse's ``--help``, ``--version`` and usage errors) gives the status the process would
    end with: its integer code, 0 for ``None``, and 1 for any other object, whose text the
    interpreter would print on stderr (it is appended to ``stderr`` here).
    """
    from tempscale.cli import main

    extra = ""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        if exc.code is None:
            rc = 0
        elif isinstance(exc.code, int):
            rc = exc.code
        else:
            rc, extra = 1, f"{exc.code}\n"
    out, err = capsys.readouterr()
    return rc, out, err + extra


def in_tmp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in ``tmp_path`` (the CLI writes relative paths), 120 columns, ``TEMPSCALE_DEBUG``
    unset; close the figures a test left open."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("TEMPSCALE_DEBUG", raising=False)
    yield
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close("all")
