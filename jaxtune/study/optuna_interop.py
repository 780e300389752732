"""Optuna studies both ways: a jaxtune study written as an Optuna study, so Optuna's tools
(optuna-dashboard, ``optuna.visualization``, ``optuna.importance``) open it (:func:`to_optuna`),
and an Optuna study read as a :class:`~jaxtune.Result`, e.g. to warm-start a jaxtune study from it
(:func:`from_optuna`).

Each trial becomes an Optuna trial: its parameters with their distributions (a log scale as
``log=True``; a reverse-log parameter, which Optuna cannot express, as a linear
``FloatDistribution`` over the same bounds: its values are exact, only a sampler's prior would
differ), its objective values (several objectives as directions), its learning curve of the
selection metric as intermediate values, its status (diverged: FAIL; stopped by a scheduler:
PRUNED; infeasible: COMPLETE with a violated constraint), and its round, slot, every metric, its
seeds and its lineage as user attributes.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

from jaxtune.errors import InputError, MissingDependencyError

__all__ = ["to_optuna", "from_optuna", "distributions"]  # from_optuna: what Result.from_optuna is made of


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError("writing an Optuna study needs optuna: pip install 'jaxtune[optuna]'") from e
    return optuna


def distributions(result) -> dict[str, Any]:
    """``{name: optuna distribution}`` of ``result``'s parameters, from its stored space (or, for a
    study stored without one, from the values its trials took)."""
    optuna = _optuna()
    dist = optuna.distributions
    described = (result.config.get("space") or {}) if hasattr(result, "config") else {}
    out = {}
    for name in result.param_names:
        d = described.get(name)
        values = [t["params"][name] for t in result.trials if name in t["params"]]
        if (d is not None and d["type"] == "Choice") or (d is None and not all(_number(v) for v in values)):
            out[name] = dist.CategoricalDistribution(list(d["values"]) if d else sorted(set(values), key=repr))
        elif d is not None and d["type"] == "Int":
            out[name] = dist.IntDistribution(int(d["low"]), int(d["high"]), log=d.get("scale") == "log")
        elif d is not None:
            out[name] = dist.FloatDistribution(float(d["low"]), float(d["high"]), log=d.get("scale") == "log")
        elif all(isinstance(v, int) for v in values):
            out[name] = dist.IntDistribution(min(values), max(values))
        else:
            out[name] = dist.FloatDistribution(float(min(values)), float(max(values)))
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _trial(optuna, result, t: dict, dists: dict, constrained: bool):
    """One stored trial as an Optuna ``FrozenTrial``."""
    state = {"ok": "COMPLETE", "infeasible": "COMPLETE", "diverged": "FAIL", "stopped": "PRUNED"}[t["status"]]
    values = [_finite(t["metrics"].get(n)) for n, _ in result.objectives]
    complete = state == "COMPLETE" and None not in values
    curve = result.curves.get((t["round"], t["slot"]), [])
    attrs = {"round": t["round"], "slot": t["slot"], "status": t["status"],
             "metrics": {k: _finite(v) for k, v in t["metrics"].items()}}  # fmt: skip
    if t.get("seeds"):
        attrs["seeds"] = [{k: _finite(v) for k, v in s.items()} for s in t["seeds"]]
    parent = result.lineage.get((t["round"], t["slot"]))
    if parent is not None:
        attrs["parent"] = {"round": parent[0], "slot": parent[1], "step": parent[2]}
    kwargs = dict(
        state=getattr(optuna.trial.TrialState, state if complete or state != "COMPLETE" else "FAIL"),
        params={n: v for n, v in t["params"].items() if n in dists},
        distributions={n: dists[n] for n in t["params"] if n in dists},
        user_attrs=attrs,
        intermediate_values={int(step): float(m[result.metric]) for step, m in curve
                             if _finite(m.get(result.metric)) is not None},  # fmt: skip
    )
    if complete:
        kwargs["values" if len(values) > 1 else "value"] = values if len(values) > 1 else values[0]
    if constrained:  # Optuna's convention: feasible when every constraint value is <= 0
        violation = [1.0 if t["status"] == "infeasible" else 0.0]
        if "constraints" in inspect.signature(optuna.trial.create_trial).parameters:
            kwargs["constraints"] = {"feasible": violation[0]}
        else:
            kwargs["system_attrs"] = {"constraints": violation}
    return optuna.trial.create_trial(**kwargs)


def to_optuna(result, storage: str, study_name: str | None = None):
    """Writes ``result`` into ``storage`` (an Optuna storage URL, e.g. ``"sqlite:///optuna.db"``)
    as the new study ``study_name`` (default: the jaxtune study's name); returns the Optuna study.

    Raises:
      MissingDependencyError: optuna is not installed.
      InputError: the URL does not parse or cannot be opened, or the study already exists there.
    """
    optuna = _optuna()
    if not isinstance(storage, str) or "://" not in storage:
        raise InputError(f"to_optuna: storage must be an Optuna storage URL such as 'sqlite:///optuna.db', "
                         f"got {storage!r}")  # fmt: skip
    name = study_name or result.study
    directions = ["minimize" if mode == "min" else "maximize" for _, mode in result.objectives]
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        raise InputError(f"to_optuna: {storage!r} already has a study named {name!r}; pick another study_name"
                         ) from None  # fmt: skip
    except Exception as e:  # a URL that does not parse, a database that cannot be opened: Optuna's own error
        raise InputError(f"to_optuna: cannot open the Optuna storage {storage!r}: {type(e).__name__}: {e}") from None
    dists = distributions(result)
    constrained = bool(result.config.get("constraints")) or any(t["status"] == "infeasible" for t in result.trials)
    study.set_user_attr("jaxtune", {"metric": result.metric, "mode": result.mode, "study": result.study,
                                    "objectives": [list(o) for o in result.objectives]})  # fmt: skip
    if hasattr(study, "set_metric_names"):  # optuna-dashboard and the plots label the axes with them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([n for n, _ in result.objectives])
    study.add_trials([_trial(optuna, result, t, dists, constrained) for t in result.trials])
    return study


def _space_of(distributions: dict) -> dict[str, dict[str, Any]]:
    """A space description (as ``Space.describe`` writes one) of Optuna distributions."""
    out = {}
    for name, d in distributions.items():
        kind = type(d).__name__
        if kind == "CategoricalDistribution":
            out[name] = {"type": "Choice", "values": list(d.choices), "static": False}
        else:
            out[name] = {"type": "Int" if kind == "IntDistribution" else "Float", "low": d.low, "high": d.high,
                         "scale": "log" if d.log else "linear", "static": False}  # fmt: skip
    return out


def from_optuna(study, metric: str | list[str] | None = None, study_name: str | None = None) -> dict[str, Any]:
    """An Optuna study (or a storage URL with ``study_name``) as the arguments of a
    :class:`~jaxtune.Result` (``Result(**from_optuna(...))``, what ``Result.from_optuna`` returns).

    Its objective values become metrics named ``metric`` (one name per objective; default: the
    names a study written by :func:`to_optuna` kept, else ``"value"``, or ``"value_0"``, ...).
    COMPLETE trials are ``"ok"`` (``"infeasible"`` with a violated constraint), FAIL ``"diverged"``,
    PRUNED ``"stopped"``; running and waiting trials are left out. Intermediate values become the
    first metric's learning curve; the space is read from the distributions.

    Raises:
      MissingDependencyError: optuna is not installed.
      InputError: ``metric`` does not name each objective, or the study cannot be loaded.
    """
    optuna = _optuna()
    if isinstance(study, str):
        try:
            study = optuna.load_study(study_name=study_name, storage=study)
        except Exception as e:  # no such study, a URL that does not parse: Optuna's own error
            raise InputError(f"from_optuna: cannot load study {study_name!r} from {study!r}: {e}") from None
    saved = study.user_attrs.get("jaxtune", {})
    directions = ["min" if d.name == "MINIMIZE" else "max" for d in study.directions]
    names = [metric] if isinstance(metric, str) else list(metric or [n for n, _ in saved.get("objectives", [])])
    if not names:
        names = ["value"] if len(directions) == 1 else [f"value_{i}" for i in range(len(directions))]
    if len(names) != len(directions):
        raise InputError(f"from_optuna: the study has {len(directions)} objective(s), metric names {names}")
    states = {"COMPLETE": "ok", "FAIL": "diverged", "PRUNED": "stopped"}
    trials, curves, dists = [], {}, {}
    for t in study.trials:
        if t.state.name not in states:
            continue
        values = t.values or [math.nan] * len(names)
        metrics = {**{k: v for k, v in t.user_attrs.get("metrics", {}).items() if v is not None},
                   **{n: float(v) for n, v in zip(names, values)}}  # fmt: skip
        status = states[t.state.name]
        if status == "ok" and any(c > 0 for c in (t.system_attrs.get("constraints") or [])):
            status = "infeasible"
        constraints = getattr(t, "constraints", None) or {}
        if status == "ok" and any(c > 0 for c in constraints.values()):
            status = "infeasible"
        slot = len(trials)
        trials.append({"round": 0, "slot": slot, "params": dict(t.params), "unit": [], "metrics": metrics,
                       "value": metrics[names[0]], "status": status, "seeds": ()})  # fmt: skip
        curves[(0, slot)] = [(int(step), {names[0]: float(v)}) for step, v in sorted(t.intermediate_values.items())]
        dists.update(t.distributions)
    config = {"metric": names[0], "mode": directions[0], "space": _space_of(dists),
              "objectives": [[n, m] for n, m in zip(names, directions)] if len(names) > 1 else []}  # fmt: skip
    return {"trials": trials, "metric": names[0], "mode": directions[0], "study": study.study_name, "curves": curves,
            "config": config}  # fmt: skip
