"""Reports from a :class:`~jaxtune.Result`: a text summary and, with matplotlib, a figure."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune.analysis import importance
from jaxtune.errors import InputError
from jaxtune.result import Result
from jaxtune.study.records import held_out

__all__ = ["summary", "table", "pareto_table", "plot", "html", "held_out", "metric_order", "schedule", "trained_steps"]


def _fmt(v) -> str:
    """A value for a table or a line: floats to 4 significant digits, whole counts (``n_params``
    10140.0) as integers rather than ``1.014e+04``."""
    if isinstance(v, float):
        if v.is_integer() and 1e4 <= abs(v) < 1e15:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)


def metric_order(result: Result, names: Sequence[str]) -> list[str]:
    """``names`` as tables show them: the selection metric, the other objectives, validation
    metrics, the rest (training metrics, costs), held-out metrics last; alphabetical within each."""
    objectives = [n for n, _ in result.objectives] or [result.metric]

    def key(n):
        group = (0 if n == result.metric else 1 if n in objectives else 4 if held_out(n)
                 else 2 if n.startswith("val") else 3)  # fmt: skip
        return group, n

    return sorted(dict.fromkeys(names), key=key)


def table_cells(
    result: Result, top: int | None = 10, metrics: Sequence[str] | None = None, show_test: bool = False
) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the ``top`` best trials (all with None) as text cells: rank, trial
    (``ROUND:SLOT``, as ``jaxtune export --trial`` takes it), params (a PBT trial's
    ``first→last``), metrics in :func:`metric_order` (with seeds, each one's mean ± its standard
    error over the trial's seeds, and the trial's aggregate value), status. Held-out metrics only
    with ``show_test``."""
    ranked = result.ranked()[:top]
    if not ranked:
        return [], []
    params = result.param_names
    names = metric_order(result, list(metrics) if metrics else [result.metric, *ranked[0]["metrics"]])
    names = [n for n in names if show_test or not held_out(n)]
    seeds = any(t["seeds"] for t in ranked)
    header = ["rank", "trial", *params, *names, *(["value", "seeds"] if seeds else []), "status"]

    def metric(t, m):
        text = _fmt(t["metrics"].get(m, float("nan")))
        if seeds and t["seeds"] and m in t["metrics"]:
            text += f" ± {result.seed_stats(t, m)['stderr']:.2g}"
        return text

    rows = [
        [
            str(i + 1),
            f"{t['round']}:{t['slot']}",  # ROUND:SLOT, as export --trial takes it
            *(_param_cell(result, t, p) for p in params),
            *(metric(t, m) for m in names),
            *([_fmt(t["value"]), str(len(t["seeds"]) or 1)] if seeds else []),
            t["status"],
        ]
        for i, t in enumerate(ranked)
    ]
    return header, rows


def table(result: Result, top: int = 10, metrics: Sequence[str] | None = None, show_test: bool = False) -> str:
    """The ``top`` best trials as an aligned text table (the cells of :func:`table_cells`)."""
    header, rows = table_cells(result, top, metrics, show_test)
    if not rows:
        return "(no trials)"
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def trained_steps(result: Result) -> int:
    """Optimizer steps the study trained in all, from its learning curves (a trial that continued
    another's state counts its own stretch only)."""
    total = 0
    for key, points in result.curves.items():
        parent = result.lineage.get(key)
        total += points[-1][0] - (parent[2] if parent else 0)
    return total


