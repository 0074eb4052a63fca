/* The thread pool (see _pool.h). */
#include "_pool.h"

#include <pthread.h>

#define TS_EXPORT __attribute__((visibility("default")))

static int g_nthreads = 1;
static pthread_mutex_t P_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t P_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t P_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t P_use = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t P_once = PTHREAD_ONCE_INIT;
static int P_nworkers = 0;
static unsigned long P_gen = 0;
static unsigned long P_seen0[MAX_WORKERS];
static int P_want = 0, P_running = 0;
static void (*P_fn)(void *, ts_intp);
static void *P_ctx;
static ts_intp P_ntasks, P_next;

TS_EXPORT int tempscale_get_num_threads(void) {
    return __atomic_load_n(&g_nthreads, __ATOMIC_RELAXED);
}

TS_EXPORT void tempscale_set_num_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_WORKERS + 1) n = MAX_WORKERS + 1;
    __atomic_store_n(&g_nthreads, n, __ATOMIC_RELAXED);
}

static void drain(void (*fn)(void *, ts_intp), void *ctx, ts_intp ntasks) {
    ts_intp t;
    while ((t = __atomic_fetch_add(&P_next, 1, __ATOMIC_RELAXED)) < ntasks) fn(ctx, t);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&P_mu);
    unsigned long seen = P_seen0[id];
    for (;;) {
        while (P_gen == seen) pthread_cond_wait(&P_cv, &P_mu);
        seen = P_gen;
        if (id >= P_want) continue;
        void (*fn)(void *, ts_intp) = P_fn;
        void *ctx = P_ctx;
        ts_intp nt = P_ntasks;
        pthread_mutex_unlock(&P_mu);
        drain(fn, ctx, nt);
        pthread_mutex_lock(&P_mu);
        if (--P_running == 0) pthread_cond_signal(&P_done);
    }
    return NULL;
}

static void atfork_child(void) {
    /* the workers do not exist in a forked child: start over */
    pthread_mutex_init(&P_mu, NULL);
    pthread_mutex_init(&P_use, NULL);
    pthread_cond_init(&P_cv, NULL);
    pthread_cond_init(&P_done, NULL);
    P_nworkers = 0;
    P_want = P_running = 0;
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

void ts_parallel_run(void (*fn)(void *, ts_intp), void *ctx, ts_intp ntasks, int nthreads) {
    if (nthreads <= 0) nthreads = tempscale_get_num_threads();
    if (nthreads > ntasks) nthreads = (int)ntasks;
    if (nthreads > MAX_WORKERS + 1) nthreads = MAX_WORKERS + 1;
    if (nthreads <= 1 || pthread_mutex_trylock(&P_use) != 0) {
        /* single-threaded, or another thread holds the pool: run on this thread */
        for (ts_intp t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    pthread_once(&P_once, install_atfork);
    pthread_mutex_lock(&P_mu);
    int want = nthreads - 1;
    while (P_nworkers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        P_seen0[P_nworkers] = P_gen;
        int rc = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)P_nworkers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        P_nworkers++;
    }
    if (want > P_nworkers) want = P_nworkers;
    P_fn = fn;
    P_ctx = ctx;
    P_ntasks = ntasks;
    __atomic_store_n(&P_next, 0, __ATOMIC_RELAXED);
    P_want = want;
    P_running = want;
    P_gen++;
    pthread_cond_broadcast(&P_cv);
    pthread_mutex_unlock(&P_mu);
    drain(fn, ctx, ntasks);
    pthread_mutex_lock(&P_mu);
    while (P_running > 0) pthread_cond_wait(&P_done, &P_mu);
    pthread_mutex_unlock(&P_mu);
    pthread_mutex_unlock(&P_use);
}
