"""The visual commands on long rows and the sampling options (issue 14 item 5):
``tempscale plot --top``, ``tempscale explore --top`` and the page's filters, ``tempscale sample``
with every rule option of :func:`tempscale.sampling.sample` and its "… N more" lines.

Numbers printed by ``sample`` are compared with :func:`tempscale.sampling.warp` / ``sample`` called
directly; every error is one line on stderr with exit status 2.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tempscale.cli import main
from tempscale.sampling import sample, warp

from ._cli_helpers import run_cli

SAMPLE_PARAMS = set(inspect.signature(sample).parameters)


def assert_one_line_error(rc, out, err, *fragments):
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def table_rows(out: str) -> list[list[str]]:
    """The cells of the table lines (rich's box or the plain ``│`` bars)."""
    rows = []
    for line in out.splitlines():
        if line.count("│") >= 2:
            rows.append([c.strip() for c in line.strip().strip("│").split("│")])
    return rows


# ------------------------------------------------------------------------------------------
# tempscale plot --top
# ------------------------------------------------------------------------------------------
@pytest.fixture
def captured_figures(monkeypatch):
    """The figures ``tempscale plot`` saves (kept open for inspection)."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from tempscale.cli import plot as cli_plot

    figs = []
    real = cli_plot.save_figure

    def keep(fig, path, dpi, force=False):
        fig.canvas.draw()  # the real writer closes the figure: read it first
        titles = [a.get_title() for a in fig.axes]
        bars = [len(a.patches) for a in fig.axes]
        ticks = [[t.get_text() for t in a.get_xticklabels()] for a in fig.axes]
        figs.append({"titles": titles, "bars": bars, "ticks": ticks,
                    "xlabels": [a.get_xlabel() for a in fig.axes]})
        return real(fig, path, dpi, force)

    monkeypatch.setattr(cli_plot, "save_figure", keep)
    yield figs
    plt.close("all")


def test_plot_top_draws_the_largest_classes_and_notes_the_others(tmp_path, capsys, captured_figures):
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000) * 3.0
    np.save(tmp_path / "row.npy", x)
    rc, out, err = run_cli(capsys, "plot", "--file", str(tmp_path / "row.npy"), "--top", "7",
                           "-T", "0.5,2", "-o", str(tmp_path / "top.png"))
    assert rc == 0 and err == "" and (tmp_path / "top.png").stat().st_size > 1000
    fig = captured_figures[0]
    panels = [i for i, t in enumerate(fig["titles"]) if t.startswith("T = ")]
    assert len(panels) == 2 and all(fig["bars"][i] == 7 for i in panels)
    want = [str(i) for i in np.argsort(-x, kind="stable")[:7]]
    assert fig["ticks"][panels[0]] == want
    from tempscale import softmax

    for i, T in zip(panels, (0.5, 2.0), strict=True):
        p = np.asarray(softmax(x, T))
        others = 1.0 - p[np.argsort(-x, kind="stable")[:7]].sum()
        assert f"4993 others: p = {others:.3g}" in fig["titles"][i]
        assert "the 7 most probable of 5000" in fig["xlabels"][i]


def test_plot_long_rows_need_top_and_say_so(tmp_path, capsys, captured_figures):
    np.save(tmp_path / "row.npy", np.linspace(0.0, 1.0, 201))  # one more than the 200 drawn in full
    rc, out, err = run_cli(capsys, "plot", "--file", str(tmp_path / "row.npy"), "-T", "1",
                           "-o", str(tmp_path / "a.png"))
    assert_one_line_error(rc, out, err, "201 classes are too many", "at most 200", "--top N")
    rc, out, err = run_cli(capsys, "plot", "--file", str(tmp_path / "row.npy"), "-T", "1", "--top", "20",
                           "-o", str(tmp_path / "a.png"))
    assert rc == 0 and err == "" and max(captured_figures[0]["bars"]) == 20
    np.save(tmp_path / "short.npy", np.linspace(0.0, 1.0, 200))
    rc, out, _ = run_cli(capsys, "plot", "--file", str(tmp_path / "short.npy"), "-T", "1",
                         "-o", str(tmp_path / "b.png"))
    assert rc == 0 and max(captured_figures[1]["bars"]) == 200
    assert "others" not in " ".join(captured_figures[1]["titles"])


@pytest.mark.parametrize("argv, fragment", [
    (["--top", "0"], "--top must be an integer in [1, 200], got 0"),
    (["--top", "201"], "--top must be an integer in [1, 200]"),
    (["--top", "3", "--kind", "entropy"], "--top applies to --kind temperature"),
    (["--top", "x"], "--top"),
])
def test_plot_top_errors_are_one_line(tmp_path, capsys, argv, fragment):
    pytest.importorskip("matplotlib")
    rc, out, err = run_cli(capsys, "plot", *argv, "-o", str(tmp_path / "e.png"), "--", "1", "2", "3")
    assert_one_line_error(rc, out, err, fragment)
    assert not (tmp_path / "e.png").exists()


# ------------------------------------------------------------------------------------------
# tempscale explore --top and the page's filters
# ------------------------------------------------------------------------------------------
def page_data(path: Path) -> dict:
    m = re.search(r'<script type="application/json" id="tempscale-data">(.*?)</script>', path.read_text(), re.S)
    assert m
    return json.loads(m.group(1))


def test_explore_top_and_filters_reach_the_page(tmp_path, capsys):
    x = np.random.default_rng(1).normal(size=128_256)
    np.save(tmp_path / "vocab.npy", x)
    out_path = tmp_path / "page.html"
    rc, out, err = run_cli(capsys, "explore", "--file", str(tmp_path / "vocab.npy"), "--top", "40",
                           "--top-p", "0.9", "-k", "50", "--min-p", "0.01", "--top-n-sigma", "2",
                           "--order", "temperature-last", "--min-tokens-to-keep", "3", "-o", str(out_path))
    assert rc == 0 and err == "" and "wrote" in out
    data = page_data(out_path)
    assert len(data["values"]) == 128_256 and data["top"] == 40
    assert data["filters"] == {"top_k": 50, "top_p": 0.9, "min_p": 0.01, "top_n_sigma": 2.0,
                               "order": "temperature-last", "min_tokens_to_keep": 3}


@pytest.mark.parametrize("argv, fragment", [
    (["--top", "0"], "--top must be an integer in [1, 1048576], got 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "nan"], "--top-p must be in (0, 1]"),
    (["--min-p", "2"], "--min-p must be in [0, 1]"),
    (["-k", "-1"], "--top-k must be an integer >= 0"),
    (["--top-n-sigma", "-1"], "--top-n-sigma must be in [0, inf]"),
    (["--min-tokens-to-keep", "0"], "--min-tokens-to-keep must be >= 1"),
    (["--order", "first"], "--order"),
])
def test_explore_option_errors_are_one_line(tmp_path, capsys, argv, fragment):
    rc, out, err = run_cli(capsys, "explore", *argv, "-o", str(tmp_path / "p.html"), "--", "1", "2")
    assert_one_line_error(rc, out, err, fragment)
    assert not (tmp_path / "p.html").exists()


# ------------------------------------------------------------------------------------------
# tempscale sample: every rule option, "… N more"
# ------------------------------------------------------------------------------------------
X = [3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0]

RULE_CASES = [  # (flag, value, keyword)
    ("--typical-p", "0.6", "typical_p"),
    ("--epsilon", "0.05", "epsilon"),
    ("--eta", "0.05", "eta"),
    ("--top-n-sigma", "0.8", "top_n_sigma"),
    ("--top-h", "0.5", "top_h"),
    ("--dynatemp-range", "0.5", "dynatemp_range"),
    ("--xtc-threshold", "0.1", "xtc_threshold"),
]


@pytest.mark.parametrize("flag, value, name", RULE_CASES)
def test_sample_rule_options_print_warps_distribution(capsys, flag, value, name):
    if name not in SAMPLE_PARAMS:
        pytest.skip(f"tempscale.sampling.sample has no {name}= here")
    rc, out, err = run_cli(capsys, "sample", "-T", "0.8", flag, value, "-n", "0", "--", *map(str, X))
    assert rc == 0 and err == "", err
    want = np.asarray(warp(np.array([X]), 0.8, **{name: float(value)}))[0]
    rows = [r for r in table_rows(out) if r and r[0].isdigit()]
    got = {int(r[0]): float(r[2]) for r in rows}
    assert set(got) == set(np.flatnonzero(want > 0).tolist())
    for i, p in got.items():
        assert p == pytest.approx(want[i], rel=1e-5)
    assert f"{flag[2:]} = {float(value):g}" in " ".join(out.split())  # the title names the rule


def test_sample_draws_equal_the_library_with_every_given_option(capsys):
    kw = dict(top_k=6, top_p=0.95, min_p=0.01, order="temperature-last", min_tokens_to_keep=2)
    argv = ["-k", "6", "-p", "0.95", "--min-p", "0.01", "--order", "temperature-last",
            "--min-tokens-to-keep", "2"]
    for name, flag, v in (("typical_p", "--typical-p", 0.99), ("top_n_sigma", "--top-n-sigma", 3.0),
                          ("epsilon", "--epsilon", 0.001)):
        if name in SAMPLE_PARAMS:
            kw[name] = v
            argv += [flag, str(v)]
    rc, out, err = run_cli(capsys, "sample", "-T", "1.3", *argv, "-n", "30", "--seed", "5", "--", *map(str, X))
    assert rc == 0 and err == ""
    want = np.asarray(sample(np.array([X]), 1.3, num_samples=30, seed=5, **kw))[0]
    line = next(ln for ln in out.splitlines() if ln.startswith("draws:"))
    assert line.split(":", 1)[1].split() == [str(i) for i in want]


def test_sample_explicit_order_and_hash_generator(capsys):
    if "row_ids" not in SAMPLE_PARAMS:
        pytest.skip("tempscale.sampling.sample has no row_ids= here")
    rows = np.array([X, X[::-1]])
    rc, out, err = run_cli(capsys, "sample", "--order", "top_k,temperature", "-k", "3", "-T", "2",
                           "--row-ids", "11,12", "--seed", "9", "-n", "6", "--", *map(str, X))
    # one row given on the command line, two keys: refused in one line
    assert_one_line_error(rc, out, err, "--row-ids gives 2 keys for 1 rows")
    rc, out, err = run_cli(capsys, "sample", "--order", "top_k,temperature", "-k", "3", "-T", "2",
                           "--row-ids", "11", "--seed", "9", "-n", "6", "--", *map(str, X))
    assert rc == 0 and err == ""
    want = np.asarray(sample(rows[:1], 2.0, top_k=3, order=["top_k", "temperature"], seed=9,
                             row_ids=np.array([11]), num_samples=6))[0]
    line = next(ln for ln in out.splitlines() if ln.startswith("draws:"))
    assert line.split(":", 1)[1].split() == [str(i) for i in want]


def test_sample_cut_tables_say_how_many_more(capsys):
    x = [str(v) for v in np.linspace(2.0, -2.0, 30)]
    rc, out, err = run_cli(capsys, "sample", "--show", "5", "-n", "100", "--seed", "0", "--", *x)
    assert rc == 0 and err == ""
    assert "\u2026 25 more" in out  # 30 tokens of nonzero probability, 5 listed
    p = np.asarray(warp(np.array([x], dtype=float)))[0]
    more = next(r for r in table_rows(out) if r[0].startswith("\u2026"))
    assert float(more[2]) == pytest.approx(np.sort(p)[::-1][5:].sum(), rel=1e-5)
    assert "\u2026 60 more" in next(ln for ln in out.splitlines() if ln.startswith("draws:"))  # 40 shown


def test_sample_many_rows_say_how_many_more(tmp_path, capsys):
    np.save(tmp_path / "rows.npy", np.random.default_rng(2).normal(size=(11, 4)))
    rc, out, err = run_cli(capsys, "sample", "--file", str(tmp_path / "rows.npy"), "-n", "2", "--seed", "1")
    assert rc == 0 and err == ""
    assert "\u2026 3 more rows" in out
    assert "draws: \u2026 3 more rows" in out


@pytest.mark.parametrize("argv, fragment", [
    (["--typical-p", "1.5"], "--typical-p must be a float in (0, 1]"),
    (["--epsilon", "abc"], "--epsilon value 'abc' is not a number"),
    (["--eta", "-0.1"], "--eta must be"),
    (["--top-n-sigma", "-1"], "--top-n-sigma must be"),
    (["--order", "top_k,bogus"], "--order"),
    (["--order", ","], "--order"),
])
def test_sample_option_errors_are_one_line(capsys, argv, fragment):
    rc, out, err = run_cli(capsys, "sample", *argv, "--", "1", "2", "3")
    assert_one_line_error(rc, out, err, fragment)


def test_sample_help_lists_every_rule_option(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    out = capsys.readouterr().out
    for name in ("typical_p", "epsilon", "eta", "top_n_sigma", "top_h", "dynatemp_range",
                 "dynatemp_exponent", "xtc_threshold", "xtc_probability", "generator", "row_ids"):
        if name in SAMPLE_PARAMS:
            assert "--" + name.replace("_", "-") in out, name
