"""Tabular benchmarks made by jaxtune itself: one large sweep of a real task, looked up afterwards.

:func:`build_table` runs a space-filling sweep (a Halton sequence) of a built-in training task,
learning curves included, and saves the configurations' unit-cube coordinates and their
validation and test accuracy at every evaluated budget as a small ``.npz``. :func:`table_problem`
turns such a file into a jittable :class:`~jaxtune.bench.Problem`: a point is scored with the
*nearest recorded configuration* (Euclidean distance in the unit cube, each hyperparameter on its
own scale), so strategies compare on a real problem at lookup speed, a thousand seeds at once.
The lookup is coarse where the table is sparse; the recorded optimum is the table's best entry.

jaxtune ships ``mnist1d_mlp`` (2,048 configurations of the MNIST-1D MLP: learning rate, AdamW's
b1, weight decay and width; 500 steps, evaluated every 125); rebuild it, or build others, with
``python benchmarks/make_table.py``.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxtune.bench.problems import Problem, register_problem
from jaxtune.errors import MissingFileError
from jaxtune.space import Float, Int, Space

__all__ = ["TABLE_SPACE", "build_table", "table_problem", "width_front_problem", "mlp_params", "DATA"]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# The tuned hyperparameters of the shipped table (a learning rate on decades, a momentum-like b1
# on log(1 - b1), a weight decay on decades, a width on a log scale, masked: 6 programs in all).
TABLE_SPACE = Space(
    {
        "lr": Float(1e-4, 1.0, scale="log"),
        "b1": Float(0.5, 0.999, scale="reverse_log"),
        "wd": Float(1e-5, 1.0, scale="log"),
        "hidden": Int(16, 512, scale="log", masked=True),
    }
)


def build_table(
    path: str,
    *,
    task: str = "mnist1d_mlp",
    space: Space = TABLE_SPACE,
    configs: int = 2048,
    steps: int = 500,
    eval_every: int = 125,
    storage: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sweeps ``configs`` Halton points of ``space`` on built-in ``task`` and saves the table.

    With ``storage`` the sweep is stored as it runs (a killed build resumes). Returns the arrays
    written: ``unit[configs, dim]``, ``budgets[B]``, ``val_accuracy[configs, B]``,
    ``test_accuracy[configs]``, the space's description and the task's options.
    """
    import json

    from jaxtune import tasks
    from jaxtune.tune import tune

    options = {"steps": steps, "eval_every": eval_every}
    objective = tasks.get(task, **options).objective
    result = tune(objective, space, "halton", trials=configs, rounds=1, metric="val_accuracy", mode="max",
                     storage=storage, study=f"table_{task}", seed=seed, progress=True)  # fmt: skip
    budgets = sorted({s for points in result.curves.values() for s, _ in points})
    rows = sorted(result.trials, key=lambda t: t["slot"])
    val = np.full((len(rows), len(budgets)), np.nan, np.float32)
    for i, t in enumerate(rows):
        for s, m in result.curves.get((t["round"], t["slot"]), []):
            val[i, budgets.index(s)] = m.get("val_accuracy", np.nan)
    arrays = {
        "unit": np.asarray([t["unit"] for t in rows], np.float32),
        "budgets": np.asarray(budgets, np.int32),
        "val_accuracy": val,
        "test_accuracy": np.asarray([t["metrics"].get("test_accuracy", np.nan) for t in rows], np.float32),
        "space": np.asarray(json.dumps(space.describe())),
        "task": np.asarray(json.dumps({"name": task, **options})),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def table_problem(
    path: str, name: str | None = None, budget: int | None = None, fidelity: str | None = None
) -> Problem:
    """A :class:`Problem` that scores a point with the nearest configuration of the table at
    ``path``: minus its validation accuracy at ``budget`` steps (default: the largest).

    With ``fidelity`` (e.g. ``"steps"``) the problem is multi-fidelity: the space gains that
    integer hyperparameter over the table's budgets (log scale), and a point is scored at the
    recorded budget nearest to its value (for successive halving and Hyperband).
    """
    import json

    if not os.path.exists(path):
        raise MissingFileError(f"no table at {path!r}: build one with benchmarks/make_table.py")
    data = np.load(path)
    space = Space.from_description(json.loads(str(data["space"])))
    budgets = [int(b) for b in data["budgets"]]
    column = budgets.index(budget) if budget is not None else len(budgets) - 1
    values = np.nan_to_num(data["val_accuracy"], nan=0.0)  # a diverged run scores 0
    points = jnp.asarray(data["unit"])
    table = jnp.asarray(-values)
    label = name or os.path.splitext(os.path.basename(path))[0] + "_table"
    if fidelity is None:

        def fn(hp):
            u = space.to_unit(hp)
            return table[jnp.argmin(jnp.sum((points - u[None]) ** 2, axis=-1)), column]

        return Problem(label, space, fn, float(-values[:, column].max()))
    full = Space({**space.params, fidelity: Int(budgets[0], budgets[-1], scale="log", static=True)})
    steps = jnp.asarray(budgets, jnp.float32)

    def fn_mf(hp):
        u = space.to_unit({n: hp[n] for n in space.params})
        row = jnp.argmin(jnp.sum((points - u[None]) ** 2, axis=-1))
        return table[row, jnp.argmin(jnp.abs(steps - hp[fidelity]))]

    return Problem(label + "_mf", full, fn_mf, float(-values[:, -1].max()), fidelity=fidelity)


def mlp_params(hidden, features_in: int = 40, classes: int = 10, depth: int = 2):
    """The parameter count of the built-in MLP (``features_in -> hidden x depth -> classes``, with
    biases) of width ``hidden``.

    Examples:
      >>> mlp_params(100)  # the MNIST-1D paper's 40-100-100-10
      15210
    """
    return features_in * hidden + (depth - 1) * hidden * hidden + classes * hidden + depth * hidden + classes


def width_front_problem(path: str, name: str | None = None, width: str = "hidden") -> Problem:
    """A problem of two objectives from a table of the MLP with a tuned ``width``: the nearest
    configuration's validation error (1 - accuracy, at the largest budget) and its parameter
    count in thousands (:func:`mlp_params`), reference point (1, 1.1 x the widest's count).
    ``optimum`` is the hypervolume of the table's own front."""
    import json

    from jaxtune.pareto import hypervolume

    if not os.path.exists(path):
        raise MissingFileError(f"no table at {path!r}: build one with benchmarks/make_table.py")
    data = np.load(path)
    space = Space.from_description(json.loads(str(data["space"])))
    hidden = np.asarray(space.from_unit(jnp.asarray(data["unit"]))[width], np.float64)
    rows = np.stack([1.0 - np.nan_to_num(data["val_accuracy"][:, -1], nan=0.0), mlp_params(hidden) / 1e3], axis=1)
    reference = (1.0, 1.1 * mlp_params(space.params[width].high) / 1e3)
    points, table = jnp.asarray(data["unit"]), jnp.asarray(rows, jnp.float32)

    def fn(hp):
        u = space.to_unit(hp)
        return table[jnp.argmin(jnp.sum((points - u[None]) ** 2, axis=-1))]

    label = name or os.path.splitext(os.path.basename(path))[0] + "_width"
    return Problem(label, space, fn, hypervolume(rows, reference), objectives=2, reference=reference)


def register_shipped() -> None:
    """Registers the tabular benchmarks shipped with jaxtune: ``mnist1d_mlp_table``, its
    multi-fidelity form, and ``mnist1d_width_table`` (validation error vs parameter count)."""
    shipped = os.path.join(DATA, "mnist1d_mlp.npz")
    if os.path.exists(shipped):
        register_problem(table_problem(shipped, "mnist1d_mlp_table"))
        register_problem(table_problem(shipped, "mnist1d_mlp_table", fidelity="steps"))
        register_problem(width_front_problem(shipped, "mnist1d_width_table"))


def lookup_test_accuracy(path: str, hp: dict[str, Any]) -> float:
    """The test accuracy of the table's configuration nearest to ``hp``."""
    import json

    data = np.load(path)
    space = Space.from_description(json.loads(str(data["space"])))
    u = np.asarray(space.to_unit({k: jnp.asarray(v) for k, v in hp.items()}))
    return float(data["test_accuracy"][np.argmin(((data["unit"] - u[None]) ** 2).sum(-1))])
