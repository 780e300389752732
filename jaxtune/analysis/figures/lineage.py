"""PBT's lineage: every explored hyperparameter of every member over the steps it trained."""

from __future__ import annotations

from collections.abc import Sequence

from jaxtune.analysis.figures.axes import axis_kind, plain_text, pyplot, set_axis
from jaxtune.result import Result

MAX_PANELS = 6  # hyperparameters drawn, one panel each


def _spans(result: Result) -> dict[tuple[int, int], tuple[float, float]]:
    """Each trial's ``(first, last)`` training step: from the step it was made (0, or where it
    copied its parent) to its last curve point."""
    out = {}
    for t in result.trials:
        k = (t["round"], t["slot"])
        start = result.lineage[k][2] if k in result.lineage else 0
        out[k] = (start, max((s for s, _ in result.curves.get(k, [])), default=start))
    return out


def _winner_path(result: Result, spans: dict) -> list[tuple[tuple[int, int], float, float]]:
    """The selected trial and its ancestors, each up to the step its descendant copied it:
    ``[(key, from, to), ...]``, newest first."""
    best, path = result.best, []
    if best is None:
        return path
    k, until = (best["round"], best["slot"]), None
    while k in spans:
        start, end = spans[k]
        path.append((k, start, end if until is None else until))
        if k not in result.lineage:
            break
        k, until = tuple(result.lineage[k][:2]), start
    return path


def _panel(ax, result: Result, name: str, spans: dict, path: list) -> None:
    """One hyperparameter: every trial a segment at its value, the copies dotted, the winner red."""
    value = {(t["round"], t["slot"]): t["params"].get(name) for t in result.trials}
    value = {k: v for k, v in value.items() if v is not None}
    for k, v in value.items():
        ax.plot(spans[k], [v, v], color="0.6", lw=1)
    for k, (parent_r, parent_s, step) in result.lineage.items():
        if (parent_r, parent_s) in value and k in value:
            ax.plot([step, step], [value[(parent_r, parent_s)], value[k]], color="0.75", lw=0.6, ls=":")
    for i, (k, start, end) in enumerate(path):
        if k not in value:
            continue
        ax.plot([start, end], [value[k]] * 2, color="tab:red", lw=2.5)
        if i + 1 < len(path) and path[i + 1][0] in value:
            ax.plot([start, start], [value[path[i + 1][0]], value[k]], color="tab:red", lw=1.2, ls=":")
    ys = list(value.values())
    if ys:
        set_axis(ax, axis_kind(result, name, ys), ys, axis="y")
    ax.set_ylabel(name)


@plain_text
def plot_lineage(result: Result, params: Sequence[str] | None = None):
    """PBT's lineage: one panel per hyperparameter (``params``, default: the study's first
    ``MAX_PANELS``), each on its own scale, with every trial a segment at its value over the steps
    it trained (the step axis starts at 0), dotted jumps where a trial copied another, the winner's
    path in red. None when the study has no lineage."""
    if not result.lineage:
        return None
    names = list(params if params is not None else result.param_names[:MAX_PANELS])
    fig, axes = pyplot().subplots(len(names), 1, figsize=(8, 1.2 + 1.9 * len(names)), sharex=True, squeeze=False)
    spans = _spans(result)
    path = _winner_path(result, spans)
    for ax, name in zip(axes[:, 0], names):
        _panel(ax, result, name, spans, path)
    axes[-1, 0].set_xlim(left=0)
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title("lineage: every member's hyperparameters over its life; the winner's path in red", fontsize=10)
    fig.tight_layout()
    return fig
