"""The ``tempscale`` command: in-process through ``tempscale.cli.main`` and as ``python -m tempscale``.

Every user error must end as one line on stderr, exit status 2 and no traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax as sp_softmax
from scipy.stats import entropy as sp_entropy
from scipy.stats import norm

import tempscale

from ._cli_helpers import run_cli

CLASSIC_T = (0.1, 0.5, 1.0, 2.0, 10.0)
CLASSIC_P = norm.pdf(np.arange(10), 4, 1)  # the classic 10-class example
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

try:
    import matplotlib

    matplotlib.use("Agg")
    HAVE_MPL = True
except ImportError:  # pragma: no cover
    HAVE_MPL = False
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")


# every test runs in its own empty folder (the CLI writes relative paths)
pytestmark = pytest.mark.usefixtures("cli_tmp")


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tempscale ") and ": error: " in lines[0], err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def numbers_in(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"(?<![\w.])-?\d+\.\d+(?:e[-+]\d+)?", text)]


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of a rich table, keyed by their first cell."""
    rows = {}
    for line in text.splitlines():
        for bar in ("│", "┃"):  # body and header rows
            if line.startswith(bar):
                cells = [c.strip() for c in line.strip(bar).split(bar)]
                rows[cells[0]] = cells[1:]
    return rows


def python_m(*argv, cwd, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    env["COLUMNS"] = "120"
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "tempscale", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------------
# the top level
# --------------------------------------------------------------------------------------------
def test_version(capsys):
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0
    assert out.strip() == f"tempscale {tempscale.__version__}"


def test_help_lists_subcommands_with_examples(capsys):
    rc, out, _ = run_cli(capsys, "--help")
    assert rc == 0
    for name in ("demo", "softmax", "plot"):
        assert re.search(rf"^\s+{name}\s+\S", out, flags=re.M), name
    assert "examples:" in out and "tempscale demo" in out


@pytest.mark.parametrize("sub", ["demo", "softmax", "plot"])
def test_subcommand_help_has_examples(capsys, sub):
    rc, out, _ = run_cli(capsys, sub, "--help")
    assert rc == 0
    assert "examples:" in out
    examples = out.split("examples:", 1)[1]
    assert f"tempscale {sub}" in examples


def test_no_command_prints_help_and_exits_2(capsys):
    rc, out, _ = run_cli(capsys)
    assert rc == 2
    assert "usage: tempscale" in out


def test_unknown_option_is_a_usage_error(capsys):
    rc, _, err = run_cli(capsys, "softmax", "--bogus", "1", "2")
    assert rc == 2
    assert "unrecognized arguments: --bogus" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# softmax
# --------------------------------------------------------------------------------------------
def test_softmax_three_classes(capsys):
    rc, out, err = run_cli(capsys, "softmax", "-T", "0.5", "--", "-1", "0", "1")
    assert rc == 0 and err == ""
    row = table_rows(out)["T = 0.5"]
    np.testing.assert_allclose([float(v) for v in row], [0.01587624, 0.11731043, 0.86681333], rtol=1e-5)


def test_softmax_several_temperatures_and_limits(capsys):
    rc, out, _ = run_cli(capsys, "softmax", "-T", "0.1,0.5", "-T", "0", "-T", "inf", "--labels", "a,b,c",
                         "1", "2", "2")
    assert rc == 0
    rows = table_rows(out)
    assert rows[""] == ["a", "b", "c"]
    x = np.array([1.0, 2.0, 2.0])
    for T in (0.1, 0.5):
        np.testing.assert_allclose([float(v) for v in rows[f"T = {T:g}"]], sp_softmax(x / T), rtol=1e-5)
    assert [float(v) for v in rows["T = 0"]] == [0.0, 0.5, 0.5]  # ties share the argmax
    np.testing.assert_allclose([float(v) for v in rows["T = inf"]], [1 / 3] * 3, rtol=1e-5)


def test_softmax_log_and_precision(capsys):
    rc, out, _ = run_cli(capsys, "softmax", "--log", "--precision", "10", "-T", "2", "--", "-1", "0", "1")
    assert rc == 0
    assert "log-probabilities" in out
    ref = np.log(sp_softmax(np.array([-1.0, 0.0, 1.0]) / 2))
    np.testing.assert_allclose([float(v) for v in table_rows(out)["T = 2"]], ref, rtol=1e-9)


def test_softmax_file_roundtrip_and_overwrite(capsys, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 7)) * 5
    np.save("logits.npy", x)
    rc, out, _ = run_cli(capsys, "softmax", "-T", "0.7", "logits.npy", "-o", "probs.npy")
    assert rc == 0 and "probs.npy" in out
    np.testing.assert_allclose(np.load("probs.npy"), sp_softmax(x / 0.7, axis=-1), rtol=1e-12)
    before = Path("probs.npy").read_bytes()
    rc, _, err = run_cli(capsys, "softmax", "-T", "2", "logits.npy", "-o", "probs.npy")
    assert_one_line_error(rc, err, "probs.npy", "--force")
    assert Path("probs.npy").read_bytes() == before
    rc, _, _ = run_cli(capsys, "softmax", "-T", "2", "-f", "logits.npy", "-o", "probs.npy", "--force")
    assert rc == 0
    np.testing.assert_allclose(np.load("probs.npy"), sp_softmax(x / 2, axis=-1), rtol=1e-12)


