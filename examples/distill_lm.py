"""Distil a small causal language model into a smaller one, on CPU, on the Python standard library.

A complete language-model distillation that runs on a laptop CPU with PyTorch and needs no
download:

* **Corpus**: the ``.py`` files at the top level of this Python's standard library
  (``sysconfig.get_paths()["stdlib"]``), sorted by name, the first few MB of them; every 8th
  file is held out (the split is by file, so held-out text is unseen code).
* **Tokenizer**: a byte-level BPE (the ``tokenizers`` package) trained here on the training
  files only, vocabulary 2048.
* **Teacher**: a pre-LN causal transformer written in plain torch
  (``F.scaled_dot_product_attention(is_causal=True)``), trained first on the training files.
* **Students** (a smaller transformer of the same kind, the same initial weights and the same
  batches for a given seed across arms):

  - ``hard``: cross-entropy on the next token only;
  - ``KD T=…``: ``tempscale.torch.FusedLinearKDLoss`` (forward KL, ``T**2`` scaling, ``alpha``
    of soft term + ``1 - alpha`` of hard-label cross-entropy) fed the student's last hidden
    states and output weight and the teacher's ``(hidden, weight)`` (its hidden states are
    computed once over the training windows and cached): neither model's logits are ever
    materialised for the loss;
  - ``sparse top-k``: the same loss (``tempscale.distill.sparse_kd_loss``, with
    ``missing="zero"`` -- no teacher mass outside its top-k -- and ``missing="uniform"`` -- the
    mass the top-k leaves spread evenly over the other tokens) with a sparse teacher
    (``tempscale.distill.SparseTeacher``): only the teacher's top-``k`` token ids and
    log-probabilities per position, computed in the same pass and cached, as offline distillation does.

The table (Markdown, on stdout) reports held-out perplexity, mean +- std over seeds, and the
paired difference from the hard-label student of the same seed.  Progress bars go to stderr.

Run::

    python examples/distill_lm.py                 # full run: 3 seeds, a few minutes on 2 cores
    python examples/distill_lm.py --quick         # tiny run (seconds), what the test runs
    python examples/distill_lm.py --seeds 5 --threads 4

``--loss logits`` uses ``tempscale.torch.KDLoss`` on materialised logits instead (the same loss;
it is also the fallback when ``FusedLinearKDLoss`` is not available).  The numbers depend on
the Python version (its standard library is the corpus) and, slightly, on the torch build.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tempscale.distill import SparseTeacher
from tempscale.torch import KDLoss

try:  # the fused output layer + loss; KDLoss on materialised logits is the fallback
    from tempscale.torch import FusedLinearKDLoss
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed version
    FusedLinearKDLoss = None

EOS = "<|endoftext|>"


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    """Sizes of one run (``FULL`` or ``QUICK``)."""

    corpus_bytes: int  # bytes of source files read (train + held-out)
    vocab: int
    context: int
    batch: int
    teacher: tuple[int, int, int]  # (width, layers, heads)
    student: tuple[int, int, int]
    teacher_steps: int
    student_steps: int
    lr: float
    temperatures: tuple[float, ...]
    alpha: float  # weight of the soft term
    top_k: int
    sparse_temperature: float
    sparse_missing: tuple[str, ...]  # sparse_kd_loss's missing= modes compared
    eval_windows: int  # held-out windows scored (at most)


FULL = Config(corpus_bytes=1_500_000, vocab=2048, context=128, batch=16,
              teacher=(128, 3, 4), student=(64, 2, 2), teacher_steps=300, student_steps=150,
              lr=3e-3, temperatures=(1.0, 2.0, 4.0), alpha=0.5, top_k=32,
              sparse_temperature=2.0, sparse_missing=("zero", "uniform"), eval_windows=128)
QUICK = Config(corpus_bytes=150_000, vocab=512, context=32, batch=8,
               teacher=(32, 1, 2), student=(16, 1, 1), teacher_steps=20, student_steps=10,
               lr=3e-3, temperatures=(1.0, 2.0), alpha=0.5, top_k=8,
               sparse_temperature=2.0, sparse_missing=("zero", "uniform"), eval_windows=16)


# --------------------------------------------------------------------------- data
def source_files(limit_bytes: int) -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name, up to ``limit_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.glob("*.py")):
        size = path.stat().st_size
        if size > limit_bytes // 4:  # no single file dominates a small corpus
            continue
        if total + size > limit_bytes:
            break
        files.append(path)
        total += size
    if len(files) < 8:
        raise SystemExit(f"too few standard-library sources found under {root}")
    return files


def split_files(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Every 8th file (by sorted name) is held out."""
    held = [f for i, f in enumerate(files) if i % 8 == 7]
    train = [f for i, f in enumerate(files) if i % 8 != 7]
    return train, held


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def train_tokenizer(texts: Sequence[str], vocab: int) -> Any:
    """A byte-level BPE trained on ``texts`` (nothing downloaded)."""
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    return tok


