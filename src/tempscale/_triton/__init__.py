"""Triton kernels for CUDA torch tensors (``triton`` is an optional dependency).

Nothing here imports ``triton`` until a kernel is first needed.  The public entry points are
:mod:`tempscale.triton` (softmax, log_softmax, logsumexp with autograd) and
:func:`tempscale._triton.kd.kd_rows` (per-row distillation loss and student gradient, for the
chunked ``KDLoss``).  Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors, which
is how the test suite checks them against the generic path without a GPU.
"""
