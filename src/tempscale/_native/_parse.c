/*
 * compute(kind, x, T, mask, out, axis, nthreads[, bf16]) arguments -> a job (_job.h).  bf16 is a
 * bit set: 1 = x, 2 = out hold bfloat16 values in uint16 arrays (NumPy has no bfloat16; torch
 * bfloat16 tensors arrive as uint16 views).  The Python wrapper
 * (__init__.py, try_compute) has already broadcast the temperature and mask to x's shape and made
 * `out`; this checks what the C code relies on (types, dimensions, shapes) and describes the
 * arrays as plain strided operands.
 */
#include "_py.h"

/* T_F16 / T_F32 / T_F64 for a native-byte-order float array (T_BF16 for a uint16 array when
   bf16 is set), else -1 */
static int type_code(PyArrayObject *a, int bf16) {
    if (!PyArray_ISNBO(PyArray_DESCR(a)->byteorder)) return -1;
    if (bf16) return PyArray_TYPE(a) == NPY_UINT16 ? T_BF16 : -1;
    switch (PyArray_TYPE(a)) {
        case NPY_HALF: return HAVE_F16 ? T_F16 : -1;
        case NPY_FLOAT: return T_F32;
        case NPY_DOUBLE: return T_F64;
        default: return -1;
    }
}

static ts_operand operand(PyArrayObject *a, int type) {
    ts_operand op = {PyArray_BYTES(a), type, PyArray_STRIDES(a), PyArray_ISALIGNED(a) != 0};
    return op;
}

int ts_parse_compute(PyObject *args, const kernels_t *K, job_t *J, int *nthreads) {
    int kind, axis, bf16 = 0;
    PyObject *xo, *To, *mo, *oo;
    if (!PyArg_ParseTuple(args, "iO!OOO!ii|i", &kind, &PyArray_Type, &xo, &To, &mo, &PyArray_Type,
                          &oo, &axis, nthreads, &bf16))
        return -1;
    PyArrayObject *x = (PyArrayObject *)xo, *o = (PyArrayObject *)oo, *m = NULL, *t = NULL;
    int nd = PyArray_NDIM(x);
    if (kind < 0 || kind > 2 || axis < 0 || axis >= nd || PyArray_NDIM(o) != nd) {
        PyErr_SetString(PyExc_ValueError, "bad kind / axis / out");
        return -1;
    }
    if (nd > TS_MAXDIMS) {
        PyErr_SetString(PyExc_ValueError, "too many dimensions");
        return -1;
    }
    int xt = type_code(x, bf16 & 1), ot = type_code(o, bf16 & 2), tt = -1;
    if (xt < 0 || ot < 0 || !PyArray_ISWRITEABLE(o)) {
        PyErr_SetString(PyExc_TypeError, "unsupported dtype");
        return -1;
    }
    if (ot == T_BF16 && xt != T_BF16) {
        PyErr_SetString(PyExc_TypeError, "bfloat16 output needs bfloat16 input");
        return -1;
    }
    if (xt == T_F64 && ot != T_F64) {
        PyErr_SetString(PyExc_TypeError, "float64 input needs float64 output");
        return -1;
    }
    if (mo != Py_None) {
        if (!PyArray_Check(mo) || PyArray_TYPE((PyArrayObject *)mo) != NPY_BOOL ||
            PyArray_NDIM((PyArrayObject *)mo) != nd) {
            PyErr_SetString(PyExc_TypeError, "mask must be a bool array of x's ndim");
            return -1;
        }
        m = (PyArrayObject *)mo;
    }
    double T = 0.0;
    if (PyArray_Check(To)) {
        t = (PyArrayObject *)To;
        tt = type_code(t, 0);
        if (tt != T_F32 && tt != T_F64) {
            PyErr_SetString(PyExc_TypeError, "temperature array must be float32/float64");
            return -1;
        }
        if (PyArray_NDIM(t) != nd) {
            PyErr_SetString(PyExc_ValueError, "temperature array must have x's ndim");
            return -1;
        }
    } else {
        T = PyFloat_AsDouble(To);
        if (T == -1.0 && PyErr_Occurred()) return -1;
    }
    npy_intp *shape = PyArray_SHAPE(x);
    for (int d = 0; d < nd; d++) {
        if (PyArray_DIM(o, d) != shape[d] || (m && PyArray_DIM(m, d) != shape[d]) ||
            (t && d != axis && PyArray_DIM(t, d) != shape[d])) {
            PyErr_SetString(PyExc_ValueError, "shape mismatch");
            return -1;
        }
    }
    ts_operand xop = operand(x, xt), oop = operand(o, ot);
    ts_operand mop = {NULL, 0, NULL, 0}, top = {NULL, 0, NULL, 0};
    if (m) mop = operand(m, 0);
    if (t) top = operand(t, tt);
    ts_job_init(J, kind, nd, shape, axis, &xop, &mop, &top, T, &oop, K);
    return 0;
}

