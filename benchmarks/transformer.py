"""Throughput on the transformer task: jaxtune vs the hand-written ``jit(vmap(scan))``, a sequential
compiled loop and Optuna, with FLOPs, bytes and fractions of this machine's peaks.

Task: ``modular_arithmetic`` (grokking's (a + b) mod p, a one-layer transformer, full-batch AdamW
with per-trial lr, weight decay and β₂), at the CPU size of ``benchmarks/grokking.py``: p = 31,
half of the 961 pairs to train on, d_model 64, 4 heads, d_mlp 256, S steps; N trials.

Every method computes the same thing, as ``throughput.py``'s do: the same architecture (NNX in the
task, plain JAX arrays by hand: the same initialisers, other draws), full-batch AdamW with the same
hyperparameters, and the same metrics (mean training loss; final loss and accuracy on the training
and the held-out pairs). Every method uses every core (``jt.use_cpu_cores``: one JAX device per
core; the hand-written vmap puts a part of the trial axis on each, the sequential loop and
Optuna's ``n_jobs = devices`` threads alternate trials between them) and jaxtune's compiler options.
All (N, method) pairs run in this one process, each from fresh closures (nothing compiled for one
is reused by another).

Columns (seconds for N trials; run times the fastest of --repeats, compile apart):
  jaxtune        jt.Executor over the task's Trainer (what jt.tune runs), run only
  jaxtune_e2e    jt.tune end to end from a fresh task: trace, compile, storage included
  handwritten    jit(vmap(lax.scan training)) by hand, run only
  sequential     the hand-written trial jitted once, called for one trial after another
  optuna         Optuna (RandomSampler), the hand-written compiled trial as objective, n_jobs = devices, end to end

Predicted before the first full run (from a 20-step trial run at N = 1 and 4: about a third of
peak FLOP/s already at N = 1, the full batch of 480 sequences being a fair matmul by itself):
jaxtune level with the hand-written vmap at every N (0.9-1.1x: one program of the same shape),
ahead of the sequential loop by less than on the MLP (1.0-1.5x, growing with N), behind Optuna
end to end at N = 1-2 (jaxtune's e2e includes tracing, storage and a compile of its own) and
ahead from N = 8.

    python benchmarks/transformer.py                  # CPU: N = 1..64, 100 steps
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

os.environ.setdefault("JAXTUNE_CACHE_DIR", "none")  # no method loads a program another compiled

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import roofline  # noqa: E402
from throughput import best_of, clock  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor, default_compiler_options  # noqa: E402
from jaxtune.tasks import attention  # noqa: E402

SIZE = {"p": 31, "train_fraction": 0.5, "d_model": 64, "heads": 4, "d_mlp": 256}
SPACE = jt.Space({"lr": jt.Float(1e-4, 1e-2, scale="log"), "wd": jt.Float(1e-2, 10.0, scale="log"),
                  "b2": jt.Float(0.9, 0.999, scale="reverse_log")})  # fmt: skip


def handwritten(steps: int, train, val, d_model=64, heads=4, d_mlp=256, vocab=32, classes=31):
    """One trial ``run(key, hp) -> metrics`` in plain JAX: the task's transformer and optimizer."""
    x, y = map(jnp.asarray, train)
    xv, yv = map(jnp.asarray, val)
    dense = jax.nn.initializers.lecun_normal()
    embed = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)

    def init(key):
        k = jax.random.split(key, 7)
        return {
            "embed": embed(k[0], (vocab, d_model)),
            "pos": jax.random.normal(k[1], (3, d_model)) / jnp.sqrt(d_model),
            "qkv": dense(k[2], (d_model, 3 * d_model)),
            "proj": dense(k[3], (d_model, d_model)),
            "up": dense(k[4], (d_model, d_mlp)),
            "up_b": jnp.zeros(d_mlp),
            "down": dense(k[5], (d_mlp, d_model)),
            "down_b": jnp.zeros(d_model),
            "out": dense(k[6], (d_model, classes)),
        }

    def forward(w, tokens):
        h = w["embed"][tokens] + w["pos"][None]
        b, t, _ = h.shape
        q, k, v = jnp.split((h @ w["qkv"]).reshape(b, t, 3 * heads, d_model // heads), 3, axis=2)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(d_model // heads))
        a = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((t, t), bool))[None, None], s, -1e9), axis=-1)
        h = h + jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(b, t, d_model) @ w["proj"]
        h = h + jax.nn.relu(h @ w["up"] + w["up_b"][None, None]) @ w["down"] + w["down_b"][None, None]
        return h[:, -1] @ w["out"]

    def loss(w, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(forward(w, xb), yb).mean()

    def run(key, hp):
        tx = optax.adamw(hp["lr"], b1=0.9, b2=hp["b2"], eps=1e-8, weight_decay=hp["wd"])
        w = init(jax.random.split(key)[0])

        def step(c, _):
            w, s, total = c
            value, g = jax.value_and_grad(loss)(w, x, y)
            u, s = tx.update(g, s, w)
            return (optax.apply_updates(w, u), s, total + value), None

        (w, _, total), _ = jax.lax.scan(step, (w, tx.init(w), jnp.float32(0)), None, length=steps)
        out = {"train_loss_mean": total / steps}
        for split, (xs, ys) in (("train", (x, y)), ("val", (xv, yv))):
            logits = forward(w, xs)
            out[f"{split}_loss"] = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
            out[f"{split}_accuracy"] = (logits.argmax(-1) == ys).mean()
        return out

    return run


def measure(n: int, a, peak: dict | None) -> dict:
    """One row: every method on n trials with the same hyperparameters and keys."""
    options = default_compiler_options(jax.devices()[0])
    jit = functools.partial(jax.jit, compiler_options=options or None)
    devs = jax.devices()
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in SPACE.sample(jax.random.key(1), n).items()}
    keys = jax.random.split(jax.random.key(0), n)
    row = {"N": n, "devices": len(devs)}
    train, val = attention.modular_data(31, "add", 0.5, 0)

    def task():
        return jt.tasks.get("modular_arithmetic", **SIZE, steps=a.steps, eval_every=a.steps)

    ex = Executor(task().objective, SPACE, compiler_options=options)
    first, _ = clock(lambda: [m for _, m, _ in ex.run(hp, keys)])
    row["jaxtune_s"], out = best_of(lambda: [m for _, m, _ in ex.run(hp, keys)])
    row["jaxtune_compile_s"] = first - row["jaxtune_s"]
    row["jaxtune_val_acc"] = float(np.mean(np.concatenate([m["val_accuracy"] for m in out])))

    def e2e():
        t = task()
        return jt.tune(t.objective, SPACE, "random", trials=n, metric="val_accuracy", mode="max", progress=False)

    row["jaxtune_e2e_s"], _ = best_of(lambda: e2e().best["value"])
    vrun = jit(jax.vmap(handwritten(a.steps, train, val)))
    parts = common.split_over_devices((keys, hp), n)
    first, _ = clock(lambda: [vrun(*p) for p in parts])
    row["handwritten_s"], out = best_of(lambda: [vrun(*p) for p in parts])
    row["handwritten_compile_s"] = first - row["handwritten_s"]
    row["handwritten_val_acc"] = float(np.mean(np.concatenate([o["val_accuracy"] for o in out])))
    srun = jit(handwritten(a.steps, train, val))
    inputs = [jax.device_put(({k: v[i] for k, v in hp.items()}, keys[i]), devs[i % len(devs)]) for i in range(n)]
    clock(lambda: [srun(k, h) for h, k in inputs[: len(devs)]])
    row["sequential_s"], _ = best_of(lambda: [srun(k, h) for h, k in inputs])
    row["optuna_s"], _ = best_of(lambda: optuna_sweep(n, jit(handwritten(a.steps, train, val)), devs))
    if peak:
        cost = roofline.Cost(0.0, 0.0)
        for part_keys, part_hp in parts:
            c = roofline.program_cost(jax.vmap(handwritten(a.steps, train, val)), part_keys, part_hp)
            cost = roofline.Cost(cost.flops + c.flops, cost.bytes + c.bytes)
        row.update(flops=cost.flops, bytes=cost.bytes)
        for name in ("jaxtune", "handwritten", "sequential"):
            row.update(roofline.columns(name, cost, row[f"{name}_s"], peak))
    return row