def encode(tok: Any, texts: Sequence[str]) -> torch.Tensor:
    """All texts as one token stream, each followed by the end-of-text token."""
    eos = tok.token_to_id(EOS)
    ids: list[int] = []
    for enc in tok.encode_batch(list(texts)):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def windows(stream: torch.Tensor, context: int) -> torch.Tensor:
    """Non-overlapping windows of ``context + 1`` tokens (inputs and next-token targets)."""
    n = (len(stream) - 1) // context
    idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)[None, :]
    return stream[idx]


# --------------------------------------------------------------------------- model
class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention and a GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, S, 3, self.heads, D // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, S, D))
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class CausalLM(nn.Module):
    """Token + position embeddings, pre-LN blocks, final LayerNorm, output layer (untied)."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    @property
    def out_weight(self) -> torch.Tensor:
        """The output layer's weight ``(V, H)``."""
        return self.out.weight

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The last hidden states ``(B, S, H)`` (after the final LayerNorm)."""
        x = self.tok(ids) + self.pos.weight[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.ln(x)
        return out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hidden(ids) @ self.out_weight.T


# --------------------------------------------------------------------------- training
def bar(total: int, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc=desc, leave=False, disable=quiet, file=sys.stderr,
                dynamic_ncols=True)


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 10 %."""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def batches(n_windows: int, batch: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """``steps`` batches of window indices, reshuffled each epoch, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_windows, generator=g)
    pos = 0
    for _ in range(steps):
        if pos + batch > n_windows:
            order, pos = torch.randperm(n_windows, generator=g), 0
        yield order[pos: pos + batch]
        pos += batch


class AdamW:
    """Decoupled-weight-decay Adam (Loshchilov & Hutter), a few lines of plain torch.

    Written out here rather than ``torch.optim.AdamW`` only because constructing a torch
    optimizer imports ``torch._dynamo``, which costs seconds, more than the quick run itself.
    """

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.wd, self.betas, self.eps = lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            decay = self.wd if p.dim() > 1 else 0.0  # no decay on biases and LayerNorm gains
            p.mul_(1 - self.lr * decay)
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def train(model: CausalLM, data: torch.Tensor, cfg: Config, steps: int, seed: int,
          loss_of: Any, desc: str, quiet: bool) -> None:
    """AdamW over ``steps`` batches; ``loss_of(model, window_indices, inputs, targets)``."""
    opt = AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    with bar(steps, desc, quiet) as pbar:
        for step, idx in enumerate(batches(len(data), cfg.batch, steps, seed)):
            opt.lr = lr_at(step, steps, cfg.lr)
            win = data[idx]
            loss = loss_of(model, idx, win[:, :-1], win[:, 1:])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            pbar.update()
            if step % 10 == 0:
                pbar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()


@torch.no_grad()
def perplexity(model: CausalLM, data: torch.Tensor, batch: int = 32) -> float:
    """``exp`` of the mean next-token negative log-likelihood over the windows of ``data``."""
    total, count = 0.0, 0
    for i in range(0, len(data), batch):
        win = data[i: i + batch]
        logits = model(win[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1), win[:, 1:].flatten(), reduction="sum").item()
        count += win[:, 1:].numel()
    return math.exp(total / count)


def hard_loss(model: CausalLM, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


@dataclass
class TeacherCache:
    """The teacher's outputs at every training position, computed once (offline distillation).

    ``hidden`` (windows, S, H) are its last hidden states (with ``weight``, its output layer,
    they give its logits, which are never stored); ``top_ids`` / ``top_vals`` its top-``k``
    token ids and log-probabilities (the sparse teacher).
    """

    hidden: torch.Tensor
    weight: torch.Tensor
    top_ids: torch.Tensor
    top_vals: torch.Tensor


@torch.no_grad()
def cache_teacher(teacher: CausalLM, data: torch.Tensor, k: int, batch: int = 32,
                  quiet: bool = True) -> TeacherCache:
    """One teacher forward pass over the training windows: hidden states and top-``k``."""
    hidden, ids, vals = [], [], []
    weight = teacher.out_weight.detach().clone()
    with bar(len(data), "teacher outputs", quiet) as pbar:
        for i in range(0, len(data), batch):
            h = teacher.hidden(data[i: i + batch, :-1])
            # log-probabilities (normalised over the whole vocabulary), as offline pipelines store
            # them: missing="uniform" needs them to know the mass the top-k leaves
            v, j = torch.log_softmax(h @ weight.T, dim=-1).topk(k, dim=-1)
            hidden.append(h)
            ids.append(j.to(torch.int32))
            vals.append(v)
            pbar.update(len(h))
    return TeacherCache(torch.cat(hidden), weight, torch.cat(ids), torch.cat(vals))


def kd_arm(cache: TeacherCache, temperature: float, alpha: float, fused: bool) -> Any:
    """The loss of a dense-teacher arm: soft term on the full teacher, plus hard labels."""
    if fused:
        fused_fn = FusedLinearKDLoss(temperature, alpha=alpha)

        def loss(model: CausalLM, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # neither the student's nor the teacher's logits are materialised
            out: torch.Tensor = fused_fn(model.hidden(x), model.out_weight,
                                         (cache.hidden[idx], cache.weight), y)
            return out
        return loss

    logits_fn = KDLoss(temperature, alpha=alpha)

    def loss_logits(model: CausalLM, idx: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
        t_logits = cache.hidden[idx] @ cache.weight.T
        out: torch.Tensor = logits_fn(model(x).flatten(0, 1), t_logits.flatten(0, 1),
                                      labels=y.flatten())
        return out
    return loss_logits


def sparse_arm(cache: TeacherCache, temperature: float, alpha: float, missing: str) -> Any:
    """The loss of the sparse arm: the cached top-k teacher (``SparseTeacher``), plus hard labels.

    ``tempscale.distill.sparse_kd_loss`` on the student's logits (``FusedLinearKDLoss`` takes
    the same ``SparseTeacher`` and gives the same loss, but at this small vocabulary its
    sparse path -- autograd through ``sparse_kd_loss`` chunk by chunk -- was several times
    slower per step than materialising the student's 2048 logits).
    """
    from tempscale.distill import sparse_kd_loss

    def loss(model: CausalLM, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        teacher = SparseTeacher(cache.top_ids[idx].long().flatten(0, 1),
                                cache.top_vals[idx].flatten(0, 1))
        out: torch.Tensor = sparse_kd_loss(model(x).flatten(0, 1), teacher=teacher,
                                           temperature=temperature, labels=y.flatten(),
                                           alpha=alpha, missing=missing)
        return out
    return loss


# --------------------------------------------------------------------------- the experiment
def fmt_t(t: float) -> str:
    return f"{t:g}"


def run(cfg: Config, seeds: int, *, fused: bool, quiet: bool = False) -> dict[str, Any]:
    """Train the teacher once and every student arm for ``seeds`` seeds; return the results."""
    started = time.perf_counter()
    files = source_files(cfg.corpus_bytes)
    train_files, held_files = split_files(files)
    train_texts, held_texts = [read(f) for f in train_files], [read(f) for f in held_files]
    tok = train_tokenizer(train_texts, cfg.vocab)
    V = tok.get_vocab_size()
    train_data = windows(encode(tok, train_texts), cfg.context)
    held_data = windows(encode(tok, held_texts), cfg.context)
    step = max(1, len(held_data) // cfg.eval_windows)
    held_data = held_data[::step][: cfg.eval_windows]

    torch.manual_seed(0)
    teacher = CausalLM(V, cfg.context, *cfg.teacher)
    train(teacher, train_data, cfg, cfg.teacher_steps, 0, hard_loss, "teacher", quiet)
    teacher.requires_grad_(False)
    teacher_ppl = perplexity(teacher, held_data)
    cache = cache_teacher(teacher, train_data, cfg.top_k, quiet=quiet)

    arms: dict[str, Any] = {"hard labels (cross-entropy)": lambda: hard_loss}
    for T in cfg.temperatures:
        arms[f"KD T={fmt_t(T)}, alpha={cfg.alpha:g}"] = (
            lambda T=T: kd_arm(cache, T, cfg.alpha, fused))
    for missing in cfg.sparse_missing:
        arms[f"sparse top-{cfg.top_k} KD T={fmt_t(cfg.sparse_temperature)}, alpha={cfg.alpha:g}, "
             f"missing={missing}"] = (
            lambda missing=missing: sparse_arm(cache, cfg.sparse_temperature, cfg.alpha, missing))

    results: dict[str, list[float]] = {name: [] for name in arms}
    for seed in range(seeds):
        for name, make in arms.items():
            torch.manual_seed(1000 + seed)  # the same initial student for every arm of a seed
            student = CausalLM(V, cfg.context, *cfg.student)
            train(student, train_data, cfg, cfg.student_steps, 1000 + seed, make(),
                  f"seed {seed}: {name}", quiet)
            results[name].append(perplexity(student, held_data))
    n_params = {m: sum(p.numel() for p in mod.parameters()) for m, mod in
                (("teacher", teacher), ("student", CausalLM(V, cfg.context, *cfg.student)))}
    return {
        "results": results, "teacher_ppl": teacher_ppl, "vocab": V,
        "train_tokens": train_data[:, :-1].numel(), "held_tokens": held_data[:, :-1].numel(),
        "files": (len(train_files), len(held_files)), "params": n_params,
        "seconds": time.perf_counter() - started, "fused": fused,
    }


def mean_std(xs: Sequence[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def markdown(out: dict[str, Any], cfg: Config, seeds: int) -> str:
    """The results as a Markdown table plus a line describing the run."""
    res = out["results"]
    base = next(iter(res.values()))
    lines = ["| student | held-out perplexity | Δ vs hard labels (paired) |",
             "|---|---|---|"]
    for name, ppls in res.items():
        delta = "—" if ppls is base else mean_std([p - b for p, b in zip(ppls, base, strict=True)])
        lines.append(f"| {name} | {mean_std(ppls)} | {delta} |")
    lines.append(f"| *teacher* | {out['teacher_ppl']:.2f} | |")
    tw, tl, th = cfg.teacher
    sw, sl, sh = cfg.student
    loss = "FusedLinearKDLoss" if out["fused"] else "KDLoss on materialised logits"
    lines += ["", f"Mean ± std over {seeds} seed(s); Δ = student − hard-label student of the same "
              f"seed (negative is better). Corpus: {out['files'][0]} + {out['files'][1]} "
              f"standard-library files (Python {sys.version.split()[0]}), "
              f"{out['train_tokens']:,} training / {out['held_tokens']:,} held-out tokens, "
              f"byte-level BPE vocabulary {out['vocab']}. Teacher {tw}-wide × {tl} layers "
              f"({out['params']['teacher']:,} parameters, {cfg.teacher_steps} steps); student "
              f"{sw}-wide × {sl} layers ({out['params']['student']:,} parameters, "
              f"{cfg.student_steps} steps of {cfg.batch} × {cfg.context} tokens). Loss: {loss}. "
              f"Wall time {out['seconds']:.0f} s on {torch.get_num_threads()} thread(s)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds): for tests")
    parser.add_argument("--seeds", type=int, default=None, help="student seeds (default 3; 2 quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--loss", choices=("fused", "logits"), default="fused",
                        help="FusedLinearKDLoss on hidden states (default) or KDLoss on logits")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    if seeds < 1 or args.threads < 1:
        parser.error("--seeds and --threads must be positive")
    fused = args.loss == "fused" and FusedLinearKDLoss is not None
    if args.loss == "fused" and not fused:
        print("FusedLinearKDLoss is not available: using KDLoss on materialised logits",
              file=sys.stderr)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = run(cfg, seeds, fused=fused, quiet=args.quiet)
    print(markdown(out, cfg, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
