"""Distil a teacher MLP into a much smaller student on scikit-learn's handwritten digits.

This is what ``tempscale distill`` runs (it ships inside the package, so the command works after
``pip install`` and never executes a file from the current folder); ``examples/distill_digits.py``
runs it through the public command-line entry point, :func:`tempscale.cli.main`.

A complete, honest knowledge-distillation experiment that runs on a laptop CPU in a minute or
two (no download: the 8x8 digits ship with scikit-learn):

1. split the 1,797 digits into a training and a held-out test set (stratified, per seed);
2. train a teacher (64-256-256-10 MLP with dropout, ~85k parameters) on the hard labels;
3. train a much smaller student (64-16-10 MLP, ~1.2k parameters) from the same initial weights
   a) on the hard labels only (plain cross-entropy), and
   b) with ``tempscale.torch.KDLoss`` at T = 1, 2, 4, 8:
      ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``;
4. report test accuracy and test NLL (at T = 1), mean +- std over several seeds.

Needs torch and scikit-learn (rich draws the table when installed).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

#: a method's per-seed results: (test accuracy, test NLL)
Results = dict[str, list[tuple[float, float]]]


def load_split(seed: int, train_size: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                      torch.Tensor]:
    """Digits scaled to [0, 1], split into train / test, stratified, as torch tensors."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=train_size, stratify=y,
                                          random_state=seed)
    return (torch.from_numpy(Xtr), torch.from_numpy(ytr).long(),
            torch.from_numpy(Xte), torch.from_numpy(yte).long())


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron with the given layer sizes."""
    from torch import nn

    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def n_params(model: nn.Module) -> int:
    """The number of trainable numbers of ``model``."""
    return sum(p.numel() for p in model.parameters())


def fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, epochs: int, seed: int,
        lr: float = 3e-3, weight_decay: float = 1e-4, batch_size: int = 64,
        on_epoch: Callable[[], object] | None = None) -> nn.Module:
    """Adam on minibatches; ``loss_fn(logits, idx)`` sees the batch's row indices."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(X)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(model(X[idx]), idx)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
        if on_epoch is not None:
            on_epoch()
    model.eval()
    return model


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean negative log-likelihood at T = 1) on ``X, y``."""
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        logits = model(X)
    return (float((logits.argmax(1) == y).float().mean()),
            float(F.cross_entropy(logits, y)))


def run_experiment(*, seeds: int = 5, temperatures: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
                   alpha: float = 0.9, epochs: int = 150, teacher_epochs: int = 100,
                   student_hidden: int = 16, teacher_hidden: int = 256, train_size: float = 0.3,
                   threads: int = 1, progress: bool = True) -> dict[str, Any]:
    """Train teacher and students for each seed; returns per-method lists of (acc, nll)."""
    import torch

    from ..torch import KDLoss
    from ._console import progress as progress_bar

    torch.set_num_threads(threads)
    methods = ["teacher", "student: hard labels"] + [f"student: KD T={T:g}" for T in temperatures]
    results: Results = {m: [] for m in methods}
    info: dict[str, Any] = {}
    total = seeds * (teacher_epochs + epochs * (1 + len(temperatures)))
    t_start = time.perf_counter()
    with progress_bar("distilling", total=total, disable=not progress) as advance:
        tick = advance
        for seed in range(seeds):
            Xtr, ytr, Xte, yte = load_split(seed, train_size)
            advance(0, description=f"seed {seed + 1}/{seeds}: teacher")
            torch.manual_seed(seed)
            teacher = mlp([64, teacher_hidden, teacher_hidden, 10], dropout=0.2)
            fit(teacher, Xtr, ytr, _hard_loss(ytr), epochs=teacher_epochs, seed=seed,
                on_epoch=tick)
            results["teacher"].append(evaluate(teacher, Xte, yte))
            with torch.no_grad():
                teacher_logits = teacher(Xtr)     # fixed soft targets (eval mode, no dropout)

            torch.manual_seed(10_000 + seed)
            init = mlp([64, student_hidden, 10])
            state = {k: v.clone() for k, v in init.state_dict().items()}
            info = {"teacher_params": n_params(teacher), "student_params": n_params(init),
                    "n_train": len(Xtr), "n_test": len(Xte)}
            for name in methods[1:]:
                advance(0, description=f"seed {seed + 1}/{seeds}: {name}")
                student = mlp([64, student_hidden, 10])
                student.load_state_dict(state)    # every student starts from the same weights
                if name == "student: hard labels":
                    loss_fn = _hard_loss(ytr)
                else:
                    crit = KDLoss(float(name.rsplit("=", 1)[1]), alpha=alpha)
                    loss_fn = _kd_loss(crit, teacher_logits, ytr)
                fit(student, Xtr, ytr, loss_fn, epochs=epochs, seed=seed, on_epoch=tick)
                results[name].append(evaluate(student, Xte, yte))
    info.update(seeds=seeds, alpha=alpha, epochs=epochs, teacher_epochs=teacher_epochs,
                train_size=train_size, threads=threads,
                seconds=round(time.perf_counter() - t_start, 1))
    return {"results": results, "info": info}


def _hard_loss(y: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn(logits, idx)``: cross-entropy on the labels of the batch's rows."""
    import torch.nn.functional as F

    def hard(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y[idx])

    return hard