def test_softmax_csv_and_npz_inputs(capsys):
    Path("logits.csv").write_text("a,b,c\n1,2,3\n0,0,-1\n")
    rc, _, _ = run_cli(capsys, "softmax", "logits.csv", "-o", "out.csv")
    assert rc == 0
    np.testing.assert_allclose(np.loadtxt("out.csv", delimiter=","),
                               sp_softmax(np.array([[1.0, 2, 3], [0, 0, -1]]), axis=-1), rtol=1e-8)
    np.savez("two.npz", logits=np.array([0.0, 1.0]), other=np.array([5.0]))
    rc, out, _ = run_cli(capsys, "softmax", "-f", "two.npz:logits")
    assert rc == 0
    np.testing.assert_allclose([float(v) for v in table_rows(out)["T = 1"]], sp_softmax([0.0, 1.0]), rtol=1e-5)
    rc, _, err = run_cli(capsys, "softmax", "two.npz")
    assert_one_line_error(rc, err, "name one with PATH:KEY")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["softmax", "-T", "-1", "--", "1", "2"], ["temperature", "-1"]),
        (["softmax", "-T", "nan", "1", "2"], ["temperature"]),
        (["softmax", "-T", "hot", "1", "2"], ["'hot'"]),
        (["softmax", "1", "two"], ["'two'", "not a number"]),
        (["softmax"], ["give the logits"]),
        (["softmax", "missing.npy"], ["missing.npy", "does not exist"]),
        (["softmax", "--labels", "a,b", "1", "2", "3"], ["--labels", "3 classes"]),
        (["softmax", "1", "2", "-o", "out.json"], ["'.json'"]),
        (["softmax", "1", "2", "-o", "no/such/dir/out.npy"], ["does not exist"]),
    ],
)
def test_softmax_errors_are_one_line(capsys, argv, fragments):
    rc, out, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, *fragments)


