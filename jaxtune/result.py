"""The result of a sweep: every trial, the best one, and exports."""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune.errors import InputError, InputTypeError, MissingDependencyError
from jaxtune.study.records import MODES, SELECT, minimised, select_value, tie_break_spec

__all__ = ["Result"]

class _Curves(dict):
    """``{(round, slot): [(step, metrics), ...]}``; a trial without a curve is a clear KeyError."""

    def __missing__(self, key):
        raise KeyError(
            f"no learning curve for trial {key!r}: "
            + ("the objective records none (jt.train.Trainer records them with eval_every=N)" if not self else
               f"curves are keyed (round, slot), e.g. {next(iter(self))!r}")
        )  # fmt: skip


class Result:
    """All trials of a study, with the selection metric and direction.

    Each trial is a dict with ``round``, ``slot`` (lane in its round), ``params`` (plain Python
    values), ``unit`` (unit-cube coordinates), ``metrics``, ``status`` (``"ok"`` or
    ``"diverged"``) and ``value`` (the selection metric).

    Args:
      trials: the trials, any order.
      metric: name of the selection metric.
      mode: ``"min"`` or ``"max"``.
      study: the study's name.
      storage: path of the database it came from, if any.
      curves: optional learning curves ``{(round, slot): [(step, metrics), ...]}``.
      tie_break: a second metric that orders trials with equal selection values: a name (lower is
        better, e.g. ``"val_loss"`` among trials of equal ``val_accuracy``) or ``(name, "max")``.
      select: how each trial's ``value`` was read: ``"final"`` evaluation or ``"best_step"``
        of its learning curve (see :func:`jaxtune.tune`).
      stopped: why the sweep stopped before its last round (``"timeout"``), or None (also as
        stored: :meth:`load` reads how the study's last run ended).
      lineage: ``{(round, slot): (parent_round, parent_slot, step)}``: trials that continued
        another trial's state from that step (PBT's exploits).
      config: the study's configuration (seed, trials, strategy, ...) as stored.

    ``timing`` (set by :func:`jaxtune.tune`, None for a loaded study) splits the call's wall time:
    ``{"wall_s", "trials_s" (compiled trial programs), "compile_s", "host_s" (storage, strategy,
    transfers, Python), "host_share"}``.
    """

    def __init__(
        self,
        trials: Sequence[dict[str, Any]],
        metric: str,
        mode: str = "min",
        *,
        study: str = "default",
        storage: str | None = None,
        curves: dict[tuple[int, int], list] | None = None,
        tie_break: str | tuple[str, str] | None = None,
        select: str = "final",
        stopped: str | None = None,
        lineage: dict[tuple[int, int], tuple[int, int, int]] | None = None,
        config: dict[str, Any] | None = None,
    ):
        if mode not in MODES:
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}")
        if select not in SELECT:
            raise InputError(f"select must be one of {SELECT}, got {select!r}")
        self.trials = sorted(trials, key=lambda t: (t["round"], t["slot"]))
        self.metric = metric
        self.mode = mode
        self.study = study
        self.storage = storage
        self.curves = _Curves(curves or {})
        self.tie_break = tie_break_spec(tie_break)
        self.select = select
        self.stopped = stopped
        self.lineage = lineage or {}
        self.config = config or {}
        self.timing: dict[str, float] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, study: str | None = None) -> Result:
        """Reads a stored study back (the only study in the file if ``study`` is None)."""
        from jaxtune.study.storage import Storage

        store = Storage(path, read_only=True)  # a read: nothing is written, not even WAL mode
        try:
            names = store.study_names()
            if study is None:
                if len(names) != 1:
                    raise InputError(f"{os.fspath(path)!r} holds studies {names}; pass study=NAME "
                                     "(--study NAME on the command line) to pick one")
                study = names[0]
            sid = store.study_id(study)
            config = store.study_config(study)
            end = store.end(sid)
            return cls(
                store.trials(sid),
                config["metric"],
                config["mode"],
                study=study,
                storage=os.fspath(path),
                curves=store.curves(sid),
                tie_break=config.get("tie_break"),
                select=config.get("select", "final"),
                lineage=store.lineage(sid),
                config=config,
                stopped=None if end is None or end[0] == "finished" else end[0],
            )
        finally:
            store.close()

    def score(self, t: dict[str, Any]) -> float:
        """What the sweep minimised for trial ``t``: its value (negated for ``mode="max"``), +inf
        unless it finished ``"ok"``."""
        return minimised(t["value"], self.mode, t["status"] == "ok")

    def _key(self, t: dict[str, Any]) -> tuple[float, float, float]:
        second = math.inf
        if self.tie_break is not None:
            name, mode = self.tie_break
            second = minimised(t["metrics"].get(name), mode)
        # Trials stopped early (halving, ASHA) rank after every complete one, by their own value.
        early = minimised(t["value"], self.mode) if t["status"] == "stopped" else math.inf
        return self.score(t), second, early

    def ranked(self) -> list[dict[str, Any]]:
        """Trials from best to worst (equal values ordered by ``tie_break``, then by round and slot);
        then trials stopped early (halving, ASHA), by the value they reached; diverged trials last."""
        return sorted(self.trials, key=self._key)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best finished trial (never a diverged one), or None if there is none.

        Its ``value`` is its final evaluation, or the best point of its learning curve for a sweep
        run with ``select="best_step"`` (then :meth:`best_step` says at which step).
        """
        ok = [t for t in self.trials if math.isfinite(self.score(t))]
        return min(ok, key=self._key) if ok else None

    def history(self, trial: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """The hyperparameters ``trial`` trained with, as ``[(from_step, params), ...]``: its own
        values and those of every ancestor whose state it continued (a PBT schedule), oldest first."""
        out, key = [], (trial["round"], trial["slot"])
        by_key = {(t["round"], t["slot"]): t for t in self.trials}
        while key in by_key:
            parent = self.lineage.get(key)
            out.append((0 if parent is None else parent[2], by_key[key]["params"]))
            if parent is None:
                break
            key = parent[:2]
        return out[::-1]

    def trial_key(self, trial: dict[str, Any], seed: int = 0) -> Any:
        """The PRNG key ``trial`` was trained with (recomputed from the study's seed, its round and
        slot); with ``jt.tune(seeds=K)``, the key of its training seed ``seed`` (0 … K-1)."""
        from jaxtune.keys import seed_keys, trial_key

        if "seed" not in self.config:
            raise InputError("this Result has no study configuration (seed): load it with jt.Result.load")
        kind = self.config.get("kind", "rounds")
        key = trial_key(self.config["seed"], kind, trial["round"], trial["slot"], self.config["trials"])
        seeds = self.config.get("seeds", 1)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < seeds:
            raise InputError(f"seed must be an int in [0, {seeds - 1}] (the study trained {seeds} seeds), got {seed!r}")
        return key if seed == 0 else seed_keys(key[None], seeds)[seed]

    def replay(
        self,
        objective: Any,
        trial: dict[str, Any] | None = None,
        step: int | None = None,
        *,
        exact: bool = True,
        return_metrics: bool = False,
        seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
    ) -> Any:
        """Trains ``trial`` (default: the best) again and returns its state at ``step`` (default:
        the step its value was read at: the last, or with ``select="best_step"`` its best
        checkpoint); with ``return_metrics``, ``(state, metrics)``: its evaluation there.

        ``objective`` is the one the sweep ran (it must implement the stateful trial protocol,
        as ``jt.train.Trainer`` does). A trial that continued another's state (PBT) is replayed
        along its lineage: each ancestor's hyperparameters for its stretch of steps, each copy
        reseeded with its own key, as the population did. ``objective.model_of(hp, state)`` (the
        Trainer's) turns the state into a ready model.

        A population's trial (PBT, ASHA, median stopping) is replayed by the programs the
        population ran, at its width, so its metrics come back bit for bit on the same kind and
        number of devices; that costs what training the whole population that far cost.
        ``exact=False`` trains it alone: cheap, equal up to float32 rounding, which grows with
        the steps (see :mod:`jaxtune.replay`). Trials of round sweeps and halving are replayed alone.
        A study trained with ``seeds=K`` replays the trial's training seed ``seed`` (its metrics:
        ``trial["seeds"][seed]``). ``checkpoint=PATH`` also writes the trained model's
        ``nnx.state`` there as an Orbax checkpoint (:mod:`jaxtune.study.orbax_export`).
        """
        from jaxtune.execute.population import supports_protocol
        from jaxtune.replay import lineage_chain, replay_trial

        if not supports_protocol(objective):
            raise InputTypeError(
                "replay trains a trial again and returns its state: the objective must implement init(hp, key), "
                f"train(hp, state, steps) and evaluate_state(hp, state), as jt.train.Trainer does; got {objective!r} "
                "(a plain objective(hp, key) returns metrics, no state: call it with the trial's hp and "
                "result.trial_key(trial))"
            )
        trial = self.best if trial is None else trial
        if trial is None:
            raise InputError("replay: the study has no finished trial")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise InputError(f"replay: step must be an int >= 0 or None, got {step!r}")
        chain = lineage_chain(self.trials, self.lineage, trial)
        if "space" not in self.config:
            raise InputError("replay: this Result has no study configuration (space): load it with jt.Result.load")
        fidelity = self.config.get("strategy", {}).get("fidelity")
        last_step = step if step is not None else self.best_step(trial) if self.select == "best_step" else None
        if last_step is None:
            last_step = max((s for s, _ in self.curves.get((trial["round"], trial["slot"]), [])), default=None)
        if last_step is None:
            last_step = trial["params"].get(fidelity) or getattr(objective, "steps", None)
        self.trial_key(trial, seed)  # a seed the study did not train is refused here
        key_of = functools.partial(self.trial_key, seed=seed)
        state, metrics = replay_trial(objective, self.config, chain, last_step, key_of, exact)
        if checkpoint is not None:
            from jaxtune.study.orbax_export import model_state, save_orbax

            save_orbax(checkpoint, model_state(objective, trial["params"], state))
        if not return_metrics:
            return state
        return state, {n: float(v) for n, v in metrics.items()}

    def best_step(self, trial: dict[str, Any]) -> int | None:
        """The training step whose evaluation gave ``trial`` its value (None: the final evaluation,
        or a trial without a learning curve)."""
        points = self.curves.get((trial["round"], trial["slot"]))
        if not points:
            return None
        curve = [m.get(self.metric, math.nan) for _, m in points]
        final = trial["metrics"].get(self.metric, math.nan)
        _, i = select_value(final, curve, self.mode, self.select)
        return points[-1][0] if i is None else points[i][0]

    @property
    def param_names(self) -> list[str]:
        """The hyperparameters' names in the space's order (a conditional one is absent from the
        ``params`` of trials where it was inactive, so no single trial need have them all)."""
        names = list(self.config.get("space") or {})
        for t in self.trials:
            names += [n for n in t["params"] if n not in names]
        return names

    def seed_stats(self, trial: dict[str, Any], metric: str | None = None) -> dict[str, Any]:
        """``{"mean", "stderr", "values"}`` of ``metric`` (default: the selection metric) over the
        seeds ``trial`` was trained under (``jt.tune(seeds=K)``; one seed: its value, stderr 0)."""
        import numpy as np

        if not isinstance(trial, Mapping) or not isinstance(trial.get("metrics"), Mapping):
            raise InputTypeError(f"seed_stats: trial must be one of the study's trials (result.best), got {trial!r}")
        metric = metric or self.metric
        if not isinstance(metric, str) or metric not in trial["metrics"]:
            raise InputError(f"seed_stats: metric must be one of the trial's metrics {sorted(trial['metrics'])}, "
                             f"got {metric!r}")  # fmt: skip
        values = [s[metric] for s in trial.get("seeds", ())] or [trial["metrics"][metric]]
        v = np.asarray(values, np.float64)
        stderr = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
        return {"mean": float(np.mean(v)), "stderr": stderr, "values": [float(x) for x in v]}

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """``[(metric, mode), ...]``: the study's objectives (one: its metric and mode)."""
        return [tuple(o) for o in self.config.get("objectives", [])] or [(self.metric, self.mode)]

    @property
    def pareto(self) -> list[dict[str, Any]]:
        """The Pareto front over :attr:`objectives`: the finished, feasible trials that no other
        is at least as good as on every objective and better on one, by the first objective
        (with one objective: the best trial). Of trials with equal objectives, the first to run."""
        import numpy as np

        from jaxtune.pareto import non_dominated

        ok = [t for t in self.trials if t["status"] == "ok"]
        if not ok:
            return []
        points = np.asarray([[minimised(t["metrics"].get(n), m) for n, m in self.objectives] for t in ok])
        front, seen = [], set()
        for t, p, on in zip(ok, map(tuple, points), non_dominated(points)):  # ok is in (round, slot) order
            if on and p not in seen:
                front.append(t)
                seen.add(p)
        name, mode = self.objectives[0]
        return sorted(front, key=lambda t: (minimised(t["metrics"][name], mode), t["round"], t["slot"]))

    @property
    def num_diverged(self) -> int:
        """How many trials diverged (NaN/Inf selection metric)."""
        return sum(t["status"] == "diverged" for t in self.trials)

    def outcomes(self) -> str:
        """What happened to the trials that did not finish ``"ok"``, in words: ``"14 infeasible,
        2 diverged"`` ("" when every trial did). A ``"stopped"`` trial is "exploited" in PBT and PB2 (a
        better lane's copy took its place) and "stopped early" elsewhere (ASHA, median, halving)."""
        stopped = "exploited" if (self.config.get("strategy") or {}).get("name") in ("pbt", "pb2") else "stopped early"
        words = {"infeasible": "infeasible", "stopped": stopped, "diverged": "diverged"}
        counts = {w: sum(t["status"] == s for t in self.trials) for s, w in words.items()}
        return ", ".join(f"{n} {w}" for w, n in counts.items() if n)

    def best_curve(self, rounds: int | None = None) -> list[float]:
        """Best value so far after each round (for regret curves)."""
        last = max((t["round"] for t in self.trials), default=-1)
        out, best = [], math.inf
        for r in range(last + 1 if rounds is None else rounds):
            for t in self.trials:
                if t["round"] == r:
                    best = min(best, self.score(t))
            out.append(best if self.mode == "min" else -best)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per trial: round, slot, status, then params and metrics as columns.

        A name that would fill two columns (a hyperparameter named ``status``, a metric named
        like a hyperparameter) is written as ``param:NAME`` and ``metric:NAME`` instead: no
        column ever overwrites another.
        """
        fixed = {"round", "slot", "status"}
        params = {k for t in self.trials for k in t["params"]}
        metrics = {k for t in self.trials for k in t["metrics"]}
        clash = (params & metrics) | ((params | metrics) & fixed)

        def column(kind: str, name: str) -> str:
            return f"{kind}:{name}" if name in clash else name

        return [
            {
                "round": t["round"],
                "slot": t["slot"],
                "status": t["status"],
                **{column("param", k): v for k, v in t["params"].items()},
                **{column("metric", k): v for k, v in t["metrics"].items()},
            }
            for t in self.trials
        ]

    def curve_rows(self) -> list[dict[str, Any]]:
        """One flat dict per learning-curve point: round, slot, step, then the metrics at that step.

        Curves exist for objectives that return them (the Trainer with ``eval_every``). A trial's
        selection value (``best``, ``ranked``) is its *final* evaluation unless the sweep ran with
        ``select="best_step"``.
        """
        return [
            {"round": r, "slot": slot, "step": step, **metrics}
            for (r, slot), points in sorted(self.curves.items())
            for step, metrics in points
        ]

    def to_pandas(self):
        """One row per trial as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise MissingDependencyError(
                "Result.to_pandas needs pandas: pip install pandas (or use Result.to_csv / .rows())"
            ) from e
        return pd.DataFrame(self.rows())

    def to_optuna(self, storage: str, study_name: str | None = None):
        """Writes this study into an Optuna storage (e.g. ``"sqlite:///optuna.db"``) as a new Optuna
        study, so optuna-dashboard, ``optuna.visualization`` and ``optuna.importance`` open it;
        returns the Optuna study (needs optuna). What maps to what: :mod:`jaxtune.study.optuna_interop`."""
        from jaxtune.study.optuna_interop import to_optuna

        return to_optuna(self, storage, study_name)

    @classmethod
    def from_optuna(cls, study, metric: str | list[str] | None = None, study_name: str | None = None) -> Result:
        """An Optuna study (an ``optuna.Study``, or a storage URL and ``study_name``) as a Result,
        its objectives named ``metric``: e.g. ``jt.tune(..., warm_start=Result.from_optuna(study,
        "val_loss"))`` starts from what Optuna found. :func:`jaxtune.study.optuna_interop.from_optuna`."""
        from jaxtune.study.optuna_interop import from_optuna

        return cls(**from_optuna(study, metric, study_name))

    def to_tensorboard(self, folder: str | os.PathLike) -> str:
        """Writes TensorBoard event files under ``folder``: a run per trial with its learning curves
        as scalars and the HParams plugin's table (needs tensorboardX);
        :func:`jaxtune.study.tensorboard_export.to_tensorboard`."""
        from jaxtune.study.tensorboard_export import to_tensorboard

        return to_tensorboard(self, folder)

    def to_csv(self, path: str | os.PathLike, *, curves: bool = False) -> None:
        """Writes one row per trial (or, with ``curves=True``, per curve point) to a CSV file."""
        rows = self.curve_rows() if curves else self.rows()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    def __len__(self) -> int:
        return len(self.trials)

    def __repr__(self) -> str:
        b = self.best
        best = "none" if b is None else f"{self.metric}={b['value']:.6g} at {b['params']}"
        stopped = "" if self.stopped is None else f", stopped by {self.stopped}"
        return (
            f"Result(study={self.study!r}, trials={len(self.trials)}, diverged={self.num_diverged}{stopped}, "
            f"best: {best})"
        )
