"""Host overhead of a whole study: the wall time that is neither the compiled trial programs nor
their compilation (storage, the strategy or scheduler, transfers, Python), per driver.

``jt.tune`` reports the split itself (``Result.timing``, and a line at the end of a run with
``progress=True``): this script runs, with SQLite storage as the CLI would,

* ``rounds``: the demo's sweep (configs/demo.toml: coarse-to-fine, 4 rounds of 32 MNIST-1D MLPs,
  2,000 steps each, evaluated every 500);
* ``pbt``: PBT on ``--lanes`` lanes of the same MLP, ``--pbt-steps`` steps in segments of 100;
* ``halving``: successive halving that continues its survivors (27 configurations, 50 → 450 steps);

and prints each one's wall time, trial-program time, compile time and host share.

    python benchmarks/host_overhead.py                  # writes results/host_overhead_<backend>.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.tasks import classify  # noqa: E402


def run(name: str, lanes: int, pbt_steps: int, folder: str) -> dict:
    """One study of driver ``name`` in SQLite storage under ``folder``; its timing split."""
    storage = os.path.join(folder, f"{name}.db")
    if name == "rounds":
        task = classify.mnist1d("mlp", steps=2000, batch_size=128, hidden=256, eval_every=500)
        space = jt.Space({"lr": jt.Float(1e-4, 0.1, scale="log"), "b1": jt.Float(0.8, 0.999, scale="reverse_log"),
                          "wd": jt.Float(1e-6, 1e-2, scale="log")})  # fmt: skip
        result = jt.tune(task.objective, space, "coarse_to_fine", trials=32, rounds=4, metric="val_accuracy",
                         mode="max", storage=storage, progress=False,
                         strategy_options={"top_fraction": 0.1})  # fmt: skip
    elif name == "pbt":
        task = classify.mnist1d("mlp", steps=pbt_steps, batch_size=128)
        result = jt.tune(task.objective, task.space, "pbt", trials=lanes, metric="val_accuracy", mode="max",
                         storage=storage, progress=False, strategy_options={"segment": 100})  # fmt: skip
    else:
        task = classify.mnist1d("mlp", steps=450, batch_size=128)
        space = jt.Space({**task.space.params, "steps": jt.Int(50, 450, scale="log", static=True)})
        result = jt.tune(task.objective, space, "successive_halving", trials=27, metric="val_accuracy", mode="max",
                         storage=storage, progress=False)  # fmt: skip
    row = {"driver": name, "trials": len(result), **result.timing}
    print(f"{name:>8}: {_line(row)}", flush=True)
    return row


def _line(r: dict) -> str:
    return (f"{r['wall_s']:7.1f} s wall, trial programs {r['trials_s']:7.1f} s, compiling {r['compile_s']:5.1f} s, "
            f"host {r['host_s']:5.2f} s = {100 * r['host_share']:.2f}%")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drivers", default="rounds,pbt,halving")
    p.add_argument("--lanes", type=int, default=256)
    p.add_argument("--pbt-steps", type=int, default=1000)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    jt.use_cpu_cores()
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(name, a.lanes, a.pbt_steps, folder) for name in a.drivers.split(",")]
    for r in rows:
        r["date"] = common.machine()["date"]
    path = a.out or os.path.join(common.RESULTS, f"host_overhead_{jax.default_backend()}.json")
    if os.path.exists(path):  # a subset of the drivers: the others' rows stay (each row dated)
        with open(path) as f:
            kept = [r for r in json.load(f).get("rows", []) if r["driver"] not in {r["driver"] for r in rows}]
        rows = sorted(kept + rows, key=lambda r: ["rounds", "pbt", "halving"].index(r["driver"]))
    common.write(f"host_overhead_{jax.default_backend()}", {"lanes": a.lanes, "pbt_steps": a.pbt_steps, "rows": rows},
                 a.out)  # fmt: skip


if __name__ == "__main__":
    main()
