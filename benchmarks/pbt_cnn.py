"""PBT vs random search vs ASHA on the MNIST-1D CNN at equal compute (training steps), several seeds.

Every method trains the paper's CNN (AdamW on lr / b1 / wd, the demo's default space) for the
same number of optimizer steps in all: random search ``N`` trials of ``S`` steps; PBT ``N``
lanes of ``S`` steps (exploit/explore every ``S / 10``); ASHA ``N`` lanes, rungs from ``S / 9``
with eta = 3, as many configurations as use up the same steps. Selection is on the validation
split; the selected trial's test accuracy is reported.

    python benchmarks/pbt_cnn.py                   # writes results/pbt_cnn_<backend>.json
    python benchmarks/pbt_cnn.py --seeds 1 --steps 300 --lanes 8   # quick
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--out")
    a = p.parse_args()
    jt.use_cpu_cores()
    seg = a.steps // 10
    task = classify.mnist1d("cnn", steps=a.steps, batch_size=100, eval_every=seg)
    budget = a.lanes * a.steps
    rows = []
    for seed in range(a.seeds):
        runs = {
            "random": ("random", {}),
            "pbt": ("pbt", {"segment": seg}),
            # ASHA: each configuration trains at least S/9 steps; 4x the lanes in configurations
            # uses about the same steps as N full trials (most stop at the first rung).
            "asha": ("asha", {"min_steps": a.steps // 9, "eta": 3, "configs": 4 * a.lanes}),
        }
        for name, (strategy, options) in runs.items():
            t = time.perf_counter()
            r = jt.tune(task.objective, task.space, strategy, trials=a.lanes, metric="val_accuracy", mode="max",
                        seed=seed, strategy_options=options or None, progress=False)  # fmt: skip
            b = r.best
            rows.append(
                {"method": name, "seed": seed, "seconds": time.perf_counter() - t, "trial_steps": common.trial_steps(r),
                 "budget": budget, "val_accuracy": b["metrics"]["val_accuracy"],
                 "test_accuracy": b["metrics"]["test_accuracy"]}
            )  # fmt: skip
            print(rows[-1], flush=True)
    common.write(f"pbt_cnn_{jax.default_backend()}", {"steps": a.steps, "lanes": a.lanes, "rows": rows}, a.out)
    print(f"{'method':<8} {'seed':>4} {'s':>7} {'steps':>8} {'val acc':>8} {'test acc':>8}")
    for r in rows:
        print(f"{r['method']:<8} {r['seed']:>4} {r['seconds']:7.1f} {r['trial_steps']:8d} {r['val_accuracy']:8.3f} "
              f"{r['test_accuracy']:8.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
