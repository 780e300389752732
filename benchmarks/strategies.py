"""Search strategies at equal compute: random vs coarse-to-fine vs successive halving.

The problem is the demo's (MNIST-1D MLP, AdamW lr / b1 / weight decay, selection on the 800
validation sequences, test accuracy of the selected trial reported). Every strategy gets the
same number of training steps in all:

* random: ``T`` trials of ``S`` steps in one round;
* coarse_to_fine: ``R`` rounds of ``T / R`` trials of ``S`` steps;
* successive_halving: one bracket of ``m * eta**k`` trials on ``S / eta**k`` steps, the best
  ``m * eta**(k-1)`` on ``S / eta**(k-1)``, ..., the best ``m`` on ``S``: ``(k + 1) * m * S`` steps,
  as many as ``T = (k + 1) * m`` full trials (defaults: 81 / 27 / 9 / 3 trials on
  100 / 300 / 900 / 2700 steps against 12 trials of 2700 steps).

    python benchmarks/strategies.py                     # writes results/strategies_<backend>.json
    python benchmarks/strategies.py --seeds 1 --steps 300   # quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.tasks import classify  # noqa: E402


def sweep(name: str, steps: int, rungs: int, eta: int, multiple: int, seed: int) -> dict:
    base = classify.default_space().params
    if name == "successive_halving":
        # multiple * eta**rungs configurations on steps / eta**rungs, ..., multiple on steps.
        space = jt.Space({**base, "steps": jt.Int(steps // eta**rungs, steps, scale="log", static=True)})
        trials, rounds, options = multiple * eta**rungs, None, {"eta": eta}
    else:
        space = jt.Space(base)
        rounds = 3 if name == "coarse_to_fine" else 1
        trials = (rungs + 1) * multiple // rounds  # full-length trials for the same compute
        options = {}
    task = jt.tasks.get("mnist1d_mlp", steps=steps, hidden=128, space=space)
    t = time.perf_counter()
    result = jt.tune(
        task.objective,
        task.space,
        name,
        trials=trials,
        rounds=rounds,
        metric=task.metric,
        mode=task.mode,
        seed=seed,
        strategy_options=options,
        progress=False,
    )
    seconds = time.perf_counter() - t
    best = result.best
    used = sum(t["params"].get("steps", steps) for t in result.trials)
    return {
        "strategy": name,
        "seed": seed,
        "trials": len(result),
        "training_steps": used,
        "seconds": seconds,
        "val_accuracy": best["metrics"]["val_accuracy"],
        "test_accuracy": best["metrics"]["test_accuracy"],
        "best_steps": best["params"].get("steps", steps),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2700, help="the full budget of one trial")
    p.add_argument("--rungs", type=int, default=3, help="halving rounds after the first")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--multiple", type=int, default=3, help="trials on the full budget in the halving bracket")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--strategies", default="random,coarse_to_fine,successive_halving")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    jt.use_cpu_cores()  # as the CLI runs (no effect on accelerators)
    rows = []
    for seed in range(a.seeds):
        for name in a.strategies.split(","):
            rows.append(sweep(name, a.steps, a.rungs, a.eta, a.multiple, seed))
            print(rows[-1], flush=True)
    print(f"\n{'strategy':<20} {'trials':>6} {'steps':>8} {'seconds':>8} {'val acc':>14} {'test acc':>14}")
    for name in a.strategies.split(","):
        rs = [r for r in rows if r["strategy"] == name]

        def stat(k, rs=rs):
            v = [r[k] for r in rs]
            return f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})"

        print(
            f"{name:<20} {rs[0]['trials']:>6} {rs[0]['training_steps']:>8} "
            f"{sum(r['seconds'] for r in rs) / len(rs):8.1f} {stat('val_accuracy'):>14} {stat('test_accuracy'):>14}"
        )
    common.write(f"strategies_{jax.default_backend()}", {**vars(a), "rows": rows}, a.out)


if __name__ == "__main__":
    main()
