"""Figures of a study (matplotlib, optional: ``pip install 'jaxtune[report]'``).

Each ``plot_*`` function draws one figure from a :class:`~jaxtune.Result` and returns it;
:func:`write_figures` saves all that apply as PNGs. Every hyperparameter is drawn on its own
scale, read from the stored space: a log axis for ``scale="log"`` (floats and ints), a ``1 - x``
axis for ``reverse_log`` (0.9, 0.99, 0.999 equally spaced) and a categorical axis for a
``Choice``; the box of every round (coarse-to-fine) is drawn under the points; names are drawn as typed.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from jaxtune.analysis import importance
from jaxtune.analysis.figures.axes import axis_kind, plain_text, pyplot, set_axis
from jaxtune.analysis.figures.landscape import plot_landscape
from jaxtune.analysis.figures.lineage import plot_lineage
from jaxtune.errors import InputError
from jaxtune.result import Result

COLUMNS = 3  # parameter panels per row: 5 parameters make 2 rows, not a 2400 px strip


def _rounds(result: Result):
    """(number of rounds, colormap, norm) with one colour per round."""
    import matplotlib as mpl

    n = max((t["round"] for t in result.trials), default=0) + 1
    cmap = mpl.colormaps["viridis"].resampled(max(n, 2))
    norm = mpl.colors.BoundaryNorm(np.arange(-0.5, max(n, 2) + 0.5), cmap.N)
    return n, cmap, norm


def _round_colorbar(fig, ax, result: Result) -> None:
    import matplotlib as mpl

    n, cmap, norm = _rounds(result)
    if n < 2:
        return  # one round: nothing to tell apart
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="round")
    step = max(1, math.ceil(n / 10))
    bar.set_ticks(range(0, max(n, 2), step))  # whole rounds only


def _title(result: Result) -> str:
    return f"study {result.study!r}: {result.metric} ({result.mode}), {len(result)} trials"


def round_boxes(result: Result) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The box in the unit cube of every round of a strategy whose state holds one (coarse-to-fine:
    replayed from the stored trials with the strategy's own ``tell``), or None for others."""
    import jax

    from jaxtune.space import Space
    from jaxtune.strategies.base import make_strategy, traits

    cfg = dict(result.config.get("strategy") or {})
    name = cfg.pop("name", None)
    if not traits(name)["has_box"] or "space" not in result.config:
        return None
    space, trials = Space.from_description(result.config["space"]), result.config["trials"]
    strategy = make_strategy(name, space, trials, **cfg)
    state = strategy.init(jax.random.key(0))  # its initial box is the whole cube, whatever the key
    boxes = [(np.asarray(state.lo), np.asarray(state.hi))]
    n = max((t["round"] for t in result.trials), default=-1) + 1
    for r in range(n - 1):
        rows = sorted((t for t in result.trials if t["round"] == r), key=lambda t: t["slot"])
        if len(rows) != trials:
            break  # an unfinished round (a timeout): later boxes are unknown
        u = np.asarray([t["unit"] for t in rows], np.float32)
        scores = np.asarray([result.score(t) for t in rows], np.float32)
        state = strategy.tell(state, u, scores)
        boxes.append((np.asarray(state.lo), np.asarray(state.hi)))
    return boxes


@plain_text
def plot_history(result: Result):
    """Every trial's value in the order it ran, coloured by round, with the best so far and the best trial."""
    plt = pyplot()
    _, cmap, norm = _rounds(result)
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = [(i, t) for i, t in enumerate(result.trials) if t["status"] == "ok"]
    if ok:
        ax.scatter(
            [i for i, _ in ok], [t["value"] for _, t in ok], c=[t["round"] for _, t in ok], cmap=cmap, norm=norm, s=14
        )
        sign = 1 if result.mode == "min" else -1
        best, running = math.inf, []
        for t in result.trials:
            if t["status"] == "ok":
                best = min(best, sign * t["value"])
            running.append(sign * best if math.isfinite(best) else np.nan)
        ax.step(range(len(running)), running, where="post", color="tab:red", lw=1.5, label="best so far")
        b = result.best
        i = result.trials.index(b)
        ax.scatter([i], [b["value"]], marker="*", s=220, color="tab:red", edgecolor="k", zorder=5, label="best trial")
        ax.legend(loc="best", fontsize=8)
    others = result.outcomes()  # infeasible, stopped early, exploited, diverged: no final value to draw
    ax.set_xlabel("trial (in the order run)" + (f"; not shown: {others}" if others else ""))
    ax.set_ylabel(result.metric)
    ax.set_title(_title(result), fontsize=10)
    _round_colorbar(fig, ax, result)
    fig.tight_layout()
    return fig


