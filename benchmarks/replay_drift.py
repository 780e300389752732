"""How far a replayed winner lands from its stored metric: exact (the population's own programs) vs alone.

A trial trained again alone is another compiled program than the vmapped batch it ran in, so
it rounds differently, and training amplifies the difference with the steps. This measures, on
the MNIST-1D MLP (Dropout 0.1 at a tuned rate for PBT), the gap between the stored metric of each
driver's winner and its replay: ``exact`` (the default for populations) and ``alone``
(``exact=False``; the only way for round sweeps), at a short and a long budget.

    python benchmarks/replay_drift.py            # writes results/replay_drift_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.tasks import classify  # noqa: E402


class Mlp(nnx.Module):
    """The MNIST-1D MLP with a tuned dropout rate (``jt.layers.Dropout``)."""

    def __init__(self, hp, rngs):
        self.l1 = nnx.Linear(40, 100, rngs=rngs)
        self.drop = jt.layers.Dropout(hp["dropout"], rngs=rngs)
        self.l2 = nnx.Linear(100, 100, rngs=rngs)
        self.l3 = nnx.Linear(100, 10, rngs=rngs)

    def __call__(self, x):
        return self.l3(jax.nn.relu(self.l2(self.drop(jax.nn.relu(self.l1(x))))))


def drift(steps: int, lanes: int) -> list[dict]:
    """One row per driver: the winner's stored metrics and its replays' gaps."""
    base = classify.mnist1d("mlp", steps=steps, batch_size=128).objective
    trainer = jt.train.Trainer(model=Mlp, optimizer=lambda hp: optax.adamw(hp["lr"], weight_decay=hp["wd"]),
                               data=base.data, eval_data=base.eval_data, steps=steps, batch_size=128)  # fmt: skip
    space = jt.Space({"lr": jt.Float(1e-3, 3e-2, scale="log"), "wd": jt.Float(1e-5, 1e-2, scale="log"),
                      "dropout": jt.Float(0.0, 0.5)})  # fmt: skip
    runs = {
        "random": ("random", {}),
        "pbt": ("pbt", {"segment": steps // 5}),
        "asha": ("asha", {"min_steps": steps // 9, "eta": 3, "configs": 3 * lanes}),
    }
    rows = []
    for name, (strategy, options) in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            db = os.path.join(tmp, "s.db")
            jt.tune(trainer, space, strategy, trials=lanes, metric="val_loss", storage=db, progress=False,
                    strategy_options=options or None)  # fmt: skip
            result = jt.Result.load(db)
            best = result.best
            row = {"driver": name, "steps": steps, "lanes": lanes, "stored_val_loss": best["metrics"]["val_loss"],
                   "stored_val_accuracy": best["metrics"]["val_accuracy"]}  # fmt: skip
            for exact in ([True, False] if name != "random" else [False]):
                t0 = time.perf_counter()
                _, again = result.replay(trainer, best, exact=exact, return_metrics=True)
                kind = "exact" if exact else "alone"
                row[f"{kind}_seconds"] = time.perf_counter() - t0
                row[f"{kind}_val_loss_gap"] = abs(again["val_loss"] - best["metrics"]["val_loss"])
                row[f"{kind}_val_accuracy_gap"] = abs(again["val_accuracy"] - best["metrics"]["val_accuracy"])
            rows.append(row)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[450, 4500])
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--out")
    a = p.parse_args()
    rows = [row for steps in a.steps for row in drift(steps, a.lanes)]
    common.write(f"replay_drift_{jax.default_backend()}", {"rows": rows}, a.out)
    cols = ["driver", "steps", "stored_val_accuracy", "exact_val_accuracy_gap", "alone_val_accuracy_gap",
            "exact_val_loss_gap", "alone_val_loss_gap", "exact_seconds", "alone_seconds"]  # fmt: skip
    print("  ".join(f"{c[:22]:>22}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>22.4g}" if isinstance(r.get(c), float) else f"{r.get(c, '-')!s:>22}" for c in cols))


if __name__ == "__main__":
    main()
