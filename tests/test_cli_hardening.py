"""The ``tempscale`` command against hostile and messy input (issue 10, items 11-15, 18, 19).

* ``distill`` runs code shipped in the package, never a file from the current folder;
* no output is ever written through an existing path: a dangling symbolic link, a link to a file
  or a file is refused without ``--force``, and ``--force`` replaces the link, not its target;
* bad files and bad values end as one line on stderr, never a traceback, and name the flags the
  user typed, not Python parameters;
* CSV headers and label columns are never read as logits; probabilities given as logits are
  pointed out;
* figures are capped; ``--top-k 0`` / ``--top-p 1`` / ``--min-p 0`` mean "off".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import softmax as sp_softmax

import tempscale
from tempscale.cli import main, user_message

from ._cli_helpers import run_cli

try:
    import matplotlib

    matplotlib.use("Agg")
    HAVE_MPL = True
except ImportError:  # pragma: no cover
    HAVE_MPL = False
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
ROOT = Path(__file__).resolve().parents[1]


# every test runs in its own empty folder (the CLI writes relative paths)
pytestmark = pytest.mark.usefixtures("cli_tmp")


def assert_one_line_error(rc, err, *fragments, absent=()):
    assert rc != 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and ": error: " in lines[0], err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    for f in absent:
        assert f not in lines[0], (f, lines[0])
    return lines[0]


def python_m(*argv, cwd, env=None):
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    full_env.pop("TEMPSCALE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tempscale", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=full_env)


def rng_logits(n=40, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3
    y = rng.integers(0, k, size=n)
    return z, y


# ============================================================================================
# 11. distill never runs code from the current folder
# ============================================================================================
EVIL = 'open("PWNED", "w").write("ran")\nraise SystemExit(99)\n'


def test_distill_ships_its_experiment_in_the_package():
    import tempscale.cli._distill_digits as exp
    import tempscale.cli.distill as cmd

    assert Path(exp.__file__).resolve().is_relative_to(Path(tempscale.__file__).resolve().parent)
    text = Path(cmd.__file__).read_text()
    assert "spec_from_file_location" not in text and "exec_module" not in text
    assert "TEMPSCALE_EXAMPLES" not in text and "cwd" not in text.lower()
    # the example is a thin wrapper around the packaged code, through the public entry point
    example = (ROOT / "examples" / "distill_digits.py").read_text()
    assert "from tempscale.cli import main" in example and "_distill_digits" not in example


def test_distill_does_not_execute_examples_in_the_current_folder(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "distill_digits.py").write_text(EVIL)
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "distill_digits.py").write_text(EVIL)
    monkeypatch.setenv("TEMPSCALE_EXAMPLES", str(tmp_path / "evil"))  # the old lookup's override
    rc, out, err = run_cli(capsys, "distill", "--seeds", "1", "--epochs", "1", "--teacher-epochs",
                           "1", "--temperatures", "2", "--no-progress", "--json", "r.json")
    assert rc == 0, err
    assert not (tmp_path / "PWNED").exists()
    assert "student: KD T=2" in out and "teacher" in out
    import json

    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["info"]["seeds"] == 1 and doc["info"]["epochs"] == 1
    assert set(doc["results"]) == {"teacher", "student: hard labels", "student: KD T=2"}


def test_distill_prints_its_table_without_rich(capsys, monkeypatch):
    """rich is the cli extra: without it the experiment's table is plain text, not a crash."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    monkeypatch.setitem(sys.modules, "rich", None)       # import rich.* -> ImportError
    for name in [m for m in sys.modules if m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    rc, out, err = run_cli(capsys, "distill", "--seeds", "1", "--epochs", "1", "--teacher-epochs",
                           "1", "--temperatures", "2", "--no-progress")
    assert rc == 0, err
    header = next(line for line in out.splitlines() if "test accuracy" in line)
    assert header.startswith("│ model") and "Δ NLL vs hard" in header
    assert any(line.startswith("│ student: KD T=2") for line in out.splitlines())


def test_distill_bad_options_are_one_line(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    for argv, frag in ((["--epochs", "0"], "--epochs"), (["--seeds", "0"], "--seeds"),
                       (["--alpha", "2"], "--alpha"), (["--temperatures", "0"], "temperatures")):
        rc, _, err = run_cli(capsys, "distill", "--no-progress", *argv)
        assert_one_line_error(rc, err, frag)


# ============================================================================================
# 12. never write through an existing path
# ============================================================================================
def _inputs():
    z, y = rng_logits()
    np.save("z.npy", z)
    np.save("y.npy", y)


def _cmd(name, out):
    return {
        "softmax": ["softmax", "-T", "2", "z.npy", "-o", out],
        "solve": ["solve", "--entropy", "1.0", "z.npy", "-o", out],
        "sample": ["sample", "-n", "3", "--seed", "0", "z.npy", "-o", out],
        "calibrate": ["calibrate", "z.npy", "y.npy", "--json", out],
        "explore": ["explore", "-o", out, "--", "-1", "0", "1"],
        "plot": ["plot", "-T", "0.5,1", "-o", out, "--", "-1", "0", "1"],
        "demo": ["demo", "--outdir", "demo"],
    }[name]


OUT_NAME = {"softmax": "out.npy", "solve": "out.npy", "sample": "out.npy", "calibrate": "out.json",
            "explore": "out.html", "plot": "out.png", "demo": "demo/probabilities-as-logits.png"}
WRITERS = ["softmax", "solve", "sample", "calibrate", "explore",
           pytest.param("plot", marks=needs_mpl), pytest.param("demo", marks=needs_mpl)]


def _prepare(name, kind, tmp_path):
    """Put a dangling link, a link to an existing file, or a file at the output path."""
    _inputs()
    out = Path(OUT_NAME[name])
    out.parent.mkdir(exist_ok=True)
    target = tmp_path / "target.txt"
    if kind == "dangling":
        os.symlink(tmp_path / "nowhere" if name != "demo" else tmp_path / "nowhere.png", out)
    elif kind == "link":
        target.write_text("precious")
        os.symlink(target, out)
    else:
        out.write_text("precious")
    return out, target


@pytest.mark.parametrize("kind", ["dangling", "link", "file"])
@pytest.mark.parametrize("name", WRITERS)
def test_outputs_refuse_existing_paths_and_links(capsys, tmp_path, name, kind):
    out, target = _prepare(name, kind, tmp_path)
    rc, _, err = run_cli(capsys, *_cmd(name, str(out)))
    assert_one_line_error(rc, err, "--force")
    # nothing was created or written anywhere
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "nowhere.png").exists()
    if kind == "link":
        assert target.read_text() == "precious" and out.is_symlink()
    if kind == "file":
        assert out.read_text() == "precious"
    if kind == "dangling":
        assert out.is_symlink() and not out.exists()


# the demo writes four files (seconds each run): one --force case for it is enough
FORCE_CASES = [(n, k) for n in ["softmax", "solve", "sample", "calibrate", "explore"]
               for k in ["dangling", "link", "file"]] + [
    pytest.param("plot", k, marks=needs_mpl) for k in ["dangling", "link", "file"]] + [
    pytest.param("demo", "link", marks=needs_mpl)]


@pytest.mark.parametrize("name, kind", FORCE_CASES)
def test_force_replaces_the_link_not_its_target(capsys, tmp_path, name, kind):
    out, target = _prepare(name, kind, tmp_path)
    argv = _cmd(name, str(out))
    rc, _, err = run_cli(capsys, argv[0], "--force", *argv[1:])
    assert rc == 0, err
    assert not out.is_symlink() and out.is_file() and out.read_bytes() != b"precious"
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "nowhere.png").exists()
    if kind == "link":
        assert target.read_text() == "precious"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]  # no temp file left