def test_softmax_never_unpickles(capsys):
    np.save("objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rc, _, err = run_cli(capsys, "softmax", "objects.npy")
    assert_one_line_error(rc, err, "pickled")


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------
@needs_mpl
def test_plot_default_png(capsys):
    import matplotlib.image as mimg

    rc, out, err = run_cli(capsys, "plot", "--", "-1", "0", "1")
    assert rc == 0 and err == ""
    path = Path("tempscale-temperature.png")
    assert out.strip() == f"wrote {path}"
    assert path.read_bytes()[:8] == PNG_MAGIC
    h, w, _ = mimg.imread(path).shape
    assert w > 2 * h and w >= 1200  # five panels side by side at 150 dpi


@needs_mpl
@pytest.mark.parametrize(("name", "magic"), [("bars.svg", b"<?xml"), ("bars.pdf", b"%PDF")])
def test_plot_vector_formats(capsys, name, magic):
    rc, _, _ = run_cli(capsys, "plot", "-T", "0.5,1,2", "--labels", "x,y,z", "-o", name, "2", "1", "0.1")
    assert rc == 0
    data = Path(name).read_bytes()
    assert data.startswith(magic)
    if name.endswith(".svg"):
        assert b"<svg" in data and b"T = 0.5" in data.replace(b"&#160;", b" ")


@needs_mpl
def test_plot_entropy_kind_from_file_and_row(capsys):
    np.save("rows.npy", np.stack([CLASSIC_P, np.log(CLASSIC_P)]))
    rc, _, _ = run_cli(capsys, "plot", "--kind", "entropy", "rows.npy", "-o", "entropy.png")
    assert rc == 0 and Path("entropy.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, _ = run_cli(capsys, "plot", "--quantity", "max_prob", "--kind", "entropy", "-f", "rows.npy")
    assert rc == 0 and Path("tempscale-entropy.png").exists()
    # row 0 holds p (valid probabilities), row 1 holds log p (logits only)
    rc, _, _ = run_cli(capsys, "plot", "--row", "0", "--grouped", "--input", "probabilities",
                       "rows.npy", "-o", "row0.png")
    assert rc == 0 and Path("row0.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, err = run_cli(capsys, "plot", "--row", "1", "--input", "probabilities", "rows.npy")
    assert_one_line_error(rc, err, "non-negative")
    rc, _, _ = run_cli(capsys, "plot", "--row", "-1", "rows.npy", "-o", "row1.pdf")
    assert rc == 0 and Path("row1.pdf").read_bytes()[:4] == b"%PDF"


@needs_mpl
def test_plot_entropy_target_prints_solved_temperatures(capsys):
    rc, out, _ = run_cli(capsys, "plot", "--kind", "entropy", "--target", "0.5", "--", "-1", "0", "1")
    assert rc == 0
    m = re.search(r"^T = (\S+) reaches entropy = 0.5$", out, flags=re.M)
    assert m, out
    assert sp_entropy(sp_softmax(np.array([-1.0, 0.0, 1.0]) / float(m.group(1)))) == pytest.approx(0.5, abs=1e-5)
    np.save("rows.npy", np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]]))  # a constant row never moves
    rc, out, _ = run_cli(capsys, "plot", "--kind", "entropy", "--quantity", "max_prob", "--target", "0.6",
                         "rows.npy", "-o", "mp.svg")
    assert rc == 0
    assert re.search(r"^row 0: T = \S+ reaches max_prob = 0.6$", out, flags=re.M), out
    assert "row 1: no temperature reaches max_prob = 0.6" in out


@needs_mpl
def test_plot_refuses_to_overwrite(capsys):
    Path("tempscale-temperature.png").write_bytes(b"keep me")
    rc, _, err = run_cli(capsys, "plot", "1", "2")
    assert_one_line_error(rc, err, "tempscale-temperature.png", "--force")
    assert Path("tempscale-temperature.png").read_bytes() == b"keep me"
    rc, _, _ = run_cli(capsys, "plot", "--force", "1", "2")
    assert rc == 0 and Path("tempscale-temperature.png").read_bytes()[:8] == PNG_MAGIC


