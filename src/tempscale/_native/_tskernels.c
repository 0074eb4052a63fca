/*
 * tempscale._native._tskernels: multi-threaded temperature softmax / log_softmax / logsumexp
 * for NumPy float16/float32/float64 arrays (and bfloat16 data in uint16 arrays: torch tensors).  This file is the Python module; the extension is
 * built from these sources (setup.py), each with one concern:
 *
 *   _common.h     operation / dtype codes, temperature regimes, shared numerical helpers
 *   _kernels.h    the per-ISA kernel table, ISA selection, the scalar reference's interface
 *   _kern_impl.h  the vector kernels, written once, compiled per instruction set by _dispatch.c
 *   _dispatch.c   AVX-512 / AVX2 / baseline copies of _kern_impl.h and the run-time choice
 *   _ref_impl.h   the scalar reference of the contract, compiled per type by _reference.c
 *   _job.h/.c     a job over the rows of a strided N-d array: gather / scatter, wide rows,
 *                 narrow blocks, tasks for the pool (no Python: tests/c/ builds it alone)
 *   _pool.h/.c    the persistent pthread pool
 *   _py.h         Python / NumPy include rules, the Python-side declarations
 *   _parse.c      compute()'s Python arguments -> a job
 *   _memcache.c   the output-block cache (a NumPy memory handler)
 *   _tskernels.c  this module: methods and initialisation
 *
 * Build flags: TS_BENCH_KERNELS (set by TEMPSCALE_BENCH_KERNELS=1 at build time) adds the
 * benchmark-only pieces: exp_pass (the benchmark's machine limit) and streaming-store softmax
 * (_set_stream_bytes).  No -ffast-math anywhere: the contract lives on inf and NaN.
 */
#define TS_IMPORT_ARRAY /* this file imports NumPy's C-API table */
#include "_py.h"

#include "_pool.h"

static const kernels_t *K_active = NULL;

/* compute(kind, x, T, mask, out, axis, nthreads[, bf16]); bf16 bits: 1 x, 2 out are bfloat16
   (uint16 arrays); T float or array broadcast to x.shape,
   mask None or bool array broadcast to x.shape, out: x.shape (stride 0 along axis for
   logsumexp), all validated by the Python wrapper. */