def test_force_result_is_correct_and_readable(capsys, tmp_path):
    _inputs()
    os.symlink(tmp_path / "nowhere", "p.npy")
    rc, _, err = run_cli(capsys, "softmax", "-T", "2", "z.npy", "-o", "p.npy", "--force")
    assert rc == 0, err
    np.testing.assert_allclose(np.load("p.npy"), sp_softmax(np.load("z.npy") / 2, axis=-1),
                               rtol=1e-12)
    mode = Path("p.npy").stat().st_mode & 0o777
    assert mode & 0o600 == 0o600  # not the private mode of a temporary file only


def test_new_output_is_created_exclusively_and_cleaned_on_failure(tmp_path):
    from tempscale.cli._console import CLIError
    from tempscale.cli._writers import write_output

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_output(tmp_path / "a.bin", False, boom)
    assert not (tmp_path / "a.bin").exists()  # a failed write leaves nothing behind
    with pytest.raises(RuntimeError):
        write_output(tmp_path / "b.bin", True, boom)
    assert list(tmp_path.iterdir()) == []
    os.symlink(tmp_path / "gone", tmp_path / "c.bin")
    with pytest.raises(CLIError, match="--force"):
        write_output(tmp_path / "c.bin", False, lambda fh: fh.write(b"x"))
    assert not (tmp_path / "gone").exists()


