"""Structure tests for tempscale.plot: axes, bars, titles, labels, legends -- not pixels."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from scipy.special import softmax as sp_softmax  # noqa: E402
from scipy.stats import entropy as sp_entropy  # noqa: E402
from scipy.stats import norm  # noqa: E402

from tempscale.plot import EntropyCurveDisplay, ReliabilityDisplay, TemperatureDisplay  # noqa: E402

CLASSIC_T = (0.1, 0.5, 1.0, 2.0, 10.0)
CLASSIC_P = norm.pdf(np.arange(10), 4, 1)  # the classic 10-class example


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _heights(bars):
    return np.array([r.get_height() for r in bars])


def _reference(x, T):
    """softmax(x / T) in float64 with SciPy (finite T > 0)."""
    return sp_softmax(np.asarray(x, dtype=np.float64) / T)


# --------------------------------------------------------------------------------------------
# lazy import
# --------------------------------------------------------------------------------------------
def test_import_tempscale_does_not_import_matplotlib():
    code = ("import sys, tempscale, tempscale.plot, tempscale.cli\n"
            "tempscale.cli.build_parser()\n"
            "bad = [m for m in ('matplotlib', 'torch', 'jax') if m in sys.modules]\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------------------------
# TemperatureDisplay
# --------------------------------------------------------------------------------------------
def test_temperature_display_classic_example_structure():
    disp = TemperatureDisplay.from_logits(CLASSIC_P)
    assert disp.temperatures == CLASSIC_T
    assert isinstance(disp.ax_, np.ndarray) and disp.ax_.shape == (5,)
    assert disp.figure_ is disp.ax_[0].figure
    # one panel per T, each with 10 bars, sharing the y axis 0..1
    assert len(disp.bars_) == 5
    for ax, bars, T in zip(disp.ax_, disp.bars_, CLASSIC_T, strict=True):
        assert len(bars) == 10
        assert ax.get_ylim() == (0.0, 1.0)
        np.testing.assert_allclose(_heights(bars), _reference(CLASSIC_P, T), rtol=1e-12, atol=1e-15)
        title = ax.get_title()
        assert title.startswith(f"T = {T:g}\n")
        H = sp_entropy(_reference(CLASSIC_P, T))
        assert f"H = {H:.2f} nats" in title
        assert f"max p = {_reference(CLASSIC_P, T).max():.2f}" in title
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(10)]
    shared = disp.ax_[0].get_shared_y_axes()
    assert all(shared.joined(disp.ax_[0], ax) for ax in disp.ax_[1:])
    assert disp.ax_[0].get_ylabel() == "probability"
    assert "softmax" in disp.figure_._suptitle.get_text()
    # the colour bar keyed by T, and the T = 1 reference legend
    assert disp.colorbar_ is not None
    assert [t.get_text() for t in disp.colorbar_.ax.get_yticklabels()] == ["0.1", "0.5", "1", "2", "10"]
    assert disp.colorbar_.ax.get_ylabel() == "temperature T"
    assert [t.get_text() for t in disp.legend_.get_texts()] == ["T = 1 distribution (reference)"]
    np.testing.assert_allclose(disp.entropy, [sp_entropy(_reference(CLASSIC_P, T)) for T in CLASSIC_T])
    np.testing.assert_allclose(disp.max_prob, [_reference(CLASSIC_P, T).max() for T in CLASSIC_T])


def test_temperature_display_one_sequential_colour_per_temperature():
    disp = TemperatureDisplay.from_logits(CLASSIC_P, cmap="viridis")
    cmap = mpl.colormaps["viridis"]
    faces = [to_rgba(bars[0].get_facecolor()) for bars in disp.bars_]
    assert len(set(faces)) == 5  # a distinct colour per T
    for bars, face in zip(disp.bars_, faces, strict=True):  # all bars of a panel share its colour
        assert all(to_rgba(b.get_facecolor()) == face for b in bars)
    # positions on the colormap increase with log T: recover them by nearest sample
    samples = cmap(np.linspace(0, 1, 1001))
    pos = [np.argmin(np.abs(samples - np.asarray(f)).sum(axis=1)) for f in faces]
    assert pos == sorted(pos)
    # log-spaced: T = 1 sits at log(1/0.1) / log(10/0.1) = half way between 0.1 and 10
    assert pos[2] - pos[0] == pytest.approx(pos[4] - pos[2], abs=2)


def test_temperature_display_probabilities_input_is_temper():
    p = CLASSIC_P / CLASSIC_P.sum()
    disp = TemperatureDisplay.from_logits(CLASSIC_P, input="probabilities")
    for bars, T in zip(disp.bars_, CLASSIC_T, strict=True):
        ref = p ** (1 / T) / np.sum(p ** (1 / T))
        np.testing.assert_allclose(_heights(bars), ref, rtol=1e-10, atol=1e-300)
    # T = 1 gives p back; probabilities read as logits are nearly flat at T = 1
    np.testing.assert_allclose(disp.probabilities[2], p, rtol=1e-12)
    flat = TemperatureDisplay.from_logits(CLASSIC_P).probabilities[2]
    assert flat.max() < 0.14 < p.max()
    assert "temper" in disp.figure_._suptitle.get_text()
    same = TemperatureDisplay.from_probabilities(CLASSIC_P)
    np.testing.assert_array_equal(same.probabilities, disp.probabilities)


def test_temperature_display_limits_and_labels():
    x = [1.0, 3.0, 3.0, -np.inf]
    disp = TemperatureDisplay.from_logits(x, [0, 1, np.inf], labels=["cat", "dog", "emu", "masked"],
                                          ylim=None, title="")
    np.testing.assert_allclose(disp.probabilities[0], [0, 0.5, 0.5, 0])  # T = 0: ties share
    np.testing.assert_allclose(disp.probabilities[2], [1 / 3, 1 / 3, 1 / 3, 0])  # T = inf: uniform
    assert [ax.get_title().splitlines()[0] for ax in disp.ax_] == ["T = 0", "T = 1", "T = ∞"]
    assert [t.get_text() for t in disp.colorbar_.ax.get_yticklabels()] == ["0", "1", "∞"]
    assert [t.get_text() for t in disp.ax_[0].get_xticklabels()] == ["cat", "dog", "emu", "masked"]
    assert disp.figure_._suptitle is None
    assert np.all(np.isfinite(disp.entropy))


def test_temperature_display_grouped_on_one_axes():
    fig, ax = plt.subplots()
    disp = TemperatureDisplay.from_logits([-1.0, 0.0, 1.0], [0.5, 1, 2], ax=ax)
    assert disp.ax_.shape == (1,) and disp.ax_[0] is ax and disp.figure_ is fig
    assert len(ax.patches) == 9  # 3 classes x 3 temperatures
    texts = [t.get_text() for t in disp.legend_.get_texts()]
    assert len(texts) == 3 and texts[0].startswith("T = 0.5")
    np.testing.assert_allclose(_heights(disp.bars_[0]), [0.01587624, 0.11731043, 0.86681333], atol=5e-9)


def test_temperature_display_on_given_axes_and_wrapping():
    fig, axs = plt.subplots(1, 2)
    disp = TemperatureDisplay.from_logits([0.0, 1.0], [1, 2], ax=axs, colorbar=False)
    assert list(disp.ax_) == list(axs) and disp.colorbar_ is None
    many = TemperatureDisplay.from_logits(np.arange(30.0), np.geomspace(0.1, 10, 7), ncols=4)
    assert many.ax_.shape == (7,) and len(many.figure_.axes) == 7 + 1  # 7 panels + colour bar
    assert all(len(b) == 30 for b in many.bars_)


def test_temperature_display_any_array_library():
    torch = pytest.importorskip("torch")
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    disp = TemperatureDisplay.from_logits(x, [0.5])
    np.testing.assert_allclose(disp.probabilities[0], [0.01587624, 0.11731043, 0.86681333], atol=5e-9)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"logits": [[1.0, 2.0], [3.0, 4.0]]}, ValueError, "'logits' parameter of TemperatureDisplay.from_logits"),
        ({"logits": []}, ValueError, "'logits' parameter"),
        ({"temperatures": [-1.0]}, ValueError, "'temperatures' parameter .* Got \\[-1.0\\] instead"),
        ({"temperatures": [float("nan")]}, ValueError, "'temperatures' parameter"),
        ({"temperatures": []}, ValueError, "'temperatures' parameter"),
        ({"temperatures": ["hot"]}, TypeError, "'temperatures' parameter"),
        ({"input": "logprobs"}, ValueError, "'input' parameter .* one of \\{'logits', 'probabilities'\\}"),
        ({"labels": ["a", "b"]}, ValueError, "'labels' parameter .* 3 class labels"),
        ({"labels": "abc"}, TypeError, "'labels' parameter"),
        ({"layout": "stacked"}, ValueError, "'layout' parameter of TemperatureDisplay.plot"),
        ({"input": "probabilities", "logits": [0.5, -0.1, 0.6]}, ValueError, "non-negative"),
    ],
)
def test_temperature_display_errors(kwargs, exc, match):
    kwargs = {"logits": [-1.0, 0.0, 1.0], **kwargs}
    with pytest.raises(exc, match=match):
        TemperatureDisplay.from_logits(**kwargs)


def test_temperature_display_wrong_axes_count():
    fig, axs = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="'ax' parameter .* 3 matplotlib Axes"):
        TemperatureDisplay.from_logits([0.0, 1.0], [0.5, 1, 2], ax=axs)


# --------------------------------------------------------------------------------------------
# EntropyCurveDisplay
# --------------------------------------------------------------------------------------------
def test_entropy_curve_values_and_structure():
    rows = np.stack([CLASSIC_P, np.log(CLASSIC_P)])
    disp = EntropyCurveDisplay.from_logits(rows, row_labels=["as logits", "tempered"], num=61)
    ax = disp.ax_[0]
    assert disp.ax_.shape == (1,) and disp.figure_ is ax.figure
    assert ax.get_xscale() == "log"
    assert ax.get_xlim() == pytest.approx((0.01, 100.0))
    assert ax.get_ylabel() == "entropy H (nats)"
    assert ax.get_xlabel().startswith("temperature T")
    assert len(disp.lines_) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["as logits", "tempered"]
    grid = disp.temperatures
    assert grid.shape == (61,) and np.allclose(np.diff(np.log(grid)), np.log(1e4) / 60)
    for i in range(2):
        ref = [sp_entropy(_reference(rows[i], T)) for T in grid]
        np.testing.assert_allclose(disp.values[i], ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(disp.lines_[i].get_ydata(), ref, rtol=1e-9, atol=1e-12)
    # the marked temperatures: a dot per row and a label per T
    np.testing.assert_allclose(disp.mark_values, [[sp_entropy(_reference(r, T)) for T in CLASSIC_T] for r in rows])
    labels = [t.get_text() for t in ax.texts]
    assert [f"T = {T:g}" for T in CLASSIC_T] == [s for s in labels if s.startswith("T = ")]
    assert "uniform: log 10 = 2.30" in labels
    assert len(ax.collections) == 5  # one scatter per marked temperature
    # monotone in T
    assert np.all(np.diff(disp.values, axis=1) >= -1e-12)


@pytest.mark.parametrize(
    ("quantity", "ylabel", "ref"),
    [
        ("perplexity", "perplexity", lambda p: math.exp(sp_entropy(p))),
        ("max_prob", "top probability", lambda p: p.max()),
    ],
)
def test_entropy_curve_other_quantities(quantity, ylabel, ref):
    x = np.array([2.0, 1.0, 0.0, -1.0])
    disp = EntropyCurveDisplay.from_logits(x, (1.0,), quantity=quantity, num=11)
    assert disp.ax_[0].get_ylabel().startswith(ylabel)
    assert disp.ax_[0].get_legend() is None  # one row, no target: nothing to explain
    expect = [ref(_reference(x, T)) for T in disp.temperatures]
    np.testing.assert_allclose(disp.values[0], expect, rtol=1e-10)


def test_entropy_curve_bits_and_probabilities():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    disp = EntropyCurveDisplay.from_logits(p, (1.0,), input="probabilities", base=2, num=5)
    assert disp.ax_[0].get_ylabel() == "entropy H (bits)"
    assert disp.mark_values[0, 0] == pytest.approx(1.5)  # H(p) in bits at T = 1
    # the zero probability is masked: the uniform limit is over 3 classes
    assert disp.values[0, -1] == pytest.approx(math.log2(3), rel=1e-3)
    assert "uniform: log 3 = 1.58" in [t.get_text() for t in disp.ax_[0].texts]


def test_entropy_curve_target_marks_solved_temperature():
    pytest.importorskip("tempscale._entropy")
    rows = np.stack([CLASSIC_P, np.log(CLASSIC_P)])
    disp = EntropyCurveDisplay.from_logits(rows, target=1.0)
    ts = disp.target_temperatures
    assert ts.shape == (2,)
    for i in range(2):
        assert sp_entropy(_reference(rows[i], ts[i])) == pytest.approx(1.0, abs=1e-6)
    texts = [t.get_text() for t in disp.ax_[0].texts]
    assert sum(s.startswith("T* = ") for s in texts) == 2
    assert "target H = 1 nats" in [t.get_text() for t in disp.ax_[0].get_legend().get_texts()]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"quantity": "variance"}, ValueError, "'quantity' parameter of EntropyCurveDisplay.from_logits"),
        ({"t_range": (10, 1)}, ValueError, "'t_range' parameter"),
        ({"t_range": (0, 1)}, ValueError, "'t_range' parameter"),
        ({"num": 1}, ValueError, "'num' parameter"),
        ({"base": 1}, ValueError, "'base' parameter"),
        ({"logits": np.zeros((2, 2, 2))}, ValueError, "'logits' parameter"),
        ({"target": "high"}, TypeError, "'target' parameter"),
        ({"row_labels": ["a", "b"]}, ValueError, "'row_labels' parameter"),
    ],
)
def test_entropy_curve_errors(kwargs, exc, match):
    kwargs = {"logits": [-1.0, 0.0, 1.0], **kwargs}
    with pytest.raises(exc, match=match):
        EntropyCurveDisplay.from_logits(**kwargs)


# --------------------------------------------------------------------------------------------
# ReliabilityDisplay
# --------------------------------------------------------------------------------------------
def _curve(conf, acc, counts, n_bins=5):
    return {"bin_edges": np.linspace(0, 1, n_bins + 1), "confidence": np.asarray(conf),
            "accuracy": np.asarray(acc), "counts": np.asarray(counts)}


def test_reliability_display_from_curves_structure():
    before = _curve([0, 0.3, 0.5, 0.7, 0.95], [0, 0.2, 0.4, 0.5, 0.8], [0, 5, 10, 20, 65])
    after = _curve([0, 0.3, 0.5, 0.7, 0.9], [0, 0.35, 0.5, 0.72, 0.86], [0, 10, 15, 30, 45])
    disp = ReliabilityDisplay([before, after], ["before", "after"], ece=[0.12, 0.021]).plot()
    assert disp.ax_.shape == (2, 2)
    assert disp.figure_ is disp.ax_[0, 0].figure
    for j, curve in enumerate([before, after]):
        top, hist = disp.ax_[0, j], disp.ax_[1, j]
        assert len(disp.bars_[j]) == 5 and len(disp.gap_bars_[j]) == 5
        np.testing.assert_allclose(_heights(disp.bars_[j]), curve["accuracy"])
        np.testing.assert_allclose(_heights(disp.gap_bars_[j]), curve["confidence"] - curve["accuracy"])
        assert top.get_xlim() == (0, 1) and top.get_ylim() == (0, 1)
        assert top.get_ylabel() == "accuracy"
        assert hist.get_xlabel() == "confidence (top probability)"
        shares = _heights(hist.patches)
        np.testing.assert_allclose(shares, curve["counts"] / curve["counts"].sum())
        legend = [t.get_text() for t in hist.get_legend().get_texts()]
        assert legend[0].startswith("accuracy") and legend[1].startswith("mean confidence")
    assert disp.ax_[0, 0].get_title() == "before\nECE = 12.00 %"
    assert disp.ax_[0, 1].get_title() == "after\nECE = 2.10 %"
    assert [t.get_text() for t in disp.ax_[0, 0].get_legend().get_texts()] == [
        "perfect calibration", "accuracy", "gap: over-confident", "gap: under-confident"]
    assert disp.ax_[1, 0].get_ylim() == disp.ax_[1, 1].get_ylim()


def test_reliability_display_without_histogram_on_given_axes():
    fig, ax = plt.subplots()
    curve = _curve([0.1, 0.3, 0.5, 0.7, 0.9], [0.1, 0.3, 0.5, 0.7, 0.9], [1, 1, 1, 1, 1])
    disp = ReliabilityDisplay([curve], ["model"]).plot(ax=ax, hist=False)
    assert disp.ax_.shape == (1, 1) and disp.ax_[0, 0] is ax
    assert ax.get_title() == "model"
    np.testing.assert_allclose(_heights(disp.gap_bars_[0]), 0)
    # a histogram needs one Axes per column (carved) or two: three is refused
    fig3, ax3 = plt.subplots(1, 3)
    with pytest.raises(ValueError, match="'ax' parameter of ReliabilityDisplay.plot must be None, 1 "
                                         "matplotlib Axes"):
        ReliabilityDisplay([curve], ["model"]).plot(ax=ax3)
    with pytest.raises(ValueError, match="'ax' parameter of ReliabilityDisplay.plot"):
        ReliabilityDisplay([curve], ["model"]).plot(ax=ax3, hist=False)


def _overconfident(n=4000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.5
    return y, 3.0 * z


def _ece_reference(p, y, n_bins=15):
    conf, ok = p.max(1), p.argmax(1) == y
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(conf[m].mean() - ok[m].mean())
    return total / len(y)


def test_reliability_display_from_predictions_and_logits():
    pytest.importorskip("tempscale.calibration")
    y, z = _overconfident()
    before, after = sp_softmax(z, axis=1), sp_softmax(z / 3.0, axis=1)
    disp = ReliabilityDisplay.from_predictions(before, y, prediction_after=after, temperature=3.0)
    assert disp.ax_.shape == (2, 2)
    assert disp.ax_[0, 1].get_title().startswith("after temperature scaling (T = 3)")
    assert disp.ece[0] == pytest.approx(_ece_reference(before, y), abs=1e-9)
    assert disp.ece[1] < disp.ece[0]
    assert all(len(b) == 15 for b in disp.bars_)
    for j in range(2):
        counts = np.asarray(disp.curves[j].counts)
        assert counts.sum() == len(y)
    same = ReliabilityDisplay.from_logits(z, y, temperature=3.0)
    assert same.ece == pytest.approx(disp.ece)
    single = ReliabilityDisplay.from_logits(z, y, n_bins=10)
    assert single.ax_.shape == (2, 1) and len(single.bars_[0]) == 10


def test_reliability_display_fits_temperature():
    calibration = pytest.importorskip("tempscale.calibration")
    if not hasattr(calibration, "fit_temperature"):
        pytest.skip("fit_temperature not available")
    y, z = _overconfident(seed=1)
    disp = ReliabilityDisplay.from_logits(z, y, temperature="fit")
    T = float(calibration.fit_temperature(z, y))
    assert disp.ax_[0, 1].get_title().startswith(f"after temperature scaling (T = {T:.3g})")
    assert disp.ece[1] < disp.ece[0]


def test_reliability_display_binary_and_quantile_bins():
    pytest.importorskip("tempscale.calibration")
    rng = np.random.default_rng(2)
    z = rng.normal(size=800) * 3
    y = (rng.random(800) < 1 / (1 + np.exp(-z / 2))).astype(int)  # the logits are 2x too sharp
    disp = ReliabilityDisplay.from_logits(z, y, temperature=2.0, n_bins=8, strategy="quantile")
    assert disp.ax_.shape == (2, 2)
    for j in range(2):
        edges = np.asarray(disp.curves[j].bin_edges)
        widths = [r.get_width() for r in disp.bars_[j]]
        np.testing.assert_allclose(widths, np.diff(edges))  # bars follow the quantile bins
        assert np.asarray(disp.curves[j].counts).sum() == 800
    # the same from probabilities of class 1
    p1 = 1 / (1 + np.exp(-z))
    same = ReliabilityDisplay.from_predictions(p1, y, n_bins=8, strategy="quantile")
    assert same.ece[0] == pytest.approx(disp.ece[0], rel=1e-9)
    with pytest.raises(ValueError, match="'temperature' parameter of ReliabilityDisplay.from_logits"):
        ReliabilityDisplay.from_logits(z, y, temperature="auto")
    with pytest.raises(ValueError, match="'temperature' parameter"):
        ReliabilityDisplay.from_logits(z, y, temperature=-1.0)


def test_temperature_display_reference_ticks():
    x = np.array([2.0, 1.0, 0.0])
    disp = TemperatureDisplay.from_logits(x, [0.5, 1.0])
    ref = sp_softmax(x)
    # the T = 1 ticks are drawn in the T = 0.5 panel only, at the T = 1 heights
    (ticks,) = disp.ax_[0].collections
    np.testing.assert_allclose([seg[0][1] for seg in ticks.get_segments()], ref, rtol=1e-12)
    assert not disp.ax_[1].collections
    wide = TemperatureDisplay.from_logits(np.arange(40.0), [0.5, 2.0])
    assert wide.legend_ is None and not wide.ax_[0].collections  # auto: off for many classes
    forced = TemperatureDisplay.from_logits(np.arange(40.0), [0.5, 2.0], reference=True)
    assert forced.legend_ is not None and len(forced.ax_[0].collections) == 1


# --------------------------------------------------------------------------------------------
# caps: a figure with hundreds of panels, curves or classes is refused, naming the parameter
# --------------------------------------------------------------------------------------------
def test_caps_are_sane_and_documented():
    from tempscale import plot

    assert plot.MAX_TEMPERATURES == 12 and plot.MAX_CURVES == 10
    assert plot.MAX_CLASSES >= 200 and plot.MAX_GRID >= 241 and plot.MAX_FIGSIZE >= 20


@pytest.mark.parametrize("n", [13, 300])
def test_temperature_display_caps_panels(n):
    from tempscale.plot import MAX_TEMPERATURES

    temps = np.geomspace(0.1, 10, n)
    with pytest.raises(ValueError, match=rf"'temperatures' parameter of TemperatureDisplay.from_logits "
                                         rf"must be at most {MAX_TEMPERATURES} temperatures.*Got '{n} temperatures'"):
        TemperatureDisplay.from_logits([0.0, 1.0, 2.0], temps)
    with pytest.raises(ValueError, match=r"'temperatures' parameter of TemperatureDisplay must be "
                                         rf"at most {MAX_TEMPERATURES}"):
        TemperatureDisplay(np.full((n, 3), 1 / 3), temps)
    assert not plt.get_fignums()  # refused before drawing anything
    disp = TemperatureDisplay.from_logits([0.0, 1.0, 2.0], temps[:MAX_TEMPERATURES])
    assert len(disp.ax_) == MAX_TEMPERATURES


def test_temperature_display_caps_classes_and_figsize():
    from tempscale.plot import MAX_CLASSES, MAX_FIGSIZE

    with pytest.raises(ValueError, match=rf"'logits' parameter .* at most {MAX_CLASSES} classes"):
        TemperatureDisplay.from_logits(np.zeros(MAX_CLASSES + 1), [1.0])
    with pytest.raises(ValueError, match=r"'probabilities' parameter of TemperatureDisplay"):
        TemperatureDisplay(np.full((1, MAX_CLASSES + 1), 1.0), [1.0])
    for figsize in [(MAX_FIGSIZE + 1, 3), (3, 1e6), (0, 3), (-1, 3), (float("nan"), 3)]:
        with pytest.raises(ValueError, match="'figsize' parameter of TemperatureDisplay.plot"):
            TemperatureDisplay.from_logits([0.0, 1.0], [1.0], figsize=figsize)
    with pytest.raises(TypeError, match="'figsize' parameter"):
        TemperatureDisplay.from_logits([0.0, 1.0], [1.0], figsize="big")
    with pytest.raises(ValueError, match="'ncols' parameter"):
        TemperatureDisplay.from_logits([0.0, 1.0], [1.0, 2.0], ncols=0)
    # grouped bars of many classes stay within the cap
    disp = TemperatureDisplay.from_logits(np.arange(900.0) / 100, [0.5, 1, 2], layout="grouped")
    assert disp.figure_.get_figwidth() <= MAX_FIGSIZE


def test_entropy_curve_caps():
    from tempscale.plot import MAX_CURVES, MAX_GRID, MAX_TEMPERATURES

    with pytest.raises(ValueError, match=rf"'logits' parameter .* at most {MAX_CURVES} rows"):
        EntropyCurveDisplay.from_logits(np.zeros((MAX_CURVES + 1, 3)))
    with pytest.raises(ValueError, match=rf"'temperatures' parameter .* at most {MAX_TEMPERATURES}"):
        EntropyCurveDisplay.from_logits([0.0, 1.0], np.geomspace(0.1, 10, 50))
    with pytest.raises(ValueError, match=rf"'num' parameter .* \[2, {MAX_GRID}\]"):
        EntropyCurveDisplay.from_logits([0.0, 1.0], num=MAX_GRID + 1)
    with pytest.raises(ValueError, match="'values' parameter of EntropyCurveDisplay"):
        EntropyCurveDisplay(np.geomspace(0.1, 10, 5), np.zeros((MAX_CURVES + 1, 5)))
    with pytest.raises(ValueError, match="'temperatures' parameter of EntropyCurveDisplay"):
        EntropyCurveDisplay(np.geomspace(0.1, 10, MAX_GRID + 1), np.zeros((1, MAX_GRID + 1)))
    with pytest.raises(ValueError, match="'marks' parameter of EntropyCurveDisplay"):
        EntropyCurveDisplay(np.geomspace(0.1, 10, 5), np.zeros((1, 5)), marks=range(1, 20))
    with pytest.raises(ValueError, match="'figsize' parameter of EntropyCurveDisplay.plot"):
        EntropyCurveDisplay.from_logits([0.0, 1.0], figsize=(500, 4))
    assert not plt.get_fignums()


# --------------------------------------------------------------------------------------------
# issue 15: (prediction, labels) order, as in every metric; the former order warns
# --------------------------------------------------------------------------------------------
def test_reliability_display_former_argument_order_is_deprecated():
    pytest.importorskip("tempscale.calibration")
    y, z = _overconfident(n=600, k=3, seed=5)
    p, q = sp_softmax(z, axis=1), sp_softmax(z / 2.0, axis=1)
    new = ReliabilityDisplay.from_logits(z, y, temperature=2.0)
    with pytest.warns(DeprecationWarning, match=r"from_logits: the arguments are \(prediction, labels\)") as rec:
        old = ReliabilityDisplay.from_logits(y, z, temperature=2.0)
    assert rec[0].filename == __file__          # points at the caller
    assert old.ece == new.ece and old.ece[0] == pytest.approx(_ece_reference(p, y), abs=1e-12)
    # keywords by their (unchanged) names work in any order, without a warning
    assert ReliabilityDisplay.from_logits(labels=y, logits=z, temperature=2.0).ece == new.ece
    new = ReliabilityDisplay.from_predictions(p, y, prediction_after=q)
    with pytest.warns(DeprecationWarning, match="from_predictions: the arguments are"):
        old = ReliabilityDisplay.from_predictions(y, p, prediction_after=q)
    assert old.ece == new.ece and new.ece[1] == pytest.approx(_ece_reference(q, y), abs=1e-12)
    # binary scores (one column) in the former order too
    s = z[:, 1] - z[:, 0]
    yb = (y == 1).astype(int)
    with pytest.warns(DeprecationWarning):
        old = ReliabilityDisplay.from_logits(yb, s)
    assert old.ece == ReliabilityDisplay.from_logits(s, yb).ece
    plt.close("all")


def test_reliability_display_deprecated_probs_keywords():
    pytest.importorskip("tempscale.calibration")
    y, z = _overconfident(n=400, k=3, seed=6)
    p, q = sp_softmax(z, axis=1), sp_softmax(z / 2.0, axis=1)
    new = ReliabilityDisplay.from_predictions(p, y, prediction_after=q)
    with pytest.warns(DeprecationWarning, match="'probs_after' keyword is deprecated.*prediction_after="):
        after = ReliabilityDisplay.from_predictions(p, y, probs_after=q)
    with pytest.warns(DeprecationWarning, match="'probs' keyword is deprecated.*prediction="):
        kw = ReliabilityDisplay.from_predictions(labels=y, probs=p)
    assert after.ece == new.ece and kw.ece == new.ece[:1]
    with pytest.raises(TypeError, match="needs the prediction and the labels"):
        ReliabilityDisplay.from_predictions(p)
    plt.close("all")


@pytest.mark.parametrize("T", [np.float32(1.5), np.float64(2.0), 3, math.inf])
def test_reliability_display_temperature_scalars(T):
    pytest.importorskip("tempscale.calibration")
    y, z = _overconfident(n=300, k=3, seed=7)
    disp = ReliabilityDisplay.from_logits(z, y, temperature=T)
    assert disp.ece[1] == pytest.approx(_ece_reference(sp_softmax(z / float(T), axis=1), y), abs=1e-12)
    for bad, exc in ((True, TypeError), ("1.5", ValueError), (np.nan, ValueError)):
        with pytest.raises(exc, match="'temperature' parameter of ReliabilityDisplay.from_logits"):
            ReliabilityDisplay.from_logits(z, y, temperature=bad)
    plt.close("all")


# ------------------------------------------------------------------------------------------
# TemperatureDisplay(top=N): long rows (issue 14 item 5)
# ------------------------------------------------------------------------------------------
def test_temperature_display_top_draws_the_largest_and_notes_the_others():
    rng = np.random.default_rng(3)
    x = rng.normal(size=128_256) * 2.0
    x[17] = x[5] = x.max() + 1.0  # tied largest logits: the lower index first
    temps = [0.5, 1.0, 3.0]
    disp = TemperatureDisplay.from_logits(x, temps, top=6)
    order = np.argsort(-x, kind="stable")[:6]
    assert disp.class_indices_.tolist() == order.tolist() and order[:2].tolist() == [5, 17]
    for i, T in enumerate(temps):
        p = sp_softmax(x / T)
        np.testing.assert_allclose(_heights(disp.bars_[i]), p[order], rtol=1e-10)
        np.testing.assert_allclose(disp.others_[i], 1.0 - p[order].sum(), rtol=1e-9)
        np.testing.assert_allclose(disp.entropy[i], sp_entropy(p), rtol=1e-9)  # of the whole row
        assert f"{x.size - 6} others: p = {disp.others_[i]:.3g}" in disp.ax_[i].get_title()
    assert [t.get_text() for t in disp.ax_[0].get_xticklabels()] == [str(i) for i in order]
    assert "the 6 most probable of 128256" in disp.ax_[0].get_xlabel()


def test_temperature_display_top_with_labels_grouped_and_probabilities():
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    labels = ["a", "<b>", "c", "d", "e"]
    fig, ax = plt.subplots()
    disp = TemperatureDisplay.from_probabilities(p, [0.5, 2.0], labels=labels, top=2, ax=ax)
    assert disp.class_indices_.tolist() == [1, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["<b>", "d"]
    assert len(disp.bars_) == 2 and all(len(b) == 2 for b in disp.bars_)
    q = p ** 2 / np.sum(p ** 2)
    np.testing.assert_allclose(_heights(disp.bars_[0]), q[[1, 3]], rtol=1e-12)
    assert "3 others" in disp.bars_[0].get_label()
    # top >= the number of classes draws them all, with no note
    full = TemperatureDisplay.from_logits([1.0, 2.0], [1.0], top=5)
    assert full.class_indices_.tolist() == [0, 1] and "others" not in full.ax_[0].get_title()
    np.testing.assert_array_equal(full.others_, [0.0])
    # the constructor takes top too (ranked by the reference)
    d = TemperatureDisplay(np.array([[0.1, 0.6, 0.3]]), [1.0], reference=np.array([0.1, 0.6, 0.3]), top=2)
    assert d.class_indices_.tolist() == [1, 2]


def test_temperature_display_top_is_checked():
    with pytest.raises(ValueError, match="'top' parameter of TemperatureDisplay.from_logits must be an int in"):
        TemperatureDisplay.from_logits([1.0, 2.0], top=0)
    with pytest.raises(TypeError, match="'top' parameter of TemperatureDisplay.from_logits"):
        TemperatureDisplay.from_logits([1.0, 2.0], top=2.5)
    with pytest.raises(ValueError, match="pass top=N for long rows"):
        TemperatureDisplay.from_logits(np.zeros(5000))


# ------------------------------------------------------------------------------------------
# ReliabilityDisplay: counts, bootstrap bands, CORP, every ax layout, from_estimator (issue 13 item 3)
# ------------------------------------------------------------------------------------------
def _binary_data(n=1500, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] - 0.7 * X[:, 1] + 0.8 * rng.normal(size=n) > 0).astype(int)
    return X, y


def test_reliability_display_labels_each_bin_with_its_count():
    from tempscale.calibration import reliability_curve

    y, z = _overconfident(n=800)
    p = sp_softmax(z, axis=1)
    curve = reliability_curve(p, y, n_bins=10)
    disp = ReliabilityDisplay.from_predictions(p, y, n_bins=10)
    got = [int(t.get_text()) for t in disp.count_texts_[0]]
    assert got == curve.counts[curve.counts > 0].tolist() and sum(got) == 800
    assert all(t.axes is disp.ax_[1, 0] for t in disp.count_texts_[0])
    fig, ax = plt.subplots()
    flat = ReliabilityDisplay.from_predictions(p, y, n_bins=10, ax=ax, hist=False)
    assert [int(t.get_text()) for t in flat.count_texts_[0]] == got and flat.count_texts_[0][0].axes is ax
    none = ReliabilityDisplay.from_predictions(p, y, n_bins=10, counts=False)
    assert none.count_texts_ == [[]]
    with pytest.raises(TypeError, match="'counts' parameter of ReliabilityDisplay.plot"):
        ReliabilityDisplay.from_predictions(p, y, counts="yes")


def test_reliability_display_bootstrap_band_and_ece_interval():
    from tempscale.calibration import calibration_error, reliability_curve

    y, z = _overconfident(n=1200, seed=5)
    p = sp_softmax(z / 2.0, axis=1)
    B, seed = 60, 11
    disp = ReliabilityDisplay.from_predictions(p, y, n_bins=8, n_bootstrap=B, random_state=seed)
    # the band, recomputed by hand: the same resamples, each curve read at the bins' mean confidences
    curve = reliability_curve(p, y, n_bins=8)
    filled = curve.counts > 0
    x = curve.confidence[filled]
    rng = np.random.default_rng(seed)
    reads = np.full((B, x.size), np.nan)
    for b in range(B):
        idx = rng.integers(0, len(y), len(y))
        c = reliability_curve(p[idx], y[idx], n_bins=8)
        for i, xi in enumerate(x):
            k = min(max(int(np.ceil(xi * 8)) - 1, 0), 7)  # bins (k/8, (k+1)/8]
            reads[b, i] = c.accuracy[k] if c.counts[k] else np.nan
    lo = np.nanquantile(reads, 0.025, axis=0)
    hi = np.nanquantile(reads, 0.975, axis=0)
    bx, blo, bhi = disp.bands[0]
    np.testing.assert_allclose(bx, x, rtol=1e-12)
    np.testing.assert_allclose(blo, lo, rtol=1e-12)
    np.testing.assert_allclose(bhi, hi, rtol=1e-12)
    assert disp.bands_[0] is not None and disp.bands_[0].axes is disp.ax_[0, 0]
    inside = (curve.accuracy[filled] >= blo - 1e-12) & (curve.accuracy[filled] <= bhi + 1e-12)
    assert inside.mean() >= 0.75
    legend = [t.get_text() for t in disp.ax_[0, 0].get_legend().get_texts()]
    assert "bootstrap band" in legend
    # the ECE interval is calibration_error's own bootstrap
    r = calibration_error(p, y, n_bins=8, n_bootstrap=B, random_state=seed)
    assert disp.ece_interval[0] == (pytest.approx(r.low), pytest.approx(r.high))
    assert f"[{100 * r.low:.2f}, {100 * r.high:.2f}]" in disp.ax_[0, 0].get_title()
    with pytest.raises(ValueError, match="'n_bootstrap' parameter of ReliabilityDisplay.from_predictions"):
        ReliabilityDisplay.from_predictions(p, y, n_bootstrap=-1)
    with pytest.raises(ValueError, match="'confidence_level' parameter of ReliabilityDisplay.from_predictions"):
        ReliabilityDisplay.from_predictions(p, y, n_bootstrap=5, confidence_level=1.0)


def test_reliability_display_corp_isotonic_curve():
    from tempscale.calibration import reliability_curve

    X, y = _binary_data()
    s = 2.5 * (X[:, 0] - 0.7 * X[:, 1])
    p = sp_softmax(np.column_stack([np.zeros_like(s), s]), axis=1)
    try:
        curve = reliability_curve(p, y, strategy="isotonic")
    except ValueError:
        pytest.skip("reliability_curve has no strategy='isotonic' here yet")
    disp = ReliabilityDisplay.from_predictions(p, y, strategy="isotonic", n_bootstrap=20, random_state=0)
    line = disp.corp_lines_[0]
    assert line is not None and line.get_label() == "CORP (isotonic)"
    f = curve.counts > 0
    np.testing.assert_allclose(line.get_ydata(), np.repeat(curve.accuracy[f], 2))
    acc = curve.accuracy[f]
    assert np.all(np.diff(acc) >= -1e-12)  # isotonic: non-decreasing
    want = float(np.sum(curve.counts[f] * np.abs(acc - curve.confidence[f])) / curve.counts.sum())
    assert disp.ece[0] == pytest.approx(want)
    assert disp.bands_[0] is not None


def test_reliability_display_takes_an_ax_in_every_layout():
    y, z = _overconfident(n=600)
    kw = dict(n_bins=6)
    # one Axes of a constrained-layout grid: the histogram is carved out of its slot
    fig, axs = plt.subplots(1, 2, layout="constrained")
    d = ReliabilityDisplay.from_logits(z, y, ax=axs[1], **kw)
    assert d.ax_.shape == (2, 1) and d.ax_[0, 0] is axs[1] and d.figure_ is fig
    assert d.ax_[1, 0].get_xlabel() == "confidence (top probability)"
    top, bottom = d.ax_[0, 0].get_position(), d.ax_[1, 0].get_position()
    assert bottom.y1 <= top.y0 + 1e-9 and abs(bottom.x0 - top.x0) < 0.02
    fig.canvas.draw()  # the layout engine copes
    # an Axes placed by hand (no subplot slot): its box is split
    fig2 = plt.figure()
    a = fig2.add_axes((0.1, 0.1, 0.8, 0.8))
    d2 = ReliabilityDisplay.from_logits(z, y, ax=a, **kw)
    assert d2.ax_[0, 0] is a and d2.ax_[1, 0].get_position().y1 <= a.get_position().y0 + 1e-9
    # a (diagram, histogram) pair; two columns with one Axes each; a (2, 2) array
    fig3, (a1, a2) = plt.subplots(2, 1)
    d3 = ReliabilityDisplay.from_logits(z, y, ax=[a1, a2], **kw)
    assert d3.ax_[0, 0] is a1 and d3.ax_[1, 0] is a2
    fig4, cols = plt.subplots(1, 2)
    d4 = ReliabilityDisplay.from_logits(z, y, temperature=2.0, ax=cols, **kw)
    assert d4.ax_.shape == (2, 2) and d4.ax_[0, 0] is cols[0] and d4.ax_[0, 1] is cols[1]
    fig5, grid = plt.subplots(2, 2)
    d5 = ReliabilityDisplay.from_logits(z, y, temperature=2.0, ax=grid, **kw)
    assert (d5.ax_ == grid).all()
    # without a histogram: one Axes per column
    fig6, one = plt.subplots()
    d6 = ReliabilityDisplay.from_logits(z, y, ax=one, hist=False, **kw)
    assert d6.ax_.shape == (1, 1) and d6.ax_[0, 0] is one and len(fig6.axes) == 1
    with pytest.raises(ValueError, match="'ax' parameter of ReliabilityDisplay.plot"):
        ReliabilityDisplay.from_logits(z, y, temperature=2.0, ax=one, **kw)


def test_reliability_display_from_estimator():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    X, y = _binary_data()
    clf = LogisticRegression(C=100.0).fit(X[:1000], y[:1000])
    Xt, yt = X[1000:], y[1000:]
    disp = ReliabilityDisplay.from_estimator(clf, Xt, yt, n_bins=8)
    ref = ReliabilityDisplay.from_predictions(clf.predict_proba(Xt), yt, n_bins=8)
    assert disp.names == ["LogisticRegression"] and disp.ece == ref.ece
    np.testing.assert_array_equal(disp.curves[0].counts, ref.curves[0].counts)
    # string classes map to predict_proba's columns
    names = np.array(["no", "yes"])
    clf_s = LogisticRegression(C=100.0).fit(X[:1000], names[y[:1000]])
    ds = ReliabilityDisplay.from_estimator(clf_s, Xt, names[yt], n_bins=8)
    assert ds.ece == pytest.approx(ref.ece)
    with pytest.raises(ValueError, match="'y' parameter of ReliabilityDisplay.from_estimator"):
        ReliabilityDisplay.from_estimator(clf_s, Xt, np.array(["maybe"] * len(yt)))
    with pytest.raises(TypeError, match="'estimator' parameter of ReliabilityDisplay.from_estimator"):
        ReliabilityDisplay.from_estimator(object(), Xt, yt)
    # a tempscale scaler wrapping the classifier: before and after, side by side
    from tempscale.calibration import TemperatureScaler

    if "estimator" not in TemperatureScaler().get_params():
        pytest.skip("TemperatureScaler(estimator=...) is not available here")
    scaler = TemperatureScaler(estimator=clf).fit(X[1000:1200], y[1000:1200])
    d2 = ReliabilityDisplay.from_estimator(scaler, Xt, yt, n_bins=8, n_bootstrap=10, random_state=0)
    assert d2.ax_.shape == (2, 2)
    assert d2.names[0] == "LogisticRegression" and d2.names[1].startswith("TemperatureScaler (T = ")
    after = ReliabilityDisplay.from_predictions(scaler.predict_proba(Xt), yt, n_bins=8)
    assert d2.ece[1] == pytest.approx(after.ece[0]) and d2.ece[0] == pytest.approx(ref.ece[0])
    only = ReliabilityDisplay.from_estimator(scaler, Xt, yt, n_bins=8, compare=False)
    assert only.ax_.shape == (2, 1) and only.ece[0] == pytest.approx(after.ece[0])
