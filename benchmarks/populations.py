"""Living trials on MNIST-1D: what continuing, refilling and segmenting buy and cost.

* ``halving``: successive halving (and Hyperband, one pass over its brackets) whose survivors
  continue from their state vs the same schedule retraining every survivor from scratch
  (trial-steps, wall time, selected accuracy);
* ``asha``: ASHA with refill vs synchronous successive halving with continuation, the same
  number of configurations (lane utilisation, wall time, selected accuracy);
* ``boundary``: the cost of a segment boundary at N lanes: one population trained S steps in
  one segment vs in k segments with a decision (an exploit of a quarter of the lanes) at each;
* ``lanes``: PBT and ASHA end to end (``jt.tune``) at each of ``--lane-counts`` lanes: wall time,
  lane utilisation, trained lane-steps per second.

Every method runs the same Trainer (the MNIST-1D MLP of the demo, AdamW on lr / b1 / wd) on
the same devices; seeds change the sampled configurations. Selection is on the validation split;
test accuracy of the selected trial is reported.

    python benchmarks/populations.py                 # writes results/populations_<backend>.json
    python benchmarks/populations.py --seeds 1       # quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute.population import Population  # noqa: E402
from jaxtune.tasks import classify  # noqa: E402


def selected(result) -> dict:
    b = result.best
    return {"val_accuracy": b["metrics"]["val_accuracy"], "test_accuracy": b["metrics"]["test_accuracy"]}


def halving(task, low: int, high: int, trials: int, seed: int) -> list[dict]:
    space = jt.Space({**task.space.params, "steps": jt.Int(low, high, scale="log", static=True)})
    rows = []
    for name, spec in (
        ("continue", jt.strategies.SuccessiveHalving(eta=3)),
        ("retrain", jt.strategies.SuccessiveHalving(eta=3, continue_survivors=False)),
        ("hyperband continue", jt.strategies.Hyperband(eta=3)),
        ("hyperband retrain", jt.strategies.Hyperband(eta=3, continue_survivors=False)),
    ):
        t = time.perf_counter()
        r = jt.tune(task.objective, space, spec, trials=trials, metric="val_accuracy", mode="max", seed=seed,
                    progress=False)  # fmt: skip
        seconds = time.perf_counter() - t
        steps = sum(t["params"]["steps"] for t in r.trials) if "retrain" in name else common.trial_steps(r)
        rows.append({"method": name, "seed": seed, "seconds": seconds, "trial_steps": steps, **selected(r)})
    return rows


def asha_vs_halving(task, low: int, high: int, lanes: int, configs: int, seed: int) -> list[dict]:
    rows = []
    t = time.perf_counter()
    r = jt.tune(task.objective, task.space, "asha", trials=lanes, metric="val_accuracy", mode="max", seed=seed,
                progress=False, strategy_options={"min_steps": low, "eta": 3, "configs": configs})  # fmt: skip
    rows.append(
        {"method": "asha", "seed": seed, "seconds": time.perf_counter() - t, "lanes": lanes, "configs": configs,
         "utilisation": r.utilisation, "rungs": r.rungs, "trial_steps": common.trial_steps(r), **selected(r)}
    )  # fmt: skip
    space = jt.Space({**task.space.params, "steps": jt.Int(low, high, scale="log", static=True)})
    t = time.perf_counter()
    r = jt.tune(task.objective, space, "successive_halving", trials=configs, metric="val_accuracy", mode="max",
                seed=seed, progress=False)  # fmt: skip
    rows.append(
        {"method": "successive_halving", "seed": seed, "seconds": time.perf_counter() - t, "configs": configs,
         "trial_steps": common.trial_steps(r), **selected(r)}
    )  # fmt: skip
    return rows


def boundary(task, lanes: int, steps: int, segments: int, repeats: int = 2) -> dict:
    """Seconds to train ``steps`` steps in 1 segment, in ``segments`` segments (each ends with an
    evaluation), and in ``segments`` segments with a decision (a quarter of the lanes exploit) at each."""
    key = jax.random.key(0)
    hp = task.space.sample(key, lanes)
    keys = jax.random.split(key, lanes)
    source = np.arange(lanes)
    source[: lanes // 4] = np.arange(lanes // 4, lanes // 2)  # a quarter of the lanes exploit others
    reseed = source != np.arange(lanes)

    def run(k: int, decide: bool) -> tuple[float, float]:
        pop = Population(task.objective, task.space, (), lanes)
        pop.start(hp, keys)
        pop.train(steps // k)  # compiles (and warms) the segment program
        pop.replace(hp, source=source, keys=keys, reseed=reseed)
        best, best_decide = float("inf"), float("inf")
        for _ in range(repeats):
            pop.start(hp, keys)
            jax.block_until_ready(pop.state)
            t, in_decide = time.perf_counter(), 0.0
            for _ in range(k):
                pop.train(steps // k)
                if decide:
                    d = time.perf_counter()
                    pop.replace(hp, source=source, keys=keys, reseed=reseed)
                    jax.block_until_ready(pop.state)
                    in_decide += time.perf_counter() - d
            jax.block_until_ready(pop.state)
            best, best_decide = min(best, time.perf_counter() - t), min(best_decide, in_decide)
        return best, best_decide

    one, _ = run(1, False)
    evaluated, _ = run(segments, False)
    decided, decide_s = run(segments, True)
    return {
        "lanes": lanes,
        "steps": steps,
        "segments": segments,
        "segment_steps": steps // segments,
        "one_segment_s": one,
        "segmented_s": evaluated,
        "segmented_with_decisions_s": decided,
        "evaluation_overhead": evaluated / one - 1,
        "total_overhead": decided / one - 1,
        "per_decision_ms": 1e3 * decide_s / segments,
    }


def at_lanes(steps: int, lanes: int, segment: int) -> list[dict]:
    """PBT and ASHA through ``jt.tune`` on ``lanes`` lanes (ASHA: 2x as many configurations)."""
    rows = []
    for name, options in (("pbt", {"segment": segment}), ("asha", {"min_steps": segment, "eta": 3,
                                                                  "configs": 2 * lanes})):  # fmt: skip
        task = classify.mnist1d("mlp", steps=steps, batch_size=128)
        t = time.perf_counter()
        result = jt.tune(task.objective, task.space, name, trials=lanes, metric="val_accuracy", mode="max",
                         strategy_options=options, progress=False)  # fmt: skip
        seconds = time.perf_counter() - t
        trained = common.trial_steps(result)
        rows.append({"scheduler": name, "lanes": lanes, "steps": steps, "segment": segment, "seconds": seconds,
                     "utilisation": result.utilisation, "trial_steps": trained,
                     "lane_steps_per_s": trained / seconds, **selected(result)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def checkpoint_cost(task, lanes: int, segment_s: float) -> dict:
    """Size and seconds of one checkpoint of ``lanes`` lanes (packed and written to SQLite)."""
    import tempfile

    from jaxtune.execute.snapshots import pack
    from jaxtune.study.storage import Storage

    key = jax.random.key(0)
    pop = Population(task.objective, task.space, (), lanes)
    pop.start(task.space.sample(key, lanes), jax.random.split(key, lanes))
    book = {"u": np.zeros((lanes, task.space.dim)), "start": np.zeros(lanes), "busy": 0}
    with tempfile.TemporaryDirectory() as tmp:
        store = Storage(os.path.join(tmp, "c.db"))
        sid = store.open_study("c", {})
        times = []
        for _ in range(3):
            t = time.perf_counter()
            blob = pack(pop.state, (), book)
            store.write_trials(sid, [], [], [], (0, blob))
            times.append(time.perf_counter() - t)
        store.close()
    seconds = min(times)
    return {
        "lanes": lanes,
        "megabytes": len(blob) / 2**20,
        "seconds": seconds,
        "segment_s": segment_s,
        "every_segments_for_5_percent": int(np.ceil(seconds / (0.05 * segment_s))),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--low", type=int, default=50)
    p.add_argument("--high", type=int, default=450)
    p.add_argument("--trials", type=int, default=27)
    p.add_argument("--lanes", type=int, default=256)
    p.add_argument("--boundary-steps", type=int, default=500)
    p.add_argument("--segments", type=int, default=5, help="segments of the boundary run (100 steps each)")
    p.add_argument("--lane-counts", default="64,256", help="lanes of the PBT and ASHA runs (part lanes)")
    p.add_argument("--lane-steps", type=int, default=300, help="steps per trial in part lanes")
    p.add_argument(
        "--only", choices=["halving", "boundary", "lanes"], help="run one part only (the JSON keeps the others' rows)"
    )
    p.add_argument("--out")
    a = p.parse_args()
    jt.use_cpu_cores()
    task = classify.mnist1d("mlp", steps=a.high, batch_size=128)
    out = {"devices": jax.device_count(), "halving": [], "asha": [], "lanes": []}
    path = a.out or os.path.join(common.RESULTS, f"populations_{jax.default_backend()}.json")
    if a.only and os.path.exists(path):
        with open(path) as f:
            out.update({k: v for k, v in __import__("json").load(f).items() if k != "machine"})
    if a.only in (None, "halving"):
        out["halving"], out["asha"] = [], []
        for seed in range(a.seeds):
            out["halving"] += halving(task, a.low, a.high, a.trials, seed)
            out["asha"] += asha_vs_halving(task, a.low, a.high, a.trials // 3, a.trials, seed)
    if a.only in (None, "boundary"):
        bt = classify.mnist1d("mlp", steps=a.boundary_steps, batch_size=128)
        out["boundary"] = boundary(bt, a.lanes, a.boundary_steps, a.segments)
        out["checkpoint"] = checkpoint_cost(bt, a.lanes, out["boundary"]["one_segment_s"] / a.segments)
    if a.only in (None, "lanes"):
        out["lanes"] = [r for n in a.lane_counts.split(",") for r in at_lanes(a.lane_steps, int(n), 100)]
    common.write(f"populations_{jax.default_backend()}", out, a.out)

    def table(rows, cols):
        print("  ".join(f"{c:>14}" for c in cols))
        for r in rows:
            cells = (f"{r[c]:>14.4g}" if isinstance(r.get(c), float) else f"{r.get(c, '-')!s:>14}" for c in cols)
            print("  ".join(cells))

    table(out["halving"], ["method", "seed", "seconds", "trial_steps", "val_accuracy", "test_accuracy"])
    table(out["asha"], ["method", "seed", "seconds", "utilisation", "trial_steps", "val_accuracy", "test_accuracy"])
    table(out.get("lanes", []), ["scheduler", "lanes", "seconds", "utilisation", "lane_steps_per_s", "val_accuracy"])
    b = out.get("boundary")
    print(
        f"segment boundaries at N={b['lanes']}: {b['steps']} steps in 1 segment {b['one_segment_s']:.2f} s; in "
        f"{b['segments']} segments of {b['segment_steps']} (each evaluated) {b['segmented_s']:.2f} s "
        f"(+{100 * b['evaluation_overhead']:.1f}%); with a decision at each {b['segmented_with_decisions_s']:.2f} s "
        f"(+{100 * b['total_overhead']:.1f}%, {b['per_decision_ms']:.1f} ms a decision)"
    ) if b else None
    c = out.get("checkpoint")
    if c:
        print(
            f"a checkpoint of {c['lanes']} lanes: {c['megabytes']:.1f} MB in {c['seconds']:.2f} s "
            f"(a segment: {c['segment_s']:.2f} s; under 5% when taken every "
            f"{c['every_segments_for_5_percent']} segments)"
        )


if __name__ == "__main__":
    main()