def test_output_into_a_missing_folder_or_onto_a_folder(capsys):
    _inputs()
    rc, _, err = run_cli(capsys, "softmax", "z.npy", "-o", "no/such/p.npy")
    assert_one_line_error(rc, err, "does not exist")
    os.mkdir("d.npy")
    rc, _, err = run_cli(capsys, "softmax", "z.npy", "-o", "d.npy", "--force")
    assert_one_line_error(rc, err, "folder")


def test_distill_json_refuses_links_before_training(capsys, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    os.symlink(tmp_path / "nowhere", "r.json")
    rc, out, err = run_cli(capsys, "distill", "--no-progress", "--json", "r.json")
    assert_one_line_error(rc, err, "r.json", "--force")
    assert out == "" and not (tmp_path / "nowhere").exists()


def test_demo_refuses_a_dangling_link_as_its_folder(capsys, tmp_path):
    os.symlink(tmp_path / "nowhere", "demo")
    rc, _, err = run_cli(capsys, "demo", "--outdir", "demo")
    assert_one_line_error(rc, err, "demo")
    assert not (tmp_path / "nowhere").exists()


def test_write_explorer_overwrite_replaces_a_link_not_its_target(tmp_path):
    from tempscale.explorer import write_explorer

    target = tmp_path / "target.html"
    target.write_text("precious")
    os.symlink(target, tmp_path / "page.html")
    with pytest.raises(FileExistsError):
        write_explorer(tmp_path / "page.html", [1.0, 2.0])
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.html")
    with pytest.raises(FileExistsError):
        write_explorer(tmp_path / "dangling.html", [1.0, 2.0])
    assert not (tmp_path / "nowhere").exists()
    write_explorer(tmp_path / "page.html", [1.0, 2.0], overwrite=True)
    assert target.read_text() == "precious"
    assert not (tmp_path / "page.html").is_symlink()
    assert (tmp_path / "page.html").read_text().startswith("<!doctype html>")


# ============================================================================================
# 13. one readable line, never a traceback
# ============================================================================================
def test_huge_num_samples_is_one_line(capsys):
    rc, _, err = run_cli(capsys, "sample", "-n", "10000000000", "--", "1", "2", "3")
    assert_one_line_error(rc, err, "--num-samples")


def test_python_m_huge_num_samples_no_traceback(tmp_path):
    res = python_m("sample", "-n", "10000000000", "--", "1", "2", "3", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def _npy_header(shape, dtype="<f8"):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**62,), (10**12, 10**12, 10**12), (5, 3)])
def test_forged_npy_header_is_refused_before_allocating(capsys, shape):
    Path("f.npy").write_bytes(_npy_header(shape) + b"\0" * 64)
    rc, _, err = run_cli(capsys, "softmax", "f.npy")
    assert_one_line_error(rc, err, "f.npy", "not a valid .npy file", str(shape[0]),
                          absent=("pickle",))


def test_forged_header_inside_npz(capsys):
    with zipfile.ZipFile("f.npz", "w") as zf:
        zf.writestr("logits.npy", _npy_header((10**9, 10**6)) + b"\0" * 64)
    rc, _, err = run_cli(capsys, "softmax", "f.npz")
    assert_one_line_error(rc, err, "f.npz:logits", "not a valid .npy file")


def test_non_npy_file_named_npy_is_not_called_pickled(capsys):
    Path("text.npy").write_text("1,2,3\n")
    rc, _, err = run_cli(capsys, "softmax", "text.npy")
    assert_one_line_error(rc, err, "not a valid .npy file", absent=("pickle",))