static PyObject *py_compute(PyObject *self, PyObject *args) {
    (void)self;
    job_t J;
    int nthreads, rc;
    if (ts_parse_compute(args, K_active, &J, &nthreads) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = ts_job_run(&J, nthreads);
    Py_END_ALLOW_THREADS
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* backward(kind, g, out, x, T, mask, dx, dT, nthreads, bf16): softmax / log_softmax gradients
   (see ts_backward_run in _job.h) */
static PyObject *py_backward(PyObject *self, PyObject *args) {
    (void)self;
    bwd_t B;
    int nthreads;
    if (ts_parse_backward(args, &B, &nthreads) < 0) return NULL;
    B.K = K_active;
    Py_BEGIN_ALLOW_THREADS
    ts_backward_run(&B, nthreads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(tempscale_get_num_threads());
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    tempscale_set_num_threads((int)(n < 1 ? 1 : n > 100000 ? 100000 : n));
    Py_RETURN_NONE;
}

static PyObject *py_isa(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyUnicode_FromString(K_active->name);
}

/* set_isa(name): switch the dispatched kernels (tests use it to cover every level) */
static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    const kernels_t *K = strcmp(name, "best") == 0 ? ts_isa_best() : ts_isa_kernels(name);
    if (!K) {
        PyErr_Format(PyExc_ValueError, "instruction set %s is not supported on this CPU/build", name);
        return NULL;
    }
    K_active = K;
    return PyUnicode_FromString(K_active->name);
}

static PyObject *py_supported_isas(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    PyObject *l = PyList_New(0);
    if (!l) return NULL;
    for (int i = 0; i < ts_isa_count; i++) {
        if (!ts_isa_supported(ts_isa_names[i])) continue;
        PyObject *s = PyUnicode_FromString(ts_isa_names[i]);
        if (!s || PyList_Append(l, s) < 0) { Py_XDECREF(s); Py_DECREF(l); return NULL; }
        Py_DECREF(s);
    }
    return l;
}

#ifdef TS_BENCH_KERNELS
/* exp_pass(x, out, nthreads): out = exp(x) for C-contiguous float32 (the benchmark's limit) */
static PyObject *py_exp_pass(PyObject *self, PyObject *args) {
    PyArrayObject *x, *o;
    int nthreads;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!i", &PyArray_Type, &x, &PyArray_Type, &o, &nthreads)) return NULL;
    if (PyArray_TYPE(x) != NPY_FLOAT || PyArray_TYPE(o) != NPY_FLOAT || !PyArray_IS_C_CONTIGUOUS(x) ||
        !PyArray_IS_C_CONTIGUOUS(o) || PyArray_SIZE(x) != PyArray_SIZE(o) || !PyArray_ISWRITEABLE(o)) {
        PyErr_SetString(PyExc_TypeError, "exp_pass needs C-contiguous float32 arrays of one size");
        return NULL;
    }
    const float *xp = (const float *)PyArray_DATA(x);
    float *op = (float *)PyArray_DATA(o);
    ts_intp n = PyArray_SIZE(x);
    const kernels_t *K = K_active;
    Py_BEGIN_ALLOW_THREADS
    ts_exp_pass(xp, op, n, nthreads, K);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* _set_stream_bytes(n): output size from which streaming stores are used; returns the old one */
static PyObject *py_set_stream_bytes(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    return PyLong_FromSize_t(ts_set_stream_bytes((size_t)n));
}
#endif

static PyMethodDef methods[] = {
    {"compute", py_compute, METH_VARARGS, "compute(kind, x, T, mask, out, axis, nthreads[, bf16])"},
    {"backward", py_backward, METH_VARARGS,
     "backward(kind, g, out, x, T, mask, dx, dT, nthreads, bf16): softmax / log_softmax gradients"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "threads used by the kernels"},
    {"set_num_threads", py_set_num_threads, METH_O, "set the threads used by the kernels"},
    {"isa", py_isa, METH_NOARGS, "the instruction set in use"},
    {"set_isa", py_set_isa, METH_O, "select an instruction set ('best' for automatic)"},
    {"supported_isas", py_supported_isas, METH_NOARGS, "instruction sets usable here, best first"},
    {"empty", ts_py_empty, METH_VARARGS, "empty(shape, dtype): np.empty through the block cache"},
    {"set_cache_limit", ts_py_set_cache_limit, METH_O, "byte cap of the output block cache (0: off)"},
    {"release_memory", ts_py_release_memory, METH_NOARGS, "free the cached output blocks"},
    {"cache_info", ts_py_cache_info, METH_NOARGS, "cached bytes / limit / blocks"},
#ifdef TS_BENCH_KERNELS
    {"exp_pass", py_exp_pass, METH_VARARGS, "exp_pass(x, out, nthreads): out = exp(x), float32"},
    {"_set_stream_bytes", py_set_stream_bytes, METH_O, "(benchmarks) streaming-store threshold"},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_tskernels", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tskernels(void) {
    import_array();
    K_active = ts_isa_best();
    if (ts_cache_init() < 0) return NULL;
    PyObject *mod = PyModule_Create(&moddef);
    if (!mod) return NULL;
#if defined(__clang__)
    PyModule_AddStringConstant(mod, "compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
    PyModule_AddStringConstant(mod, "compiler", "gcc " __VERSION__);
#else
    PyModule_AddStringConstant(mod, "compiler", "unknown");
#endif
    PyModule_AddIntConstant(mod, "has_float16", HAVE_F16);
    PyModule_AddIntConstant(mod, "has_bfloat16", 1);
#ifdef TS_BENCH_KERNELS
    PyModule_AddIntConstant(mod, "bench_kernels", 1);
#else
    PyModule_AddIntConstant(mod, "bench_kernels", 0);
#endif
    return mod;
}
