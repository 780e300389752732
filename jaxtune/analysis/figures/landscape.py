"""A metric's landscape over two hyperparameters: a heatmap on each parameter's own scale."""

from __future__ import annotations

import math

import numpy as np

from jaxtune.analysis.figures.axes import axis_kind, plain_text, pyplot, set_axis
from jaxtune.errors import InputError
from jaxtune.result import Result

GRID = 30  # at most this many distinct values on an axis: a grid, each value its own cell
BINS = 12  # otherwise at most this many cells an axis, over the values' range on its scale


def _forward(kind: str, v):
    v = np.asarray(v, np.float64)
    return np.log10(v) if kind == "log" else -np.log10(1.0 - v) if kind == "reverse_log" else v


def _backward(kind: str, t):
    t = np.asarray(t, np.float64)
    return 10.0**t if kind == "log" else 1.0 - 10.0 ** (-t) if kind == "reverse_log" else t


def _edges(kind: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges on the axis (in its own units) and each value's cell: one cell per distinct value
    when there are at most :data:`GRID` of them, else equal bins on the axis's scale."""
    t = _forward(kind, values)
    distinct = np.unique(t)
    if len(distinct) <= GRID:
        mids = (distinct[1:] + distinct[:-1]) / 2
        step = np.diff(distinct).min() if len(distinct) > 1 else max(abs(distinct[0]) * 0.1, 0.5)
        edges = np.concatenate([[distinct[0] - step / 2], mids, [distinct[-1] + step / 2]])
        cell = np.searchsorted(distinct, t)
    else:
        bins = min(BINS, max(3, int(math.sqrt(len(t) / 2))))
        edges = np.linspace(t.min(), t.max(), bins + 1)
        cell = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    return _backward(kind, edges), cell


def _choice_edges(choices: list, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A numeric choice's axis: a cell per value, at positions 0, 1, ... in sorted order."""
    return np.arange(len(choices) + 1) - 0.5, np.asarray([choices.index(v) for v in values.tolist()])


def _axes(result: Result, x: str, y: str, xs: np.ndarray, ys: np.ndarray):
    """Each axis's kind (:func:`axis_kind`), numeric choices (or None), cell edges and each trial's cell."""
    kinds = [axis_kind(result, n, list(v)) for n, v in ((x, xs), (y, ys))]
    choices, cells = [None, None], []
    for i, (name, v) in enumerate(((x, xs), (y, ys))):
        if kinds[i] == "choice":
            if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v.tolist()):
                raise InputError(f"plot_landscape: {name!r} is a choice of non-numbers; the landscape is drawn over "
                                 "numeric parameters")  # fmt: skip
            choices[i] = sorted(set(v.tolist()))  # a numeric choice (e.g. weight decay 0, 0.1, 1): a cell per value
        cells.append(_choice_edges(choices[i], v) if choices[i] is not None else _edges(kinds[i], v))
    return kinds, choices, cells


@plain_text
def plot_landscape(result: Result, x: str, y: str, metric: str | None = None, *, mode: str | None = None,
                   unreached: float | None = None):  # fmt: skip
    """``metric`` (default: the study's) over hyperparameters ``x`` and ``y``, each on its own
    scale: a cell per grid point when each was sampled on at most 30 values (a grid; a numeric
    choice, e.g. weight decay in ``[0, 0.1, 1]``, a cell per value), else a 12 x 12 (or coarser,
    for few trials) binning of the trials; a cell shows the best value of its trials, an empty
    cell none. The best trial is starred.

    Args:
      mode: ``"min"`` or ``"max"``: which values are better (default: the metric's mode in the
        study, or the study's).
      unreached: a value meaning "never reached" (a Trainer milestone's budget + 1, e.g.
        ``steps_to_generalise``): cells whose best trial has it are drawn grey, apart from the colour scale.

    Raises:
      InputError: ``x`` or ``y`` is not a hyperparameter of the study or a choice of non-numbers,
        ``metric`` is not one of its metrics, ``mode`` is neither ``"min"`` nor ``"max"``, or no
        finished trial has both.
    """
    names = result.param_names
    for name in (x, y):
        if name not in names:
            raise InputError(f"plot_landscape: {name!r} is not a hyperparameter of the study; it has {names}")
    metric = metric or result.metric
    known = sorted({n for t in result.trials for n in t["metrics"]})
    if metric not in known:
        raise InputError(f"plot_landscape: {metric!r} is not a metric of the study; it has {known}")
    if mode not in (None, "min", "max"):
        raise InputError(f"plot_landscape: mode must be 'min' or 'max', got {mode!r}")
    mode = mode or (dict(result.objectives).get(metric, result.mode) if result.objectives else result.mode)
    ok = [t for t in result.trials if t["status"] == "ok" and x in t["params"] and y in t["params"]
          and math.isfinite(t["metrics"].get(metric, math.nan))]  # fmt: skip
    if not ok:
        raise InputError(f"plot_landscape: no finished trial has both {x!r} and {y!r}")
    xs, ys = (np.asarray([t["params"][n] for t in ok]) for n in (x, y))
    kinds, choices, ((x_edges, x_cell), (y_edges, y_cell)) = _axes(result, x, y, xs, ys)
    values = np.asarray([t["metrics"][metric] for t in ok], np.float64)
    sign = 1.0 if mode == "min" else -1.0
    grid = np.full((len(y_edges) - 1, len(x_edges) - 1), np.inf)
    np.minimum.at(grid, (y_cell, x_cell), sign * values)
    never = np.isfinite(grid) & (sign * grid == unreached) if unreached is not None else np.zeros(grid.shape, bool)
    shown = np.ma.masked_invalid(np.where(np.isfinite(grid) & ~never, sign * grid, np.nan))
    fig, ax = pyplot().subplots(figsize=(6.5, 5.0))
    if never.any():
        ax.pcolormesh(x_edges, y_edges, np.ma.masked_where(~never, never), cmap="Greys", vmin=0, vmax=4, shading="flat")
    mesh = ax.pcolormesh(x_edges, y_edges, shown, cmap="viridis" if mode == "max" else "viridis_r", shading="flat")
    best = ok[int(np.argmin(sign * values))]
    at = [best["params"][n] if c is None else c.index(best["params"][n]) for c, n in zip(choices, (x, y))]
    ax.scatter(at[:1], at[1:], marker="*", s=220, color="tab:red", edgecolor="k", zorder=5)
    set_axis(ax, kinds[0], list(x_edges), choices[0])
    set_axis(ax, kinds[1], list(y_edges), choices[1], axis="y")
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlabel(x + ("  (1 - x scale)" if kinds[0] == "reverse_log" else ""))
    ax.set_ylabel(y + ("  (1 - y scale)" if kinds[1] == "reverse_log" else ""))
    fig.colorbar(mesh, ax=ax, label=f"{metric}: a cell's best trial ({mode} is better)")
    cells = "grid" if len(np.unique(xs)) <= GRID and len(np.unique(ys)) <= GRID else "binned trials"
    notes = "".join([f"; grey: never ({unreached:g})" if never.any() else "",
                     "; white: no trial" if not np.isfinite(grid).all() else ""])  # fmt: skip
    ax.set_title(f"{metric} over {x} and {y} ({len(ok)} trials, {cells}; best starred{notes})", fontsize=10)
    fig.tight_layout()
    return fig