def test_object_npy_is_reported_as_pickled_and_never_loaded(capsys):
    np.save("obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    rc, _, err = run_cli(capsys, "softmax", "obj.npy")
    assert_one_line_error(rc, err, "pickled", "never loads")


@pytest.mark.parametrize("value, frag", [("", "empty"), (" ", "empty"), (",", "empty"),
                                         ("abc", "not a number"), ("1e999", "float64 range")])
@pytest.mark.parametrize("cmd", ["softmax", "sample", "explore", pytest.param("plot", marks=needs_mpl)])
def test_bad_temperature_text(capsys, cmd, value, frag):
    rc, _, err = run_cli(capsys, cmd, "-T", value, "--", "1", "2")
    assert_one_line_error(rc, err, "-T/--temperature", frag, absent=("stack",))


@pytest.mark.parametrize("argv, flag, absent", [
    (["sample", "--top-p", "2"], "--top-p", "top_p"),
    (["sample", "--top-p", "nan"], "--top-p", "top_p"),
    (["sample", "--min-p", "1.5"], "--min-p", "min_p"),
    (["sample", "--top-k", "-1"], "--top-k", "top_k"),
    (["sample", "--min-tokens-to-keep", "0"], "--min-tokens-to-keep", "min_tokens"),
    (["solve", "--entropy", "99"], "--nan", "on_unreachable"),
    (["solve", "--tol", "-1", "--entropy", "0.5"], "--tol", "'tol'"),
    (["solve", "--base", "1", "--entropy", "0.5"], "--base", "'base'"),
])
def test_errors_name_the_flags_not_python_parameters(capsys, argv, flag, absent):
    rc, _, err = run_cli(capsys, *argv, "--", "1", "2", "3")
    assert_one_line_error(rc, err, flag, absent=(absent, "warp", "solve_temperature", "parameter of"))


def test_user_message_rewrites_library_messages():
    from tempscale.cli import build_parser

    sub = build_parser()._subcommands["sample"]
    msg = "The 'top_p' parameter of warp must be a float in (0, 1]. Got 2.0 instead."
    assert user_message(msg, sub) == "--top-p must be a float in (0, 1]; got 2.0"
    msg = "The 'num_samples' parameter of sample must be an int >= 0. Got -1 instead."
    assert user_message(msg, sub).startswith("--num-samples must be")
    msg = ("The 'entropy' parameter of solve_temperature must be reachable "
           "(or pass on_unreachable='nan'). Got 'x' instead.")
    out = user_message(msg, build_parser()._subcommands["solve"])
    assert out.startswith("--entropy must be reachable") and "--nan" in out
    assert "on_unreachable" not in out
    assert user_message("plain message\nsecond line") == "plain message second line"


def test_unexpected_errors_are_one_line_and_debug_shows_them(capsys, monkeypatch):
    import tempscale.cli.softmax as mod

    def broken(args):
        raise RuntimeError("something internal")

    monkeypatch.setattr(mod, "run", broken)
    rc, _, err = run_cli(capsys, "softmax", "1", "2")
    line = assert_one_line_error(rc, err, "RuntimeError", "something internal", "TEMPSCALE_DEBUG")
    assert rc == 1 and line.startswith("tempscale softmax: error:")
    monkeypatch.setenv("TEMPSCALE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something internal"):
        main(["softmax", "1", "2"])


@pytest.mark.parametrize("exc, frag", [(MemoryError("Unable to allocate 74.5 GiB"), "memory"),
                                       (OverflowError("int too large"), "too large"),
                                       (RecursionError("deep"), "too large")])
def test_memory_and_overflow_errors_are_one_line(capsys, monkeypatch, exc, frag):
    import tempscale.cli.solve as mod

    def boom(args):
        raise exc

    monkeypatch.setattr(mod, "run", boom)
    rc, _, err = run_cli(capsys, "solve", "--entropy", "1", "--", "1", "2")
    assert_one_line_error(rc, err, frag)


@pytest.mark.parametrize("labels, frag", [([0, 1e300], "1e+300"), ([0, 1.5], "1.5"),
                                          ([0, np.nan], "nan"), ([0, -1e300], "-1e+300")])
def test_labels_that_are_not_class_indices(capsys, labels, frag):
    np.save("z.npy", np.zeros((2, 3)))
    np.save("y.npy", np.asarray(labels, dtype=np.float64))
    rc, _, err = run_cli(capsys, "calibrate", "z.npy", "y.npy")
    assert_one_line_error(rc, err, frag, absent=("-9223372036854775808",))


def test_labels_huge_unsigned_do_not_wrap(capsys):
    np.save("z.npy", np.zeros((2, 3)))
    np.save("y.npy", np.asarray([0, 2**63 + 5], dtype=np.uint64))
    rc, _, err = run_cli(capsys, "calibrate", "z.npy", "y.npy")
    assert_one_line_error(rc, err, "class indices", absent=("-9223372036854775",))


# --- fuzzing the readers ------------------------------------------------------------------
def _valid_npy_bytes():
    import io

    buf = io.BytesIO()
    np.save(buf, np.arange(12.0).reshape(3, 4))
    return buf.getvalue()


def _bad_files(tmp_path):
    """name -> (file to pass, what the message must say)."""
    files = {}

    def put(name, data, frag):
        p = tmp_path / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
        files[name] = (name, frag)

    put("empty.csv", "", "empty")
    put("blank.csv", "\n\n  \n", "empty")
    put("empty.npy", b"", "not a valid .npy file")
    put("truncated.npy", _valid_npy_bytes()[:-10], "not a valid .npy file")
    put("header-only.npy", _valid_npy_bytes()[:60], "not a valid .npy file")
    put("text.csv", "1,2,3\n4,abc,6\n", "not a number")
    put("ragged.csv", "1,2,3\n4,5\n", "different numbers of columns")
    put("huge.csv", "1,2,1e400\n", "float64 range")
    put("garbage.csv", bytes(range(256)) * 4, "not a text")
    put("latin1.csv", "1,2,\xe9\n".encode("latin-1"), "not a text")
    put("garbage.npy", b"\x93NUMPY\x01\x00" + b"\xff" * 50, "not a valid .npy file")
    put("garbage.npz", b"PK\x03\x04" + b"\0" * 40, "not a valid .npz file")
    put("notzip.npz", "1,2,3", "not a valid .npz file")
    put("header-only.csv", "a,b,c\n", "no numbers")
    put("strings.npy", b"", "")  # replaced below
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    files["strings.npy"] = ("strings.npy", "expected numbers")
    np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.ones(3))
    files["npz-no-key"] = ("two.npz:nokey", "no array named 'nokey'")
    files["npz-ambiguous"] = ("two.npz", "name one with PATH:KEY")
    (tmp_path / "folder.npy").mkdir()
    files["folder"] = ("folder.npy", "folder")
    files["missing"] = ("missing.npy", "does not exist")
    os.symlink(tmp_path / "nowhere.csv", tmp_path / "broken.csv")
    files["broken-link"] = ("broken.csv", "broken symbolic link")
    put("weird.bin", "1,2", "unsupported format")
    return files


