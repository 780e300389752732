"""Reports from a :class:`~jaxtune.Result`: a text summary and, with matplotlib, a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jaxtune.errors import MissingDependencyError
from jaxtune.result import Result

__all__ = ["summary", "table", "plot"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(result: Result, top: int = 10, metrics: Sequence[str] | None = None) -> str:
    """The ``top`` best trials as an aligned text table (params, then metrics)."""
    ranked = result.ranked()[:top]
    if not ranked:
        return "(no trials)"
    params = list(ranked[0]["params"])
    names = list(metrics) if metrics else [result.metric] + [m for m in ranked[0]["metrics"] if m != result.metric]
    header = ["rank", "round", *params, *names, "status"]
    rows = [
        [
            str(i + 1),
            str(t["round"]),
            *(_fmt(t["params"][p]) for p in params),
            *(_fmt(t["metrics"].get(m, float("nan"))) for m in names),
            t["status"],
        ]
        for i, t in enumerate(ranked)
    ]
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def summary(result: Result, top: int = 5, metrics: Sequence[str] | None = None) -> str:
    """A short text report: counts, best-so-far per round, the top trials and the best one."""
    best = result.best
    rounds = max((t["round"] for t in result.trials), default=-1) + 1
    out = [
        f"study {result.study!r}: {len(result)} trials in {rounds} rounds, {result.num_diverged} diverged; "
        f"selecting on {result.metric} ({result.mode})"
    ]
    if result.storage:
        out.append(f"stored in {result.storage}")
    if result.stopped:
        out.append(f"stopped by {result.stopped} before its last round: rerun the same sweep to resume")
    curve = result.best_curve()
    if curve:
        out.append("best so far by round: " + ", ".join("-" if not math.isfinite(v) else f"{v:.4g}" for v in curve))
    out.append(table(result, top, metrics))
    if best is None:
        out.append("no trial finished without diverging")
    else:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        shown = metrics or list(best["metrics"])
        mets = ", ".join(f"{m}={_fmt(best['metrics'][m])}" for m in shown if m in best["metrics"])
        step = result.best_step(best) if result.select == "best_step" else None
        at = "" if step is None else f", at step {step}"
        out.append(f"best trial (round {best['round']}, slot {best['slot']}{at}): {params}\n  {mets}")
    return "\n".join(out)


_REVERSE_LOG_TICKS = (0.5, 0.8, 0.9, 0.99, 0.999, 0.9999)


def _reverse_log(x):
    return -np.log10(np.clip(1.0 - np.asarray(x, float), 1e-12, None))


def _reverse_log_inverse(y):
    return 1.0 - 10.0 ** -np.asarray(y, float)


def _axis_scale(xs: Sequence[float]) -> str:
    """How to draw a parameter's axis: ``"log"`` for values over decades, ``"reverse_log"`` for
    values below 1 whose distance to 1 spans a decade (momentum-like), else ``"linear"``."""
    lo, hi = min(xs), max(xs)
    if lo > 0 and hi / lo > 50:
        return "log"
    if 0 <= lo and hi < 1 and (1 - lo) / (1 - hi) > 10:
        return "reverse_log"
    return "linear"


def plot(result: Result, path: str) -> str:
    """Saves a figure: best-so-far by round, and the selection metric against each parameter."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependencyError("plots need matplotlib: pip install 'jaxtune[report]'") from e
    ok = [t for t in result.trials if t["status"] == "ok"]
    params = list(result.trials[0]["params"]) if result.trials else []
    fig, axes = plt.subplots(1, 1 + len(params), figsize=(4 * (1 + len(params)), 3.5), squeeze=False)
    ax = axes[0, 0]
    curve = result.best_curve()
    ax.plot(range(len(curve)), curve, marker="o")  # rounds count from 0, as in the tables
    ax.set_xlabel("round")
    ax.set_ylabel(f"best {result.metric}")
    for ax, p in zip(axes[0, 1:], params):
        xs = [t["params"][p] for t in ok]
        ys = [t["value"] for t in ok]
        if xs and all(isinstance(x, (int, float)) for x in xs):
            ax.scatter(xs, ys, c=[t["round"] for t in ok], s=10, cmap="viridis")
            scale = _axis_scale(xs)
            if scale == "log":
                ax.set_xscale("log")
            elif scale == "reverse_log":  # momentum-like: 0.9, 0.99, 0.999 equally spaced
                ax.set_xscale("function", functions=(_reverse_log, _reverse_log_inverse))
                span = _reverse_log([min(xs), max(xs)])
                ticks = [t for t in _REVERSE_LOG_TICKS if span[0] - 0.15 <= _reverse_log(t) <= span[1] + 0.15]
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(p)
        ax.set_ylabel(result.metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
