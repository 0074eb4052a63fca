"""Figures that show what temperature does, as scikit-learn style Display objects.

Three displays, each built by a ``from_*`` class method that computes the numbers and calls
:meth:`plot`, which draws them and returns the display itself with the figure in ``figure_`` and
the axes in ``ax_``:

* :class:`TemperatureDisplay` -- one distribution at several temperatures, one bar panel per T.
* :class:`EntropyCurveDisplay` -- entropy, perplexity or top probability against ``log T``.
* :class:`ReliabilityDisplay` -- reliability diagram and confidence histogram, before and after
  temperature scaling.

Matplotlib is imported only when something is drawn: ``import tempscale.plot`` is cheap and
works without matplotlib installed (``pip install tempscale[plot]`` adds it).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._args import binary_columns, check_input, check_temperature, check_temperatures, deprecated_alias, to_numpy
from ._softmax import softmax
from ._typing import ArrayLike
from ._validation import check_bool, check_choice, check_scalar, param_error

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PolyCollection
    from matplotlib.colorbar import Colorbar
    from matplotlib.colors import Colormap
    from matplotlib.container import BarContainer
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.text import Text

__all__ = ["EntropyCurveDisplay", "ReliabilityDisplay", "TemperatureDisplay"]

#: the temperatures of the classic 10-class example (0.1, 0.5, 1, 2, 10)
CLASSIC_TEMPERATURES = (0.1, 0.5, 1.0, 2.0, 10.0)
SEED_TEMPERATURES = CLASSIC_TEMPERATURES  # the former name, kept for code that imported it

#: the most temperatures a figure shows (one bar panel each, or one mark each on a curve)
MAX_TEMPERATURES = 12
#: the most classes :class:`TemperatureDisplay` draws as bars
MAX_CLASSES = 1000
#: the most rows (curves) :class:`EntropyCurveDisplay` draws
MAX_CURVES = 10
#: the most grid points of an entropy curve
MAX_GRID = 10_000
#: the largest figure side in inches (``figsize``)
MAX_FIGSIZE = 40.0

# part of a sequential colormap used for temperatures (the pale end of plasma/viridis is too
# light to read on white)
_CMAP_SPAN = (0.0, 0.86)
#: a float64 NumPy array
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
#: a matplotlib colour (an RGBA tuple or a colour string)
Color = tuple[float, float, float, float] | str

_INK = "#222222"
_MUTED = "#666666"
_BLUE = "#3B6EA8"
_RED = "#C8553D"
# the gap bars of a reliability diagram: over-confident (red edge) and under-confident bins
_OVER_FILL = "#F4CFC5"
_UNDER_FILL = "#F6E3B4"
_UNDER_EDGE = "#C08A1E"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    """matplotlib.pyplot, imported on first use."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "tempscale.plot needs matplotlib: pip install 'tempscale[plot]'") from exc
    return plt


def _float64(a: Any, name: str, func: str) -> FloatArray:
    """Any array (NumPy, torch incl. requires_grad/GPU, JAX, array-api-strict, list) as float64."""
    try:
        arr: FloatArray = np.asarray(to_numpy(a), dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(name, func, "an array of real numbers", type(a).__name__, TypeError) from None
    return arr


def _fmt_t(t: float) -> str:
    """A temperature as a short label: 0.1, 2, 1e+03, ∞."""
    t = float(t)
    if math.isinf(t):
        return "∞"
    return f"{t:g}"


def _check_count(n: int, limit: int, param: str, func: str, what: str, hint: str = "") -> None:
    """Refuse more than ``limit`` items (a figure with more is unreadable and slow to draw)."""
    if n > limit:
        raise param_error(param, func, f"at most {limit} {what}{hint}", f"{n} {what}")


def _check_figsize(figsize: Any, func: str) -> tuple[float, float] | None:
    """None, or (width, height) in inches, each in (0, MAX_FIGSIZE]."""
    if figsize is None:
        return None
    expect = f"None or (width, height) in inches, each in (0, {MAX_FIGSIZE:g}]"
    try:
        w, h = (float(v) for v in figsize)
    except (TypeError, ValueError):
        raise param_error("figsize", func, expect, figsize, TypeError) from None
    if not (0 < w <= MAX_FIGSIZE and 0 < h <= MAX_FIGSIZE):
        raise param_error("figsize", func, expect, figsize)
    return (w, h)


def _as_logits(x: FloatArray, input: str, func: str, name: str = "logits") -> FloatArray:
    """Logits as given, or ``log p`` (``-inf`` where p is 0) for probabilities."""
    if input == "logits":
        return x
    if np.any(x < 0):
        raise param_error(name, func, "non-negative probabilities when input='probabilities'",
                          "an array with negative entries")
    with np.errstate(divide="ignore"):
        logs: FloatArray = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), -np.inf)
    return logs


def _entropy_of(p: FloatArray, axis: int = -1) -> FloatArray:
    """Shannon entropy in nats of probabilities (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    total: FloatArray = terms.sum(axis=axis)
    return total


def _temperature_positions(temps: Sequence[float]) -> FloatArray:
    """Where each temperature sits on the colormap: by log T between the smallest and largest."""
    t = np.asarray(temps, dtype=np.float64)
    finite = np.isfinite(t) & (t > 0)
    pos = np.full(t.shape, 0.5)
    if finite.any():
        lt = np.log(t[finite])
        lo, hi = lt.min(), lt.max()
        pos[finite] = 0.5 if hi == lo else (lt - lo) / (hi - lo)
        if (t == 0).any() or np.isinf(t).any():  # leave room for the limits at both ends
            pos[finite] = 0.1 + 0.8 * pos[finite]
    pos[t == 0] = 0.0
    pos[np.isinf(t)] = 1.0
    lo, hi = _CMAP_SPAN
    return lo + (hi - lo) * pos


def _colors(cmap: str | Colormap, temps: Sequence[float]) -> list[Color]:
    """The colour of each temperature: its log-T position on the colormap."""
    import matplotlib

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return [cm(p) for p in _temperature_positions(temps)]


def _style(ax: Axes, *, ygrid: bool = True, xgrid: bool = False) -> None:
    """The house style: no top/right spines, grey ticks, light grid lines behind the data."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#999999")
    ax.tick_params(colors=_INK, labelsize=9, length=3, color="#999999")
    if ygrid:
        ax.yaxis.grid(True, color="#e6e6e6", linewidth=0.8)
    if xgrid:
        ax.xaxis.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _axes_list(ax: Any, n: int, func: str) -> list[Axes]:
    """The user's axes as a flat list of ``n`` axes."""
    from matplotlib.axes import Axes

    if isinstance(ax, Axes):
        flat = [ax]
    else:
        flat = list(np.asarray(ax, dtype=object).reshape(-1))
    if len(flat) != n or not all(isinstance(a, Axes) for a in flat):
        raise param_error("ax", func, f"None or {n} matplotlib Axes", f"{len(flat)} object(s)", ValueError)
    return flat


def _class_labels(labels: Sequence[Any] | None, n: int, func: str) -> list[str]:
    """Class names as strings, one per class (default ``0 … n - 1``)."""
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str):
        raise param_error("labels", func, f"a sequence of {n} class labels", labels, TypeError)
    out = [str(v) for v in labels]
    if len(out) != n:
        raise param_error("labels", func, f"a sequence of {n} class labels", f"{len(out)} labels")
    return out


def _nats_unit(base: float | None) -> tuple[str, float]:
    """(unit name, divisor) for an entropy base."""
    if base is None or base == math.e:
        return "nats", 1.0
    if base == 2:
        return "bits", math.log(2)
    if base == 10:
        return "hartleys", math.log(10)
    return f"base-{base:g} units", math.log(base)


