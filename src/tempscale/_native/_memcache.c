/*
 * Output buffers: a NumPy memory handler that keeps a few large freed blocks for reuse.
 *
 * A fresh multi-megabyte np.empty costs page faults and kernel zeroing on first touch (on this
 * kind of VM ~4-5 GB/s, i.e. as much as the whole softmax).  Outputs allocated by `empty` below
 * use this handler: when such an array dies, its block (>= 1 MiB) is kept, up to a byte cap
 * (default min(2 GiB, RAM / 8); TEMPSCALE_CACHE_MB or set_cache_limit; 0 disables), and a later
 * output of exactly the same size reuses it.  release_memory() returns everything.
 *
 * A block is kept only when the allocator confirms it holds the size NumPy reports at free
 * (malloc_usable_size on Linux (glibc, musl) and FreeBSD, malloc_size on macOS); on a platform
 * without such a query no block is kept and every output is a plain malloc.
 */
#include "_py.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__APPLE__)
#include <malloc/malloc.h>
#define BLOCK_SIZE(p) malloc_size(p)
#elif defined(__linux__)
#include <malloc.h>
#define BLOCK_SIZE(p) malloc_usable_size(p)
#elif defined(__FreeBSD__)
#include <malloc_np.h>
#define BLOCK_SIZE(p) malloc_usable_size(p)
#else
#define BLOCK_SIZE(p) ((void)(p), (size_t)0) /* unknown: never keep a block */
#endif

#define C_SLOTS 8
#define C_MIN ((size_t)1 << 20)
static pthread_mutex_t C_mu = PTHREAD_MUTEX_INITIALIZER;
static void *C_ptr[C_SLOTS];
static size_t C_len[C_SLOTS];
static unsigned long C_age[C_SLOTS], C_clock = 0;
static size_t C_bytes = 0, C_cap = 0;

static void *c_malloc(void *ctx, size_t n) {
    (void)ctx;
    if (n >= C_MIN) {
        void *p = NULL;
        pthread_mutex_lock(&C_mu);
        for (int i = 0; i < C_SLOTS; i++) {
            if (C_ptr[i] && C_len[i] == n) {
                p = C_ptr[i];
                C_ptr[i] = NULL;
                C_bytes -= n;
                break;
            }
        }
        pthread_mutex_unlock(&C_mu);
        if (p) return p;
    }
    return malloc(n);
}
static void *c_calloc(void *ctx, size_t ne, size_t es) { (void)ctx; return calloc(ne, es); }
static void *c_realloc(void *ctx, void *p, size_t n) { (void)ctx; return realloc(p, n); }
static void c_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    if (p && n >= C_MIN && BLOCK_SIZE(p) >= n) {
        void *drop[C_SLOTS];
        int nd = 0, kept = 0;
        pthread_mutex_lock(&C_mu);
        if (n <= C_cap) {
            while (C_bytes + n > C_cap) { /* evict the oldest */
                int o = -1;
                for (int i = 0; i < C_SLOTS; i++)
                    if (C_ptr[i] && (o < 0 || C_age[i] < C_age[o])) o = i;
                if (o < 0) break;
                drop[nd++] = C_ptr[o];
                C_bytes -= C_len[o];
                C_ptr[o] = NULL;
            }
            int slot = -1;
            for (int i = 0; i < C_SLOTS; i++) if (!C_ptr[i]) { slot = i; break; }
            if (slot < 0) {
                slot = 0;
                for (int i = 1; i < C_SLOTS; i++) if (C_age[i] < C_age[slot]) slot = i;
                drop[nd++] = C_ptr[slot];
                C_bytes -= C_len[slot];
            }
            if (C_bytes + n <= C_cap) {
                C_ptr[slot] = p;
                C_len[slot] = n;
                C_age[slot] = ++C_clock;
                C_bytes += n;
                kept = 1;
            } else {
                C_ptr[slot] = NULL;
            }
        }
        pthread_mutex_unlock(&C_mu);
        for (int i = 0; i < nd; i++) free(drop[i]);
        if (kept) return;
    }
    free(p);
}

static void atfork_child(void) { pthread_mutex_init(&C_mu, NULL); }

static PyDataMem_Handler C_handler = {
    "tempscale_cache", 1, {NULL, c_malloc, c_calloc, c_realloc, c_free}};
static PyObject *C_capsule = NULL;

static void cache_release(size_t keep) {
    void *drop[C_SLOTS];
    int nd = 0;
    pthread_mutex_lock(&C_mu);
    C_cap = keep;
    for (int i = 0; i < C_SLOTS; i++) {
        if (C_ptr[i]) { drop[nd++] = C_ptr[i]; C_bytes -= C_len[i]; C_ptr[i] = NULL; }
    }
    pthread_mutex_unlock(&C_mu);
    for (int i = 0; i < nd; i++) free(drop[i]);
}

/* empty(shape, dtype): np.empty through the caching handler */
PyObject *ts_py_empty(PyObject *self, PyObject *args) {
    PyObject *shape_o;
    PyArray_Descr *descr = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O&", &PyTuple_Type, &shape_o, PyArray_DescrConverter, &descr))
        return NULL;
    npy_intp dims[NPY_MAXDIMS];
    Py_ssize_t nd = PyTuple_GET_SIZE(shape_o);
    if (nd > NPY_MAXDIMS) { Py_DECREF(descr); PyErr_SetString(PyExc_ValueError, "too many dims"); return NULL; }
    for (Py_ssize_t i = 0; i < nd; i++) {
        dims[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape_o, i));
        if (dims[i] < 0) {
            Py_DECREF(descr);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative dimension");
            return NULL;
        }
    }
    PyObject *old = PyDataMem_SetHandler(C_capsule);
    if (!old) { Py_DECREF(descr); return NULL; }
    PyObject *arr = PyArray_Empty((int)nd, dims, descr, 0); /* steals descr */
    PyObject *tmp = PyDataMem_SetHandler(old);
    Py_XDECREF(tmp);
    Py_DECREF(old);
    return arr;
}

PyObject *ts_py_set_cache_limit(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (n < C_bytes) cache_release((size_t)n);
    pthread_mutex_lock(&C_mu);
    C_cap = (size_t)n;
    pthread_mutex_unlock(&C_mu);
    Py_RETURN_NONE;
}

PyObject *ts_py_release_memory(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    size_t cap;
    pthread_mutex_lock(&C_mu);
    cap = C_cap;
    pthread_mutex_unlock(&C_mu);
    cache_release(cap);
    Py_RETURN_NONE;
}

PyObject *ts_py_cache_info(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    size_t b, cap;
    int k = 0;
    pthread_mutex_lock(&C_mu);
    b = C_bytes; cap = C_cap;
    for (int i = 0; i < C_SLOTS; i++) k += C_ptr[i] != NULL;
    pthread_mutex_unlock(&C_mu);
    return Py_BuildValue("{s:K,s:K,s:i}", "cached_bytes", (unsigned long long)b, "limit_bytes",
                         (unsigned long long)cap, "blocks", k);
}

int ts_cache_init(void) {
    if (!C_capsule) {
        C_capsule = PyCapsule_New(&C_handler, "mem_handler", NULL);
        if (!C_capsule) return -1;
        pthread_atfork(NULL, NULL, atfork_child);
    }
    if (C_cap == 0) {
        size_t ram = (size_t)8 << 30; /* when the system does not say */
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) ram = (size_t)pages * (size_t)psz;
#endif
        C_cap = ram / 8 < ((size_t)2 << 30) ? ram / 8 : ((size_t)2 << 30);
    }
    return 0;
}
