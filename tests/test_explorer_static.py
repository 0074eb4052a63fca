"""Checks of the explorer page that need no browser: escaping, the JSON embedding, no external
resources, the Content-Security-Policy, ``write_explorer``'s refusal to overwrite and the
``tempscale explore`` command."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tempscale.cli import main
from tempscale.explorer import DEFAULT_TITLE, classic_vector, explorer_html, write_explorer

from ._cli_helpers import run_cli

XSS = "<script>alert(1)</script>"
NASTY = [XSS, '<img src=x onerror="alert(2)">', "</script><!--", "a & b", "\u2028\u2029", "\"'`", "<!-- -->"]


class Scan(HTMLParser):
    """Collects elements, attributes and the raw text of each <script>/<style>/<title>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": [], "title": [], "h1": []}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)
        if tag in self.raw:
            self.raw[tag].append("")

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data):
        for tag in reversed(self._open):
            if tag in self.raw:
                self.raw[tag][-1] += data
                break


def scan(page: str) -> Scan:
    s = Scan()
    s.feed(page)
    s.close()
    return s


def data_of(page: str) -> tuple[str, dict]:
    m = re.search(r'<script type="application/json" id="tempscale-data">(.*?)</script>', page, re.S)
    assert m, "the data element is missing"
    return m.group(1), json.loads(m.group(1))


# ------------------------------------------------------------------------------------------
def test_default_page_is_the_classic_example_as_probabilities():
    page = explorer_html()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    _, data = data_of(page)
    assert data["mode"] == "probabilities" and data["temperature"] == 1.0 and data["labels"] == []
    np.testing.assert_array_equal(data["values"], classic_vector())  # exact round trip of the doubles
    s = scan(page)
    assert s.raw["title"] == [DEFAULT_TITLE] and s.raw["h1"] == [DEFAULT_TITLE]
    # the explanation of the common mistake (probabilities read as logits) is on the page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "classic mistake" in text and "temper(p, T)" in text and "classic 10-class example" in text
    assert "seed" not in text.lower()  # named by what it is, not by where it came from


def test_given_logits_default_to_logits_mode():
    _, data = data_of(explorer_html([1, 2, 3]))
    assert data["mode"] == "logits" and data["values"] == [1.0, 2.0, 3.0]
    _, data = data_of(explorer_html([0.2, 0.8], input="probabilities", temperature=0.5))
    assert data["mode"] == "probabilities" and data["temperature"] == 0.5


def test_labels_are_json_escaped_inside_the_script_element():
    labels = NASTY + ["plain"]
    page = explorer_html(np.arange(len(labels), dtype=float), labels=labels)
    raw, data = data_of(page)
    assert data["labels"] == labels  # JSON.parse / json.loads read the escapes back
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in raw, bad
    assert "\\u003cscript\\u003e" in raw and "\\u2028" in raw
    # the parser sees exactly the page's own two scripts and no stray element
    s = scan(page)
    assert len(s.raw["script"]) == 2
    assert not [t for t, _ in s.tags if t in ("img", "iframe", "object", "embed", "link", "base")]
    assert "alert" not in s.raw["script"][1]  # the code element holds only the page's code


def test_non_finite_values_travel_as_strings():
    _, data = data_of(explorer_html([-math.inf, math.inf, math.nan, 1e308, -0.0, 5e-324]))
    assert data["values"][:3] == ["-inf", "inf", "nan"]
    assert data["values"][3:] == [1e308, -0.0, 5e-324]
    _, data = data_of(explorer_html([1.0, 2.0], temperature=math.inf))
    assert data["temperature"] == "inf"
    _, data = data_of(explorer_html([1.0, 2.0], temperature=0))
    assert data["temperature"] == 0.0


def test_title_is_html_escaped():
    title = "</title><script>alert(1)</script> & \"quotes\""
    page = explorer_html(title=title)
    assert "<script>alert(1)" not in page
    s = scan(page)
    assert s.raw["title"] == [title] and s.raw["h1"] == [title]