def schedule(result: Result, trial: dict[str, Any]) -> dict[str, list[tuple[int, Any]]]:
    """Each hyperparameter's values along ``trial``'s lineage, ``{name: [(from_step, value), ...]}``
    (one entry where it never changed; a PBT trial's schedule otherwise)."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for step, params in result.history(trial):
        for name, value in params.items():
            if name not in out or out[name][-1][1] != value:
                out.setdefault(name, []).append((step, value))
    return out


def _param_cell(result: Result, trial: dict[str, Any], name: str) -> str:
    """A table cell: the value, ``first→last`` when the trial's lineage changed it (PBT), ``-``
    where the parameter was inactive."""
    if name not in trial["params"]:
        return "-"
    values = schedule(result, trial).get(name, []) if result.lineage else []
    if len(values) > 1:
        return f"{_fmt(values[0][1])}→{_fmt(values[-1][1])}"
    return _fmt(trial["params"][name])


def pareto_table(result: Result) -> str:
    """The Pareto front of a study of several objectives, by its first objective, as a text table."""
    front = result.pareto
    names = [n for n, _ in result.objectives]
    done = sum(t["status"] == "ok" for t in result.trials)
    title = ", ".join(f"{n} ({m})" for n, m in result.objectives)
    if not front:
        return f"Pareto front over {title}: no finished trial yet"
    params = result.param_names
    header = ["trial", *params, *names]
    rows = [[f"{t['round']}:{t['slot']}", *(_fmt(t["params"][p]) if p in t["params"] else "-" for p in params),
             *(_fmt(t["metrics"][n]) for n in names)] for t in front]  # fmt: skip
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    lines = [f"Pareto front over {title}: {len(front)} of {done} finished trials"]
    lines += ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def summary(result: Result, top: int = 5, metrics: Sequence[str] | None = None, show_test: bool = False) -> str:
    """A short text report: counts, best-so-far per round, the top trials and the best one.
    Held-out (test) metrics are left out of the table unless ``show_test``; the selected trial's
    line gives them, apart."""
    best = result.best
    rounds = max((t["round"] for t in result.trials), default=-1) + 1
    infeasible = sum(t["status"] == "infeasible" for t in result.trials)
    out = [
        f"study {result.study!r}: {len(result)} trials in {rounds} round{'s' if rounds != 1 else ''}, "
        f"{result.num_diverged} diverged"
        + (f", {infeasible} infeasible ({'; '.join(result.config.get('constraints', []))})" if infeasible else "")
        + f"; selecting on {result.metric} ({result.mode})"
    ]
    budget = (result.config.get("strategy") or {}).get("budget_steps")
    if budget:
        used = trained_steps(result)
        out.append(f"trained {used:,} of a {budget:,}-step budget ({used / budget:.1%})")
    if result.storage:
        out.append(f"stored in {result.storage}")
    if result.stopped:
        out.append(f"stopped by {result.stopped} before its last round: rerun the same sweep to resume")
    # Rounds of a population are the segments its trials started at: no "best by round" there.
    curve = result.best_curve() if result.config.get("kind") != "population" else []
    if curve:
        out.append("best so far by round: " + ", ".join("-" if not math.isfinite(v) else f"{v:.4g}" for v in curve))
    rows = table(result, top, metrics, show_test)
    out.append(rows)
    if result.lineage and any("→" in line for line in rows.splitlines()[1:]):
        out.append("(a→b: a PBT trial's hyperparameters, first → last along its lineage)")
    hidden = [m for m in metric_order(result, best["metrics"] if best else []) if held_out(m)]
    if hidden and not show_test:
        names = ", ".join(hidden)
        out.append(f"(held-out {names} not in the table, so nobody selects on them: --show-test shows them)")
    if len(result.objectives) > 1:
        out.append(pareto_table(result))
    if best is None:
        others = result.outcomes()
        out.append(
            "no trial has finished yet: rerun to resume" if result.stopped and not others
            else f"no trial can be selected: none finished feasible and finite ({others or 'no trials'})"
        )
    else:
        out.append(_best_trial(result, best, metrics))
    imps = _importance(result)
    if imps:
        out.append(_importance_heading(result) + "\n" + importance.table(imps))
    elif (result.config.get("strategy") or {}).get("name") in ("pbt", "asha", "median") and len(result.trials) >= 8:
        out.append("(no hyperparameter importance: a population's trials continue or stop each other, so they are "
                   "not independent samples; measure it on a round-based sweep)")  # fmt: skip
    return "\n".join(out)


def _best_trial(result: Result, best: dict[str, Any], metrics: Sequence[str] | None) -> str:
    """The summary's lines on the selected trial: its values and metrics (held-out ones apart), its
    seeds, and a population trial's whole schedule."""
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
    shown = [m for m in metric_order(result, metrics or list(best["metrics"])) if m in best["metrics"]]
    mets = ", ".join(f"{m}={_fmt(best['metrics'][m])}" for m in shown if not held_out(m))
    if any(held_out(m) for m in shown):
        mets += "; held out: " + ", ".join(f"{m}={_fmt(best['metrics'][m])}" for m in shown if held_out(m))
    if best["seeds"]:
        s = result.seed_stats(best)
        how = result.config.get("aggregate", "mean")
        valued = "" if how == "mean" else f", {how} {_fmt(best['value'])}"  # the mean is said once
        mets += (f"\n  {result.metric} over {len(best['seeds'])} seeds: mean {_fmt(s['mean'])} "
                 f"± {s['stderr']:.2g}{valued}, each " + ", ".join(_fmt(v) for v in s["values"]))  # fmt: skip
    step = result.best_step(best) if result.select == "best_step" else None
    at = "" if step is None else f", at step {step}"
    changed = {n: v for n, v in schedule(result, best).items() if len(v) > 1} if result.lineage else {}
    which = "its last values " if changed else ""  # a population's trial: not only its last segment's values
    text = f"best trial (round {best['round']}, slot {best['slot']}{at}): {which}{params}\n  {mets}"
    if changed:
        steps = [f"{n} " + " → ".join(f"{s}: {_fmt(v)}" for s, v in values) for n, values in changed.items()]
        text += "\n  trained with (PBT schedule, from step: value): " + "; ".join(steps)
    return text