def _param(space: dict, name: str):
    """One hyperparameter of a stored space description, on its own (its condition dropped)."""
    from jaxtune.space import Space

    return Space.from_description({name: {k: v for k, v in space[name].items() if k != "when"}}).params[name]


@plain_text
def plot_parameters(result: Result):
    """The metric against each hyperparameter on its own scale, coloured by round; the best trial
    starred; coarse-to-fine's box of each round as a bar under the points."""
    plt = pyplot()
    names = result.param_names if result.trials else []
    if not names:
        raise InputError("plot_parameters: the study has no trials")
    n, cmap, norm = _rounds(result)
    rows = math.ceil(len(names) / COLUMNS)
    cols = min(len(names), COLUMNS)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 1, 3.3 * rows), squeeze=False)
    ok_all = [t for t in result.trials if t["status"] == "ok"]
    boxes = round_boxes(result)
    space = (result.config.get("space") or {}) if boxes else {}
    best = result.best
    for j, name in enumerate(names):
        ax = axes[j // cols, j % cols]
        ok = [t for t in ok_all if name in t["params"]]  # a conditional one: trials where it is active
        xs = [t["params"][name] for t in ok]
        kind = axis_kind(result, name, xs)
        choices = None
        if kind == "choice":
            desc = (result.config.get("space") or {}).get(name)
            choices = list(desc["values"]) if desc else sorted({str(x) for x in xs})
            lookup = {str(c): i for i, c in enumerate(choices)}

            def pos(t, name=name, lookup=lookup):  # a choice's index, jittered so points do not stack
                return lookup[str(t["params"][name])] + 0.25 * (((t["slot"] * 0.618 + t["round"] * 0.31) % 1) - 0.5)
        else:

            def pos(t, name=name):
                return t["params"][name]

        # Early rounds drawn last: later rounds cluster in a small box and would hide them.
        for t_round in sorted({t["round"] for t in ok}, reverse=True):
            part = [t for t in ok if t["round"] == t_round]
            ax.scatter([pos(t) for t in part], [t["value"] for t in part], color=cmap(norm(t_round)), s=12, alpha=0.8)
        if best is not None and name in best["params"]:
            ax.scatter([pos(best)], [best["value"]], marker="*", s=200, color="tab:red", edgecolor="k", zorder=5)
        if boxes and kind != "choice" and name in space:
            param = _param(space, name)
            j_unit = list(space).index(name)
            bottom, top = ax.get_ylim()
            room = 0.05 + 0.035 * min(len(boxes), n)  # lower the axis so the bars sit under the points
            ax.set_ylim((bottom - room * top) / (1 - room), top)
            # The strip under the data holds the bars, not values: no metric ticks there (a loss
            # axis must not seem to go below zero).
            low = min((t["value"] for t in ok), default=bottom)
            ax.set_yticks([v for v in ax.get_yticks() if low - 1e-9 * abs(low) <= v <= top])
            for r, (lo, hi) in enumerate(boxes[:n]):
                ends = np.asarray(param.from_unit(np.asarray([lo[j_unit], hi[j_unit]], np.float32)), float)
                ax.hlines(0.03 + 0.035 * r, ends[0], ends[1], transform=ax.get_xaxis_transform(),
                          color=cmap(norm(r)), lw=3, alpha=0.9)  # fmt: skip
        if xs:
            set_axis(ax, kind, xs, choices)
        ax.set_xlabel(name + ("  (1 - x scale)" if kind == "reverse_log" else ""))
        ax.set_ylabel(result.metric)
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    fig.suptitle(_title(result) + ("; bars: each round's search box" if boxes else ""), fontsize=10)
    fig.tight_layout()
    _round_colorbar(fig, axes, result)
    return fig


def _life_curve(result: Result, trial: dict) -> list:
    """A trial's learning curve over its whole life: a PBT copy's ancestors' points up to the step
    it copied them, then its own."""
    k = (trial["round"], trial["slot"])
    points = list(result.curves.get(k, []))
    while k in result.lineage:
        parent_r, parent_s, step = result.lineage[k]
        k = (parent_r, parent_s)
        points = [p for p in result.curves.get(k, []) if p[0] <= step and (not points or p[0] < points[0][0])] + points
    return points


@plain_text
def plot_curves(result: Result, top: int = 5):
    """Learning curves (the selection metric against the step) of the best ``top`` trials, or None
    when the study stored no curves."""
    ranked = [t for t in result.ranked() if (t["round"], t["slot"]) in result.curves]
    if result.lineage:  # PBT: the best trial of each lineage at mid-run, not near-clones of the winner
        mid = max(p[-1][0] for p in result.curves.values()) / 2
        best = {_ancestor_at(result, t, mid): t for t in ranked[::-1]}  # each lineage's best-ranked trial
        ranked = [t for t in ranked if best[_ancestor_at(result, t, mid)] is t]
    if not (ranked := ranked[:top]):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, t in enumerate(ranked):
        points = _life_curve(result, t)
        steps = [s for s, _ in points]
        ys = [m.get(result.metric, np.nan) for _, m in points]
        label = f"#{i + 1} (round {t['round']}, slot {t['slot']}): {t['value']:.4g}"
        ax.plot(steps, ys, marker="o", ms=3, lw=2.5 if i == 0 else 1.2, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(result.metric)
    lived = " of distinct lineages (each curve includes its ancestors')" if result.lineage else ""
    ax.set_title(f"learning curves of the best {len(ranked)} trials{lived}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _ancestor_at(result: Result, trial: dict, step: float) -> tuple[int, int]:
    key = (trial["round"], trial["slot"])  # the trial of its lineage that was training at `step`
    while key in result.lineage and result.lineage[key][2] > step:
        key = tuple(result.lineage[key][:2])
    return key


@plain_text
def plot_importance(imps: list[importance.Importance], title: str = "which hyperparameters mattered"):
    """Horizontal bars of importance with their intervals and directions."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(imps) + 1.4))
    def label(i):  # the direction beside the name: the share axis stays [0, 1]
        best = f"{i.best_at:.3g}" if isinstance(i.best_at, float) else str(i.best_at)
        return f"{i.name}\n({importance.direction_shown(i)}; best near {best})"

    names = [label(i) for i in imps][::-1]
    vals = np.asarray([i.value for i in imps][::-1])
    err = np.asarray([[i.value - i.low, i.high - i.value] for i in imps][::-1]).T
    ax.barh(names, vals, xerr=np.clip(err, 0, None), color="tab:blue", alpha=0.8, capsize=3)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("first-order share of the variance (90% bootstrap interval)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@plain_text
def plot_parallel(result: Result):
    """Parallel coordinates: each trial a line across the hyperparameters' unit-cube axes (their
    own scales), coloured by value; the best trial in red."""
    plt = pyplot()
    import matplotlib as mpl

    ok = [t for t in result.trials if t["status"] == "ok"]
    names = result.param_names
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 3, 4))
    if not ok:
        return fig
    vals = np.asarray([t["value"] for t in ok])
    norm = mpl.colors.Normalize(vals.min(), vals.max())
    cmap = mpl.colormaps["viridis" if result.mode == "max" else "viridis_r"]
    order = np.argsort(vals if result.mode == "max" else -vals)  # best drawn last, on top
    for i in order:
        ax.plot(range(len(names)), ok[i]["unit"], color=cmap(norm(vals[i])), alpha=0.5, lw=0.8)
    best = result.best
    if best is not None:
        ax.plot(range(len(names)), best["unit"], color="tab:red", lw=2.5, label="best trial")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.12))
    space = result.config.get("space") or {}
    for j, n in enumerate(names):
        ax.axvline(j, color="0.3", lw=0.8)
        if n in space:  # label the axis with the space's values at 0, 1/2 and 1
            param = _param(space, n)
            at = (
                (np.arange(len(space[n]["values"])) + 0.5) / len(space[n]["values"])
                if space[n]["type"] == "Choice"
                else np.asarray([0, 0.5, 1])
            )
            ends = [param.to_python(v) for v in np.asarray(param.from_unit(np.asarray(at, np.float32)))]
        else:  # an in-memory result without a stored space: the sampled extremes
            xs = sorted((t["unit"][j], t["params"][n]) for t in ok if n in t["params"]) or [(0, "-"), (1, "-")]
            at, ends = (0, 1), [xs[0][1], xs[-1][1]]
        for v, y in zip(ends, at):
            ax.text(j + 0.03, y, f"{v:.3g}" if isinstance(v, float) else str(v), va="center", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_title("parallel coordinates: each axis a hyperparameter on its own scale", fontsize=10)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=result.metric)
    fig.tight_layout()
    return fig


def write_figures(result: Result, folder: str | os.PathLike, imps: Any = None) -> dict[str, str]:
    """Saves every figure that applies to ``folder`` as PNG; returns ``{name: path}``."""
    plt = pyplot()
    os.makedirs(folder, exist_ok=True)
    figs = {"history": plot_history(result), "parameters": plot_parameters(result)}
    figs["curves"] = plot_curves(result)
    if imps:
        rounds = importance.uniform_rounds(result)
        which = "every round" if rounds is None else "round " + ", ".join(map(str, rounds))
        local = " — a zoomed region" if any(i.local for i in imps) else ""
        figs["importance"] = plot_importance(imps, f"which hyperparameters mattered ({which}{local})")
    figs["parallel"] = plot_parallel(result)
    pair = landscape_pair(result, imps)
    if pair is not None:
        figs["landscape"] = plot_landscape(result, *pair)
    figs["lineage"] = plot_lineage(result)
    figs["pareto"] = plot_pareto(result)
    out = {}
    for name, fig in figs.items():
        if fig is None:
            continue
        out[name] = os.path.join(os.fspath(folder), f"{name}.png")
        fig.savefig(out[name], dpi=100)
        plt.close(fig)
    return out


def landscape_pair(result: Result, imps: Any = None) -> tuple[str, str] | None:
    """The two numeric hyperparameters a report draws the landscape over (the two that mattered
    most, by ``imps``, else the first two), or None: fewer than two, or under 9 finished trials."""
    ok = [t for t in result.trials if t["status"] == "ok"]
    numeric = [n for n in result.param_names
               if axis_kind(result, n, [t["params"][n] for t in ok if n in t["params"]]) != "choice"]  # fmt: skip
    if len(numeric) < 2 or len(ok) < 9:
        return None
    if imps:
        ranked = [i.name for i in sorted(imps, key=lambda i: -i.value) if i.name in numeric]
        numeric = ranked + [n for n in numeric if n not in ranked]
    return numeric[0], numeric[1]


@plain_text
def plot_pareto(result: Result):
    """Several objectives: every finished trial on the first two, the Pareto front joined in red
    (None for a study of one objective)."""
    if len(result.objectives) < 2:
        return None
    (x_name, x_mode), (y_name, y_mode) = result.objectives[:2]
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    ok = [t for t in result.trials if t["status"] == "ok"]
    ax.scatter([t["metrics"][x_name] for t in ok], [t["metrics"][y_name] for t in ok], s=14, color="0.6",
               label=f"{len(ok)} trials")  # fmt: skip
    front = result.pareto
    xs, ys = [t["metrics"][x_name] for t in front], [t["metrics"][y_name] for t in front]
    ax.step(xs, ys, where="post", color="tab:red", lw=1.5)
    ax.scatter(xs, ys, s=28, color="tab:red", zorder=3, label=f"Pareto front ({len(front)})")
    ax.set(xlabel=f"{x_name} ({x_mode})", ylabel=f"{y_name} ({y_mode})")
    ax.set_title(f"{result.study!r}: the trade-off between {x_name} and {y_name}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
