"""tempscale.sampling.hf.logits_processor: a drop-in for transformers' warpers (issue 14, item 4)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
lp = pytest.importorskip("transformers.generation.logits_process")

from tempscale.sampling import warp  # noqa: E402
from tempscale.sampling.hf import logits_processor  # noqa: E402

CASES = [
    dict(temperature=0.7, top_k=10),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=0.9, min_p=0.05),
    dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02),
    dict(temperature=1.0, typical_p=0.9),
    dict(temperature=0.6, epsilon=3e-3),
    dict(temperature=1.1, eta=2e-3),
    dict(temperature=0.9, top_h=0.6),
]


def _hf_warpers(c):
    T = c["temperature"]
    procs = [lp.TemperatureLogitsWarper(T)] if T != 1.0 else []
    if "top_h" in c:
        procs.append(lp.TopHLogitsWarper(c["top_h"]))
    if "top_k" in c:
        procs.append(lp.TopKLogitsWarper(c["top_k"]))
    if "top_p" in c:
        procs.append(lp.TopPLogitsWarper(c["top_p"]))
    if "min_p" in c:
        procs.append(lp.MinPLogitsWarper(c["min_p"]))
    if "typical_p" in c:
        procs.append(lp.TypicalLogitsWarper(c["typical_p"]))
    if "epsilon" in c:
        procs.append(lp.EpsilonLogitsWarper(c["epsilon"]))
    if "eta" in c:
        procs.append(lp.EtaLogitsWarper(c["eta"]))
    return procs


@pytest.mark.parametrize("c", CASES, ids=lambda c: ",".join(k for k in c if k != "temperature"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_processor_equals_transformers_chain_on_scores(c, dtype):
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn((6, 300), generator=g, dtype=torch.float64) * 2).to(dtype)
    ids = torch.zeros((6, 3), dtype=torch.long)
    proc = logits_processor(**c)
    assert isinstance(proc, transformers.LogitsProcessor)
    got = proc(ids, scores)
    ref = scores
    for p in _hf_warpers(c):
        ref = p(ids, ref)
    assert got.dtype == scores.dtype and got.shape == scores.shape
    torch.testing.assert_close(torch.isfinite(got), torch.isfinite(ref), rtol=0, atol=0)
    k = torch.isfinite(ref)
    torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)  # the same tempered logits
    np.testing.assert_allclose(torch.softmax(got.double(), -1).numpy(),
                               to_np(warp(scores.double(), **{"temperature": c["temperature"]},
                                          **{k2: v for k2, v in c.items() if k2 != "temperature"}))
                               if dtype == torch.float64 else torch.softmax(ref.double(), -1).numpy(),
                               rtol=0, atol=1e-10)


def to_np(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def _tiny_model():
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
                                  bos_token_id=0, eos_token_id=99)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # spread the logits so that the rules cut something
        model.lm_head.weight.mul_(40.0)
    return model.eval()


@pytest.mark.parametrize("c", CASES, ids=lambda c: ",".join(k for k in c if k != "temperature"))
def test_generate_draws_the_same_tokens_as_transformers(c):
    model = _tiny_model()
    inputs = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    attn = torch.ones_like(inputs)
    common = dict(do_sample=True, max_new_tokens=12, pad_token_id=99, eos_token_id=None,
                  attention_mask=attn)
    kw = {{"epsilon": "epsilon_cutoff", "eta": "eta_cutoff"}.get(k, k): v for k, v in c.items()}
    torch.manual_seed(123)
    ref = model.generate(inputs, top_k=c.get("top_k", 0), **{k: v for k, v in kw.items() if k != "top_k"},
                         **common)
    torch.manual_seed(123)
    got = model.generate(inputs, top_k=0, logits_processor=[logits_processor(**c)], **common)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    # and the output is not trivially the greedy one
    assert got.shape == (3, 16)


def test_dynatemp_xtc_and_orders_in_generate():
    model = _tiny_model()
    inputs = torch.tensor([[1, 2, 3, 4]])
    common = dict(do_sample=True, max_new_tokens=8, pad_token_id=99, eos_token_id=None, top_k=0,
                  attention_mask=torch.ones_like(inputs))
    for c in (dict(temperature=0.8, dynatemp_range=0.5, top_k=20),
              dict(temperature=0.8, xtc_threshold=0.05, xtc_probability=0.5, top_p=0.95),
              dict(temperature=2.0, top_k=15, order="temperature-last"),
              dict(temperature=0.0, top_k=5)):
        proc = logits_processor(**c)
        torch.manual_seed(1)
        a = model.generate(inputs, logits_processor=[proc], **common)
        torch.manual_seed(1)
        b = model.generate(inputs, logits_processor=[logits_processor(**c)], **common)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # greedy through the processor equals greedy decoding
    g = model.generate(inputs, do_sample=False, max_new_tokens=8, pad_token_id=99, eos_token_id=None,
                       attention_mask=torch.ones_like(inputs))
    torch.manual_seed(2)
    s = model.generate(inputs, logits_processor=[logits_processor(0.0)], **common)
    torch.testing.assert_close(s, g, rtol=0, atol=0)
    # dynamic temperature: the output is the warped log-distribution
    scores = torch.randn((2, 50), dtype=torch.float64)
    out = logits_processor(0.8, dynatemp_range=0.5, top_k=20)(None, scores)
    torch.testing.assert_close(torch.softmax(out, -1), warp(scores, 0.8, dynatemp_range=0.5, top_k=20))


@pytest.mark.parametrize("kw, exc, text", [
    (dict(top_p=1.5), ValueError, "The 'top_p' parameter of logits_processor must be"),
    (dict(top_k=-1), ValueError, "The 'top_k' parameter of logits_processor"),
    (dict(temperature=-1.0), ValueError, "The 'temperature' parameter of logits_processor"),
    (dict(temperature="hot"), TypeError, "'temperature' parameter of logits_processor"),
    (dict(order=["top_k", "bogus"], top_k=3), ValueError, "The 'order' parameter of logits_processor"),
])
def test_validation(kw, exc, text):
    with pytest.raises(exc) as info:
        logits_processor(**kw)
    assert text in str(info.value)


def test_transformers_import_stays_lazy():
    code = ("import sys; import tempscale, tempscale.sampling, tempscale.sampling.hf; "
            "assert 'transformers' not in sys.modules, 'imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
