/*
 * A persistent pthread pool: workers are created on first use and then wait for work (no
 * per-call thread creation).  One parallel run at a time: a second caller that finds the pool
 * busy runs its tasks on its own thread.  Fork-safe: a forked child starts with no workers.
 */
#ifndef TEMPSCALE_POOL_H
#define TEMPSCALE_POOL_H

#include "_common.h"

#define MAX_WORKERS 255 /* plus the calling thread: at most 256 threads per run */

/* run fn(ctx, t) for t in [0, ntasks) on up to nthreads threads (the caller included) */
void ts_parallel_run(void (*fn)(void *, ts_intp), void *ctx, ts_intp ntasks, int nthreads);

/* the default thread count of a run (nthreads <= 0); exported for threadpoolctl (ctypes) */
int tempscale_get_num_threads(void);
void tempscale_set_num_threads(int n);

#endif /* TEMPSCALE_POOL_H */