def _kd_loss(crit: nn.Module, teacher_logits: torch.Tensor,
             y: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn(logits, idx)``: the distillation criterion against the teacher's logits and the
    labels of the batch's rows."""

    def distil(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = crit(out, teacher_logits[idx], y[idx])
        return loss

    return distil


def summarise(results: Results) -> list[tuple[str, float, float, float, float]]:
    """Rows of (method, acc mean, acc std, nll mean, nll std)."""
    rows = []
    for name, vals in results.items():
        acc = [a for a, _ in vals]
        nll = [b for _, b in vals]
        rows.append((name, statistics.mean(acc), _stdev(acc), statistics.mean(nll), _stdev(nll)))
    return rows


def _stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def markdown_table(out: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    info = out["info"]
    lines = [f"| model | test accuracy (mean ± std, {info['seeds']} seeds) | test NLL |",
             "|---|---|---|"]
    for name, am, asd, nm, nsd in summarise(out["results"]):
        lines.append(f"| {name} | {100 * am:.2f} ± {100 * asd:.2f} % | {nm:.3f} ± {nsd:.3f} |")
    return "\n".join(lines)


def print_summary(out: dict[str, Any]) -> None:
    """The summary table on stdout (rich's table when installed)."""
    from ._console import print_table

    info = out["info"]
    rows = summarise(out["results"])
    title = (f"digits: teacher {info['teacher_params']:,} params, student "
             f"{info['student_params']:,} params; {info['n_train']} train / {info['n_test']} "
             f"test; alpha={info['alpha']}; {info['seeds']} seeds; {info['seconds']} s")
    base = next(r for r in rows if r[0] == "student: hard labels")
    cells = []
    for name, am, asd, nm, nsd in rows:
        d_acc = "" if name in ("teacher", base[0]) else f"{100 * (am - base[1]):+.2f} pt"
        d_nll = "" if name in ("teacher", base[0]) else f"{nm - base[3]:+.3f}"
        cells.append([name, f"{100 * am:.2f} ± {100 * asd:.2f} %", f"{nm:.3f} ± {nsd:.3f}",
                      d_acc, d_nll])
    print_table(title, ["model", "test accuracy", "test NLL", "Δ acc vs hard", "Δ NLL vs hard"],
                cells)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The experiment's options, added to ``parser`` (or to a new parser)."""
    from .distill import add_arguments  # the options `tempscale distill` takes

    p = parser or argparse.ArgumentParser(
        description="Distil a teacher MLP into a small student on scikit-learn's digits.")
    add_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="replace an existing --json file (or link: the link itself is replaced)")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """Check the options, run the experiment and print (and write) its results."""
    from ._writers import check_output, write_text

    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    force = bool(getattr(args, "force", False))
    if args.json:
        check_output(args.json, force)  # refused before any training
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    if not all(math.isfinite(T) and T > 0 for T in args.temperatures):
        raise ValueError(f"temperatures must be positive and finite, got {args.temperatures}")
    if not 0.05 <= args.train_size <= 0.95:
        raise ValueError(f"--train-size must be in [0.05, 0.95], got {args.train_size}")
    epochs, teacher_epochs = (40, 30) if args.quick else (150, 100)
    epochs = epochs if getattr(args, "epochs", None) is None else args.epochs
    teacher_epochs = teacher_epochs if getattr(args, "teacher_epochs", None) is None else args.teacher_epochs
    if epochs < 1 or teacher_epochs < 1:
        raise ValueError(f"--epochs and --teacher-epochs must be at least 1, got "
                         f"{epochs} and {teacher_epochs}")
    if not 1 <= args.student_hidden <= 4096:
        raise ValueError(f"--student-hidden must be in [1, 4096], got {args.student_hidden}")
    out = run_experiment(seeds=seeds, temperatures=tuple(args.temperatures), alpha=args.alpha,
                         epochs=epochs, teacher_epochs=teacher_epochs,
                         student_hidden=args.student_hidden, train_size=args.train_size,
                         threads=args.threads, progress=not getattr(args, "no_progress", False))
    print_summary(out)
    if getattr(args, "markdown", False):
        print(markdown_table(out))
    if args.json:
        write_text(args.json, force, json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0