BAD = ["empty.csv", "blank.csv", "empty.npy", "truncated.npy", "header-only.npy", "text.csv",
       "ragged.csv", "huge.csv", "garbage.csv", "latin1.csv", "garbage.npy", "garbage.npz",
       "notzip.npz", "header-only.csv", "strings.npy", "npz-no-key", "npz-ambiguous", "folder",
       "missing", "broken-link", "weird.bin"]


@pytest.mark.parametrize("bad", BAD)
def test_bad_input_files_are_one_clean_line(capsys, tmp_path, bad):
    path, frag = _bad_files(tmp_path)[bad]
    np.save("y.npy", np.zeros(3, dtype=np.int64))
    np.save("z.npy", np.zeros((3, 4)))
    for argv in (["softmax", path], ["solve", "--entropy", "0.5", "-f", path],
                 ["sample", "-n", "1", path], ["calibrate", path, "y.npy"],
                 ["calibrate", "z.npy", path], ["explore", "-o", "e.html", "--force", path]):
        rc, out, err = run_cli(capsys, *argv)
        assert rc == 2, (argv, out, err)
        assert_one_line_error(rc, err, frag)


def test_unreadable_file_is_one_line(capsys, tmp_path, monkeypatch):
    import tempscale.cli._readers as common

    Path("z.csv").write_text("1,2,3\n")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        os.chmod("z.csv", 0)
    else:  # root reads everything: simulate the refusal at the reader
        def denied(self):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(common.Path, "read_bytes", denied)
    rc, _, err = run_cli(capsys, "softmax", "z.csv")
    assert_one_line_error(rc, err, "permission denied")


def test_random_bytes_and_mutated_npy_never_traceback(capsys):
    """Random garbage under every suffix, and a valid .npy cut or corrupted at random places."""
    rng = np.random.default_rng(20240610)
    good = _valid_npy_bytes()
    cases = []
    for i in range(40):
        n = int(rng.integers(0, 300))
        cases.append((f"r{i}" + [".npy", ".npz", ".csv", ".txt"][i % 4],
                      rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()))
    for i in range(40):
        b = bytearray(good)
        if i % 2:
            b = b[: int(rng.integers(0, len(b)))]
        else:
            for _ in range(3):
                b[int(rng.integers(0, 128))] = int(rng.integers(0, 256))
        cases.append((f"m{i}.npy", bytes(b)))
    for name, data in cases:
        Path(name).write_bytes(data)
        rc, out, err = run_cli(capsys, "softmax", name)
        assert "Traceback" not in err
        if rc != 0:
            assert rc == 2 and len(err.strip().splitlines()) == 1, (name, err)


