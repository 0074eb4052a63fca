"""examples/distill_lm.py: the language-model distillation example runs and reports sane numbers.

The example is run in-process with ``--quick`` (a tiny corpus slice, tiny models, a few steps:
seconds).  The checks are structural (the Markdown table, every arm present) and numeric
(finite perplexities above 1, a trained teacher better than the uniform guess), plus the
fused output-layer loss and the materialised-logits loss giving the same students.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("tqdm")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distill_lm.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("distill_lm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture()
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # main() sets the process-wide thread count


ROW = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<ppl>[^|]*?) \|\s*(?P<delta>[^|]*?)\s*\|$")


def numbers(cell):
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", cell)]


def test_quick_run_prints_a_markdown_table_of_finite_perplexities(example, capsys, restore_threads):
    assert example.main(["--quick", "--seeds", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "| student | held-out perplexity | Δ vs hard labels (paired) |"
    assert lines[1] == "|---|---|---|"
    rows = [ROW.match(line) for line in lines[2:] if line.startswith("|")]
    assert all(rows), lines
    names = [r["name"] for r in rows]
    cfg = example.QUICK
    expected = (["hard labels (cross-entropy)"]
                + [f"KD T={T:g}, alpha={cfg.alpha:g}" for T in cfg.temperatures]
                + [f"sparse top-{cfg.top_k} KD T={cfg.sparse_temperature:g}, alpha={cfg.alpha:g}, "
                   f"missing={m}" for m in cfg.sparse_missing]
                + ["*teacher*"])
    assert names == expected
    for r in rows[:-1]:  # students: "mean ± std" over the 2 seeds
        mean, std = numbers(r["ppl"])
        assert math.isfinite(mean) and mean > 1
        assert math.isfinite(std) and std >= 0
    assert rows[0]["delta"] == "—"
    for r in rows[1:-1]:
        d_mean, d_std = numbers(r["delta"])
        assert math.isfinite(d_mean) and math.isfinite(d_std) and d_std >= 0
    # the two sparse modes differ (the cached values are log-probabilities, so "uniform" has
    # a missing mass to spread; with top-k logits both modes would train the same students)
    assert rows[-3]["ppl"] != rows[-2]["ppl"]
    (teacher,) = numbers(rows[-1]["ppl"])
    vocab = int(re.search(r"vocabulary (\d+)", out).group(1))
    assert 1 < teacher < vocab  # better than the uniform guess over the vocabulary
    assert "Mean ± std over 2 seed(s)" in out and "Loss: FusedLinearKDLoss" in out


def test_fused_and_materialised_losses_train_the_same_students(example, restore_threads):
    torch.set_num_threads(1)
    fused = example.run(example.QUICK, 1, fused=True, quiet=True)
    logits = example.run(example.QUICK, 1, fused=False, quiet=True)
    assert fused["teacher_ppl"] == logits["teacher_ppl"]  # the same teacher (no KD in it)
    assert fused["results"].keys() == logits["results"].keys()
    for name in fused["results"]:
        # the same loss computed two ways: equal up to float rounding over a few steps
        assert fused["results"][name] == pytest.approx(logits["results"][name], rel=1e-3), name


def test_bad_arguments_are_rejected(example, restore_threads):
    with pytest.raises(SystemExit):
        example.main(["--quick", "--seeds", "0"])
