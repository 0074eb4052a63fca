"""Smooth ECE (Błasiok & Nakkiran 2023) and the debiased l2 calibration error (Kumar et al. 2019).

Private helpers of :func:`tempscale.calibration.calibration_error` (``method="smooth"``,
``debias=True``) and of :class:`tempscale.calibration.CalibrationMeter`.

Smooth ECE
----------
For confidences :math:`f_i \\in [0, 1]`, outcomes :math:`y_i \\in \\{0, 1\\}` and residuals
:math:`r_i = f_i - y_i`, the kernel-smoothed residual and density at bandwidth :math:`\\sigma`

.. math:: R_\\sigma(t) = \\sum_i w_i r_i K_\\sigma(t, f_i), \\qquad
          D_\\sigma(t) = \\sum_i w_i K_\\sigma(t, f_i)

use the Gaussian kernel reflected at 0 and 1, and
:math:`\\mathrm{smECE}_\\sigma = \\int |R_\\sigma| / \\int D_\\sigma`.  The smooth ECE is
:math:`\\mathrm{smECE}_{\\sigma^*}` at the fixed point :math:`\\mathrm{smECE}_{\\sigma^*} =
\\sigma^*`.  The discretisation is the one of the reference implementation (the ``relplot``
package), so that the values agree with it: the samples are spread linearly onto a grid of
``max(2000, round(20 / sigma)) // 2 + 1`` points of ``[0, 1]``, convolved there with the sampled
(unnormalised-sum) Gaussian on the grid extended by reflection at both ends, read back by linear
interpolation at ``max(200, round(10 / sigma))`` evaluation points where the density gets a floor
of ``1e-4``, and the fixed point is found by ten bisection steps on ``(0, 1]`` (the upper end of
the last bracket; any bandwidth under ``1e-3`` counts as below the fixed point).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

#: the density floor added at the evaluation points, and the smallest bandwidth searched
_DENSITY_FLOOR = 1e-4
_SIGMA_FLOOR = 1e-3
_BISECTION_STEPS = 10


def _spread(f: F64, values: F64, m: int) -> F64:
    """Each value split between the two grid points (of ``m`` on [0, 1]) around its ``f``."""
    pos = f * (m - 1)
    left = np.clip(np.floor(pos).astype(np.intp), 0, m - 2)
    frac = pos - left
    out = np.asarray(np.bincount(left, weights=(1.0 - frac) * values, minlength=m), dtype=np.float64)
    out += np.bincount(left + 1, weights=frac * values, minlength=m)
    return out


def _reflected_gaussian(grid_values: F64, sigma: float) -> F64:
    """The grid values convolved with the sampled Gaussian, the data mirrored at 0 and 1.

    The Gaussian is sampled on the same grid, centred on its middle index ``m // 2``; the grid
    is mirrored about its end points (which are not repeated) and the product is computed by FFT.
    """
    m = grid_values.shape[0]
    t = np.linspace(0.0, 1.0, m)
    kernel = np.exp(-((t - 0.5) ** 2) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    mirrored = np.concatenate([grid_values[:0:-1], grid_values, grid_values[-2::-1]])
    size = mirrored.shape[0] + m - 1
    nfft = 1 << (size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(mirrored, nfft) * np.fft.rfft(kernel, nfft), nfft)[:size]
    start = m // 2 + m - 1
    out: F64 = full[start:start + m]
    return out


def smooth_ece_at(f: F64, residual: F64, weight: F64, sigma: float) -> float:
    """smECE at the bandwidth ``sigma`` (residual = weight * (f - y), weight summing to n)."""
    m = max(2000, round(20.0 / sigma)) // 2 + 1
    n_eval = max(round(10.0 / sigma), 200)
    grid = np.linspace(0.0, 1.0, m)
    t = np.linspace(0.0, 1.0, n_eval)
    r = np.interp(t, grid, _reflected_gaussian(_spread(f, residual, m), sigma))
    d = np.interp(t, grid, _reflected_gaussian(_spread(f, weight, m), sigma)) + _DENSITY_FLOOR
    return float(np.sum(np.abs(r)) / np.sum(d))


def smooth_ece(conf: F64, hit: F64, w: F64 | None = None) -> float:
    """The smooth ECE of confidences ``conf`` against 0/1 outcomes ``hit`` (weights optional:
    an integer weight is the same as repeating the sample)."""
    weight = np.ones(conf.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    residual = weight * (conf - hit)

    def below(sigma: float) -> bool:
        return sigma < _SIGMA_FLOOR or sigma < smooth_ece_at(conf, residual, weight, sigma)

    hi = 1.0
    if not below(hi):
        lo = 0.0
        for _ in range(_BISECTION_STEPS):
            mid = (hi + lo) / 2.0
            if below(mid):
                lo = mid
            else:
                hi = mid
    return smooth_ece_at(conf, residual, weight, hi)


def debiased_square_error(wsum: NDArray[np.float64], csum: NDArray[np.float64],
                          asum: NDArray[np.float64], total: float) -> float:
    r"""Kumar et al.'s unbiased estimate of the squared l2 calibration error from bin sums.

    .. math:: \sum_b \frac{n_b}{n}\Big[(\bar f_b - \bar y_b)^2 - \frac{\bar y_b (1 - \bar y_b)}
              {n_b - 1}\Big]

    over the bins with ``n_b >= 2`` (the others count zero), unweighted counts only.
    """
    ok = wsum >= 2
    nb = wsum[ok]
    fbar = csum[ok] / nb
    ybar = asum[ok] / nb
    per = (fbar - ybar) ** 2 - ybar * (1.0 - ybar) / (nb - 1.0)
    return float(np.sum(nb / total * per))
