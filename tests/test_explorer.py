"""Browser tests of the explorer page: headless Debian Chromium driven by Playwright (sync API).

The page is loaded from disk (file://), driven the way a user drives it (keyboard on the slider,
typing in the boxes, clicking presets, examples and the mode switch), and the probabilities it
renders (each bar's ``data-p`` holds the exact double) are compared with ``tempscale.softmax`` /
``tempscale.temper``; the displayed statistics with ``tempscale.entropy`` and friends.  Every test
also checks that the page made no request other than its own file, raised no JavaScript error and
opened no dialog.  A screenshot goes to ``test-artifacts/explorer.png``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from tempscale import softmax, temper
from tempscale.explorer import classic_vector, explorer_html

# one worker runs the module, so the browser (a module fixture) is launched once
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
XSS = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="alert(2)">'
TOL = dict(rtol=1e-6, atol=1e-12)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Explorer:
    """One loaded page plus what it did: requests, dialogs, console errors."""

    def __init__(self, context, page):
        self.context, self.page = context, page
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    # reading -------------------------------------------------------------------------
    def attr(self, selector: str, name: str) -> str:
        return self.page.get_attribute(selector, name)

    @property
    def T(self) -> float:
        return float(self.attr("#explorer", "data-temperature"))  # "Infinity" parses too

    def probs(self) -> np.ndarray:
        vals = self.page.eval_on_selector_all("#bars rect.bar", "els => els.map(e => e.getAttribute('data-p'))")
        return np.array([float(v) for v in vals])

    def stat(self, name: str) -> float:
        return float(self.attr(f"#stat-{name}", "data-value"))

    def text(self, selector: str) -> str:
        return self.page.text_content(selector)

    def visible(self, selector: str) -> bool:
        return self.page.is_visible(selector)

    # acting --------------------------------------------------------------------------
    def set_T(self, text: str) -> None:
        self.page.fill("#t-input", text)

    def set_values(self, text: str) -> None:
        self.page.fill("#values", text)

    def set_mode(self, mode: str) -> None:
        self.page.click(f"label[for=mode-{mode}]")

    def check_clean(self) -> None:
        assert self.dialogs == [], f"the page opened dialogs: {self.dialogs}"
        assert self.errors == [], f"JavaScript errors: {self.errors}"
        assert self.blocked == [], f"the page tried the network: {self.blocked}"
        assert self.requests and all(u.startswith("file://") for u in self.requests), self.requests


@pytest.fixture
def open_page(browser, tmp_path):
    opened: list[Explorer] = []

    def _open(html: str | None = None, *, fragment: str = "", viewport=(1280, 900), **kwargs) -> Explorer:
        path = tmp_path / f"explorer{len(opened)}.html"
        path.write_text(explorer_html(**kwargs) if html is None else html, encoding="utf-8")
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        ex = Explorer(context, context.new_page())

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                ex.blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        ex.page.on("request", lambda req: ex.requests.append(req.url))
        ex.page.on("dialog", lambda d: (ex.dialogs.append(d.message), d.dismiss()))
        ex.page.on("pageerror", lambda e: ex.errors.append(str(e)))
        ex.page.on("console", lambda m: ex.errors.append(m.text) if m.type == "error" else None)
        ex.page.goto(path.as_uri() + fragment)
        ex.page.wait_for_selector("#explorer[data-ready=true]", state="attached")
        opened.append(ex)
        return ex

    yield _open
    for ex in opened:
        try:
            ex.check_clean()
        finally:
            ex.context.close()


def reference(values, T, mode="logits"):
    x = np.asarray(values, dtype=np.float64)
    return np.asarray(temper(x, T) if mode == "probabilities" else softmax(x, T))


def entropy_ref(p):
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def assert_bars(ex: Explorer, values, mode="logits"):
    got, T = ex.probs(), ex.T
    want = reference(values, T, mode)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL, err_msg=f"T = {T}, x = {values}")
    return got, T


# ------------------------------------------------------------------------------------------
def test_default_page_is_the_classic_example_read_as_probabilities(open_page):
    ex = open_page()
    classic = classic_vector()
    assert ex.attr("#explorer", "data-mode") == "probabilities" and ex.T == 1.0
    assert ex.page.is_checked("#mode-probabilities")
    p, _ = assert_bars(ex, classic, "probabilities")
    np.testing.assert_allclose(p, classic / classic.sum(), rtol=1e-12)  # T = 1 gives p back
    labels = ex.page.eval_on_selector_all("#bars rect.bar", "els => els.map(e => e.dataset.label)")
    assert labels == [str(i) for i in range(10)]
    # the statistics, against the library and plain float64 formulas
    from tempscale._entropy import entropy, perplexity

    h = float(entropy(np.log(classic)))
    np.testing.assert_allclose(ex.stat("entropy"), h, rtol=1e-9)
    np.testing.assert_allclose(ex.stat("entropy"), entropy_ref(p), rtol=1e-9)
    np.testing.assert_allclose(float(ex.attr("#stat-entropy-bits", "data-value")), h / math.log(2), rtol=1e-9)
    np.testing.assert_allclose(ex.stat("perplexity"), float(perplexity(np.log(classic))), rtol=1e-9)
    np.testing.assert_allclose(ex.stat("top"), p.max(), rtol=1e-12)
    np.testing.assert_allclose(ex.stat("effective"), 1.0 / np.sum(p**2), rtol=1e-9)
    assert "nats" in ex.text("#stat-entropy") and "bits" in ex.text("#stat-entropy-bits")
    assert ex.text("#stat-top-label") == "class 4"
    assert "1 / " in ex.text(".stats") and "Effective classes" in ex.text(".stats")
    assert not ex.visible("#mistake-callout")
    # the curve and its marker
    assert ex.page.get_attribute("#curve path.curve-line", "d").count("L") > 100
    assert float(ex.attr("#curve-marker", "data-t")) == 1.0
    np.testing.assert_allclose(float(ex.attr("#curve-marker", "data-entropy")), h, rtol=1e-9)

    ARTIFACTS.mkdir(exist_ok=True)
    ex.page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)
    assert (ARTIFACTS / "explorer.png").stat().st_size > 10_000

    # probabilities read as logits: the same numbers are nearly flat at T = 1
    ex.set_mode("logits")
    assert ex.attr("#explorer", "data-mode") == "logits"
    p_logits, _ = assert_bars(ex, classic, "logits")
    assert p_logits.max() < 0.14
    assert ex.visible("#mistake-callout") and "probabilities read as logits" in ex.text("#mistake-callout")
    ex.page.click("#mistake-fix")
    assert ex.attr("#explorer", "data-mode") == "probabilities"
    assert_bars(ex, classic, "probabilities")


def test_slider_by_keyboard(open_page):
    x = [2.0, 1.0, 0.1, -3.0, 0.5]
    ex = open_page(logits=x, labels=list("abcde"))
    assert ex.attr("#explorer", "data-mode") == "logits"
    assert_bars(ex, x)
    ex.page.focus("#t-slider")
    for key, want in [("ArrowRight", 1.02), ("ArrowRight", 1.05), ("ArrowLeft", 1.02), ("PageDown", 0.813),
                      ("PageUp", 1.02), ("Home", 0.01), ("End", 100.0), ("PageDown", 79.4)]:
        ex.page.keyboard.press(key)
        assert ex.T == want, key
        assert ex.page.input_value("#t-input") == repr(want).removesuffix(".0")
        assert ex.attr("#t-slider", "aria-valuetext") == f"T = {ex.page.input_value('#t-input')}"
        assert_bars(ex, x)
    ex.page.keyboard.press("Home")
    p, _ = assert_bars(ex, x)
    assert p[0] == pytest.approx(1.0, abs=1e-15) and 0 < p[1] < 1e-40  # T = 0.01: all but one-hot
    assert ex.text("#t-out") == "0.01"


def test_number_box_takes_zero_inf_and_extremes(open_page):
    x = [3.0, 3.0, 1.0, -2.0, -math.inf]
    ex = open_page(logits=x)
    cases = [("0.25", 0.25, -0.6), ("0", 0.0, -2), ("inf", math.inf, 2), ("1e-300", 1e-300, -2),
             ("1e300", 1e300, 2), ("Infinity", math.inf, 2), ("2", 2.0, 0.3)]
    for text, T, slider in cases:
        ex.set_T(text)
        assert ex.T == T, text
        assert float(ex.page.input_value("#t-slider")) == pytest.approx(slider, abs=1e-9)  # snapped
        assert ex.attr("#t-input", "aria-invalid") == "false"
        p, _ = assert_bars(ex, x)
        assert p[4] == 0.0
    ex.set_T("0")
    np.testing.assert_array_equal(ex.probs(), [0.5, 0.5, 0, 0, 0])  # argmax split among the tie
    assert ex.attr("#t-input", "aria-invalid") == "false"
    ex.set_T("inf")
    np.testing.assert_allclose(ex.probs(), [0.25, 0.25, 0.25, 0.25, 0], rtol=1e-15)
    ex.set_T("5e-324")  # the smallest positive double: T/2 underflows to 0, still no NaN
    assert ex.T == 5e-324
    np.testing.assert_array_equal(ex.probs(), [0.5, 0.5, 0, 0, 0])
    for bad in ["-1", "abc", "", "nan", "0x10"]:
        ex.set_T(bad)
        assert ex.attr("#t-input", "aria-invalid") == "true", bad
        assert ex.visible("#t-error")
        assert ex.T == 5e-324  # unchanged
    ex.set_T("0.5")
    assert not ex.visible("#t-error") and ex.T == 0.5
    # typed key by key, like a person
    ex.page.fill("#t-input", "")
    ex.page.locator("#t-input").press_sequentially("0.125")
    assert ex.T == 0.125
    assert_bars(ex, x)


# rows the JavaScript must get exactly as the library does (typed into the logits box)
CONTRACT_ROWS = [
    ("1e308, -1e308, 1e308, -inf", [1e308, -1e308, 1e308, -math.inf]),
    ("1.7976931348623157e308 -1.7976931348623157e308 0", [1.7976931348623157e308, -1.7976931348623157e308, 0.0]),
    ("-inf, -inf, -inf", [-math.inf] * 3),
    ("inf, 1, inf, -inf", [math.inf, 1.0, math.inf, -math.inf]),
    ("nan, 1, 2", [math.nan, 1.0, 2.0]),
    ("1e-320; 0; -5e-324", [1e-320, 0.0, -5e-324]),
    ("−2 \u22121.5 0.25e1 +4", [-2.0, -1.5, 2.5, 4.0]),
    ("100 200 300 1000.5", [100.0, 200.0, 300.0, 1000.5]),
    ("7", [7.0]),
]


def test_javascript_softmax_follows_the_contract(open_page):
    ex = open_page(logits=[0.0, 1.0])
    for text, x in CONTRACT_ROWS:
        ex.set_values(text)
        assert ex.attr("#values", "aria-invalid") == "false", text
        for T in ["1", "0.5", "1e-3", "0", "inf", "100", "1e-30"]:
            ex.set_T(T)
            p, _ = assert_bars(ex, x)
            if all(v == -math.inf for v in x):
                assert np.all(p == 0) and not np.isnan(p).any()
                assert "masked" in ex.text("#bars")
                assert ex.text("#stat-entropy") == "\u2013"
            elif any(math.isnan(v) for v in x):
                assert np.isnan(p).all() and "NaN" in ex.text("#bars")
                assert math.isnan(ex.stat("entropy")) and ex.text("#stat-entropy").startswith("NaN")
            else:
                np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
                np.testing.assert_allclose(ex.stat("entropy"), entropy_ref(p), rtol=1e-9, atol=1e-12)
    ex.set_values("1, 2, oops, 4")
    assert ex.attr("#values", "aria-invalid") == "true" and "oops" in ex.text("#values-error")


def test_probabilities_mode_tempers(open_page):
    ex = open_page(logits=[0.1, 0.2, 0.7, 0.0], input="probabilities")
    rows = [[0.1, 0.2, 0.7, 0.0], [0.0, 0.0], [2.0, 2.0, 1.0], [1e-300, 1e-310, 0.5], [math.inf, 1.0, 0.0]]
    for x in rows:
        ex.set_values(", ".join(map(repr, x)))
        for T in ["1", "0.5", "0", "inf", "3.7", "0.02"]:
            ex.set_T(T)
            p, _ = assert_bars(ex, x, "probabilities")
            if x[-1] == 0.0 and any(x):
                assert p[-1] == 0.0  # zeros stay zero
    ex.set_values("0.5, -0.1, 0.6")
    assert ex.attr("#explorer", "data-error") == "true"
    assert "\u2265 0" in ex.text("#values-error") and "entry 2" in ex.text("#values-error")
    assert ex.page.eval_on_selector_all("#bars rect.bar", "els => els.length") == 0
    ex.set_mode("logits")
    assert ex.attr("#explorer", "data-error") == "false"
    assert_bars(ex, [0.5, -0.1, 0.6])


def test_presets_and_examples(open_page):
    ex = open_page()
    for t in ["0.1", "0.5", "1", "2", "10", "0", "inf"]:
        ex.page.click(f".presets button[data-t='{t}']")
        assert ex.T == float(t)
        assert ex.attr(f".presets button[data-t='{t}']", "aria-pressed") == "true"
        assert ex.page.eval_on_selector_all(".presets button[aria-pressed=true]", "e => e.length") == 1
        assert_bars(ex, classic_vector(), "probabilities")
    ex.page.click("[data-example=three]")
    assert ex.T == 0.5 and ex.page.input_value("#values") == "-1, 0, 1"
    np.testing.assert_allclose(ex.probs(), [0.01587624, 0.11731043, 0.86681333], atol=5e-9)
    ex.page.click("[data-example=ties]")
    p, _ = assert_bars(ex, [2, 2, 1, 0.5, -math.inf])
    assert "2 tied" in ex.text("#stat-top-label")
    assert ex.attr("#bars rect.bar[data-index='4']", "data-masked") == "true"
    ex.page.click("[data-example=probabilities-as-logits]")
    assert ex.attr("#explorer", "data-mode") == "logits" and ex.visible("#mistake-callout")
    assert_bars(ex, classic_vector())


def test_entropy_curve_marks_and_sets_T(open_page):
    x = [4.0, 1.0, 0.0, -1.0]
    ex = open_page(logits=x, temperature=0.1)
    cx1 = float(ex.attr("#curve-marker", "cx"))
    ex.set_T("10")
    cx2 = float(ex.attr("#curve-marker", "cx"))
    assert cx2 > cx1
    np.testing.assert_allclose(float(ex.attr("#curve-marker", "data-entropy")),
                               entropy_ref(reference(x, 10.0)), rtol=1e-9)
    box = ex.page.locator("#curve").bounding_box()
    ex.page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    assert 0.01 < ex.T < 10
    assert_bars(ex, x)


def _assert_escaped(ex: Explorer, labels, title=None):
    shown = ex.page.eval_on_selector_all("#bars rect.bar", "els => els.map(e => e.dataset.label)")
    assert shown[: len(labels)] == labels
    ticks = ex.page.eval_on_selector_all("#bars text.xlabel", "els => els.map(e => e.textContent)")
    assert any(t.startswith(XSS[:6]) and "\u2026" in t for t in ticks)  # drawn as text (shortened to fit)
    if not ex.page.evaluate("document.getElementById('numbers').open"):
        ex.page.click("#numbers summary")  # the table of numbers is filled when opened
        ex.page.wait_for_function("() => document.querySelectorAll('#table-body tr').length > 0")
    rows = ex.page.eval_on_selector_all("#table-body th", "els => els.map(e => e.textContent)")
    assert rows[: len(labels)] == labels
    assert ex.page.eval_on_selector_all("script", "e => e.length") == 2  # only the page's own
    assert ex.page.eval_on_selector_all("img, iframe, object, embed", "e => e.length") == 0
    if title is not None:
        assert ex.text("#page-title") == title and ex.page.title() == title
    assert ex.dialogs == []


def test_labels_and_title_escaped_from_python(open_page):
    labels = [XSS, XSS_IMG, "a & b", "\u2028line\u2029sep", "</script><!--", '"quoted"']
    title = "</title>" + XSS
    ex = open_page(logits=[1, 2, 3, 4, 5, 6], labels=labels, title=title)
    _assert_escaped(ex, labels, title)
    ex.set_T("0")  # re-render with the labels in the "top" label
    assert ex.text("#stat-top-label") == '"quoted"'


def test_labels_and_title_escaped_from_the_url(open_page):
    labels = [XSS, XSS_IMG, "plain"]
    frag = ("#x=" + quote("1,2,-inf") + "&T=0.5&mode=logits&labels=" + quote(",".join(labels))
            + "&title=" + quote(XSS))
    ex = open_page(fragment=frag)
    _assert_escaped(ex, labels, XSS)
    assert ex.T == 0.5 and ex.attr("#explorer", "data-mode") == "logits"
    assert_bars(ex, [1, 2, -math.inf])
    assert ex.page.input_value("#labels") == ", ".join(labels)


def test_labels_with_commas_survive_a_reload(open_page):
    labels = ["a, b", XSS, "[not json"]
    ex = open_page(logits=[0.0, 1.0, 2.0], labels=labels)
    ex.page.wait_for_function("() => location.hash.includes('labels=')")
    ex.page.reload()
    ex.page.wait_for_selector("#explorer[data-ready=true]", state="attached")
    _assert_escaped(ex, labels)


def test_labels_typed_into_the_box_are_text(open_page):
    ex = open_page(logits=[0.0, 1.0, 2.0])
    ex.page.fill("#labels", f"{XSS}, {XSS_IMG}")
    _assert_escaped(ex, [XSS, XSS_IMG, "2"])
    # the state goes to the URL fragment, from which a reload restores it
    ex.page.wait_for_function("() => location.hash.includes('labels=')")
    ex.page.reload()
    ex.page.wait_for_selector("#explorer[data-ready=true]", state="attached")
    _assert_escaped(ex, [XSS, XSS_IMG, "2"])


def test_narrow_screen_has_no_horizontal_scroll(open_page):
    ex = open_page(viewport=(390, 800), logits=np.linspace(-3, 3, 40).tolist(),
                   labels=[f"class number {i}" for i in range(40)])
    assert ex.page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_bars(ex, np.linspace(-3, 3, 40))
    # one column: the chart first, the slider right under it, the examples further down
    chart = ex.page.locator("#bars").bounding_box()
    slider = ex.page.locator("#t-slider").bounding_box()
    examples = ex.page.locator(".examples-panel").bounding_box()
    assert chart["y"] < slider["y"] < examples["y"]
    assert slider["y"] + slider["height"] - chart["y"] < 800  # both fit on one phone screen


def test_controls_are_labelled_and_keyboard_reachable(open_page):
    ex = open_page()
    for label, selector in [("Temperature T (log scale)", "#t-slider"),
                            ("Temperature T (type a number, 0 or inf)", "#t-input"),
                            ("Probabilities", "#values"), ("Class labels (optional)", "#labels"),
                            ("logits", "#mode-logits"), ("probabilities", "#mode-probabilities"),
                            ("zoom y axis", "#zoom")]:
        loc = ex.page.get_by_label(label, exact=True)
        assert loc.count() == 1 and loc.evaluate("e => '#' + e.id") == selector, label
    # Tab from the page start reaches the slider, then the box; typing there updates the bars
    ex.page.keyboard.press("Tab")
    assert ex.page.evaluate("document.activeElement.id") == "t-slider"
    ex.page.keyboard.press("ArrowLeft")
    assert ex.T == 0.977
    ex.page.keyboard.press("Tab")
    assert ex.page.evaluate("document.activeElement.id") == "t-input"
    ex.page.keyboard.press("Control+A")
    ex.page.keyboard.type("10")
    assert ex.T == 10.0
    assert_bars(ex, classic_vector(), "probabilities")
    # zooming the y axis rescales the ticks, not the numbers
    top_tick = "els => Math.max(...els.map(e => parseFloat(e.textContent)))"
    assert ex.page.eval_on_selector_all("#bars text.tick", top_tick) == 1
    ex.page.check("#zoom")
    assert ex.page.eval_on_selector_all("#bars text.tick", top_tick) == 0.5  # fits the T = 1 outline (0.399)
    assert_bars(ex, classic_vector(), "probabilities")


# ------------------------------------------------------------------------------------------
# sampling filters and large vocabularies (issue 14 item 5)
# ------------------------------------------------------------------------------------------
def _js_number(v: float):
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def _warp_ref(x, T, **f):
    """tempscale.sampling.warp's probabilities and kept set (finite log-probabilities: a kept token's
    probability may underflow to 0 at tiny T)."""
    from tempscale.sampling import warp

    x = np.asarray(x, dtype=np.float64)
    return np.asarray(warp(x, T, **f)), np.isfinite(np.asarray(warp(x, T, log=True, **f)))


def _bars_warped(ex: Explorer):
    rows = ex.page.eval_on_selector_all(
        "#bars rect.bar", "els => els.map(e => [+e.dataset.index, e.dataset.kept, e.dataset.warped])")
    idx = np.array([r[0] for r in rows])
    return idx, np.array([r[1] == "true" for r in rows]), np.array([float(r[2]) for r in rows])


def test_filter_controls_show_what_warp_keeps(open_page):
    # ties at the top-k / top-p boundaries, a masked class, a probability far below min-p
    x = [2.0, 1.0, 1.0, 0.5, 3.0, -np.inf, 1.0, -4.0, 0.25, 2.0]
    ex = open_page(logits=x, labels=[f"t{i}" for i in range(10)], temperature=0.7, top_k=3)
    assert ex.attr("#explorer", "data-filters") == "true" and ex.page.input_value("#top-k") == "3"
    steps = [  # (box or radio, text), then the page must equal warp with the accumulated filters
        (None, None),
        ("#top-k", "5"), ("#top-k", "0"), ("#top-p", "0.8"), ("#min-p", "0.3"), ("#top-n-sigma", "0.9"),
        ("#order-last", None), ("#t-input", "3"), ("#min-keep", "4"), ("#t-input", "0"), ("#t-input", "inf"),
        ("#top-n-sigma", ""), ("#top-p", "0.95"), ("#order-first", None), ("#t-input", "0.2"),
    ]
    f = dict(top_k=3, top_p=1.0, min_p=0.0, top_n_sigma=0.0, order="temperature-first", min_tokens_to_keep=1)
    names = {"#top-k": "top_k", "#top-p": "top_p", "#min-p": "min_p", "#top-n-sigma": "top_n_sigma",
             "#min-keep": "min_tokens_to_keep"}
    off = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "top_n_sigma": 0.0, "min_tokens_to_keep": 1}
    for box, text in steps:
        if box in names:
            ex.page.fill(box, text)
            f[names[box]] = off[names[box]] if text == "" else float(text)
        elif box in ("#order-last", "#order-first"):
            ex.page.click(f"label[for={box[1:]}]")
            f["order"] = "temperature-last" if box == "#order-last" else "temperature-first"
        elif box == "#t-input":
            ex.set_T(text)
        kw = dict(f, top_k=int(f["top_k"]), min_tokens_to_keep=int(f["min_tokens_to_keep"]))
        p_ref, keep_ref = _warp_ref(x, ex.T, **kw)
        idx, kept, warped = _bars_warped(ex)
        assert list(idx) == list(range(10))
        assert kept.tolist() == keep_ref.tolist(), (box, text, kw, ex.T)
        np.testing.assert_allclose(warped, p_ref, rtol=1e-6, atol=1e-12, err_msg=f"{box} {text} {kw}")
        if ex.attr("#explorer", "data-filters") == "true":  # kept bars drawn renormalised, removed greyed
            n_removed = ex.page.eval_on_selector_all("#bars rect.bar.removed", "e => e.length")
            assert n_removed == int((~keep_ref).sum())
            assert int(ex.attr("#kept-summary", "data-kept")) == int(keep_ref.sum())
    # the filters travel in the URL fragment: a reload restores them
    ex.page.wait_for_function("() => { const h = location.hash; return h.includes('T=0.2') && "
                              "h.includes('top_p=0.95') && h.includes('top_k=0') && !h.includes('order='); }")
    ex.page.reload()
    ex.page.wait_for_selector("#explorer[data-ready=true]", state="attached")
    assert [ex.page.input_value(b) for b in ("#top-k", "#top-p", "#min-p", "#min-keep")] == ["0", "0.95", "0.3", "4"]
    assert ex.page.is_checked("#order-first") and ex.T == 0.2
    p_ref, keep_ref = _warp_ref(x, 0.2, top_p=0.95, min_p=0.3, min_tokens_to_keep=4)
    assert _bars_warped(ex)[1].tolist() == keep_ref.tolist()
    ex.page.screenshot(path=str(ARTIFACTS / "explorer-filters.png"), full_page=True)
    ex.page.fill("#top-p", "1.5")  # refused with a message, the last valid value stays
    assert ex.visible("#filter-error") and "top-p must be in (0, 1]" in ex.text("#filter-error")
    assert ex.page.get_attribute("#top-p", "aria-invalid") == "true"


def test_javascript_warp_equals_the_library_on_random_rows(open_page):
    """The page's warp against tempscale.sampling.warp: kept sets exactly, probabilities to 1e-6,
    on rows with many ties (rounded logits), masked entries, every filter, both orders, T = 0 / tiny / inf."""
    rng = np.random.default_rng(20261130)
    cases = []
    for _ in range(250):
        V = int(rng.integers(1, 48))
        x = np.round(rng.normal(size=V) * rng.choice([0.3, 2.0, 12.0]), int(rng.integers(0, 3)))
        if rng.random() < 0.3:
            x[rng.integers(0, V)] = -np.inf
        f = dict(top_k=int(rng.integers(0, 7)), top_p=float(rng.choice([1.0, 0.5, 0.9, 0.3, 0.95, 0.75])),
                 min_p=float(rng.choice([0.0, 0.05, 0.2, 0.6])),
                 top_n_sigma=float(rng.choice([0, 0, 0.5, 1.5, np.inf])),
                 order=str(rng.choice(["temperature-first", "temperature-last"])),
                 min_tokens_to_keep=int(rng.choice([1, 1, 2, 3])))
        cases.append((x, float(rng.choice([0.0, 1e-3, 0.3, 1.0, 2.5, np.inf])), f))
    cases.append((np.zeros(8), 1.0, dict(top_p=0.5)))           # exact boundary: 0.25 + 0.25 <= 0.5
    cases.append((np.array([1.0, np.inf, np.inf, 0.0]), 1.0, dict(top_k=1, top_n_sigma=1.0)))
    cases.append((np.array([1.0, np.nan, 0.0]), 1.0, dict(top_k=1)))
    cases.append((np.full(3, -np.inf), 0.5, dict(min_p=0.1)))
    ex = open_page(logits=[0.0])
    payload = [[[_js_number(v) for v in x.tolist()], _js_number(T), {k: _js_number(v) if isinstance(v, float) else v
                                                                     for k, v in f.items()}] for x, T, f in cases]
    got = ex.page.evaluate("""cs => cs.map(c => {
        const d = v => v === "inf" ? Infinity : v === "-inf" ? -Infinity : v === "nan" ? NaN : v;
        const f = {}; for (const k in c[2]) f[k] = d(c[2][k]);
        return window.tempscaleExplorer.warp(c[0].map(d), d(c[1]), f); })""", payload)
    for (x, T, f), r in zip(cases, got, strict=True):
        p_ref, keep_ref = _warp_ref(x, T, **f)
        p = np.array([np.nan if v is None else v for v in r["p"]], dtype=np.float64)
        assert r["keep"] == keep_ref.tolist(), (x.tolist(), T, f)
        np.testing.assert_allclose(p, p_ref, rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=f"{x.tolist()} {T} {f}")


def test_large_vocabulary_top_n_view_and_search(open_page):
    rng = np.random.default_rng(7)
    V = 128_256
    x = rng.normal(size=V) * 3.0
    best = int(np.argmax(x))
    labels = [f"tok{i}" for i in range(V)]
    labels[best] = XSS_IMG
    ex = open_page(logits=x, labels=labels, temperature=0.8, top_p=0.9)
    assert int(ex.attr("#explorer", "data-n")) == V
    order = np.argsort(-x, kind="stable")
    p_ref, keep_ref = _warp_ref(x, 0.8, top_p=0.9)
    idx, kept, warped = _bars_warped(ex)  # the 50 largest, largest first
    assert idx.tolist() == order[:50].tolist()
    assert kept.all() and int(ex.attr("#kept-summary", "data-kept")) == int(keep_ref.sum())
    np.testing.assert_allclose(warped, p_ref[order[:50]], rtol=1e-6)
    np.testing.assert_allclose(ex.probs(), np.asarray(softmax(x, 0.8))[order[:50]], rtol=1e-6)
    rest = 1.0 - float(np.asarray(softmax(x, 0.8))[order[:50]].sum())
    assert f"the other {V - 50} hold p = {rest:.4f}"[:-1] in ex.text("#view-note")
    # the top-N view's size is a control; the user label is drawn as text, never as HTML
    ex.page.fill("#top-n", "7")
    assert _bars_warped(ex)[0].tolist() == order[:7].tolist()
    assert ex.page.eval_on_selector_all("#bars rect.bar", "els => els[0].dataset.label") == XSS_IMG
    assert ex.page.eval_on_selector_all("img, iframe, object, embed", "e => e.length") == 0
    # search by index: rank, probability before and after the filters
    ex.set_T("1.3")
    probe = int(order[4321])
    ex.page.fill("#search", str(probe))
    p13, keep13 = _warp_ref(x, 1.3, top_p=0.9)
    res = "#search-result"
    assert int(ex.attr(res, "data-rank")) == 4322 and int(ex.attr(res, "data-index")) == probe
    np.testing.assert_allclose(float(ex.attr(res, "data-p")), np.asarray(softmax(x, 1.3))[probe], rtol=1e-6)
    assert ex.attr(res, "data-kept") == ("true" if keep13[probe] else "false")
    np.testing.assert_allclose(float(ex.attr(res, "data-warped")), p13[probe], rtol=1e-6, atol=1e-300)
    assert f"rank 4322 of {V}" in ex.text(res)
    # search by label: shown as text
    ex.page.fill("#search", XSS_IMG)
    assert int(ex.attr(res, "data-index")) == best and XSS_IMG in ex.text(res)
    ex.page.fill("#search", "no such token")
    assert "No class has index or label" in ex.text(res)
    assert ex.page.eval_on_selector_all("img, iframe, object, embed", "e => e.length") == 0
