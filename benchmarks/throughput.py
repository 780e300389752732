"""Throughput on the reference task: jaxtune vs the hand-written vmap, a sequential compiled loop,
a per-step Python loop, Optuna and hyperoptax, all in one process on one machine.

jaxtune runs as the CLI runs it: on a CPU, JAX gets one device per core (jt.use_cpu_cores; pass
--one-device to measure without), and the trials are sharded over them.

Task (as ../shared/anchors/vmap_anchor.py): MNIST-1D, MLP 40-128-128-10, AdamW with per-trial
lr, b1 (log(1-b1) uniform) and weight decay, batch 128, S steps; N trials.

Columns (seconds for N trials; run times exclude compilation, which is reported apart; run and
end-to-end times keep the fastest of --repeats runs, an end-to-end run building and compiling
everything anew):
  jaxtune        jt.Executor over the built-in Trainer (what jt.tune runs), run only
  jaxtune_e2e    jt.tune end to end from a fresh trainer: trace, compile, ask/tell, storage included
  handwritten    jit(vmap(lax.scan training)) written by hand, run only
  sequential     the same scanned trial jitted once, called for one trial after another
  per_step       a Python loop over steps calling a jitted train step (small N only)
  optuna_scan    Optuna (RandomSampler), the compiled scanned trial as objective, end to end
  optuna_scan_jobs  the same with study.optimize(n_jobs=--optuna-jobs) threads
  optuna_step    Optuna (RandomSampler), the per-step loop as objective, end to end (small N; one run)
  hyperoptax     hyperoptax RandomSearch with n_parallel=N, end to end (one run)

    python benchmarks/throughput.py                      # CPU defaults: N=1..64, 500 steps
    python benchmarks/throughput.py --ns 1,64,1024,4096 --steps 1000   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor  # noqa: E402
from jaxtune.tasks import classify, data  # noqa: E402
from jaxtune.tasks.models import MLP  # noqa: E402
from jaxtune.train import Trainer  # noqa: E402

SPACE = jt.Space(
    {
        "lr": jt.Float(1e-4, 1e-1, scale="log"),
        "b1": jt.Float(1 - 10**-0.5, 0.99, scale="reverse_log"),
        "wd": jt.Float(1e-6, 1e-2, scale="log"),
    }
)


# ---- the hand-written baseline, as in the anchor -------------------------------------------
class LinenMLP(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(10)(x)


def handwritten(hidden, batch, steps, x, y, xt, yt):
    model = LinenMLP(hidden)
    x, y, xt, yt = map(jnp.asarray, (x, y, xt, yt))

    def opt(hp):
        return optax.inject_hyperparams(optax.adamw)(learning_rate=hp["lr"], b1=hp["b1"], weight_decay=hp["wd"])

    def init(key, hp):
        params = model.init(key, x[:1])
        return params, opt(hp).init(params)

    def loss_fn(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, xb), yb).mean()

    def step(carry, key, hp):
        params, ostate = carry
        idx = jax.random.randint(key, (batch,), 0, x.shape[0])
        _, g = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
        upd, ostate = opt(hp).update(g, ostate, params)
        return (optax.apply_updates(params, upd), ostate), None

    def evaluate(params):
        return (model.apply(params, xt).argmax(-1) == yt).mean()

    def run(key, hp):
        k0, k1 = jax.random.split(key)
        carry, _ = jax.lax.scan(lambda c, k: step(c, k, hp), init(k0, hp), jax.random.split(k1, steps))
        return evaluate(carry[0])

    return init, step, evaluate, run


def trainer(hidden, batch, steps, x, y, xt, yt):
    return Trainer(
        model=lambda hp, rngs: MLP(40, 10, hidden=hidden, rngs=rngs),
        optimizer=classify.adamw,
        data=(x, y),
        eval_data={"test": (xt, yt)},
        steps=steps,
        batch_size=batch,
    )


def clock(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


REPEATS = 3


def best_of(fn):
    """Fastest of REPEATS runs (the machines are shared and noisy), with its output."""
    runs = [clock(fn) for _ in range(REPEATS)]
    return min(runs, key=lambda r: r[0])


def measure(n, a, arrays, hand, methods):
    hp = {
        k: jnp.asarray(v, jnp.float32) for k, v in jax.tree.map(np.asarray, SPACE.sample(jax.random.key(1), n)).items()
    }
    keys = jax.random.split(jax.random.key(0), n)
    row = {"N": n}
    init, step, evaluate, run = hand

    if "jaxtune" in methods:
        for width in a.vmap_widths:
            name = "jaxtune" if width == "auto" else f"jaxtune_w{width}"
            ex = Executor(
                trainer(a.hidden, a.batch, a.steps, *arrays),
                SPACE,
                vmap_width="auto" if width == "auto" else (None if width == "none" else int(width)),
            )
            first, _ = clock(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])
            t, out = best_of(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])
            row[f"{name}_s"], row[f"{name}_compile_s"] = t, first - t
            row[f"{name}_best_acc"] = float(max(m["test_accuracy"].max() for m in out))
            if width == "auto":
                row["jaxtune_vmap_width"] = ex.vmap_width
    if "jaxtune_e2e" in methods:

        def e2e():  # a fresh trainer: traced and compiled anew
            fresh = trainer(a.hidden, a.batch, a.steps, *arrays)
            return jt.tune(fresh, SPACE, "random", trials=n, metric="test_accuracy", mode="max", progress=False)

        row["jaxtune_e2e_s"], _ = best_of(lambda: e2e().best["value"])
    if "handwritten" in methods:
        vrun = jax.jit(jax.vmap(run))
        first, _ = clock(lambda: vrun(keys, hp))
        row["handwritten_s"], acc = best_of(lambda: vrun(keys, hp))
        row["handwritten_compile_s"] = first - row["handwritten_s"]
        row["handwritten_e2e_s"] = first
        row["handwritten_best_acc"] = float(acc.max())
    if "sequential" in methods and n <= a.seq_max:
        srun = jax.jit(run)
        first, _ = clock(lambda: srun(keys[0], {k: v[0] for k, v in hp.items()}))
        row["sequential_s"], _ = best_of(lambda: [srun(keys[i], {k: v[i] for k, v in hp.items()}) for i in range(n)])
        row["sequential_compile_s"] = first
    if "per_step" in methods and n <= a.naive_max:
        jstep, jeval = jax.jit(step), jax.jit(evaluate)

        def naive():
            accs = []
            for i in range(n):
                h = {k: v[i] for k, v in hp.items()}
                k0, k1 = jax.random.split(keys[i])
                carry = init(k0, h)
                for k in jax.random.split(k1, a.steps):
                    carry, _ = jstep(carry, k, h)
                accs.append(jeval(carry[0]))
            return accs

        h0 = {k: v[0] for k, v in hp.items()}
        clock(lambda: jstep(init(keys[0], h0), keys[0], h0))
        row["per_step_s"], _ = clock(naive)
    if "optuna" in methods:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        def suggest(trial):
            return {
                "lr": jnp.float32(trial.suggest_float("lr", 1e-4, 1e-1, log=True)),
                "b1": jnp.float32(1 - trial.suggest_float("omb1", 1e-2, 10**-0.5, log=True)),
                "wd": jnp.float32(trial.suggest_float("wd", 1e-6, 1e-2, log=True)),
            }

        def optuna_scan(jobs=1):
            scan_run = jax.jit(handwritten(a.hidden, a.batch, a.steps, *arrays)[3])  # fresh: compile counted

            def scan_objective(trial):
                return float(scan_run(jax.random.key(trial.number), suggest(trial)))

            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
            study.optimize(scan_objective, n_trials=n, n_jobs=jobs)

        row["optuna_scan_s"], _ = best_of(optuna_scan)
        if a.optuna_jobs > 1:  # threads: Optuna's own way to use more cores
            row["optuna_scan_jobs_s"], _ = best_of(lambda: optuna_scan(a.optuna_jobs))
        if n <= a.naive_max:
            i2, s2, e2, _ = handwritten(a.hidden, a.batch, a.steps, *arrays)
            js, je = jax.jit(s2), jax.jit(e2)

            def step_objective(trial):
                h = suggest(trial)
                k0, k1 = jax.random.split(jax.random.key(trial.number))
                carry = i2(k0, h)
                for k in jax.random.split(k1, a.steps):
                    carry, _ = js(carry, k, h)
                return float(je(carry[0]))

            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
            row["optuna_step_s"], _ = clock(lambda: study.optimize(step_objective, n_trials=n))
    if "hyperoptax" in methods:
        try:
            import hyperoptax as hox
        except ImportError:
            hox = None
        if hox is not None:
            _, _, _, hrun = handwritten(a.hidden, a.batch, a.steps, *arrays)
            hspace = {
                "lr": hox.LogSpace(1e-4, 1e-1),
                "omb1": hox.LogSpace(1e-2, 10**-0.5),
                "wd": hox.LogSpace(1e-6, 1e-2),
            }

            def hfunc(key, c):
                return hrun(key, {"lr": c["lr"], "b1": 1 - c["omb1"], "wd": c["wd"]})

            state, opt = hox.RandomSearch.init(hspace, n_parallel=n)
            row["hyperoptax_s"], _ = clock(lambda: opt.optimize(state, jax.random.key(0), hfunc, 1)[1][1])
    return row


def table(rows):
    cols = [
        "jaxtune_s",
        "handwritten_s",
        "sequential_s",
        "per_step_s",
        "jaxtune_e2e_s",
        "handwritten_e2e_s",
        "optuna_scan_s",
        "optuna_scan_jobs_s",
        "optuna_step_s",
        "hyperoptax_s",
    ]
    cols = [c for c in cols if any(c in r for r in rows)]
    head = f"{'N':>6} " + " ".join(f"{c[:-2]:>13}" for c in cols)
    lines = [head]
    for r in rows:
        lines.append(f"{r['N']:>6} " + " ".join(f"{r[c]:13.3f}" if c in r else f"{'-':>13}" for c in cols))
    lines.append("")
    lines.append(f"{'N':>6} {'jt trials/s':>12} {'jt/hand':>8} {'jt/seq':>8} {'jt/step':>8} {'e2e/optuna':>10}")
    for r in rows:
        jt_s = r.get("jaxtune_s")
        if jt_s is None:
            continue

        def ratio(k, base=jt_s, r=r):
            return f"{r[k] / base:7.2f}x" if k in r else f"{'-':>8}"

        e2e = (
            f"{r['optuna_scan_s'] / r['jaxtune_e2e_s']:9.2f}x"
            if "optuna_scan_s" in r and "jaxtune_e2e_s" in r
            else f"{'-':>10}"
        )
        lines.append(
            f"{r['N']:>6} {r['N'] / jt_s:12.1f} {ratio('handwritten_s')} {ratio('sequential_s')} "
            f"{ratio('per_step_s')} {e2e}"
        )
    return "\n".join(lines)


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("jaxtune_s", "jaxtune"),
        ("handwritten_s", "hand-written vmap"),
        ("sequential_s", "sequential compiled"),
        ("per_step_s", "per-step loop"),
        ("jaxtune_e2e_s", "jaxtune (e2e)"),
        ("optuna_scan_s", "Optuna, scan objective (e2e)"),
        ("hyperoptax_s", "hyperoptax (e2e)"),
    ):
        pts = [(r["N"], r["N"] / r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("trials N")
    ax.set_ylabel("trials / s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="1,2,4,8,16,32,64")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--methods", default="jaxtune,jaxtune_e2e,handwritten,sequential,per_step,optuna,hyperoptax")
    p.add_argument("--vmap-widths", default="auto", help="comma list of jaxtune vmap widths: auto, none, or ints")
    p.add_argument("--seq-max", type=int, default=64)
    p.add_argument("--naive-max", type=int, default=8)
    p.add_argument("--optuna-jobs", type=int, default=2, help="also run Optuna with this many threads (1: no)")
    p.add_argument("--one-device", action="store_true", help="do not give JAX one CPU device per core")
    p.add_argument("--repeats", type=int, default=3, help="run-only timings keep the fastest of this many")
    p.add_argument("--data", default=None, help=".npz with x, y, x_test, y_test (default: generate MNIST-1D)")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()  # what the jaxtune CLI does; the baselines run on one device as written
    a.vmap_widths = a.vmap_widths.split(",")
    global REPEATS
    REPEATS = a.repeats
    s = data.mnist1d(path=a.data)
    # The anchor trains on all 4000 training sequences and evaluates on the test set.
    arrays = (np.concatenate([s.train[0], s.val[0]]), np.concatenate([s.train[1], s.val[1]]), *s.test)
    hand = handwritten(a.hidden, a.batch, a.steps, *arrays)
    methods = set(a.methods.split(","))
    rows = []
    for n in [int(v) for v in a.ns.split(",")]:
        rows.append(measure(n, a, arrays, hand, methods))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    name = a.name or f"throughput_{jax.default_backend()}"
    path = common.write(name, {"steps": a.steps, "hidden": a.hidden, "batch": a.batch, "rows": rows}, a.out)
    fig = plot(rows, path.replace(".json", ".png"))
    if fig:
        print(f"figure: {fig}")


if __name__ == "__main__":
    main()
