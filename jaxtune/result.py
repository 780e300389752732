"""The result of a sweep: every trial, the best one, and exports."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["Result"]

MODES = ("min", "max")


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
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.trials = sorted(trials, key=lambda t: (t["round"], t["slot"]))
        self.metric = metric
        self.mode = mode
        self.study = study
        self.storage = storage
        self.curves = curves or {}

    @classmethod
    def load(cls, path: str | os.PathLike, study: str | None = None) -> Result:
        """Reads a stored study back (the only study in the file if ``study`` is None)."""
        from jaxtune.storage import Storage

        store = Storage(path, read_only=True)  # a read: nothing is written, not even WAL mode
        try:
            names = store.study_names()
            if study is None:
                if len(names) != 1:
                    raise ValueError(f"{os.fspath(path)!r} holds studies {names}; pass study=NAME to pick one")
                study = names[0]
            sid = store.study_id(study)
            config = store.study_config(study)
            return cls(
                store.trials(sid),
                config["metric"],
                config["mode"],
                study=study,
                storage=os.fspath(path),
                curves=store.curves(sid),
            )
        finally:
            store.close()

    def _key(self, t: dict[str, Any]) -> float:
        v = t["value"]
        if t["status"] != "ok" or v is None or not math.isfinite(v):
            return math.inf
        return v if self.mode == "min" else -v

    def ranked(self) -> list[dict[str, Any]]:
        """Trials from best to worst; diverged trials last."""
        return sorted(self.trials, key=self._key)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best finished trial (never a diverged one), or None if there is none."""
        ok = [t for t in self.trials if math.isfinite(self._key(t))]
        return min(ok, key=self._key) if ok else None

    @property
    def num_diverged(self) -> int:
        """How many trials diverged (NaN/Inf selection metric)."""
        return sum(t["status"] == "diverged" for t in self.trials)

    def best_curve(self, rounds: int | None = None) -> list[float]:
        """Best value so far after each round (for regret curves)."""
        last = max((t["round"] for t in self.trials), default=-1)
        out, best = [], math.inf
        for r in range(last + 1 if rounds is None else rounds):
            for t in self.trials:
                if t["round"] == r:
                    best = min(best, self._key(t))
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

        Curves exist for objectives that return them (the Trainer with ``eval_every``). The
        selection metric of a trial (``best``, ``ranked``) is its *final* evaluation; pick from
        these rows to select on the best step instead.
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
            raise ImportError(
                "Result.to_pandas needs pandas: pip install pandas (or use Result.to_csv / .rows())"
            ) from e
        return pd.DataFrame(self.rows())

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
        return f"Result(study={self.study!r}, trials={len(self.trials)}, diverged={self.num_diverged}, best: {best})"