def test_no_external_resources_and_a_strict_csp():
    page = explorer_html(labels=[f"c{i}" for i in range(10)])
    # no URL at all (the SVG namespace name is spelt in two pieces, and it is never fetched)
    assert re.findall(r"[a-z][a-z0-9+.-]*:/", page, re.I) == []
    assert not re.search(r"\b(src|href|action|srcset|poster)\s*=", page, re.I)
    assert "@import" not in page and "url(" not in page
    s = scan(page)
    tags = {t for t, _ in s.tags}
    assert not tags & {"link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
    scripts = [a for t, a in s.tags if t == "script"]
    assert scripts == [{"type": "application/json", "id": "tempscale-data"}, {}]
    # CSP: nothing from anywhere; only this page's script and style, by hash
    csp = next(a["content"] for t, a in s.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for kind, body in (("script", s.raw["script"][1]), ("style", s.raw["style"][0])):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in csp, kind


def test_javascript_uses_no_html_sinks():
    from importlib import resources

    js = resources.files("tempscale.explorer").joinpath("explorer.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "XMLHttpRequest", "fetch(", "WebSocket", "sendBeacon", "import("):
        assert sink not in js, sink


def test_bad_arguments_name_parameter_and_function():
    with pytest.raises(ValueError, match=r"The 'labels' parameter of explorer_html must be None or a sequence "
                                         r"of 3 labels"):
        explorer_html([1, 2, 3], labels=["a", "b"])
    with pytest.raises(TypeError, match="'labels' parameter of explorer_html"):
        explorer_html([1, 2], labels="ab")
    with pytest.raises(ValueError, match="'logits' parameter of explorer_html must be a 1-D"):
        explorer_html(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'logits' parameter of explorer_html must be a 1-D"):
        explorer_html([])
    with pytest.raises(TypeError, match="'logits' parameter of explorer_html"):
        explorer_html(["a", "b"])
    with pytest.raises(ValueError, match="non-negative probabilities"):
        explorer_html([0.5, -0.1], input="probabilities")
    with pytest.raises(ValueError, match="'input' parameter of explorer_html"):
        explorer_html(input="probs")
    with pytest.raises(ValueError, match="'temperature' parameter of explorer_html"):
        explorer_html(temperature=-1.0)
    with pytest.raises(ValueError, match="'temperature' parameter of explorer_html"):
        explorer_html(temperature=math.nan)
    with pytest.raises(TypeError, match="'title' parameter of explorer_html"):
        explorer_html(title=3)
    # a single row in 2-D is accepted
    _, data = data_of(explorer_html(np.array([[1.0, 2.0]])))
    assert data["values"] == [1.0, 2.0]


def test_array_library_inputs():
    torch = pytest.importorskip("torch")
    _, data = data_of(explorer_html(torch.tensor([1.0, -2.0], dtype=torch.float32), labels=(7, 8)))
    assert data["values"] == [1.0, -2.0] and data["labels"] == ["7", "8"]


def test_write_explorer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "page.html"
    out = write_explorer(path, [1.0, 2.0], labels=["a", "b"])
    assert out == path and isinstance(out, Path)
    first = path.read_bytes()
    assert first.decode("utf-8") == explorer_html([1.0, 2.0], labels=["a", "b"])
    with pytest.raises(FileExistsError, match=r"exists; pass overwrite=True"):
        write_explorer(path, [3.0, 4.0])
    assert path.read_bytes() == first
    write_explorer(str(path), [3.0, 4.0], overwrite=True)
    assert data_of(path.read_text())[1]["values"] == [3.0, 4.0]
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_explorer(tmp_path, overwrite=True)
    with pytest.raises(TypeError, match="'overwrite' parameter of write_explorer"):
        write_explorer(tmp_path / "x.html", overwrite="yes")
    assert not (tmp_path / "x.html").exists()
    with pytest.raises(ValueError, match="'labels'"):  # bad input writes nothing
        write_explorer(tmp_path / "y.html", [1.0], labels=["a", "b"])
    assert not (tmp_path / "y.html").exists()


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------
def test_cli_explore_default_and_force(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "explore")
    assert rc == 0 and err == "" and "wrote tempscale-explorer.html" in out
    _, data = data_of(Path("tempscale-explorer.html").read_text())
    assert data["mode"] == "probabilities" and len(data["values"]) == 10
    rc, out, err = run_cli(capsys, "explore")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--force" in err
    rc, out, _ = run_cli(capsys, "explore", "--force", "-T", "inf", "--labels", f"a,{XSS},c", "--", "-1", "0", "-inf")
    assert rc == 0
    page = Path("tempscale-explorer.html").read_text()
    _, data = data_of(page)
    assert data == {"values": [-1.0, 0.0, "-inf"], "labels": ["a", XSS, "c"], "temperature": "inf", "mode": "logits"}
    assert XSS not in page


def test_cli_explore_files_rows_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.array([[1.0, 2.0, 3.0], [0.1, 0.2, 0.7]]))
    rc, _, err = run_cli(capsys, "explore", "--file", "x.npy", "-o", "a.html")
    assert rc == 2 and "--row" in err
    rc, out, _ = run_cli(capsys, "explore", "--file", "x.npy", "--row", "1", "--input", "probabilities",
                         "--title", "Row <1>", "-o", "a.html")
    assert rc == 0 and "wrote a.html" in out
    page = Path("a.html").read_text()
    assert data_of(page)[1]["values"] == [0.1, 0.2, 0.7] and "<title>Row &lt;1&gt;</title>" in page
    for argv, needle in [
        (["--labels", "a,b", "1", "2", "3"], "2 labels for 3 classes"),
        (["-T", "-1", "1", "2"], "temperature"),
        (["-T", "nan", "1", "2"], "temperature"),
        (["--input", "probabilities", "--", "-1", "2"], "non-negative"),
        (["-o", "missing/dir/p.html", "1"], "does not exist"),
        (["--row", "1"], "--row"),
        (["--file", "x.npy", "--row", "5"], "out of range"),
        (["1", "x2"], "not a number"),
    ]:
        extra = ["-o", "b.html"] if "-o" not in argv else []
        rc, out, err = run_cli(capsys, "explore", *extra, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, (argv, err)
    assert not Path("b.html").exists()


def test_cli_explore_open(tmp_path, monkeypatch, capsys):
    import webbrowser

    monkeypatch.chdir(tmp_path)
    opened = []

    def no_browser(*a, **k):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    rc, out, _ = run_cli(capsys, "explore", "--open", "1", "2")
    assert rc == 0 and "no web browser found" in out and opened == []
    monkeypatch.setattr(webbrowser, "get", lambda *a, **k: object())
    rc, out, _ = run_cli(capsys, "explore", "--open", "--force", "1", "2")
    assert rc == 0 and opened == [(tmp_path / "tempscale-explorer.html").resolve().as_uri()]
    assert "opened file://" in out


def test_cli_explore_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explore", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--open" in out and "--force" in out and "tempscale explore -T 0.5" in out


def test_python_m_tempscale_explore(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, "-m", "tempscale", "explore", "-o", str(tmp_path / "p.html"), "1", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.html").stat().st_size > 10_000


# --------------------------------------------------------------------------------------------
# issue 15: the logits-or-probabilities switch is `input` (library) and `--input` (CLI)
# --------------------------------------------------------------------------------------------
def test_mode_is_the_deprecated_name_of_input(tmp_path):
    new = explorer_html([0.2, 0.8], input="probabilities", temperature=0.5)
    with pytest.warns(DeprecationWarning, match="'mode' keyword is deprecated.*input=") as rec:
        old = explorer_html([0.2, 0.8], mode="probabilities", temperature=0.5)
    assert rec[0].filename == __file__ and old == new
    assert data_of(new)[1]["mode"] == "probabilities"
    with pytest.warns(DeprecationWarning):
        write_explorer(tmp_path / "p.html", [0.2, 0.8], mode="probabilities", temperature=0.5)
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == new
    with pytest.raises(TypeError, match="both 'mode'.*and 'input'"):
        explorer_html([0.2, 0.8], mode="logits", input="logits")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="'input' parameter"):
        explorer_html(mode="probs")


def test_cli_mode_flag_is_a_hidden_deprecated_alias(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "explore", "--input", "probabilities", "-o", "a.html", "0.2", "0.8")
    assert rc == 0 and err == ""
    rc, out, err = run_cli(capsys, "explore", "--mode", "probabilities", "-o", "b.html", "0.2", "0.8")
    assert rc == 0 and err.strip() == ("warning: --mode is deprecated and will be removed in a "
                                       "future release; use --input")
    assert Path("a.html").read_text() == Path("b.html").read_text()
    rc, _, err = run_cli(capsys, "explore", "--mode", "logits", "--input", "probabilities", "1", "2")
    assert rc == 2 and "disagree" in err
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    assert "--mode" not in capsys.readouterr().out


def test_one_no_follow_writer_for_the_cli_and_the_explorer(tmp_path):
    """tempscale._io.write_file: exclusive creation, replacement of the path itself, cleanup."""
    import os

    from tempscale._io import write_file

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk on fire")

    for replace in (False, True):
        with pytest.raises(RuntimeError):
            write_file(tmp_path / "a.bin", boom, replace=replace)
        assert list(tmp_path.iterdir()) == []          # nothing half-written is left
    write_file(tmp_path / "a.bin", lambda fh: fh.write(b"one"))
    with pytest.raises(FileExistsError):
        write_file(tmp_path / "a.bin", lambda fh: fh.write(b"two"))
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    os.symlink(target, tmp_path / "link")
    with pytest.raises(FileExistsError):
        write_file(tmp_path / "link", lambda fh: fh.write(b"two"))
    write_file(tmp_path / "link", lambda fh: fh.write(b"two"), replace=True)
    assert target.read_bytes() == b"keep" and not (tmp_path / "link").is_symlink()
    assert (tmp_path / "link").read_bytes() == b"two"
    with pytest.raises(KeyError):  # creation failures go through create_error
        write_file(tmp_path / "no" / "x", lambda fh: None,
                   create_error=lambda exc, p: KeyError(f"{type(exc).__name__} {p.name}"))


# ------------------------------------------------------------------------------------------
# sampling filters and large inputs (issue 14 item 5)
# ------------------------------------------------------------------------------------------
def test_filters_and_top_travel_to_the_page():
    _, data = data_of(explorer_html([1.0, 2.0, 3.0], top_k=2, top_p=0.9, min_p=0.1, top_n_sigma=math.inf,
                                    order="temperature-last", min_tokens_to_keep=2, top=2))
    assert data["filters"] == {"top_k": 2, "top_p": 0.9, "min_p": 0.1, "top_n_sigma": "inf",
                               "order": "temperature-last", "min_tokens_to_keep": 2}
    assert data["top"] == 2
    _, data = data_of(explorer_html([1.0, 2.0]))  # the defaults travel implicitly
    assert "filters" not in data and "top" not in data


@pytest.mark.parametrize("kw, match, exc", [
    (dict(top_k=-1), "'top_k' parameter of explorer_html must be an int in", ValueError),
    (dict(top_k=1.5), "'top_k' parameter of explorer_html", TypeError),
    (dict(top_p=0.0), r"'top_p' parameter of explorer_html must be a float in \(0, 1\]", ValueError),
    (dict(min_p=1.5), "'min_p' parameter of explorer_html", ValueError),
    (dict(top_n_sigma=-1.0), "'top_n_sigma' parameter of explorer_html", ValueError),
    (dict(top_n_sigma=math.nan), "'top_n_sigma' parameter of explorer_html", ValueError),
    (dict(order="first"), "'order' parameter of explorer_html must be one of", ValueError),
    (dict(min_tokens_to_keep=0), "'min_tokens_to_keep' parameter of explorer_html", ValueError),
    (dict(top=0), "'top' parameter of explorer_html", ValueError),
    (dict(top="5"), "'top' parameter of explorer_html", TypeError),
])
def test_filter_arguments_are_checked(kw, match, exc):
    with pytest.raises(exc, match=match):
        explorer_html([1.0, 2.0], **kw)


def test_large_vocabularies_are_accepted_up_to_the_limit(tmp_path):
    from tempscale.explorer import MAX_CLASSES

    assert MAX_CLASSES >= 128_256 * 8
    x = np.linspace(-5.0, 5.0, 128_256)
    _, data = data_of(explorer_html(x, top=20))
    assert len(data["values"]) == 128_256 and data["values"][-1] == 5.0
    with pytest.raises(ValueError, match=f"1 to {MAX_CLASSES} real numbers"):
        explorer_html(np.zeros(MAX_CLASSES + 1))
    path = write_explorer(tmp_path / "p.html", [1.0, 2.0], top_k=1, order="temperature-last")
    assert data_of(path.read_text())[1]["filters"]["order"] == "temperature-last"
