/*
 * The Python side of the compiled core: the rules for including Python and NumPy (one NumPy
 * C-API table for the whole extension, imported by _tskernels.c), and what _parse.c and
 * _memcache.c give the module (_tskernels.c).
 */
#ifndef TEMPSCALE_PY_H
#define TEMPSCALE_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION /* PyDataMem_SetHandler */
#define PY_ARRAY_UNIQUE_SYMBOL tempscale_ARRAY_API
#ifndef TS_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "_job.h"

/* _parse.c: compute(kind, x, T, mask, out, axis, nthreads) arguments into a job.  Returns 0 (J
   filled), or -1 with a Python exception set. */
int ts_parse_compute(PyObject *args, const kernels_t *K, job_t *J, int *nthreads);
int ts_parse_backward(PyObject *args, bwd_t *B, int *nthreads);

/* _memcache.c: the output-block cache (a NumPy memory handler) */
int ts_cache_init(void); /* once, at module import; 0 or -1 with an exception set */
PyObject *ts_py_empty(PyObject *self, PyObject *args);
PyObject *ts_py_set_cache_limit(PyObject *self, PyObject *arg);
PyObject *ts_py_release_memory(PyObject *self, PyObject *args);
PyObject *ts_py_cache_info(PyObject *self, PyObject *args);

#endif /* TEMPSCALE_PY_H */