# --------------------------------------------------------------------------------------------
# TemperatureDisplay
# --------------------------------------------------------------------------------------------
class TemperatureDisplay:
    r"""One distribution at several temperatures: a bar panel per T, sharing the y axis.

    Build it with :meth:`from_logits` (or :meth:`from_probabilities`); the constructor only
    stores precomputed numbers, as scikit-learn's displays do.

    Parameters
    ----------
    probabilities : ndarray of shape (n_temperatures, n_classes)
        The distribution at each temperature.
    temperatures : sequence of float
        The temperatures, one per row of ``probabilities``.
    labels : sequence of str, optional
        Class names for the x axis; default ``0 … n_classes - 1``.
    input : {"logits", "probabilities"}, default "logits"
        What the values were (only used in the default title).
    reference : ndarray of shape (n_classes,), optional
        The ``T = 1`` distribution, drawn as thin ticks in every other panel.
    top : int, optional
        Draw only the ``top`` most probable classes (ranked by ``reference``, else by the last
        row; ties by index), largest first, and note the probability the others hold.  For long
        rows: a 128k-token vocabulary as its 20 largest classes.  The statistics (entropy, top
        probability) are always those of the whole row.

    Attributes
    ----------
    entropy : ndarray of shape (n_temperatures,)
        Shannon entropy in nats of each row.
    max_prob : ndarray of shape (n_temperatures,)
        Top probability of each row.
    ax_ : ndarray of matplotlib Axes
        One axes per temperature (``layout="panels"``) or a single one (``layout="grouped"``).
    figure_ : matplotlib Figure
    bars_ : list of matplotlib BarContainer
        The bars of each temperature.
    colorbar_ : matplotlib Colorbar or None
        The temperature colour bar (panels layout).
    legend_ : matplotlib Legend or None
        The ``T = 1`` reference key (panels) or the temperature legend (grouped).
    class_indices_ : ndarray of int
        The classes drawn, in drawing order (every class without ``top``).
    others_ : ndarray of shape (n_temperatures,)
        The probability of the classes not drawn at each temperature (zeros without ``top``).

    Notes
    -----
    **Logits or probabilities?**  ``softmax(x, T)`` expects *logits*: unbounded scores whose
    differences matter.  A classic mistake is to
    feed it *probabilities* as if they were logits.  Probabilities lie in ``[0, 1]``, so their
    differences are tiny and ``softmax(p)`` is already nearly uniform at ``T = 1``: the ten-class
    N(4, 1) density, whose top probability is 0.40, comes out with a top probability of 0.13 at
    ``T = 1``.  To re-temper probabilities use ``input="probabilities"``, which computes
    ``temper(p, T) = p**(1/T) / sum(p**(1/T))`` (``softmax(log p, T)``): ``T = 1`` gives ``p``
    back, ``T < 1`` sharpens it and ``T > 1`` flattens it.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from tempscale.plot import TemperatureDisplay
    >>> np.set_printoptions(precision=4)
    >>> disp = TemperatureDisplay.from_logits([-1.0, 0.0, 1.0], temperatures=[0.5, 1, 2])
    >>> disp.probabilities[0]
    array([0.0159, 0.1173, 0.8668])
    >>> len(disp.ax_), disp.ax_[0].get_title().splitlines()[0]
    (3, 'T = 0.5')
    >>> plt.close(disp.figure_)
    """

    def __init__(self, probabilities: ArrayLike, temperatures: Sequence[float], *,
                 labels: Sequence[str] | None = None, input: str = "logits",
                 reference: ArrayLike | None = None, top: int | None = None) -> None:
        func = "TemperatureDisplay"
        self.probabilities: FloatArray = np.asarray(probabilities, dtype=np.float64)
        self.temperatures = tuple(float(t) for t in temperatures)
        _check_count(len(self.temperatures), MAX_TEMPERATURES, "temperatures", func,
                     "temperatures", " (one bar panel each)")
        if top is not None:
            top = check_scalar(top, "top", func, lo=1, hi=MAX_CLASSES, integer=True)
        self.top = top
        k = self.probabilities.shape[-1] if self.probabilities.ndim else 1
        _check_count(k if top is None else min(k, top), MAX_CLASSES,
                     "probabilities", func, "classes", " drawn as bars (pass top=N for long rows)")
        self.labels = labels
        self.input = input
        self.reference: FloatArray | None = (None if reference is None
                                             else np.asarray(reference, dtype=np.float64))
        self.entropy = _entropy_of(self.probabilities)
        self.max_prob: FloatArray = self.probabilities.max(axis=-1)
        self.class_indices_, self.others_ = self._select()

    def _select(self) -> tuple[np.ndarray[Any, np.dtype[np.intp]], FloatArray]:
        """(the classes drawn, the probability of the others per temperature)."""
        P = self.probabilities
        k = P.shape[-1] if P.ndim else 1
        if self.top is None or self.top >= k or P.ndim != 2:
            return np.arange(k), np.zeros(len(self.temperatures))
        rank_by = self.reference if self.reference is not None else P[-1]
        idx = np.argsort(-np.nan_to_num(rank_by, nan=-1.0), kind="stable")[: self.top]
        others = np.clip(1.0 - P[:, idx].sum(axis=-1), 0.0, 1.0)
        return idx, others

    @classmethod
    def from_logits(cls, logits: ArrayLike, temperatures: Sequence[float] | float = CLASSIC_TEMPERATURES,
                    *, labels: Sequence[Any] | None = None, input: str = "logits", ax: Any = None,
                    top: int | None = None, **plot_kwargs: Any) -> TemperatureDisplay:
        """Compute ``softmax(logits, T)`` (or ``temper``) for each T and plot it.

        Parameters
        ----------
        logits : array_like of shape (n_classes,)
            One vector of logits (or of probabilities with ``input="probabilities"``); any array
            library.
        temperatures : sequence of float, default (0.1, 0.5, 1, 2, 10)
            Temperatures in ``[0, inf]`` (the classic example's five by default).
        labels : sequence of str, optional
            Class names.
        input : {"logits", "probabilities"}, default "logits"
            ``"probabilities"`` re-tempers the values with ``temper`` instead of treating them as
            logits -- see the class docstring for why this matters.
        ax : matplotlib Axes or array of Axes, optional
            Axes to draw on; see :meth:`plot`.
        top : int, optional
            Draw the ``top`` classes with the largest logits (ties: lower index first), largest
            first, with the probability of the others in each panel's title: rows longer than
            ``MAX_CLASSES`` need it.
        **plot_kwargs
            Passed to :meth:`plot` (``cmap``, ``colorbar``, ``layout``, ``title``, ``ylim``...).

        Returns
        -------
        TemperatureDisplay

        Examples
        --------
        >>> import numpy as np
        >>> import matplotlib.pyplot as plt
        >>> from tempscale.plot import TemperatureDisplay
        >>> x = np.linspace(0.0, 8.0, 5000)
        >>> disp = TemperatureDisplay.from_logits(x, [1.0, 4.0], top=3)
        >>> disp.class_indices_
        array([4999, 4998, 4997])
        >>> round(float(disp.others_[0]), 4)
        0.9952
        >>> plt.close(disp.figure_)
        """
        func = "TemperatureDisplay.from_logits"
        input = check_input(input, func)
        x = _float64(logits, "logits", func)
        if x.ndim != 1 or x.size == 0:
            raise param_error("logits", func, "a non-empty 1-D array (one distribution)",
                              f"an array of shape {x.shape}")
        temps = check_temperatures(temperatures, func)
        _check_count(len(temps), MAX_TEMPERATURES, "temperatures", func, "temperatures",
                     " (one bar panel each)")
        if top is not None:
            top = check_scalar(top, "top", func, lo=1, hi=MAX_CLASSES, integer=True)
        _check_count(x.size if top is None else min(x.size, top), MAX_CLASSES, "logits", func,
                     "classes", " drawn as bars (pass top=N for long rows)")
        z = _as_logits(x, input, func)
        T = np.asarray(temps, dtype=np.float64)
        probs = softmax(np.broadcast_to(z, (len(temps), z.size)), T)
        reference = softmax(z, 1.0)
        disp = cls(probs, temps, labels=_class_labels(labels, x.size, func), input=input,
                   reference=reference, top=top)
        if top is not None and top < x.size:  # rank by the logits themselves (ties by index)
            idx = np.argsort(-np.where(np.isnan(z), -np.inf, z), kind="stable")[:top]
            disp.class_indices_ = idx
            disp.others_ = np.clip(1.0 - np.asarray(probs)[:, idx].sum(axis=-1), 0.0, 1.0)
        return disp.plot(ax=ax, **plot_kwargs)

    @classmethod
    def from_probabilities(cls, probs: ArrayLike,
                           temperatures: Sequence[float] | float = CLASSIC_TEMPERATURES, *,
                           labels: Sequence[Any] | None = None, ax: Any = None,
                           top: int | None = None, **plot_kwargs: Any) -> TemperatureDisplay:
        """Re-temper a probability vector (``temper(p, T)``) at each T and plot it."""
        return cls.from_logits(probs, temperatures, labels=labels, input="probabilities", ax=ax,
                               top=top, **plot_kwargs)

    def plot(self, ax: Any = None, *, layout: str | None = None, cmap: str | Colormap = "plasma",
             colorbar: bool = True, reference: bool | None = None,
             ylim: tuple[float, float] | None = (0.0, 1.0), title: str | None = None,
             ncols: int | None = None, figsize: tuple[float, float] | None = None) -> TemperatureDisplay:
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes or array of Axes, optional
            ``None`` makes a new figure; an array of ``n_temperatures`` axes gets one panel each;
            a single Axes gets grouped bars (one group per class).
        layout : {"panels", "grouped"}, optional
            Default: ``"grouped"`` when ``ax`` is a single Axes, else ``"panels"``.
        cmap : str or Colormap, default "plasma"
            Sequential colormap; each T gets the colour at its position on a log scale.
        colorbar : bool, default True
            Panels: a colour bar keyed by T; grouped: a legend.
        reference : bool, optional
            Draw the ``T = 1`` distribution as thin dark ticks in each other panel (default: when
            there are at most 30 classes).
        ylim : (float, float) or None, default (0, 1)
            Shared y range; ``None`` lets matplotlib choose.
        title : str, optional
            Figure title; default names the operation.  ``""`` for none.
        ncols : int, optional
            Panels per row (default: all in one row up to 5).
        figsize : (float, float), optional

        Returns
        -------
        self
        """
        func = "TemperatureDisplay.plot"
        figsize = _check_figsize(figsize, func)
        if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral)
                                  or not 1 <= ncols <= MAX_TEMPERATURES):
            raise param_error("ncols", func, f"None or an int in [1, {MAX_TEMPERATURES}]", ncols)
        _pyplot()
        from matplotlib.axes import Axes

        n = len(self.temperatures)
        k = len(self.class_indices_)
        if layout is None:
            layout = "grouped" if isinstance(ax, Axes) and n > 1 else "panels"
        check_choice(layout, ("panels", "grouped"), "layout", func)
        colors = _colors(cmap, self.temperatures)
        if title is None:
            title = ("temper(p, T) = p^(1/T) / Σ p^(1/T)   (input treated as probabilities)"
                     if self.input == "probabilities" else "softmax(x / T)   (input treated as logits)")
        if reference is None:  # auto: ticks help up to a few dozen classes, then they clutter
            reference = k <= 30
        show_ref = bool(reference) and self.reference is not None
        self.bars_: list[BarContainer] = []
        self.colorbar_: Colorbar | None = None
        self.legend_: Legend | None = None
        if layout == "panels":
            fig, axs = self._panel_axes(ax, ncols, figsize, func)
            ref_handle = self._draw_panels(axs, colors, show_ref, ylim)
            if ref_handle is not None:
                self.legend_ = self._reference_legend(ref_handle, fig, axs, below=ax is None)
            if colorbar:
                self.colorbar_ = self._colorbar(fig, axs, colors)
        else:
            fig, a = self._grouped_axes(ax, figsize, func)
            axs = [a]
            self._draw_grouped(a, colors, ylim)
            if colorbar:
                self.legend_ = a.legend(fontsize=8, frameon=False, loc="upper right")
        if title:
            fig.suptitle(title, fontsize=11, color=_INK)
        self.ax_ = np.asarray(axs, dtype=object)
        self.figure_ = fig
        return self

    def _class_names(self) -> list[str]:
        """The names of the classes drawn."""
        idx = self.class_indices_
        if self.labels is None:
            return [str(int(i)) for i in idx]
        names = list(self.labels)
        return [str(names[int(i)]) for i in idx]

    def _shown(self) -> FloatArray:
        """The probabilities of the classes drawn (n_temperatures, n_drawn)."""
        return self.probabilities[..., self.class_indices_]

    def _others_note(self, i: int) -> str:
        """The mass of the classes not drawn at temperature ``i`` ('' when every class is)."""
        k = self.probabilities.shape[-1]
        hidden = k - len(self.class_indices_)
        if hidden <= 0:
            return ""
        return f"{hidden} others: p = {self.others_[i]:.3g}"

    def _panel_axes(self, ax: Any, ncols: int | None, figsize: tuple[float, float] | None,
                    func: str) -> tuple[Any, list[Axes]]:
        """(figure, one axes per temperature): a new grid of panels sharing the y axis, or the
        user's axes."""
        n = len(self.temperatures)
        if ax is not None:
            axs = _axes_list(ax, n, func)
            return axs[0].figure, axs
        k = len(self.class_indices_)
        ncols = min(n, 5) if ncols is None else int(ncols)
        nrows = math.ceil(n / ncols)
        width = min(max(2.5, 1.45 + 0.1 * k), 4.0)
        figsize = figsize or (0.9 + width * ncols, 0.5 + 2.9 * nrows)
        fig, grid = _pyplot().subplots(nrows, ncols, sharey=True, squeeze=False, figsize=figsize,
                                       layout="constrained")
        panels: list[Axes] = list(grid.reshape(-1))
        for extra in panels[n:]:
            extra.remove()
        return fig, panels[:n]

    def _draw_panels(self, axs: list[Axes], colors: list[Color], show_ref: bool,
                     ylim: tuple[float, float] | None) -> Any:
        """One bar panel per temperature, with the ``T = 1`` ticks where asked; returns the
        handle of those ticks for the legend (None when none were drawn)."""
        k = len(self.class_indices_)
        xs = np.arange(k)
        labels = self._class_names()
        ref_handle = None
        reference = self.reference[self.class_indices_] if show_ref and self.reference is not None else None
        shown = self._shown()
        for i, (a, t) in enumerate(zip(axs, self.temperatures, strict=True)):
            bars = a.bar(xs, shown[i], width=0.78, color=colors[i], edgecolor="white",
                         linewidth=0.5, zorder=2, label=f"T = {_fmt_t(t)}")
            self.bars_.append(bars)
            if reference is not None and t != 1.0:
                ref_handle = a.hlines(reference, xs - 0.39, xs + 0.39, colors=_INK,
                                      linewidth=1.1, zorder=3, label="T = 1")
            note = self._others_note(i)
            a.set_title(f"T = {_fmt_t(t)}\nH = {self.entropy[i]:.2f} nats · max p = "
                        f"{self.max_prob[i]:.2f}" + (f"\n{note}" if note else ""),
                        fontsize=10, color=_INK, linespacing=1.5)
            self._xticks(a, xs, labels)
            _style(a)
            if ylim is not None:
                a.set_ylim(*ylim)
            a.set_xlim(-0.6, k - 0.4)
        axs[0].set_ylabel("probability", fontsize=10, color=_INK)
        for a in axs:
            a.set_xlabel(self._class_axis_label(), fontsize=9, color=_MUTED)
        return ref_handle

    def _class_axis_label(self) -> str:
        k = self.probabilities.shape[-1]
        n = len(self.class_indices_)
        return "class" if n == k else f"class (the {n} most probable of {k})"

    @staticmethod
    def _reference_legend(handle: Any, fig: Any, axs: list[Axes], *, below: bool) -> Legend:
        """The key of the ``T = 1`` ticks: under the panels of a figure of our own (constrained
        layout keeps it clear of the bars), else in the first panel."""
        if below:
            legend: Legend = fig.legend([handle], ["T = 1 distribution (reference)"],
                                        loc="outside lower right", fontsize=8, frameon=False,
                                        handlelength=1.2)
            return legend
        return axs[0].legend([handle], ["T = 1 (reference)"], loc="best", fontsize=8,
                             frameon=False, handlelength=1.2)

    def _grouped_axes(self, ax: Any, figsize: tuple[float, float] | None,
                      func: str) -> tuple[Any, Axes]:
        """(figure, axes) for the grouped bars: a new figure sized to the groups, or the user's."""
        if ax is not None:
            a = _axes_list(ax, 1, func)[0]
            return a.figure, a
        n = len(self.temperatures)
        k = len(self.class_indices_)
        width = min(MAX_FIGSIZE, max(5.0, 1.5 + 0.5 * k * max(1, n / 3)))
        fig, a = _pyplot().subplots(figsize=figsize or (width, 3.6), layout="constrained")
        return fig, a

    def _draw_grouped(self, a: Axes, colors: list[Color], ylim: tuple[float, float] | None) -> None:
        """One group of bars per class, one bar per temperature."""
        k = len(self.class_indices_)
        xs = np.arange(k)
        w = 0.84 / len(self.temperatures)
        shown = self._shown()
        for i, t in enumerate(self.temperatures):
            note = self._others_note(i)
            bars = a.bar(xs - 0.42 + w * (i + 0.5), shown[i], width=w, color=colors[i],
                         edgecolor="white", linewidth=0.3, zorder=2,
                         label=f"T = {_fmt_t(t)}  (H = {self.entropy[i]:.2f}, max p = "
                               f"{self.max_prob[i]:.2f}" + (f"; {note}" if note else "") + ")")
            self.bars_.append(bars)
        self._xticks(a, xs, self._class_names())
        _style(a)
        if ylim is not None:
            a.set_ylim(*ylim)
        a.set_ylabel("probability", fontsize=10, color=_INK)
        a.set_xlabel(self._class_axis_label(), fontsize=9, color=_MUTED)

    @staticmethod
    def _xticks(a: Axes, xs: np.ndarray[Any, np.dtype[Any]], labels: list[str]) -> None:
        """Class ticks: every class named up to 24 (rotated when crowded), else a few."""
        from matplotlib.ticker import MaxNLocator

        k = len(xs)
        if k <= 24:
            a.set_xticks(xs)
            # rotate when the labels would not fit side by side under the panel
            fig: Any = a.figure
            inches = a.get_position().width * fig.get_figwidth()
            crowded = max(len(s) for s in labels) * 9 * 0.55 / 72 > 0.9 * inches / k
            a.set_xticklabels(labels, fontsize=9, rotation=40 if crowded else 0,
                              ha="right" if crowded else "center", rotation_mode="anchor")
        else:
            a.xaxis.set_major_locator(MaxNLocator(6, integer=True))
            if any(s != str(i) for i, s in enumerate(labels)):
                # named classes but too many to print: label the located ticks by name
                a.xaxis.set_major_formatter(
                    lambda v, _pos: labels[int(v)] if 0 <= int(v) < k and v == int(v) else "")
        a.tick_params(axis="x", length=0)

    def _colorbar(self, fig: Any, axs: list[Axes], colors: list[Color]) -> Colorbar:
        """A discrete colour bar keyed by T (temperatures in increasing order)."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm, ListedColormap

        n = len(colors)
        order = np.argsort(np.asarray(self.temperatures), kind="stable")
        cmap = ListedColormap([colors[i] for i in order])
        norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
        cb: Colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axs),
                                    ticks=np.arange(n), fraction=0.02, pad=0.01,
                                    aspect=25 * max(1, len(fig.axes) // 6 + 1))
        cb.set_ticklabels([_fmt_t(self.temperatures[i]) for i in order])
        cb.set_label("temperature T", fontsize=9, color=_INK)
        cb.ax.tick_params(labelsize=8, length=0)
        cb.outline.set_visible(False)
        return cb


# --------------------------------------------------------------------------------------------
# EntropyCurveDisplay
# --------------------------------------------------------------------------------------------
_QUANTITIES = ("entropy", "perplexity", "max_prob")
#: one colour per row of an entropy-curve figure
_ROW_PALETTE = ("#3B6EA8", "#C8553D", "#4E9A5B", "#8E5EA2", "#D19A2A", "#3A9FB0", "#A0522D",
                "#6B6B6B", "#B5487A", "#7A8B2E")


def _curve(z: FloatArray, grid: FloatArray, quantity: str) -> FloatArray:
    """``quantity`` of softmax(z, T) for every T in ``grid``: shape (n_rows, n_grid)."""
    from ._entropy import entropy, perplexity

    rows, k = z.shape
    out: FloatArray = np.empty((rows, grid.size))
    step = max(1, int(2_000_000 // max(1, rows * k)))
    for s in range(0, grid.size, step):
        g = grid[s:s + step]
        zb = np.broadcast_to(z, (g.size, rows, k))
        Tb = np.broadcast_to(g[:, None], (g.size, rows))
        if quantity == "max_prob":
            v = np.asarray(softmax(zb, Tb)).max(axis=-1)
        elif quantity == "entropy":
            v = entropy(zb, Tb)
        else:
            v = perplexity(zb, Tb)
        out[:, s:s + step] = v.T
    return out


class EntropyCurveDisplay:
    """Entropy (or perplexity, or top probability) of ``softmax(x, T)`` against log-scaled T.

    Entropy and perplexity rise with T from the argmax limit (``log m`` for ``m`` tied maxima)
    to ``log n`` (uniform over the ``n`` unmasked classes); the top probability falls from
    ``1/m`` to ``1/n``.  Chosen temperatures are marked on every curve; with a ``target`` the
    temperature reaching it (``solve_temperature``) is marked per row.

    Parameters
    ----------
    temperatures : ndarray of shape (n_grid,)
        The T grid (x axis).
    values : ndarray of shape (n_rows, n_grid)
        The quantity per row along the grid.
    quantity : {"entropy", "perplexity", "max_prob"}
    n_classes : ndarray of shape (n_rows,)
        Unmasked classes per row (for the uniform-limit reference line).
    marks : sequence of float, optional
        Temperatures to mark.
    mark_values : ndarray of shape (n_rows, n_marks), optional
    target : float, optional
    target_temperatures : ndarray of shape (n_rows,), optional
    row_labels : sequence of str, optional
    base : float, optional
        Logarithm base of the entropy (``None``: nats).

    Attributes
    ----------
    ax_ : ndarray holding one matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : list of matplotlib Line2D, one per row

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from tempscale.plot import EntropyCurveDisplay
    >>> disp = EntropyCurveDisplay.from_logits([[-1.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    >>> disp.values.shape
    (2, 241)
    >>> round(float(disp.mark_values[0, 1]), 4)  # entropy of softmax([-1, 0, 1], 0.5)
    0.4411
    >>> plt.close(disp.figure_)
    """

    def __init__(self, temperatures: ArrayLike, values: ArrayLike, *, quantity: str = "entropy",
                 n_classes: ArrayLike | None = None, marks: Sequence[float] = (),
                 mark_values: ArrayLike | None = None, target: float | None = None,
                 target_temperatures: ArrayLike | None = None,
                 row_labels: Sequence[str] | None = None, base: float | None = None) -> None:
        func = "EntropyCurveDisplay"
        self.temperatures: FloatArray = np.asarray(temperatures, dtype=np.float64)
        self.values: FloatArray = np.atleast_2d(np.asarray(values, dtype=np.float64))
        self.quantity = quantity
        self.n_classes = None if n_classes is None else np.asarray(n_classes)
        self.marks = tuple(float(t) for t in marks)
        _check_count(self.temperatures.size, MAX_GRID, "temperatures", func, "grid points")
        _check_count(self.values.shape[0], MAX_CURVES, "values", func, "rows", " (one curve each)")
        _check_count(len(self.marks), MAX_TEMPERATURES, "marks", func, "marked temperatures")
        self.mark_values: FloatArray | None = (None if mark_values is None
                                               else np.asarray(mark_values, dtype=np.float64))
        self.target = target
        self.target_temperatures: FloatArray | None = (
            None if target_temperatures is None else np.asarray(target_temperatures, dtype=np.float64))
        self.row_labels = row_labels
        self.base = base

    @classmethod
    def from_logits(cls, logits: ArrayLike,
                    temperatures: Sequence[float] | float | None = CLASSIC_TEMPERATURES, *,
                    quantity: str = "entropy", target: float | None = None, input: str = "logits",
                    t_range: tuple[float, float] = (1e-2, 1e2), num: int = 241,
                    base: float | None = None, row_labels: Sequence[str] | None = None,
                    ax: Any = None, **plot_kwargs: Any) -> EntropyCurveDisplay:
        """Compute the curve(s) and plot them.

        Parameters
        ----------
        logits : array_like of shape (n_classes,) or (n_rows, n_classes)
            One or several rows of logits (probabilities with ``input="probabilities"``).
        temperatures : sequence of float, default (0.1, 0.5, 1, 2, 10)
            Temperatures to mark; ``()`` for none.
        quantity : {"entropy", "perplexity", "max_prob"}, default "entropy"
        target : float, optional
            A value of ``quantity`` to reach; the temperature that reaches it for each row is
            solved with :func:`tempscale.solve_temperature` and marked.  Entropy targets are in
            the units of ``base``.
        input : {"logits", "probabilities"}, default "logits"
        t_range : (float, float), default (0.01, 100)
            The T range of the x axis (log scale).
        num : int, default 241
            Grid points.
        base : float, optional
            Entropy in this base (2: bits); default nats.
        row_labels : sequence of str, optional
            Legend entries for the rows.
        ax : matplotlib Axes, optional
        **plot_kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        EntropyCurveDisplay
        """
        func = "EntropyCurveDisplay.from_logits"
        input = check_input(input, func)
        check_choice(quantity, _QUANTITIES, "quantity", func)
        x = _float64(logits, "logits", func)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[-1] == 0 or x.shape[0] == 0:
            raise param_error("logits", func, "a 1-D or 2-D array with at least one class",
                              f"an array of shape {x.shape}")
        _check_count(x.shape[0], MAX_CURVES, "logits", func, "rows", " (one curve each)")
        marks: tuple[float, ...] = ()
        if temperatures is not None and (np.isscalar(temperatures) or len(np.atleast_1d(temperatures))):
            marks = check_temperatures(temperatures, func)
        _check_count(len(marks), MAX_TEMPERATURES, "temperatures", func, "temperatures",
                     " (one mark each)")
        try:
            lo, hi = (float(v) for v in t_range)
        except (TypeError, ValueError):
            raise param_error("t_range", func, "a pair of floats 0 < low < high < inf", t_range,
                              TypeError) from None
        if not (0 < lo < hi < math.inf):
            raise param_error("t_range", func, "a pair of floats 0 < low < high < inf", t_range)
        if isinstance(num, bool) or not isinstance(num, numbers.Integral) or not 2 <= num <= MAX_GRID:
            raise param_error("num", func, f"an int in [2, {MAX_GRID}]", num)
        if base is not None and (isinstance(base, bool) or not isinstance(base, numbers.Real)
                                 or not base > 0 or base == 1 or math.isinf(base)):
            raise param_error("base", func, "None or a positive float other than 1", base)
        z = _as_logits(x, input, func)
        grid = np.logspace(math.log10(lo), math.log10(hi), int(num))
        unit_div = _nats_unit(base)[1]
        values = _curve(z, grid, quantity)
        mark_values = _curve(z, np.asarray(marks, dtype=np.float64), quantity) if marks else None
        if quantity == "entropy":
            values = values / unit_div
            if mark_values is not None:
                mark_values = mark_values / unit_div
        n_classes = np.sum(z > -np.inf, axis=-1)
        target_t = None
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, numbers.Real) or math.isnan(target):
                raise param_error("target", func, "None or a float", target, TypeError)
            from ._entropy import solve_temperature

            goal = float(target) * (unit_div if quantity == "entropy" else 1.0)
            target_t = np.asarray(solve_temperature(z, **{quantity: goal}, on_unreachable="nan"),
                                  dtype=np.float64).reshape(-1)
        disp = cls(grid, values, quantity=quantity, n_classes=n_classes, marks=marks,
                   mark_values=mark_values, target=None if target is None else float(target),
                   target_temperatures=target_t, row_labels=row_labels, base=base)
        return disp.plot(ax=ax, **plot_kwargs)

    def plot(self, ax: Any = None, *, title: str | None = None, colors: Sequence[Color] | None = None,
             figsize: tuple[float, float] | None = None, legend: bool = True) -> EntropyCurveDisplay:
        """Draw the curves on ``ax`` (a new figure when ``None``); returns self."""
        func = "EntropyCurveDisplay.plot"
        figsize = _check_figsize(figsize, func)
        plt = _pyplot()
        if ax is None:
            fig, a = plt.subplots(figsize=figsize or (6.4, 4.0), layout="constrained")
        else:
            a = _axes_list(ax, 1, func)[0]
            fig = a.figure
        rows = self.values.shape[0]
        if colors is None:
            colors = [_ROW_PALETTE[i % len(_ROW_PALETTE)] for i in range(rows)]
        labels: list[str | None] = (list(self.row_labels) if self.row_labels is not None
                                    else ([f"row {i}" for i in range(rows)] if rows > 1 else [None]))
        if len(labels) != rows:
            raise param_error("row_labels", func, f"{rows} labels", f"{len(labels)} labels")
        a.set_xscale("log")
        self.lines_ = self._draw_curves(a, colors, labels)
        limits = self._draw_limits(a)
        self._draw_marks(a, colors)
        if self.target is not None:
            self._draw_target(a, colors, self.target)
        self._set_ranges(a, limits)
        a.set_xlabel("temperature T (log scale)", fontsize=10, color=_INK)
        a.set_ylabel(self._ylabel(), fontsize=10, color=_INK)
        _style(a, xgrid=True)
        if legend and (rows > 1 or self.target is not None):
            a.legend(fontsize=8, frameon=False,
                     loc="lower right" if self.quantity != "max_prob" else "upper right")
        if title is None:
            title = {"entropy": "Entropy against temperature", "perplexity": "Perplexity against temperature",
                     "max_prob": "Top probability against temperature"}[self.quantity]
        if title:
            a.set_title(title, fontsize=11, color=_INK, pad=16 if self.marks else 6)
        self.ax_ = np.asarray([a], dtype=object)
        self.figure_ = fig
        return self

    def _ylabel(self) -> str:
        unit = _nats_unit(self.base)[0]
        return {"entropy": f"entropy H ({unit})",
                "perplexity": "perplexity exp(H)  (effective classes)",
                "max_prob": "top probability max p"}[self.quantity]

    def _draw_curves(self, a: Axes, colors: Sequence[Color], labels: list[str | None]) -> list[Line2D]:
        """One line per row along the temperature grid."""
        lines = []
        for i in range(self.values.shape[0]):
            (line,) = a.plot(self.temperatures, self.values[i], color=colors[i], linewidth=2.0,
                             label=labels[i], zorder=3)
            lines.append(line)
        return lines

    def _draw_limits(self, a: Axes) -> list[float]:
        """The T = inf limits: a dashed line at the uniform value over the ``n`` unmasked classes
        (up to three distinct ``n``), annotated; returns their values."""
        limits: list[float] = []
        if self.n_classes is None:
            return limits
        divisor = _nats_unit(self.base)[1]
        ks = sorted({int(k) for k in np.asarray(self.n_classes).reshape(-1) if k > 0})
        for k in ks[:3]:
            lim = {"entropy": math.log(k) / divisor, "perplexity": float(k),
                   "max_prob": 1.0 / k}[self.quantity]
            limits.append(lim)
            a.axhline(lim, color="#999999", linewidth=0.9, linestyle=(0, (4, 3)), zorder=1)
            txt = {"entropy": f"uniform: log {k} = {lim:.2f}", "perplexity": f"uniform: {k}",
                   "max_prob": f"uniform: 1/{k} = {lim:.2f}"}[self.quantity]
            top = self.quantity != "max_prob"
            a.annotate(txt, (0.0, lim), xycoords=("axes fraction", "data"),
                       xytext=(4, 3 if top else -3), textcoords="offset points", ha="left",
                       va="bottom" if top else "top", fontsize=8, color=_MUTED)
        return limits

    def _draw_marks(self, a: Axes, colors: Sequence[Color]) -> None:
        """The chosen temperatures inside the grid: a vertical line, a label above the axes, and
        a dot on every curve."""
        rows = self.values.shape[0]
        tmin, tmax = self.temperatures[0], self.temperatures[-1]
        for j, t in enumerate(self.marks):
            if not (tmin <= t <= tmax):
                continue
            a.axvline(t, color="#cccccc", linewidth=0.8, zorder=0)
            a.annotate(f"T = {_fmt_t(t)}", (t, 1.0), xycoords=("data", "axes fraction"),
                       xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                       fontsize=8, color=_MUTED)
            if self.mark_values is not None:
                a.scatter(np.full(rows, t), self.mark_values[:, j], s=22, c=list(colors[:rows]),
                          edgecolors="white", linewidths=0.8, zorder=4)

    def _draw_target(self, a: Axes, colors: Sequence[Color], target: float) -> None:
        """The target value (a dotted line) and, per row, the temperature reaching it (T*)."""
        unit = _nats_unit(self.base)[0]
        a.axhline(target, color=_INK, linewidth=1.0, linestyle=(0, (1, 2)), zorder=2,
                  label={"entropy": f"target H = {target:g} {unit}",
                         "perplexity": f"target exp(H) = {target:g}",
                         "max_prob": f"target max p = {target:g}"}[self.quantity])
        if self.target_temperatures is None:
            return
        tmin, tmax = self.temperatures[0], self.temperatures[-1]
        for i, t in enumerate(self.target_temperatures):
            if not (np.isfinite(t) and tmin <= t <= tmax):
                continue
            a.scatter([t], [target], marker="D", s=34, color=colors[i],
                      edgecolors=_INK, linewidths=0.8, zorder=5)
            a.annotate(f"T* = {t:.3g}", (t, target), xytext=(6, -12 - 11 * i),
                       textcoords="offset points", fontsize=8, color=colors[i])

    def _set_ranges(self, a: Axes, limits: list[float]) -> None:
        """x: the grid, labelled as temperatures; y: from the T = 0 side to above the highest
        curve or limit (probabilities: [0, 1])."""
        a.set_xlim(self.temperatures[0], self.temperatures[-1])
        a.xaxis.set_major_formatter(lambda v, _pos: _fmt_t(v))
        if self.quantity == "max_prob":
            a.set_ylim(0, 1.04)
        else:
            finite = self.values[np.isfinite(self.values)]
            top = max([float(finite.max()) if finite.size else 1.0] + limits)
            a.set_ylim(0 if self.quantity == "entropy" else 1, top * 1.08 if top > 0 else 1.0)


# --------------------------------------------------------------------------------------------
# ReliabilityDisplay
# --------------------------------------------------------------------------------------------
def _is_labels(a: np.ndarray[Any, np.dtype[Any]]) -> bool:
    return a.ndim == 1 and a.dtype.kind in "biu"


def _prediction_first(prediction: Any, labels: Any, func: str) -> tuple[Any, Any]:
    """``(prediction, labels)``, swapping a call in the former ``(labels, prediction)`` order.

    The former order is recognised by an integer (or bool) 1-D first argument with a floating
    second one (1-D: a binary problem's scores, or 2-D); it is swapped with a
    DeprecationWarning.  Anything else is taken as given (the metrics report what is wrong).
    """
    first, second = np.asarray(to_numpy(prediction)), np.asarray(to_numpy(labels))
    if _is_labels(first) and second.dtype.kind == "f" and second.ndim in (1, 2):
        warnings.warn(f"{func}: the arguments are (prediction, labels), as in every metric; the "
                      "former (labels, prediction) order is deprecated and will stop working in "
                      "a future release: swap them", DeprecationWarning, stacklevel=3)
        return labels, prediction
    return prediction, labels


def _field(curve: Any, name: str) -> FloatArray:
    """A field of a reliability curve (a ``ReliabilityCurve`` or a dict) as float64."""
    value = curve[name] if isinstance(curve, dict) else getattr(curve, name)
    arr: FloatArray = np.asarray(value).astype(np.float64)
    return arr


class _Bins(NamedTuple):
    """One reliability curve, ready to draw."""

    edges: FloatArray
    conf: FloatArray
    acc: FloatArray
    counts: FloatArray

    @classmethod
    def of(cls, curve: Any) -> _Bins:
        return cls(_field(curve, "bin_edges"), _field(curve, "confidence"),
                   _field(curve, "accuracy"), _field(curve, "counts"))

    @property
    def left(self) -> FloatArray:
        return self.edges[:-1]

    @property
    def width(self) -> FloatArray:
        width: FloatArray = np.diff(self.edges)
        return width

    @property
    def filled(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        filled: np.ndarray[Any, np.dtype[np.bool_]] = self.counts > 0
        return filled


class ReliabilityDisplay:
    """Reliability diagram with per-bin gaps, counts and a confidence histogram (top-label).

    Samples are binned by their confidence (top probability); each bin's bar is its accuracy,
    the hatched bar between accuracy and mean confidence is the gap (over-confidence above the
    bar, under-confidence below it), and the dashed diagonal is perfect calibration.  Below,
    the share of samples per bin (each bar labelled with its count), with the mean confidence
    and the accuracy marked.  When probabilities after temperature scaling are given, both are
    drawn side by side.  With ``n_bootstrap`` the diagram carries a bootstrap band of the
    accuracy and the ECE its interval; with ``strategy="isotonic"`` (CORP, Dimitriadis et al.
    2021, where :func:`tempscale.calibration.reliability_curve` offers it) one bin per isotonic
    block, and the CORP curve drawn as a step line.

    Parameters
    ----------
    curves : sequence of reliability curves
        Results of :func:`tempscale.calibration.reliability_curve` (fields ``bin_edges``,
        ``confidence``, ``accuracy``, ``counts``), one per column.
    names : sequence of str
        Column titles.
    ece : sequence of float, optional
        Expected calibration error per column.
    ece_interval : sequence of (float, float), optional
        A bootstrap interval of each column's ECE, shown after it.
    bands : sequence of (x, low, high) or None, optional
        A band of the accuracy per column (``x`` increasing confidences; ``low`` and ``high`` the
        band's edges there), e.g. the bootstrap percentiles :meth:`from_predictions` computes.
    strategy : str, optional
        The binning the curves came from; ``"isotonic"`` draws each curve's CORP step line too.

    Attributes
    ----------
    ax_ : ndarray of matplotlib Axes, shape (2, n_columns) or (1, n_columns)
        Row 0: reliability diagrams; row 1 (with ``hist=True``): confidence histograms.
    figure_ : matplotlib Figure
    bars_ : list of matplotlib BarContainer
        The accuracy bars of each column.
    gap_bars_ : list of matplotlib BarContainer
        The gap bars of each column.
    count_texts_ : list of list of matplotlib Text
        The per-bin count labels of each column (empty where not drawn).
    bands_ : list of matplotlib PolyCollection or None
        The bootstrap band of each column.
    corp_lines_ : list of matplotlib Line2D or None
        The CORP step line of each column (``strategy="isotonic"``).

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from tempscale.plot import ReliabilityDisplay
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 600)
    >>> z = 3.0 * (rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[y])
    >>> fig, ax = plt.subplots()
    >>> disp = ReliabilityDisplay.from_logits(z, y, n_bins=8, n_bootstrap=50, random_state=0, ax=ax)
    >>> disp.ax_.shape, disp.ax_[0, 0] is ax          # the histogram is built under ax
    ((2, 1), True)
    >>> [int(t.get_text()) for t in disp.count_texts_[0]] == disp.curves[0].counts[disp.curves[0].counts > 0].tolist()
    True
    >>> plt.close(fig)
    """

    def __init__(self, curves: Sequence[Any], names: Sequence[str], *,
                 ece: Sequence[float] | None = None,
                 ece_interval: Sequence[tuple[float, float]] | None = None,
                 bands: Sequence[Any] | None = None, strategy: str | None = None) -> None:
        self.curves = list(curves)
        self.names = list(names)
        self.ece = None if ece is None else [float(e) for e in ece]
        self.ece_interval = (None if ece_interval is None
                             else [(float(lo), float(hi)) for lo, hi in ece_interval])
        self.bands = None if bands is None else list(bands)
        self.strategy = strategy

    @classmethod
    def from_predictions(cls, prediction: ArrayLike | None = None, labels: ArrayLike | None = None, *,
                         prediction_after: ArrayLike | None = None, n_bins: int = 15,
                         strategy: str = "uniform", sample_weight: ArrayLike | None = None,
                         names: Sequence[str] | None = None, temperature: float | None = None,
                         n_bootstrap: int = 0, confidence_level: float = 0.95,
                         random_state: int | np.random.Generator | None = None,
                         ax: Any = None, **plot_kwargs: Any) -> ReliabilityDisplay:
        """Diagram(s) from predicted probabilities.

        Parameters
        ----------
        prediction : array_like, shape (n_samples, n_classes) or (n_samples,)
            Predicted probabilities (one column: the probability of class 1 of a binary
            problem).  ``probs=`` is its deprecated name.
        labels : array_like of int, shape (n_samples,)
            True classes.  The former ``(labels, prediction)`` order still works, with a
            DeprecationWarning.
        prediction_after : array_like, optional
            The same after temperature scaling; drawn in a second column (``probs_after=`` is
            its deprecated name).
        n_bins : int, default 15
        strategy : {"uniform", "quantile", "isotonic"}, default "uniform"
            Equal-width bins, bins holding equal numbers of samples, or (where
            :func:`tempscale.calibration.reliability_curve` has it) CORP's isotonic blocks, one
            bin per block (the ECE is then the curve's own ``sum(counts * |acc - conf|) / n``).
        sample_weight : array_like of shape (n_samples,), optional
            Weights of the bins' means and of the ECE (the histogram counts samples).
        names : (str, str), optional
            Column titles.
        temperature : float, optional
            Shown in the default title of the second column.
        n_bootstrap : int, default 0
            Bootstrap resamples for a band around each diagram's accuracy (the curve recomputed
            on each resample, read at the bins' mean confidences; percentile band) and an
            interval of the ECE (:func:`tempscale.calibration.calibration_error`'s bootstrap).
            ``0``: none.
        confidence_level : float, default 0.95
            Coverage of the band and the interval.
        random_state : int or numpy.random.Generator, optional
            Seed of the resampling.
        ax : matplotlib Axes, pair or array of Axes, optional
            See :meth:`plot`.
        **plot_kwargs
            Passed to :meth:`plot`.
        """
        from .calibration import calibration_error, reliability_curve

        func = "ReliabilityDisplay.from_predictions"
        given = {"prediction": prediction, "prediction_after": prediction_after}
        for old, new in (("probs", "prediction"), ("probs_after", "prediction_after")):
            if old in plot_kwargs:
                given[old] = plot_kwargs.pop(old)
                deprecated_alias(given, old, new, func)
        prediction, prediction_after = given["prediction"], given["prediction_after"]
        if prediction is None or labels is None:
            raise TypeError(f"{func}() needs the prediction and the labels")
        prediction, labels = _prediction_first(prediction, labels, func)
        n_bootstrap = check_scalar(n_bootstrap, "n_bootstrap", func, lo=0, integer=True)
        confidence_level = check_scalar(confidence_level, "confidence_level", func, lo=0, hi=1,
                                        lo_open=True, hi_open=True)
        sets = [prediction] if prediction_after is None else [prediction, prediction_after]
        curves, eces, intervals, bands = [], [], [], []
        for p in sets:
            kw: dict[str, Any] = {"n_bins": n_bins, "strategy": strategy, "sample_weight": sample_weight}
            curve = reliability_curve(p, labels, **kw)
            curves.append(curve)
            if strategy == "isotonic":  # the ECE of the CORP blocks themselves
                eces.append(_curve_ece(curve))
            else:
                eces.append(float(calibration_error(p, labels, **kw)))
            if n_bootstrap:
                bands.append(_bootstrap_band(p, labels, sample_weight, curve, n_bins, strategy,
                                             n_bootstrap, confidence_level, random_state))
                if strategy == "isotonic":
                    intervals.append(_interval(bands[-1][3], confidence_level))
                else:
                    r: Any = calibration_error(p, labels, n_bootstrap=n_bootstrap,
                                               confidence_level=confidence_level,
                                               random_state=_seed_of(random_state), **kw)
                    intervals.append((float(r.low), float(r.high)))
        if names is None:
            after = ("after temperature scaling" if temperature is None
                     else f"after temperature scaling (T = {float(temperature):.3g})")
            names = ["before", after][:len(sets)] if len(sets) > 1 else ["reliability"]
        return cls(curves, names, ece=eces, ece_interval=intervals or None,
                   bands=[b[:3] for b in bands] or None,
                   strategy=strategy).plot(ax=ax, **plot_kwargs)

    @classmethod
    def from_logits(cls, logits: ArrayLike, labels: ArrayLike,
                    temperature: float | str | None = None, *, n_bins: int = 15,
                    strategy: str = "uniform", sample_weight: ArrayLike | None = None,
                    names: Sequence[str] | None = None, ax: Any = None,
                    **plot_kwargs: Any) -> ReliabilityDisplay:
        """Diagram(s) from logits: ``softmax(logits)`` and, given ``temperature``, ``softmax(logits, T)``.

        Parameters
        ----------
        logits : array_like, shape (n_samples, n_classes) or (n_samples,)
            One logit per sample is a binary problem (the logit of class 1).
        labels : array_like of int, shape (n_samples,)
            True classes.  The former ``(labels, logits)`` order still works, with a
            DeprecationWarning.
        temperature : float or "fit", optional
            Draw the diagram after temperature scaling too; ``"fit"`` fits T with
            :func:`tempscale.calibration.fit_temperature` on these logits (which shows the best
            case: fit T on held-out data in practice).
        n_bins, strategy, sample_weight, names, ax, **plot_kwargs
            As in :meth:`from_predictions` (``n_bootstrap``, ``confidence_level`` and
            ``random_state`` too).

        Examples
        --------
        >>> import numpy as np
        >>> import matplotlib.pyplot as plt
        >>> from tempscale.plot import ReliabilityDisplay
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 600)
        >>> z = 4.0 * (rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[y])  # over-confident logits
        >>> disp = ReliabilityDisplay.from_logits(z, y, temperature="fit")
        >>> disp.ax_.shape
        (2, 2)
        >>> bool(disp.ece[1] < disp.ece[0])
        True
        >>> plt.close(disp.figure_)
        """
        func = "ReliabilityDisplay.from_logits"
        logits, labels = _prediction_first(logits, labels, func)
        z = binary_columns(_float64(logits, "logits", func))
        if isinstance(temperature, str):
            check_choice(temperature, ("fit",), "temperature", func)
            from .calibration import fit_temperature

            temperature = float(fit_temperature(z, labels, sample_weight=sample_weight))
        elif temperature is not None:
            temperature = check_temperature(temperature, func,
                                            expect='None, "fit" or a float in [0, inf]')
        before = softmax(z)
        after = None if temperature is None else softmax(z, float(temperature))
        return cls.from_predictions(before, labels, prediction_after=after, n_bins=n_bins,
                                    strategy=strategy, sample_weight=sample_weight, names=names,
                                    temperature=temperature, ax=ax, **plot_kwargs)

    @classmethod
    def from_estimator(cls, estimator: Any, X: Any, y: ArrayLike, *, n_bins: int = 15,
                       strategy: str = "uniform", sample_weight: ArrayLike | None = None,
                       names: Sequence[str] | None = None, compare: bool = True,
                       ax: Any = None, **plot_kwargs: Any) -> ReliabilityDisplay:
        """Diagram(s) of a fitted classifier on ``(X, y)``, from its ``predict_proba``.

        As scikit-learn's ``CalibrationDisplay.from_estimator``, with the top-label diagram of
        every class (a binary classifier's two columns give the top-label curve; pass
        ``predict_proba(X)[:, 1]`` to :meth:`from_predictions` for the class-1 curve).

        Parameters
        ----------
        estimator : fitted classifier
            Anything with ``predict_proba(X)``: a scikit-learn classifier, a pipeline, or a
            tempscale scaler wrapping one (``TemperatureScaler(estimator=clf)``, whose
            ``predict_proba`` takes the raw features).
        X : array_like
            The features ``estimator.predict_proba`` takes (logits for a bare tempscale
            scaler).
        y : array_like of shape (n_samples,)
            True labels: integers ``0 .. n_classes - 1``, or any values found in the
            estimator's ``classes_`` (mapped to their column).
        n_bins, strategy, sample_weight
            As in :meth:`from_predictions`.
        names : sequence of str, optional
            Column titles; default the estimator's class name (and the wrapped one's).
        compare : bool, default True
            For a tempscale scaler wrapping a classifier (``estimator.estimator`` set): draw the
            wrapped classifier's own probabilities first and the scaled ones beside them.
        ax : matplotlib Axes, pair or array of Axes, optional
            See :meth:`plot`.
        **plot_kwargs
            ``n_bootstrap``, ``confidence_level``, ``random_state`` (see
            :meth:`from_predictions`) and :meth:`plot`'s options.

        Returns
        -------
        ReliabilityDisplay

        Examples
        --------
        >>> import numpy as np
        >>> import matplotlib.pyplot as plt
        >>> from sklearn.linear_model import LogisticRegression
        >>> from tempscale.plot import ReliabilityDisplay
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 4)); y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
        >>> clf = LogisticRegression().fit(X, y)
        >>> disp = ReliabilityDisplay.from_estimator(clf, X, y, n_bins=5)
        >>> disp.names
        ['LogisticRegression']
        >>> plt.close(disp.figure_)
        """
        func = "ReliabilityDisplay.from_estimator"
        check_bool(compare, "compare", func)
        if not callable(getattr(estimator, "predict_proba", None)):
            raise param_error("estimator", func, "a fitted classifier with predict_proba",
                              type(estimator).__name__, TypeError)
        proba = np.asarray(to_numpy(estimator.predict_proba(X)), dtype=np.float64)
        labels = _estimator_labels(estimator, y, func)
        inner: Any = getattr(estimator, "estimator", None)
        wrapped = (compare and inner is not None and callable(getattr(inner, "predict_proba", None))
                   and type(estimator).__module__.startswith("tempscale"))
        if wrapped:
            before = np.asarray(to_numpy(inner.predict_proba(X)), dtype=np.float64)
            T = getattr(estimator, "temperature_", None)
            if names is None:
                after = type(estimator).__name__ + ("" if T is None else f" (T = {float(T):.3g})")
                names = [type(inner).__name__, after]
            return cls.from_predictions(before, labels, prediction_after=proba, n_bins=n_bins,
                                        strategy=strategy, sample_weight=sample_weight,
                                        names=names, ax=ax, **plot_kwargs)
        if names is None:
            names = [type(estimator).__name__]
        return cls.from_predictions(proba, labels, n_bins=n_bins, strategy=strategy,
                                    sample_weight=sample_weight, names=names, ax=ax,
                                    **plot_kwargs)

    def plot(self, ax: Any = None, *, title: str | None = None,
             figsize: tuple[float, float] | None = None, hist: bool = True,
             counts: bool | None = None) -> ReliabilityDisplay:
        """Draw the diagram(s); returns self.

        Parameters
        ----------
        ax : matplotlib Axes, or a sequence / array of Axes, optional
            Default a new figure.  One Axes per column (a single Axes for one column): the
            diagram goes there and, with ``hist=True``, the histogram panel is carved out of the
            same place (its subplot slot, or its position) under it.  Or, with ``hist=True``,
            two per column (a ``(diagram, histogram)`` pair for one column; shape
            ``(2, n_columns)`` for several).
        title : str, optional
            Figure title (default none).
        figsize : (float, float), optional
        hist : bool, default True
            Draw the confidence histogram under each diagram.
        counts : bool, optional
            Label each non-empty bin with its number of samples (on the histogram's bars, or at
            the foot of the diagram's bars without a histogram).  Default: up to 20 non-empty
            bins.
        """
        func = "ReliabilityDisplay.plot"
        figsize = _check_figsize(figsize, func)
        check_bool(hist, "hist", func)
        if counts is not None:
            check_bool(counts, "counts", func)
        fig, axs = self._grid(ax, figsize, hist, func)
        self.bars_: list[BarContainer] = []
        self.gap_bars_: list[BarContainer] = []
        self.count_texts_: list[list[Text]] = []
        self.bands_: list[PolyCollection | None] = []
        self.corp_lines_: list[Line2D | None] = []
        for j, curve in enumerate(self.curves):
            bins = _Bins.of(curve)
            a = axs[0, j]
            bars, gaps = self._draw_diagram(a, bins)
            self.bars_.append(bars)
            self.gap_bars_.append(gaps)
            self.bands_.append(self._draw_band(a, j))
            self.corp_lines_.append(self._draw_corp(a, bins) if self.strategy == "isotonic" else None)
            a.plot([0, 1], [0, 1], color="#555555", linestyle=(0, (4, 3)), linewidth=1.0, zorder=4)
            if j == 0:
                self._gap_legend(a)
            a.set_xlim(0, 1)
            a.set_ylim(0, 1)
            a.set_aspect("equal" if not hist else "auto")
            a.set_ylabel("accuracy", fontsize=10, color=_INK)
            a.set_title(self._title(j), fontsize=10, color=_INK, linespacing=1.5)
            _style(a, xgrid=True)
            show_counts = int(bins.filled.sum()) <= 20 if counts is None else counts
            if hist:
                self.count_texts_.append(self._draw_histogram(axs[1, j], bins, show_counts))
            else:
                a.set_xlabel("confidence (top probability)", fontsize=10, color=_INK)
                self.count_texts_.append(self._diagram_counts(a, bins) if show_counts else [])
        if hist and len(self.curves) > 1:  # the same share scale under every diagram
            top = max(h.get_ylim()[1] for h in axs[1])
            for h in axs[1]:
                h.set_ylim(0, top)
        if title:
            fig.suptitle(title, fontsize=11, color=_INK)
        self.ax_ = axs
        self.figure_ = fig
        return self

    def _title(self, j: int) -> str:
        name = self.names[j] if j < len(self.names) else f"column {j}"
        if self.ece is None:
            return name
        sub = f"\nECE = {100 * self.ece[j]:.2f} %"
        if self.ece_interval is not None and j < len(self.ece_interval):
            lo, hi = self.ece_interval[j]
            sub += f"  [{100 * lo:.2f}, {100 * hi:.2f}]"
        return f"{name}{sub}"

    def _grid(self, ax: Any, figsize: tuple[float, float] | None, hist: bool,
              func: str) -> tuple[Any, np.ndarray[Any, np.dtype[Any]]]:
        """(figure, axes of shape (rows, columns)): diagrams above histograms, one column per
        curve; a new figure, the user's axes, or the user's one axes per column with a
        histogram panel carved under each."""
        from matplotlib.axes import Axes

        ncols = len(self.curves)
        nrows = 2 if hist else 1
        if ax is None:
            fig, axs = _pyplot().subplots(
                nrows, ncols, squeeze=False, sharex=True,
                figsize=figsize or (4.4 * ncols + 0.4, 5.6 if hist else 4.4), layout="constrained",
                gridspec_kw={"height_ratios": [3.2, 1.0]} if hist else None)
            return fig, axs
        flat = [ax] if isinstance(ax, Axes) else list(np.asarray(ax, dtype=object).reshape(-1))
        if not all(isinstance(a, Axes) for a in flat) or len(flat) not in (ncols, nrows * ncols):
            expect = (f"None, {ncols} matplotlib Axes (one per column) or {nrows * ncols} "
                      f"(a diagram and a histogram per column)" if hist
                      else f"None or {ncols} matplotlib Axes (one per column)")
            raise param_error("ax", func, expect, f"{len(flat)} object(s)", ValueError)
        if len(flat) == nrows * ncols:
            return flat[0].figure, np.asarray(flat, dtype=object).reshape(nrows, ncols)
        pairs = [_split_axes(a) for a in flat]
        grid = np.empty((2, ncols), dtype=object)
        for j, (d, h) in enumerate(pairs):
            grid[0, j], grid[1, j] = d, h
        return flat[0].figure, grid

    @staticmethod
    def _draw_diagram(a: Axes, bins: _Bins) -> tuple[BarContainer, BarContainer]:
        """Accuracy bars and, on them, the hatched gaps to the mean confidence: over-confident
        bins (confidence above accuracy) get the gap on top of the bar, under-confident ones a
        gap covering the top of the bar down to the confidence."""
        acc0 = np.where(bins.filled, bins.acc, 0.0)
        bars = a.bar(bins.left, acc0, width=bins.width, align="edge", color=_BLUE,
                     edgecolor="white", linewidth=0.8, zorder=2, label="accuracy")
        gap = np.where(bins.filled, bins.conf - bins.acc, 0.0)
        over = gap > 0
        gaps = a.bar(bins.left, gap, bottom=acc0, width=bins.width, align="edge",
                     color=np.where(over, _OVER_FILL, _UNDER_FILL).tolist(),
                     edgecolor=np.where(over, _RED, _UNDER_EDGE).tolist(),
                     linewidth=np.where(gap != 0, 0.8, 0.0).tolist(), hatch="///", zorder=3)
        return bars, gaps

    def _draw_band(self, a: Axes, j: int) -> PolyCollection | None:
        """The accuracy band of column ``j`` (a shaded area over the bins' mean confidences)."""
        if self.bands is None or j >= len(self.bands) or self.bands[j] is None:
            return None
        x, lo, hi = (np.asarray(v, dtype=np.float64) for v in self.bands[j][:3])
        ok = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
        if not ok.any():
            return None
        band: PolyCollection = a.fill_between(x[ok], lo[ok], hi[ok], color="#1F2D3D", alpha=0.18,
                                              linewidth=0, zorder=5, label="bootstrap band")
        return band

    @staticmethod
    def _draw_corp(a: Axes, bins: _Bins) -> Line2D:
        """The CORP curve: each isotonic block's event frequency over its confidence range."""
        filled = bins.filled
        xs = np.column_stack([bins.edges[:-1][filled], bins.edges[1:][filled]]).reshape(-1)
        ys = np.repeat(bins.acc[filled], 2)
        (line,) = a.plot(xs, ys, color=_RED, linewidth=1.8, zorder=6, label="CORP (isotonic)")
        return line

    @staticmethod
    def _gap_legend(a: Axes) -> None:
        """The key of the diagram: diagonal, accuracy, the two kinds of gap, and the band and
        CORP line where drawn."""
        from matplotlib.lines import Line2D as _Line
        from matplotlib.patches import Patch

        handles: list[Any] = [_Line([], [], color="#555555", linestyle=(0, (4, 3)), linewidth=1.0),
                              Patch(facecolor=_BLUE, edgecolor="white"),
                              Patch(facecolor=_OVER_FILL, edgecolor=_RED, hatch="///"),
                              Patch(facecolor=_UNDER_FILL, edgecolor=_UNDER_EDGE, hatch="///")]
        names = ["perfect calibration", "accuracy", "gap: over-confident", "gap: under-confident"]
        for artist in [*a.collections, *a.lines]:
            label = str(artist.get_label())
            if label in ("bootstrap band", "CORP (isotonic)"):
                handles.append(artist)
                names.append(label)
        a.legend(handles, names, fontsize=8, frameon=False, loc="upper left")

    @staticmethod
    def _draw_histogram(h: Axes, bins: _Bins, show_counts: bool) -> list[Text]:
        """The share of samples per bin, with the mean accuracy and mean confidence marked and
        each non-empty bar labelled with its count; returns the count labels."""
        counts, filled = bins.counts, bins.filled
        n = counts.sum()
        share = counts / n if n else counts
        bars = h.bar(bins.left, share, width=bins.width, align="edge", color="#9AA5B1",
                     edgecolor="white", linewidth=0.8, zorder=2)
        texts: list[Text] = []
        if show_counts and filled.any():
            labels = [f"{int(c)}" if c > 0 else "" for c in counts]
            texts = [t for t in h.bar_label(bars, labels=labels, fontsize=7, color=_MUTED, padding=1)
                     if t.get_text()]
            h.set_ylim(0, max(h.get_ylim()[1], float(share.max()) * 1.25))
        if n:
            mean_conf = float(np.sum(bins.conf[filled] * counts[filled]) / n)
            mean_acc = float(np.sum(bins.acc[filled] * counts[filled]) / n)
            h.axvline(mean_acc, color=_BLUE, linewidth=1.6, zorder=3,
                      label=f"accuracy {mean_acc:.2f}")
            h.axvline(mean_conf, color=_RED, linewidth=1.6, linestyle=(0, (3, 2)), zorder=3,
                      label=f"mean confidence {mean_conf:.2f}")
            h.legend(fontsize=7.5, frameon=False, loc="upper left")
        h.set_xlim(0, 1)
        h.set_ylabel("share", fontsize=9, color=_INK)
        h.set_xlabel("confidence (top probability)", fontsize=10, color=_INK)
        _style(h)
        return texts

    @staticmethod
    def _diagram_counts(a: Axes, bins: _Bins) -> list[Text]:
        """Without a histogram: each non-empty bin's count at the foot of its bar."""
        texts = []
        for left, w, c in zip(bins.left, bins.width, bins.counts, strict=True):
            if c > 0:
                texts.append(a.text(left + w / 2, 0.01, f"{int(c)}", ha="center", va="bottom",
                                    fontsize=7, color="white", zorder=7))
        return texts


def _split_axes(a: Axes) -> tuple[Axes, Axes]:
    """``a`` kept as the diagram, with a histogram panel carved out of its place under it: its
    subplot slot split 3.2 : 1 (any layout engine handles it), or its position otherwise."""
    fig: Any = a.figure
    spec = a.get_subplotspec()
    if spec is not None:
        sub = spec.subgridspec(2, 1, height_ratios=[3.2, 1.0])
        a.set_subplotspec(sub[0])
        h = fig.add_subplot(sub[1], sharex=a)
    else:
        box = a.get_position()
        hh = box.height * 0.24
        a.set_position((box.x0, box.y0 + hh + box.height * 0.08, box.width,
                        box.height - hh - box.height * 0.08))
        h = fig.add_axes((box.x0, box.y0, box.width, hh), sharex=a)
    return a, h


def _curve_ece(curve: Any) -> float:
    """``sum(counts * |accuracy - confidence|) / sum(counts)`` over a curve's non-empty bins."""
    b = curve if isinstance(curve, _Bins) else _Bins.of(curve)
    n = float(b.counts.sum())
    if not n:
        return math.nan
    f = b.filled
    return float(np.sum(b.counts[f] * np.abs(b.acc[f] - b.conf[f])) / n)


def _seed_of(random_state: Any) -> Any:
    """The ECE interval's generator: a copy of a given Generator (the band's stays untouched)."""
    if isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state.bit_generator.random_raw())
    return random_state


def _interval(values: FloatArray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN ones left out)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (math.nan, math.nan)
    a = (1.0 - level) / 2.0
    return float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a))


def _bootstrap_band(prediction: Any, labels: Any, sample_weight: Any, curve: Any, n_bins: int,
                    strategy: str, n_bootstrap: int, level: float,
                    random_state: Any) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(x, low, high, ece replicates): the curve recomputed on ``n_bootstrap`` resamples of the
    samples (the same binning rule: uniform bins stay, quantile and isotonic bins move), each
    read as a step function of the confidence at ``x`` = the original bins' mean confidences;
    the percentile band of those readings."""
    from .calibration import reliability_curve

    p = np.asarray(to_numpy(prediction))
    y = np.asarray(to_numpy(labels))
    w = None if sample_weight is None else np.asarray(to_numpy(sample_weight))
    rng = np.random.default_rng(random_state)
    base = _Bins.of(curve)
    x = base.conf[base.filled]
    n = y.shape[0]
    reads = np.full((n_bootstrap, x.size), np.nan)
    eces = np.full(n_bootstrap, np.nan)
    for b in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        c = _Bins.of(reliability_curve(p[idx], y[idx], n_bins=n_bins, strategy=strategy,
                                       sample_weight=None if w is None else w[idx]))
        # bin k holds (edges[k], edges[k + 1]] (the first one its left edge too)
        k = np.clip(np.searchsorted(c.edges, x, side="left") - 1, 0, c.acc.size - 1)
        reads[b] = np.where(c.filled[k], c.acc[k], np.nan)
        eces[b] = _curve_ece(c)
    a = (1.0 - level) / 2.0
    low = np.full(x.size, np.nan)
    high = np.full(x.size, np.nan)
    for i in range(x.size):
        col = reads[:, i][np.isfinite(reads[:, i])]
        if col.size:
            low[i], high[i] = np.quantile(col, a), np.quantile(col, 1.0 - a)
    return x, low, high, eces


def _estimator_labels(estimator: Any, y: Any, func: str) -> np.ndarray[Any, np.dtype[Any]]:
    """``y`` as column indices of ``predict_proba``: values found in ``estimator.classes_`` map to
    their column; integer labels without ``classes_`` are taken as they are."""
    arr = np.asarray(to_numpy(y))
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return arr
    classes = np.asarray(classes)
    if classes.ndim == 1 and np.array_equal(classes, np.arange(classes.size)):
        return arr
    pos = {v: i for i, v in enumerate(classes.tolist())}
    try:
        return np.asarray([pos[v] for v in arr.tolist()], dtype=np.int64)
    except (KeyError, TypeError):
        missing = next((v for v in arr.tolist() if v not in pos), None)
        raise param_error("y", func, f"labels among the estimator's classes_ {classes.tolist()}",
                          missing) from None
