"""vocab_parallel_kd_loss on 2 gloo processes equals kd_loss on the gathered logits.

One spawn (two CPU processes, started here) runs every case; each process compares its loss
and the gradient of its own vocabulary slice with the single-process kd_loss.
"""

from __future__ import annotations

import os
import socket
import time
import traceback

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

WORLD = 2
N, V = 6, 13
SPLIT = (5, 8)   # uneven slices: rank 0 holds classes [0, 5), rank 1 [5, 13)


#: the cases also run in float32 (every case runs in float64)
FLOAT32_CASES = ("forward-0.5", "jsd-0.3", "labels-alpha0.3-jsd", "per-row-T")


def _cases():
    """(name, kd_loss options, use labels, per-row T) of every case."""
    out = []
    for divergence, beta in (("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3), ("jsd", 1.0)):
        out.append((f"{divergence}-{beta}", dict(divergence=divergence, beta=beta), False, False))
    out += [
        ("labels-default-alpha", {}, True, False),
        ("labels-alpha0", dict(alpha=0.0), True, False),
        ("labels-alpha0.3-jsd", dict(alpha=0.3, divergence="jsd"), True, False),
        ("labels-alpha1", dict(alpha=1.0), True, False),
        ("t2-off-sum", dict(t2_scale=False, reduction="sum"), True, False),
        ("none", dict(reduction="none"), True, False),
        ("num-items", dict(num_items_in_batch=9), True, False),
        ("per-row-T", dict(divergence="reverse"), True, True),
        ("where", dict(where="rows"), False, False),
    ]
    return out


def _worker(rank, port, result_dir):
    try:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        from tempscale.distill import kd_loss
        from tempscale.torch.distributed import vocab_parallel_kd_loss

        lo = sum(SPLIT[:rank])
        hi = lo + SPLIT[rank]
        failures = []
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
            for name, opts, use_labels, per_row in _cases():
                if dtype == torch.float32 and name not in FLOAT32_CASES:
                    continue
                g = torch.Generator().manual_seed(7)
                s_full = (torch.randn(N, V, generator=g) * 2).to(dtype)
                t_full = (torch.randn(N, V, generator=g) * 2).to(dtype)
                labels = torch.randint(0, V, (N,), generator=g)
                labels[2] = -100
                # labels on both slices, including the other rank's
                labels[0], labels[1] = 1, V - 1
                T = (torch.rand(N, generator=g, dtype=dtype) * 2 + 0.5) if per_row else 2.0
                T_ref = T.clone().requires_grad_(True) if per_row else T
                T_loc = T.clone().requires_grad_(True) if per_row else T
                opts = dict(opts)
                if opts.get("where") == "rows":
                    opts["where"] = torch.tensor([True, False, True, True, False, True])
                lab = labels if use_labels else None
                s_ref = s_full.clone().requires_grad_(True)
                ref = kd_loss(s_ref, t_full, T_ref, labels=lab, **opts)
                go = torch.linspace(0.5, 1.5, ref.numel(), dtype=ref.dtype).reshape(ref.shape)
                wrt_ref = (s_ref, T_ref) if per_row else (s_ref,)
                g_ref = torch.autograd.grad(ref, wrt_ref, grad_outputs=go)
                start = None if name != "num-items" else lo   # vocab_start given, once
                s_loc = s_full[:, lo:hi].clone().requires_grad_(True)
                loss = vocab_parallel_kd_loss(s_loc, t_full[:, lo:hi], T_loc, labels=lab,
                                              vocab_start=start, **opts)
                wrt_loc = (s_loc, T_loc) if per_row else (s_loc,)
                g_loc = torch.autograd.grad(loss, wrt_loc, grad_outputs=go)
                try:
                    assert loss.dtype == ref.dtype and loss.shape == ref.shape
                    torch.testing.assert_close(loss, ref.detach(), rtol=tol, atol=tol)
                    torch.testing.assert_close(g_loc[0], g_ref[0][:, lo:hi], rtol=tol, atol=tol)
                    if per_row:  # the temperature's gradient is complete on every process
                        torch.testing.assert_close(g_loc[1], g_ref[1], rtol=tol, atol=tol)
                except AssertionError as e:
                    failures.append(f"{dtype} {name}: {e}")
        # clear errors
        try:
            vocab_parallel_kd_loss(torch.zeros(N, SPLIT[rank]), torch.zeros(N, SPLIT[rank] + 1))
            failures.append("mismatched shard shapes were accepted")
        except ValueError as e:
            if "'teacher_shard' parameter of vocab_parallel_kd_loss" not in str(e):
                failures.append(f"unclear error: {e}")
        try:
            vocab_parallel_kd_loss(torch.zeros(N, SPLIT[rank]), torch.zeros(N, SPLIT[rank]),
                                   labels=torch.full((N,), V))
            failures.append("an out-of-range global label was accepted")
        except IndexError as e:
            if "'labels' parameter" not in str(e):
                failures.append(f"unclear error: {e}")
        with open(os.path.join(result_dir, f"rank{rank}.txt"), "w") as f:
            f.write("\n".join(failures) if failures else "OK")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(result_dir, f"rank{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
        raise


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_single_process_kd_loss(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two gloo processes did not finish within 120 s")
    for rank in range(WORLD):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        assert text == "OK", f"rank {rank}:\n{text}"


def test_needs_a_process_group():
    from tempscale.torch.distributed import vocab_parallel_kd_loss

    if dist.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised")
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="'student_shard' parameter"):
        vocab_parallel_kd_loss(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3))