# ============================================================================================
# 14. CSV headers, label columns and probabilities
# ============================================================================================
def _labelled_csv(path="data.csv", name="label", n=60, k=3, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3.0
    # labels drawn from softmax(z / 2): the fitted T is near 2, not a limit
    y = np.array([rng.choice(k, p=p) for p in sp_softmax(z / 2.0, axis=1)])
    lines = [",".join([f"logit_{j}" for j in range(k)] + [name])]
    lines += [",".join([repr(float(v)) for v in row] + [str(int(t))]) for row, t in zip(z, y, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")
    return z, y


def _nll_fit(z, y):
    """Independent reference: the NLL-optimal T by scipy's bounded scalar minimiser."""
    def nll(logt):
        lp = sp_log_softmax(z / np.exp(logt), axis=1)
        return -lp[np.arange(len(y)), y].mean()

    res = minimize_scalar(nll, bounds=(-8, 8), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(res.x))


@pytest.mark.parametrize("name", ["label", "Labels", "target", "y", "class"])
def test_label_like_column_is_refused_without_label_column(capsys, name):
    _labelled_csv(name=name)
    for argv in (["calibrate", "data.csv", "y.npy"], ["softmax", "data.csv"],
                 ["solve", "--entropy", "0.5", "data.csv"]):
        np.save("y.npy", np.zeros(60, dtype=np.int64))
        rc, _, err = run_cli(capsys, *argv)
        assert_one_line_error(rc, err, f"'{name}'", "--label-column")


def test_calibrate_label_column_reads_labels_from_the_same_file(capsys):
    z, y = _labelled_csv()
    rc, out, err = run_cli(capsys, "calibrate", "data.csv", "--label-column", "label",
                           "--json", "t.json")
    assert rc == 0, err
    assert "60 samples, 3 classes" in out
    import json

    doc = json.loads(Path("t.json").read_text())
    assert doc["n_classes"] == 3
    assert doc["temperature"] == pytest.approx(_nll_fit(z, y), rel=1e-5)
    assert doc["before"]["accuracy"] == pytest.approx(np.mean(z.argmax(1) == y))
    # the label column in the middle of the file, name matched case-insensitively
    lines = Path("data.csv").read_text().splitlines()
    moved = [",".join([r.split(",")[3]] + r.split(",")[:3]) for r in lines]
    Path("mid.csv").write_text("\n".join(moved) + "\n")
    rc, out2, err = run_cli(capsys, "calibrate", "mid.csv", "--label-column", "LABEL")
    assert rc == 0, err
    assert out2.splitlines()[0] == out.splitlines()[0]


@pytest.mark.parametrize("argv, frag", [
    (["calibrate", "data.csv", "--label-column", "nope"], "is not a column"),
    (["calibrate", "data.csv", "y.npy", "--label-column", "label"], "not both"),
    (["calibrate", "data.csv"], "--label-column"),
    (["calibrate", "z.npy", "--label-column", "label"], "CSV"),
    (["calibrate", "plain.csv", "--label-column", "label"], "no header row"),
])
def test_label_column_errors(capsys, argv, frag):
    _labelled_csv()
    np.save("y.npy", np.zeros(60, dtype=np.int64))
    np.save("z.npy", np.zeros((60, 3)))
    Path("plain.csv").write_text("1,2,3\n4,5,6\n")
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, frag)


def test_a_header_row_is_reported_not_dropped_silently(capsys):
    Path("z.csv").write_text("a,b,c\n1,2,3\n")
    rc, out, err = run_cli(capsys, "softmax", "z.csv")
    assert rc == 0
    assert "header" in err and "a, b, c" in err and len(err.strip().splitlines()) == 1
    got = [float(v) for v in re.findall(r"\d\.\d+", out)]
    np.testing.assert_allclose(got, sp_softmax([1.0, 2.0, 3.0]), rtol=1e-5)


def test_header_with_wrong_width_is_refused(capsys):
    Path("z.csv").write_text("a,b\n1,2,3\n")
    rc, _, err = run_cli(capsys, "softmax", "z.csv")
    assert_one_line_error(rc, err, "header row has 2 names")


def test_whitespace_and_tab_separated_files(capsys):
    z = np.random.default_rng(3).normal(size=(4, 5))
    np.savetxt("z.txt", z)  # NumPy's default: spaces
    Path("z.tsv").write_text("\n".join("\t".join(repr(float(v)) for v in r) for r in z) + "\n")
    for name in ("z.txt", "z.tsv"):
        rc, _, err = run_cli(capsys, "softmax", name, "-o", name + ".npy")
        assert rc == 0, err
        np.testing.assert_allclose(np.load(name + ".npy"), sp_softmax(z, axis=-1), rtol=1e-12)


PROBS = ["0.1", "0.2", "0.7"]


@pytest.mark.parametrize("cmd", [["softmax"], ["solve", "--entropy", "0.5"], ["sample", "-n", "0"],
                                 ["explore", "-o", "p.html"],
                                 pytest.param(["plot", "-o", "p.png"], marks=needs_mpl)])
def test_probabilities_given_as_logits_are_pointed_out(capsys, cmd):
    rc, _, err = run_cli(capsys, *cmd, *PROBS)
    assert rc == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "--input probabilities" in lines[0]
    for f in ("p.html", "p.png"):
        Path(f).unlink(missing_ok=True)
    rc, _, err = run_cli(capsys, *cmd, "--input", "logits", *PROBS)
    assert rc == 0 and err == ""  # the user said so: no warning
    for f in ("p.html", "p.png"):
        Path(f).unlink(missing_ok=True)
    rc, _, err = run_cli(capsys, *cmd, "--input", "probabilities", *PROBS)
    assert rc == 0 and err == ""


def test_logits_are_not_mistaken_for_probabilities(capsys):
    for values in (["0.5", "0.5", "0.5"], ["-1", "0", "1"], ["0.2", "0.3"], ["1"]):
        rc, _, err = run_cli(capsys, "softmax", *values)
        assert rc == 0 and err == "", values


def test_softmax_input_probabilities_is_temper(capsys):
    p = np.array([0.1, 0.2, 0.7])
    rc, _, err = run_cli(capsys, "softmax", "--input", "probabilities", "-T", "0.5", "0.1,0.2,0.7",
                         "-o", "t.npy")
    assert rc == 0, err
    ref = p ** 2 / np.sum(p ** 2)
    np.testing.assert_allclose(np.load("t.npy"), ref, rtol=1e-12)
    rc, _, err = run_cli(capsys, "softmax", "--input", "probabilities", "--", "-0.1", "1.1")
    assert_one_line_error(rc, err, "--input probabilities")


def test_calibrate_probabilities(capsys):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(200, 4)) * 3
    y = np.array([rng.choice(4, p=p) for p in sp_softmax(z / 1.5, axis=1)])
    p = sp_softmax(z, axis=1)
    np.save("p.npy", p)
    np.save("y.npy", y)
    rc, out, err = run_cli(capsys, "calibrate", "p.npy", "y.npy")
    assert rc == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--input probabilities" in lines[0]
    rc, out, err = run_cli(capsys, "calibrate", "--input", "probabilities", "p.npy", "y.npy",
                           "--json", "t.json")
    assert rc == 0 and err == ""
    import json

    # log p differs from z by a per-row constant: the same temperature
    assert json.loads(Path("t.json").read_text())["temperature"] == pytest.approx(_nll_fit(z, y),
                                                                                  rel=1e-5)


# ============================================================================================
# 15. caps on figures
# ============================================================================================
@needs_mpl
def test_plot_caps_temperatures(capsys):
    from tempscale.plot import MAX_TEMPERATURES

    temps = ",".join(str(t) for t in np.geomspace(0.1, 10, MAX_TEMPERATURES + 1))
    for kind in ("temperature", "entropy"):
        rc, _, err = run_cli(capsys, "plot", "--kind", kind, "-T", temps, "--", "1", "2", "3")
        assert_one_line_error(rc, err, "-T/--temperature", f"at most {MAX_TEMPERATURES}")
    assert not list(Path(".").glob("*.png"))
    rc, _, err = run_cli(capsys, "plot", "-T", ",".join(["1"] * MAX_TEMPERATURES), "--", "1", "2")
    assert rc == 0, err


@needs_mpl
def test_plot_caps_classes_and_pixels(capsys):
    np.save("wide.npy", np.zeros(5000))
    rc, _, err = run_cli(capsys, "plot", "wide.npy")
    assert_one_line_error(rc, err, "5000 classes", "at most")
    rc, _, err = run_cli(capsys, "plot", "--dpi", "2400", "--", "1", "2", "3")
    assert_one_line_error(rc, err, "pixels", "--dpi")
    assert not Path("tempscale-temperature.png").exists()


# ============================================================================================
# 18. --top-k 0, --top-p 1, --min-p 0 mean "off"
# ============================================================================================
@pytest.mark.parametrize("off", [["--top-k", "0"], ["--top-p", "1.0"], ["--top-p", "1"],
                                 ["--min-p", "0.0"], ["--top-k", "0", "--top-p", "1", "--min-p", "0"]])
def test_sample_off_values(capsys, off):
    x = ["--", "3", "1", "0.5", "-2"]
    rc, base, err0 = run_cli(capsys, "sample", "-T", "0.7", "-n", "50", "--seed", "4", *x)
    rc2, got, err = run_cli(capsys, "sample", "-T", "0.7", "-n", "50", "--seed", "4", *off, *x)
    assert rc == rc2 == 0 and err == err0 == ""
    assert got == base
    ref = sp_softmax(np.array([3, 1, 0.5, -2]) / 0.7)
    assert "4 of 4 tokens kept" in got
    shown = {line.split("│")[1].strip(): float(line.split("│")[3]) for line in got.splitlines()
             if line.startswith("│")}
    np.testing.assert_allclose([shown[str(i)] for i in range(4)], ref, rtol=1e-5)


# ============================================================================================
# 19. user-facing text names things by what they are
# ============================================================================================
def test_no_seed_wording_in_user_facing_text(capsys):
    pattern = re.compile(r"seed[ -](note|example|vector|as-logits|tempered|logits|probabilities)|"
                         r"the seed[:,.)]|the seed (note|example)|seed's", re.I)
    files = [*(ROOT / "src" / "tempscale" / "cli").glob("*.py"),
             ROOT / "src" / "tempscale" / "plot.py",
             *(ROOT / "src" / "tempscale" / "explorer").glob("*.*"),
             *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    for f in files:
        hits = [m.group(0) for m in pattern.finditer(f.read_text(encoding="utf-8"))]
        assert not hits, (f, hits)
    for cmd in ("demo", "explore", "plot"):
        try:
            main([cmd, "--help"])
        except SystemExit:
            pass
        out, _ = capsys.readouterr()
        assert "seed" not in out.lower().replace("--seed", ""), cmd


# ============================================================================================
# more edges found by fuzzing the commands' options
# ============================================================================================
@pytest.mark.parametrize("argv, frag", [
    (["softmax", "e.npy"], "no numbers"),
    (["sample", "e.npy"], "no numbers"),
    (["solve", "--entropy", "1", "e.npy"], "no numbers"),
    (["calibrate", "z.npy", "y.npy", "--n-bins", "1000000000000"], "--n-bins must be in [1, "),
    (["sample", "--seed", "-1", "--", "1", "2"], "--seed must be a non-negative int"),
    (["demo", "--outdir", ""], "--outdir is empty"),
    (["softmax", "mid.csv"], "row 1: entry is empty"),
    (["softmax", "weird.bin"], "does not exist"),
    (["explore", "-o", "", "1", "2"], "output file name is empty"),
])
def test_option_edges_are_one_line(capsys, argv, frag):
    np.save("e.npy", np.zeros((3, 0)))
    np.save("z.npy", np.zeros((5, 3)))
    np.save("y.npy", np.zeros(5, dtype=np.int64))
    Path("mid.csv").write_text("1,,3\n")
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, frag, absent=("None",))
    assert rc == 2


def test_trailing_delimiter_is_not_a_header(capsys):
    Path("z.csv").write_text("1,2,3,\n4,5,6,\n")
    rc, _, err = run_cli(capsys, "softmax", "z.csv", "-o", "p.npy")
    assert rc == 0 and err == ""
    np.testing.assert_allclose(np.load("p.npy"), sp_softmax([[1.0, 2, 3], [4, 5, 6]], axis=-1),
                               rtol=1e-12)


@needs_mpl
def test_plot_target_must_be_finite(capsys):
    rc, _, err = run_cli(capsys, "plot", "--kind", "entropy", "--target", "nan", "--", "1", "2")
    assert_one_line_error(rc, err, "--target must be a finite number", absent=("None",))
