"""PBT on the toy problem of its paper (Jaderberg et al., 2017, figure 2): fixed hyperparameters vs PBT.

Two members start at ``theta = (0.9, 0.9)`` with ``h = (1, 0)`` and ``(0, 1)``; each climbs a
surrogate that weighs one coordinate, and is scored on ``Q = 1.2 - |theta|^2``. With ``h``
fixed each member moves one coordinate and plateaus at ``Q = 0.39``; PBT (every segment, the
worse member copies the better one's weights and explores ``h``) reaches the maximum, 1.2.

    python benchmarks/pbt_toy.py            # writes results/pbt_toy_<backend>.json (and a PNG)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

INITIAL = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def fixed_curve(task, h: dict, segment: int) -> list[float]:
    """Q after every segment for a member whose h never changes."""
    hp = {k: jnp.float32(v) for k, v in h.items()}
    state, out = task.objective.init(hp, None), []
    train = jax.jit(task.objective.train, static_argnums=2)
    for _ in range(task.objective.steps // segment):
        state, _ = train(hp, state, segment)
        out.append(float(task.objective.evaluate_state(hp, state)["Q"]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--segment", type=int, default=4)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out")
    a = p.parse_args()
    task = jt.tasks.get("pbt_toy", steps=a.steps)
    runs = []
    for seed in range(a.seeds):
        t = time.perf_counter()
        r = jt.tune(task.objective, task.space, "pbt", trials=2, metric="Q", mode="max", seed=seed, progress=False,
                    strategy_options={"segment": a.segment, "initial": INITIAL, "quantile": 0.5})  # fmt: skip
        best_by_step = {}
        for points in r.curves.values():
            for step, m in points:
                best_by_step[step] = max(best_by_step.get(step, -1e9), m["Q"])
        runs.append(
            {
                "seed": seed,
                "seconds": time.perf_counter() - t,
                "final_best_Q": r.best["value"],
                "exploits": len(r.lineage),
                "best_Q_by_step": [best_by_step[s] for s in sorted(best_by_step)],
            }
        )
    fixed = {f"h={tuple(h.values())}": fixed_curve(task, h, a.segment) for h in INITIAL}
    payload = {
        "steps": a.steps,
        "segment": a.segment,
        "pbt": runs,
        "fixed": {k: {"final_Q": v[-1], "Q_by_segment": v} for k, v in fixed.items()},
        "predicted": "fixed h plateaus at Q = 0.39; PBT reaches 1.2",
    }
    path = common.write(f"pbt_toy_{jax.default_backend()}", payload, a.out)
    print(f"{'run':<16} {'final Q':>8}")
    for k, v in fixed.items():
        print(f"{'fixed ' + k:<16} {v[-1]:8.3f}")
    for run in runs:
        print(f"{'pbt seed ' + str(run['seed']):<16} {run['final_best_Q']:8.3f}  ({run['exploits']} exploits)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        x = [a.segment * (i + 1) for i in range(a.steps // a.segment)]
        for k, v in fixed.items():
            ax.plot(x, v, label=f"fixed {k}")
        for run in runs:
            ax.plot(x, run["best_Q_by_step"], color="C3", alpha=0.6, label="PBT" if run["seed"] == 0 else None)
        ax.set_xlabel("step")
        ax.set_ylabel("Q (best member)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path.replace(".json", ".png"), dpi=100)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