@needs_mpl
@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["plot", "-o", "fig.jpg", "1", "2"], ["'.jpg'", ".png, .svg or .pdf"]),
        (["plot", "-T", "-2", "1", "2"], ["temperature"]),
        (["plot", "--input", "probabilities", "--", "0.5", "-0.1"], ["non-negative"]),
        (["plot", "--labels", "a,b,c", "1", "2"], ["--labels", "2 classes"]),
        (["plot", "rows.npy"], ["shape (2, 3)", "--row"]),
        (["plot", "--row", "5", "rows.npy"], ["--row 5", "2 rows"]),
        (["plot", "--dpi", "0", "1", "2"], ["--dpi"]),
        (["plot", "1", "nan"], ["finite"]),
        (["plot", "--kind", "entropy", "big.npy"], ["11 rows"]),
    ],
)
def test_plot_errors_are_one_line(capsys, argv, fragments):
    np.save("rows.npy", np.zeros((2, 3)))
    np.save("big.npy", np.zeros((11, 3)))
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, *fragments)
    assert not list(Path(".").glob("*.png")) and not list(Path(".").glob("*.jpg"))


def test_plot_without_matplotlib_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.delitem(sys.modules, "matplotlib.pyplot", raising=False)
    rc, _, err = run_cli(capsys, "plot", "1", "2")
    assert_one_line_error(rc, err, "matplotlib", "tempscale[plot]")


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------
def _has_explorer() -> bool:
    try:
        from tempscale.explorer import write_explorer  # noqa: F401
    except ImportError:
        return False
    return True


def demo_files(outdir="tempscale-demo", ext="png"):
    names = [f"probabilities-as-logits.{ext}", f"tempered-probabilities.{ext}",
             f"entropy-vs-temperature.{ext}"]
    if _has_explorer():
        names.append("explorer.html")
    return [Path(outdir) / n for n in names]


def check_demo_output(out: str):
    assert "softmax([-1, 0, 1], T = 0.5) = [0.01587624, 0.11731043, 0.86681333]" in out
    rows = table_rows(out)
    p = CLASSIC_P / CLASSIC_P.sum()
    for T in CLASSIC_T:
        a = sp_softmax(CLASSIC_P / T)  # probabilities read as logits
        b = p ** (1 / T) / np.sum(p ** (1 / T))  # temper: p read as probabilities
        got = [float(v) for v in rows[f"{T:g}"]]
        np.testing.assert_allclose(got, [sp_entropy(a), a.max(), sp_entropy(b), b.max()], atol=6e-5)
    assert "Why T = 1 already looks flat" in out
    assert "differ by at most 0.40" in out


@needs_mpl
def test_demo_reproduces_the_classic_example_and_refuses_to_overwrite(capsys):
    rc, out, err = run_cli(capsys, "demo")
    assert rc == 0 and err == ""
    check_demo_output(out)
    files = demo_files()
    for f in files:
        assert f.is_file() and f.stat().st_size > 1000, f
        assert f"wrote {f}" in out
    for f in files[:3]:
        assert f.read_bytes()[:8] == PNG_MAGIC
    if _has_explorer():
        from tempscale.explorer import explorer_html

        assert files[-1].read_text(encoding="utf-8") == explorer_html()  # the classic example page
    stamp = {f: f.read_bytes() for f in files}
    rc, out2, err = run_cli(capsys, "demo")
    assert_one_line_error(rc, err, str(files[0]), "--force")
    assert out2 == ""  # refused before printing anything
    assert all(f.read_bytes() == stamp[f] for f in files)
    rc, _, _ = run_cli(capsys, "demo", "--force")
    assert rc == 0 and all(f.is_file() for f in files)


@needs_mpl
def test_demo_outdir_and_format(capsys):
    rc, out, _ = run_cli(capsys, "demo", "--outdir", "a/b/figs", "--format", "svg")
    assert rc == 0
    files = demo_files("a/b/figs", "svg")
    assert all(f.is_file() for f in files)
    assert files[0].read_bytes().startswith(b"<?xml")
    Path("a/b/figs/tempered-probabilities.svg").unlink()
    Path("a/b/figs/probabilities-as-logits.svg").unlink()
    rc, _, err = run_cli(capsys, "demo", "--outdir", "a/b/figs", "--format", "svg")
    assert_one_line_error(rc, err, "entropy-vs-temperature.svg")