def _importance(result: Result) -> list[importance.Importance] | None:
    """The study's importances, or None where there are too few trials to say."""
    try:
        return importance.importance(result)
    except InputError:
        return None


def _importance_heading(result: Result) -> str:
    rounds = importance.uniform_rounds(result)
    which = "every round" if rounds is None else f"round{'s' if len(rounds) > 1 else ''} {', '.join(map(str, rounds))}"
    return f"which hyperparameters mattered (first-order share of the variance of {result.metric}'s rank; {which}):"


def plot(result: Result, path: str) -> str:
    """Saves the main figure (the metric against each hyperparameter on its own scale, rounds
    coloured, the best trial starred, coarse-to-fine's boxes drawn) as PNG; returns ``path``."""
    from jaxtune.analysis import figures

    plt = figures.pyplot()
    fig = figures.plot_parameters(result)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; cursor: pointer; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; }}
</style></head><body>
<h1>{title}</h1>
<pre>{summary}</pre>
{sections}
<script>
// Click a column header to sort the trials table by it.
document.querySelectorAll("table.sortable th").forEach((th, col) => {{
  th.addEventListener("click", () => {{
    const body = th.closest("table").tBodies[0];
    const rows = Array.from(body.rows);
    const key = (r) => {{ const v = r.cells[col].textContent; const x = parseFloat(v); return isNaN(x) ? v : x; }};
    const asc = th.dataset.order !== "asc";
    rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
    th.dataset.order = asc ? "asc" : "desc";
    rows.forEach((r) => body.appendChild(r));
  }});
}});
document.body.dataset.ready = "1";
</script>
</body></html>
"""

_CAPTIONS = {
    "history": "Optimisation history: every trial in the order it ran, coloured by round; the best so far in red.",
    "parameters": "The metric against each hyperparameter on its own scale; bars under the points: each round's box.",
    "importance": "Which hyperparameters mattered: first-order share of the variance, 90% bootstrap intervals.",
    "curves": "Learning curves of the best trials.",
    "parallel": "Parallel coordinates of every trial; the best in red.",
    "landscape": "The metric over the two hyperparameters that mattered most, on their own scales (a cell: its best).",
    "lineage": "Population-based training: each member's value over its life, and who copied whom.",
    "pareto": "Several objectives: every finished trial on the first two; the Pareto front in red.",
}


def html(result: Result, folder: str, top: int | None = None, show_test: bool = False, page: str = "index.html") -> str:
    """Writes the study's figures (PNG) and one self-contained HTML page (figures embedded) named
    ``page`` to ``folder``: its sortable table holds the ``top`` best trials (default all), columns
    as in the text table (held-out metrics only with ``show_test``). Returns the page's path."""
    import base64
    import html as escape

    from jaxtune.analysis import figures

    imps = _importance(result)
    paths = figures.write_figures(result, folder, imps)
    sections = []
    for name, path in paths.items():
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        sections.append(
            f"<h2>{name}</h2><p>{escape.escape(_CAPTIONS[name])}</p>"
            f'<img alt="{name}" src="data:image/png;base64,{data}">'
        )
    header, rows = table_cells(result, top, show_test=show_test)
    if rows:
        head = "".join(f"<th>{escape.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{escape.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        which = f"all {len(rows)}" if len(rows) == len(result) else f"best {len(rows)}"
        sections.insert(0, f'<h2>{which} trials</h2><table class="sortable"><thead><tr>{head}</tr></thead>'
                           f"<tbody>{body}</tbody></table>")  # fmt: skip
    page = os.path.join(folder, page)
    title = f"jaxtune study {result.study!r}: {result.metric} ({result.mode}), {len(result)} trials"
    with open(page, "w", encoding="utf-8") as f:
        f.write(
            _PAGE.format(
                title=escape.escape(title),
                summary=escape.escape(summary(result, show_test=show_test)),
                sections="\n".join(sections),
            )
        )
    return page


def babysit_report(path: str, study: str | None = None, folder: str | None = None) -> str:
    """A stored babysitting run as text (its tree and the learning curve along its current
    path); with ``folder``, also its figure and an HTML page there. Returns the text."""
    import html as escape

    from jaxtune.study import nodes as node_tree
    from jaxtune.study.storage import Storage

    store = Storage(path, read_only=True)
    try:
        names = [n for n in store.study_names() if (store.study_config(n) or {}).get("kind") == "babysit"]
        if study is None:
            if len(names) != 1:
                raise InputError(f"{path!r} holds babysitting runs {names}; pass --study NAME to pick one")
            study = names[0]
        config = store.study_config(study)
        nodes, head = node_tree.read(store, store.study_id(study))
    finally:
        store.close()
    metric = config["metric"]
    lines = [f"babysitting run {study!r} in {path}: {len(nodes)} nodes, head #{head} at step {nodes[head]['step']}"]
    lines.append(render_tree(nodes, head, metric))
    text = "\n".join(lines)
    if folder is not None:
        import base64

        from jaxtune.analysis import figures

        plt = figures.pyplot()
        os.makedirs(folder, exist_ok=True)
        png = os.path.join(folder, "babysit.png")
        fig = figures.plain_text(_plot_babysit)(nodes, head, metric, study)
        fig.savefig(png, dpi=100)
        plt.close(fig)
        with open(png, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        section = f'<h2>learning curve</h2><img alt="babysit" src="data:image/png;base64,{data}">'
        page = os.path.join(folder, "index.html")
        with open(page, "w", encoding="utf-8") as f:
            title = escape.escape(f"jaxtune babysitting run {study!r}")
            f.write(_PAGE.format(title=title, summary=escape.escape(text), sections=section))
    return text


def render_tree(nodes: Sequence[Mapping[str, Any]], head: int | None, metric: str) -> str:
    """A babysitting run's nodes (as :meth:`Storage.nodes` returns them) as an indented tree."""
    if not nodes:
        return "(no nodes)"
    children: dict[int | None, list[int]] = {}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n["id"])
    lines = []
    stack = [(0, "", "")]  # (node, prefix of its line, prefix of its descendants' lines)
    while stack:
        i, first, rest = stack.pop()
        n = nodes[i]
        m = n["metrics"].get(metric)
        value = "" if m is None else f"  {metric}={m:.4g}"
        lines.append(f"{'*' if i == head else ' '} {first}#{i} step {n['step']}: {n['event']}{value}")
        kids = children.get(i, [])
        if len(kids) == 1:
            stack.append((kids[0], rest, rest))
        else:
            for k, c in reversed(list(enumerate(kids))):
                last = k == len(kids) - 1
                stack.append((c, rest + ("└─ " if last else "├─ "), rest + ("   " if last else "│  ")))
    return "\n".join(lines)


def fmt(v: Any) -> str:
    """A hyperparameter value, short: 4 significant digits, floats always look like floats (1.0)."""
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.4g}"
    return text if any(c in text for c in ".einf") else text + ".0"


