"""fit_temperature and calibration_error on a Dask cluster, on logits larger than a worker's memory.

The logits (``--rows`` x ``--classes`` float32; the issue's size is 2e8 x 10 = 8 GB) are written
to disk as ``.npy`` chunk files (memory-mapped when read, one Dask block per file), the labels
likewise; a ``dask.distributed.LocalCluster`` with ``--workers`` worker processes (one thread
each) and a ``--memory-limit`` per worker smaller than the logits then runs

* ``fit_temperature(logits, labels)``: one map-reduce pass over the files per Newton/Halley step,
  each block's sums from the compiled moments kernel;
* ``calibration_error(logits, labels, input="logits")``: uniform-bin sums per block;

and reports wall time, the passes, peak worker memory (the largest resident set any worker
process reached, sampled by the nanny's monitor and read from ``psutil`` in the workers) and
throughput (logits per second) relative to in-memory NumPy on a slice of ``--slice-rows`` rows.
The results are checked against NumPy on that slice only (the whole array is never loaded).

Disk is limited here: the default ``--rows`` is 2e7 (800 MB); say ``--rows 200000000`` for the
issue's size.  Files go to ``--dir`` (default: a temporary directory, removed at the end).

Run:  python benchmarks/bench_dask.py [--rows 20000000] [--chunk-rows 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from _machine import cpu_model  # benchmarks/_machine.py (the script's folder is on sys.path)


def write_chunks(folder, rows, k, chunk_rows, seed=0):
    """Over-confident float32 logits (optimal T about 1.7) and int32 labels, chunk by chunk."""
    rng = np.random.default_rng(seed)
    paths = []
    for a in range(0, rows, chunk_rows):
        m = min(chunk_rows, rows - a)
        y = rng.integers(0, k, m).astype(np.int32)
        z = rng.standard_normal((m, k), dtype=np.float32)
        z[np.arange(m), y] += np.float32(1.5)
        z *= np.float32(1.7 * 1.5)
        pz = os.path.join(folder, f"logits_{a:012d}.npy")
        py = os.path.join(folder, f"labels_{a:012d}.npy")
        np.save(pz, z)
        np.save(py, y)
        paths.append((pz, py, m))
    return paths


def load(path):
    return np.load(path, mmap_mode="r")


def dask_arrays(paths, k):
    import dask
    import dask.array as da

    zs = [da.from_delayed(dask.delayed(load)(pz), shape=(m, k), dtype=np.float32)
          for pz, _, m in paths]
    ys = [da.from_delayed(dask.delayed(load)(py), shape=(m,), dtype=np.int32)
          for _, py, m in paths]
    return da.concatenate(zs), da.concatenate(ys)


def worker_peak_rss(client):
    """The largest resident set (bytes) of each worker process since the last reset."""
    def peak():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return client.run(peak)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default=None,
                    help="per worker (default: half the logits' size, at least 256MiB)")
    ap.add_argument("--slice-rows", type=int, default=2_000_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)

    import dask
    import distributed

    from tempscale.calibration import calibration_error, fit_temperature

    k = args.classes
    nbytes = args.rows * k * 4
    limit = args.memory_limit or f"{max(256, nbytes // 2 // 2**20)}MiB"
    folder = args.dir or tempfile.mkdtemp(prefix="tempscale_bench_dask_")
    os.makedirs(folder, exist_ok=True)
    print(f"CPU: {cpu_model()}   logical CPUs: {os.cpu_count()}   load average: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"dask {dask.__version__}, distributed {distributed.__version__}")
    try:
        t0 = time.perf_counter()
        paths = write_chunks(folder, args.rows, k, args.chunk_rows)
        print(f"wrote {args.rows:,} x {k} float32 logits ({nbytes / 2**30:.2f} GiB) in "
              f"{len(paths)} .npy chunks to {folder} in {time.perf_counter() - t0:.1f} s")
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, memory_limit=limit,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        print(f"cluster: {args.workers} worker processes x 1 thread, memory limit {limit} each "
              f"(logits are {nbytes / 2**20:.0f} MiB)")
        z, y = dask_arrays(paths, k)

        from tempscale.calibration import _fit  # fit_temperature's fit, with its pass count

        t0 = time.perf_counter()
        T, passes = _fit.fit_logits(z, y, sample_weight=None, tol=1e-12, max_iter=100,
                                    threads=None, func="fit_temperature")
        t_fit = time.perf_counter() - t0
        peak_fit = max(worker_peak_rss(client).values())
        t0 = time.perf_counter()
        ece = calibration_error(z, y, input="logits")
        t_ece = time.perf_counter() - t0
        peak = max(worker_peak_rss(client).values())

        # in-memory NumPy on a slice
        s = min(args.slice_rows, args.rows)
        zs = np.concatenate([np.load(pz) for pz, _, _ in paths])[:s] if s > args.chunk_rows \
            else np.load(paths[0][0])[:s]
        ys = np.concatenate([np.load(py) for _, py, _ in paths])[:s] if s > args.chunk_rows \
            else np.load(paths[0][1])[:s]
        t0 = time.perf_counter()
        T_np = fit_temperature(zs, ys)
        t_fit_np = time.perf_counter() - t0
        t0 = time.perf_counter()
        ece_np = calibration_error(zs, ys, input="logits")
        t_ece_np = time.perf_counter() - t0
        T_check = fit_temperature(z[:s], y[:s])
        client.close()
        cluster.close()
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    n = args.rows * k
    print()
    print(f"{'':<22} {'time s':>8} {'Mlogits/s':>10} {'rel. to NumPy':>14}   result")
    print(f"{'fit_temperature dask':<22} {t_fit:>8.2f} {n / t_fit / 1e6:>10.1f} "
          f"{(n / t_fit) / (s * k / t_fit_np):>14.2f}   T = {T:.10f}")
    print(f"{'fit_temperature numpy':<22} {t_fit_np:>8.2f} {s * k / t_fit_np / 1e6:>10.1f} "
          f"{1.0:>14.2f}   T = {T_np:.10f} on the first {s:,} rows (dask on them: "
          f"{T_check:.10f})")
    print(f"{'ECE dask':<22} {t_ece:>8.2f} {n / t_ece / 1e6:>10.1f} "
          f"{(n / t_ece) / (s * k / t_ece_np):>14.2f}   {ece:.6f}")
    print(f"{'ECE numpy':<22} {t_ece_np:>8.2f} {s * k / t_ece_np / 1e6:>10.1f} {1.0:>14.2f}   "
          f"{ece_np:.6f} on the slice")
    print(f"passes over the data in the fit: {passes} (plus one pass over the labels for their "
          "checks and a strided sample of rows for the start)")
    print(f"peak worker memory: {peak_fit / 2**20:.0f} MiB after the fit, {peak / 2**20:.0f} MiB "
          f"after the ECE (limit {limit}; logits {nbytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