/* backward(kind, g, out, x, T, mask, dx, dT, nthreads, bf16) -> a bwd_t (see _job.h): g, out, x,
   dx 2-D (rows, n) arrays of one float type (bf16: uint16 arrays holding bfloat16), entries
   contiguous within rows; mask None or a 2-D bool array; T a float or a 1-D float32/float64
   array of rows; dT None or a contiguous 1-D float64 array of rows */
int ts_parse_backward(PyObject *args, bwd_t *B, int *nthreads) {
    int kind, bf16;
    PyObject *go, *oo, *xo, *To, *mo, *dxo, *dTo;
    if (!PyArg_ParseTuple(args, "iO!O!O!OOO!Oii", &kind, &PyArray_Type, &go, &PyArray_Type, &oo,
                          &PyArray_Type, &xo, &To, &mo, &PyArray_Type, &dxo, &dTo, nthreads, &bf16))
        return -1;
    PyArrayObject *arrs[4] = {(PyArrayObject *)go, (PyArrayObject *)oo, (PyArrayObject *)xo,
                              (PyArrayObject *)dxo};
    if (kind != KIND_SOFTMAX && kind != KIND_LOGSOFTMAX) {
        PyErr_SetString(PyExc_ValueError, "bad kind");
        return -1;
    }
    int type = type_code(arrs[0], bf16);
    if (type < 0 || PyArray_NDIM(arrs[0]) != 2) {
        PyErr_SetString(PyExc_TypeError, "g must be a 2-D float array");
        return -1;
    }
    npy_intp rows = PyArray_DIM(arrs[0], 0), n = PyArray_DIM(arrs[0], 1);
    size_t es = type == T_F64 ? 8 : type == T_F32 ? 4 : 2;
    for (int i = 0; i < 4; i++) {
        PyArrayObject *a = arrs[i];
        if (PyArray_NDIM(a) != 2 || PyArray_DIM(a, 0) != rows || PyArray_DIM(a, 1) != n ||
            type_code(a, bf16) != type || !PyArray_ISALIGNED(a) ||
            (n > 1 && PyArray_STRIDE(a, 1) != (npy_intp)es)) {
            PyErr_SetString(PyExc_ValueError, "g, out, x, dx: same 2-D shape and type, rows contiguous");
            return -1;
        }
    }
    if (!PyArray_ISWRITEABLE(arrs[3])) {
        PyErr_SetString(PyExc_ValueError, "dx must be writeable");
        return -1;
    }
    memset(B, 0, sizeof *B);
    B->kind = kind;
    B->type = type;
    B->n = n;
    B->nrows = rows;
    B->g = PyArray_BYTES(arrs[0]); B->rg = PyArray_STRIDE(arrs[0], 0);
    B->out = PyArray_BYTES(arrs[1]); B->rout = PyArray_STRIDE(arrs[1], 0);
    B->x = PyArray_BYTES(arrs[2]); B->rx = PyArray_STRIDE(arrs[2], 0);
    B->dx = PyArray_BYTES(arrs[3]); B->rdx = PyArray_STRIDE(arrs[3], 0);
    if (mo != Py_None) {
        PyArrayObject *m = (PyArrayObject *)mo;
        if (!PyArray_Check(mo) || PyArray_TYPE(m) != NPY_BOOL || PyArray_NDIM(m) != 2 ||
            PyArray_DIM(m, 0) != rows || PyArray_DIM(m, 1) != n) {
            PyErr_SetString(PyExc_TypeError, "mask must be a bool array of g's shape");
            return -1;
        }
        B->m = (const unsigned char *)PyArray_BYTES(m);
        B->rm = PyArray_STRIDE(m, 0);
        B->cm = PyArray_STRIDE(m, 1);
    }
    if (PyArray_Check(To)) {
        PyArrayObject *t = (PyArrayObject *)To;
        B->tt = type_code(t, 0);
        if ((B->tt != T_F32 && B->tt != T_F64) || PyArray_NDIM(t) != 1 || PyArray_DIM(t, 0) != rows) {
            PyErr_SetString(PyExc_TypeError, "temperature array: float32/float64 of one entry per row");
            return -1;
        }
        B->t = PyArray_BYTES(t);
        B->rt = PyArray_STRIDE(t, 0);
    } else {
        B->T = PyFloat_AsDouble(To);
        if (B->T == -1.0 && PyErr_Occurred()) return -1;
    }
    if (dTo != Py_None) {
        PyArrayObject *d = (PyArrayObject *)dTo;
        if (!PyArray_Check(dTo) || PyArray_TYPE(d) != NPY_DOUBLE || PyArray_NDIM(d) != 1 ||
            PyArray_DIM(d, 0) != rows || !PyArray_IS_C_CONTIGUOUS(d) || !PyArray_ISWRITEABLE(d)) {
            PyErr_SetString(PyExc_TypeError, "dT must be a writeable contiguous float64 array of rows");
            return -1;
        }
        B->dT = (double *)PyArray_BYTES(d);
    }
    return 0;
}