def optuna_sweep(n: int, run, devs) -> float:
    """``n`` Optuna trials (random sampler, ``n_jobs`` = devices), each the compiled trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        h = {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
             "wd": trial.suggest_float("wd", 1e-2, 10.0, log=True),
             "b2": 1 - trial.suggest_float("omb2", 1e-3, 1e-1, log=True)}  # fmt: skip
        h, key = jax.device_put(({k: jnp.float32(v) for k, v in h.items()}, jax.random.key(trial.number)),
                                devs[trial.number % len(devs)])  # fmt: skip
        return float(run(key, h)["val_accuracy"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n, n_jobs=len(devs))
    return study.best_value


def table(rows) -> str:
    lines = [f"{'N':>4} {'jaxtune':>9} {'hand':>9} {'seq':>9} {'jt e2e':>9} {'optuna':>9}   hand/jt  seq/jt  "
             "optuna/jt e2e  % peak FLOP/s jt (hand)"]  # fmt: skip
    for r in rows:
        frac = ""
        if "flops" in r:
            frac = f"{100 * r['jaxtune_flops_frac']:5.1f} ({100 * r['handwritten_flops_frac']:4.1f})"
        lines.append(
            f"{r['N']:>4} {r['jaxtune_s']:9.3f} {r['handwritten_s']:9.3f} {r['sequential_s']:9.3f} "
            f"{r['jaxtune_e2e_s']:9.3f} {r['optuna_s']:9.3f}   {r['handwritten_s'] / r['jaxtune_s']:6.2f}x "
            f"{r['sequential_s'] / r['jaxtune_s']:6.2f}x {r['optuna_s'] / r['jaxtune_e2e_s']:12.2f}x  {frac}"
        )
    lines.append("(ratios above 1: jaxtune is faster)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="1,2,4,8,16,32,64")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-roofline", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    jt.use_cpu_cores()
    import throughput

    throughput.REPEATS = a.repeats
    peak = None if a.no_roofline else roofline.peaks()
    rows = []
    for n in (int(v) for v in a.ns.split(",")):
        rows.append(measure(n, a, peak))
        print(table(rows[-1:]).splitlines()[1], flush=True)
    print(table(rows))
    payload = {"task": {**SIZE, "steps": a.steps}, "peak": peak, "rows": rows}
    common.write(f"transformer_{jax.default_backend()}", payload, a.out)
    return payload


if __name__ == "__main__":
    main()