@needs_mpl
def test_demo_hands_the_classic_example_to_the_explorer(capsys, monkeypatch):
    """The demo's call into ``explorer_html`` (a stand-in here; the real page has its own tests)."""
    import types

    calls = []

    def explorer_html(logits=None, labels=None, temperature=1.0, **kw):
        calls.append({"logits": logits, "labels": labels, "temperature": temperature, **kw})
        return "<!doctype html><html><body>stub</body></html>"

    fake = types.ModuleType("tempscale.explorer")
    fake.explorer_html = explorer_html
    monkeypatch.setitem(sys.modules, "tempscale.explorer", fake)
    monkeypatch.setattr(tempscale, "explorer", fake, raising=False)
    rc, out, _ = run_cli(capsys, "demo", "--outdir", "d")
    assert rc == 0
    (call,) = calls
    assert Path("d/explorer.html").read_text() == "<!doctype html><html><body>stub</body></html>"
    assert call["logits"] is None  # the page's own default is the classic example
    assert "wrote d/explorer.html" in out
    # only the page left from an earlier run still blocks a new one
    for f in Path("d").glob("*.png"):
        f.unlink()
    rc, _, err = run_cli(capsys, "demo", "--outdir", "d")
    assert_one_line_error(rc, err, "explorer.html", "--force")
    assert len(calls) == 1


def test_demo_outdir_is_a_file(capsys):
    Path("taken").write_text("x")
    rc, _, err = run_cli(capsys, "demo", "--outdir", "taken")
    assert_one_line_error(rc, err, "'taken'", "not a folder")


def test_demo_without_matplotlib_still_prints_the_numbers(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "matplotlib.pyplot", raising=False)
    rc, out, err = run_cli(capsys, "demo", "--outdir", "nompl")
    assert rc == 0
    check_demo_output(out)
    assert "matplotlib is not installed" in out
    assert not list(Path("nompl").glob("*.png"))


# --------------------------------------------------------------------------------------------
# python -m tempscale (a fresh process without a display)
# --------------------------------------------------------------------------------------------
@needs_mpl
def test_python_m_demo_without_display(tmp_path):
    res = python_m("demo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    check_demo_output(res.stdout)
    for f in demo_files():
        assert (tmp_path / f).is_file(), f
    again = python_m("demo", cwd=tmp_path)
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1 and "--force" in again.stderr


def test_python_m_softmax_version_and_errors(tmp_path):
    res = python_m("softmax", "-T", "0.5", "--", "-1", "0", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose([float(v) for v in table_rows(res.stdout)["T = 0.5"]],
                               [0.01587624, 0.11731043, 0.86681333], rtol=1e-5)
    res = python_m("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"tempscale {tempscale.__version__}"
    for argv in (["softmax", "-T", "-1", "--", "1", "2"], ["plot", "-o", "x.gif", "1"],
                 ["softmax", "nothere.csv"]):
        res = python_m(*argv, cwd=tmp_path)
        assert res.returncode == 2, argv
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""


def test_commands_work_without_rich(tmp_path):
    """rich is optional (the ``cli`` extra): without it tables and messages are plain text."""
    code = (
        "import sys\n"
        "sys.modules['rich'] = None\n"
        "from tempscale.cli import main\n"
        "sys.exit(main(['softmax', '-T', '0.5', '--', '-1', '0', '1']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = table_rows(out.stdout)
    expected = np.exp(np.array([-1.0, 0.0, 1.0]) / 0.5)
    expected /= expected.sum()
    values = [float(v) for v in rows["T = 0.5"]]
    np.testing.assert_allclose(values, expected, rtol=1e-3)
    assert "rich" not in out.stderr