def _plot_babysit(nodes, head: int, metric: str, name: str = "babysit"):
    """A babysitting run: ``metric`` along every branch of its tree (grey), the path to the head
    in red, and each edit (set, fork, rollback, adopt) marked at its step."""
    from jaxtune.analysis import figures

    fig, ax = figures.pyplot().subplots(figsize=(8, 4.5))

    def checkpoint(i):
        while i is not None and not nodes[i]["has_state"]:
            i = nodes[i]["parent"]
        return i

    on_path, i = set(), head
    while i is not None:
        on_path.add(i)
        i = nodes[i]["parent"]
    for n in nodes:
        if not n["has_state"] or n["parent"] is None or metric not in n["metrics"]:
            continue
        p = checkpoint(n["parent"])
        xs, ys = [nodes[p]["step"], n["step"]], [nodes[p]["metrics"].get(metric, math.nan), n["metrics"][metric]]
        on = n["id"] in on_path
        ax.plot(xs, ys, marker="o", ms=3, **({"color": "tab:red", "lw": 2.2, "zorder": 3} if on else
                                             {"color": "0.6", "lw": 1.0, "zorder": 2}))  # fmt: skip
    stacked: dict[int, int] = {}  # events at the same step: labels stacked, not overprinted
    for n in nodes:
        if n["event"] not in ("train", "start") and metric in n["metrics"]:
            k = stacked[n["step"]] = stacked.get(n["step"], -1) + 1
            colour = "tab:red" if n["id"] in on_path else "0.35"
            ax.scatter([n["step"]], [n["metrics"][metric]], marker="v", s=30, color=colour, zorder=4)
            ax.annotate(n["event"], (n["step"], n["metrics"][metric]), textcoords="offset points",
                        xytext=(5, -14 - 10 * k), fontsize=7, color=colour)  # fmt: skip
    ax.set(xlabel="training step", ylabel=metric)
    ax.set_title(f"babysitting run {name!r}: {metric} along every branch; the current path in red", fontsize=10)
    fig.tight_layout()
    return fig
