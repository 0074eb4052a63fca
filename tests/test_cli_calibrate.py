"""``tempscale calibrate`` with --method, --test, --output, --plot, --input probabilities,
Parquet files and memory-mapped .npy inputs processed in chunks; run in-process through the
command's ``main``; numbers compared with the library's estimators and metrics."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

import tempscale.cli._readers as readers  # noqa: E402
import tempscale.cli.calibrate as calibrate_cmd  # noqa: E402
from tempscale.calibration import (  # noqa: E402
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
)
from tempscale.sklearn import DirichletScaler, MatrixScaler, VectorScaler  # noqa: E402

from ._cli_helpers import run_cli  # noqa: E402

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None


# every test runs in its own empty folder (the CLI writes relative paths)
pytestmark = pytest.mark.usefixtures("cli_tmp")


def assert_one_line_error(rc, err, *fragments):
    assert rc != 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and ": error: " in lines[0], err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def problem(n, k, seed, scale=3.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    z = scale * (rng.normal(size=(n, k)) + 1.3 * np.eye(k)[y] + [0.3 * j for j in range(k)])
    return z.astype(dtype), y


def save_pair(name, z, y):
    np.save(f"{name}.npy", z)
    np.save(f"{name}_y.npy", y)


def _metrics_of(p, y, n_bins=15):
    return {
        "nll": nll(p, y),
        "ece": calibration_error(p, y, n_bins=n_bins),
        "smooth_ece": calibration_error(p, y, method="smooth"),
        "brier": brier_score(p, y),
        "accuracy": float(np.mean(np.argmax(p, axis=1) == y)),
    }


ESTIMATORS = {"vector": lambda: VectorScaler(), "matrix": lambda: MatrixScaler(),
              "dirichlet": lambda: DirichletScaler(reg_lambda=0.01)}


@pytest.mark.parametrize("method", ["temperature", "vector", "matrix", "dirichlet"])
def test_methods_with_held_out_test_data(capsys, method):
    z, y = problem(500, 4, seed=1)
    zt, yt = problem(400, 4, seed=2)
    save_pair("val", z, y)
    save_pair("te", zt, yt)
    extra = ["--reg-lambda", "0.01"] if method == "dirichlet" else []
    rc, out, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "--method", method,
                           *extra, "--test", "te.npy", "te_y.npy", "--json", "m.json",
                           "--output", "p.npy")
    assert rc == 0 and err == "", err
    assert "test data (held out)" in out and "smooth ECE" in out
    doc = json.loads(Path("m.json").read_text())
    assert doc["method"] == method and doc["test"]["n_samples"] == 400
    if method == "temperature":
        T = fit_temperature(z, y)
        assert doc["temperature"] == pytest.approx(T, rel=1e-12)
        from scipy.special import softmax

        p_fit, p_test = softmax(z / T, axis=1), softmax(zt / T, axis=1)
    else:
        est = ESTIMATORS[method]().fit(z, y)
        np.testing.assert_allclose(doc["coef"], est.coef_, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(doc["intercept"], est.intercept_, rtol=1e-12, atol=1e-14)
        p_fit, p_test = est.predict_proba(z), est.predict_proba(zt)
    for key, ref in _metrics_of(p_test, yt).items():
        assert doc["test"]["after"][key] == pytest.approx(ref, rel=1e-9, abs=1e-12), key
    for key, ref in _metrics_of(p_fit, y).items():
        assert doc["after"][key] == pytest.approx(ref, rel=1e-9, abs=1e-12), key
    from scipy.special import softmax

    for key, ref in _metrics_of(softmax(zt, axis=1), yt).items():
        assert doc["test"]["before"][key] == pytest.approx(ref, rel=1e-9, abs=1e-12), key
    # --output: the calibrated probabilities of the test data
    np.testing.assert_allclose(np.load("p.npy"), p_test, rtol=1e-10, atol=1e-15)
    # held-out NLL improves on these over-confident logits
    assert doc["test"]["after"]["nll"] < doc["test"]["before"]["nll"]


def test_output_of_fit_data_float32_and_no_overwrite(capsys):
    z, y = problem(300, 3, seed=3, dtype=np.float32)
    save_pair("val", z, y)
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "--method", "vector",
                         "-o", "p.npy")
    assert rc == 0, err
    p = np.load("p.npy")
    assert p.dtype == np.float32 and p.shape == (300, 3)
    est = VectorScaler().fit(z, y)
    np.testing.assert_allclose(p, est.predict_proba(z), rtol=1e-6, atol=1e-7)
    before = Path("p.npy").read_bytes()
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "-o", "p.npy")
    assert_one_line_error(rc, err, "already exists", "--force")
    assert Path("p.npy").read_bytes() == before
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "-o", "p.csv")
    assert rc == 0, err
    T = fit_temperature(z, y)
    from scipy.special import softmax

    np.testing.assert_allclose(np.loadtxt("p.csv", delimiter=","),
                               softmax(z.astype(np.float64) / T, axis=1), rtol=1e-6)
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "-o", "p.csv", "--force")
    assert rc == 0, err


@pytest.mark.parametrize("method", ["temperature", "vector"])
def test_binary_one_column(capsys, method):
    z, y = problem(400, 2, seed=4)
    d = z[:, 1] - z[:, 0]
    np.save("d.npy", d)
    np.save("y.npy", y)
    rc, _, err = run_cli(capsys, "calibrate", "d.npy", "y.npy", "--method", method,
                         "--test", "d.npy", "y.npy", "--json", "m.json", "-o", "p.npy")
    assert rc == 0, err
    p = np.load("p.npy")
    assert p.shape == (400, 2)
    if method == "vector":
        np.testing.assert_allclose(p, VectorScaler().fit(d, y).predict_proba(d), rtol=1e-10)


def test_input_probabilities_with_a_matrix_map(capsys):
    z, y = problem(400, 3, seed=5)
    from scipy.special import softmax

    p = softmax(z, axis=1)
    p[0] = [1.0, 0.0, 0.0]  # an exact zero: its log is floored, not -inf
    save_pair("val", p, y)
    rc, out, err = run_cli(capsys, "calibrate", "--input", "probabilities", "val.npy",
                           "val_y.npy", "--method", "matrix", "--json", "m.json")
    assert rc == 0 and err == "", err
    doc = json.loads(Path("m.json").read_text())
    logs = np.maximum(np.log(np.where(p > 0, p, 1e-320)), np.log(1e-300))
    est = MatrixScaler().fit(logs, y)
    assert doc["loss"] == pytest.approx(est.loss_, rel=1e-10)


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot_before_after(capsys):
    z, y = problem(300, 3, seed=6)
    save_pair("val", z, y)
    save_pair("te", *problem(200, 3, seed=7))
    rc, out, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "--method", "dirichlet",
                           "--test", "te.npy", "te_y.npy", "--plot", "r.png")
    assert rc == 0, err
    assert Path("r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote r.png" in out
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "--plot", "r.png")
    assert_one_line_error(rc, err, "already exists")
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", "--plot", "r.gif")
    assert_one_line_error(rc, err, ".gif")


@pytest.mark.skipif(not HAVE_PYARROW, reason="pyarrow is not installed")
def test_parquet_inputs(capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    z, y = problem(300, 3, seed=8)
    cols = {f"logit_{j}": z[:, j] for j in range(3)}
    pq.write_table(pa.table({**cols, "label": y}), "val.parquet")
    pq.write_table(pa.table(cols), "z.parquet")
    pq.write_table(pa.table({"target": y}), "y.parquet")
    rc, _, err = run_cli(capsys, "calibrate", "val.parquet", "--label-column", "label",
                         "--json", "a.json")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "calibrate", "z.parquet", "y.parquet", "--json", "b.json")
    assert rc == 0, err
    a, b = (json.loads(Path(f).read_text()) for f in ("a.json", "b.json"))
    assert a["temperature"] == b["temperature"] == pytest.approx(fit_temperature(z, y), rel=1e-12)
    # a label-like column is never read as one more logit
    rc, _, err = run_cli(capsys, "calibrate", "val.parquet", "y.parquet")
    assert_one_line_error(rc, err, "'label'", "--label-column")
    Path("bad.parquet").write_bytes(b"not parquet at all")
    rc, _, err = run_cli(capsys, "calibrate", "bad.parquet", "y.parquet")
    assert_one_line_error(rc, err, "not a valid Parquet file")


def test_parquet_without_pyarrow_is_one_line(capsys, monkeypatch):
    Path("z.parquet").write_bytes(b"PAR1")
    np.save("y.npy", np.zeros(3, dtype=np.int64))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails
    rc, _, err = run_cli(capsys, "calibrate", "z.parquet", "y.npy")
    assert_one_line_error(rc, err, "needs pyarrow")


@pytest.mark.parametrize("method", ["temperature", "matrix"])
def test_memory_mapped_inputs_in_chunks_equal_one_pass(capsys, monkeypatch, method):
    z, y = problem(1000, 5, seed=9, dtype=np.float32)
    zt, yt = problem(700, 5, seed=10, dtype=np.float32)
    save_pair("val", z, y)
    save_pair("te", zt, yt)
    argv = ["calibrate", "val.npy", "val_y.npy", "--method", method, "--test", "te.npy",
            "te_y.npy", "--strategy", "quantile"]
    rc, _, err = run_cli(capsys, *argv, "--json", "one.json", "-o", "one.npy")
    assert rc == 0, err

    mapped = []
    load = readers._load_npy

    def spy(path, mmap=False):
        arr = load(path, mmap)
        mapped.append(isinstance(arr, np.memmap))
        return arr

    monkeypatch.setattr(readers, "_load_npy", spy)
    import tempscale._scalers as scalers_mod

    fitted_on = []
    fit_affine = scalers_mod.fit_affine

    def spy_fit(kind, x, *a, **kw):
        fitted_on.append((x.dtype, x.flags.owndata))
        return fit_affine(kind, x, *a, **kw)

    monkeypatch.setattr(scalers_mod, "fit_affine", spy_fit)
    monkeypatch.setattr(calibrate_cmd, "CHUNK_VALUES", 5 * 64)   # 64-row chunks
    monkeypatch.setattr(calibrate_cmd, "PROGRESS_MIN", 0)       # the progress bar is on
    rc, _, err = run_cli(capsys, *argv, "--json", "many.json", "-o", "many.npy")
    assert rc == 0, err
    assert mapped and all(mapped)  # every .npy was memory-mapped, not read
    if method == "matrix":  # the fit read the mapped float32 rows in chunks, no whole copy
        assert fitted_on == [(np.dtype(np.float32), False)]
    one, many = (json.loads(Path(f).read_text()) for f in ("one.json", "many.json"))
    for part in ("before", "after"):
        for key in one[part]:
            assert many[part][key] == pytest.approx(one[part][key], rel=1e-12, abs=1e-15)
            assert many["test"][part][key] == pytest.approx(one["test"][part][key], rel=1e-12,
                                                            abs=1e-15)
    np.testing.assert_array_equal(np.load("many.npy"), np.load("one.npy"))


@pytest.mark.parametrize(("extra", "frag"), [
    (["--reg-lambda", "0.1"], "--method matrix or dirichlet"),
    (["--method", "matrix", "--reg-lambda", "-1"], "--reg-lambda must be"),
    (["--method", "dirichlet", "--reg-mu", "nan"], "--reg-mu must be"),
    (["--method", "spline"], "invalid choice"),
    (["--test", "te3.npy", "te3_y.npy"], "--test logits have 3 classes"),
    (["--test", "missing.npy", "te_y.npy"], "does not exist"),
    (["--test", "nan.npy", "te_y.npy"], "NaN"),
    (["--test", "te.npy", "short_y.npy"], "rows"),
    (["-o", "p.json"], "cannot write"),
    (["-o", "same.json", "--json", "same.json"], "different files"),
])
def test_errors_are_one_line(capsys, extra, frag):
    z, y = problem(60, 4, seed=11)
    save_pair("val", z, y)
    save_pair("te", *problem(50, 4, seed=12))
    save_pair("te3", *problem(50, 3, seed=13))
    bad = z[:50].copy()
    bad[7, 1] = np.nan
    np.save("nan.npy", bad)
    np.save("short_y.npy", y[:10])
    rc, _, err = run_cli(capsys, "calibrate", "val.npy", "val_y.npy", *extra)
    assert_one_line_error(rc, err, frag)
    assert not Path("p.json").exists() and not Path("same.json").exists()
