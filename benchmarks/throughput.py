"""Throughput on the reference task: jaxtune vs the hand-written vmap, a sequential compiled loop,
a per-step Python loop, Optuna and hyperoptax, all in one process on one machine.

Every method gets what jaxtune gets: on a CPU, JAX has one device per core (jt.use_cpu_cores, as
the CLI does; --one-device turns it off for all), and every program is compiled with jaxtune's
options for the platform (jaxtune.execute.COMPILER_OPTIONS; --xla-defaults uses XLA's for all).
The hand-written vmap splits its trial axis over the devices (a part committed to each device,
called asynchronously), the sequential loop and Optuna's trials alternate between the devices (Optuna
with n_jobs = devices threads), so every column uses every core. The per-step loop runs on one
device (a Python loop over steps; shown for small N only). Each (N, method) is measured in a
fresh process (--no-isolate: all in one), so no method compiles with another's caches (on a
GPU, XLA's autotuning results are cached per process: the first method to compile pays them).

Task (as ../shared/anchors/vmap_anchor.py): MNIST-1D, MLP 40-128-128-10, AdamW with per-trial
lr, b1 (log(1-b1) uniform) and weight decay, batch 128, S steps; N trials.

Columns (seconds for N trials; run times exclude compilation, which is reported apart; run and
end-to-end times keep the fastest of --repeats runs, an end-to-end run building and compiling
everything anew):
  jaxtune        jt.Executor over the built-in Trainer (what jt.tune runs), run only
  jaxtune_e2e    jt.tune end to end from a fresh trainer: trace, compile, ask/tell, storage included
  handwritten    jit(vmap(lax.scan training)) written by hand, run only
  sequential     the same scanned trial jitted once, called for one trial after another
  per_step       a Python loop over steps calling a jitted train step (small N only; one device)
  optuna_scan_jobs  Optuna (RandomSampler), the compiled scanned trial as objective, end to end,
                 study.optimize(n_jobs = devices) threads: the headline Optuna column
  optuna_scan    the same with one thread
  optuna_step    Optuna (RandomSampler), the per-step loop as objective, end to end (small N; one run)
  hyperoptax     hyperoptax RandomSearch with n_parallel=N, end to end (one run)
  stages         one trial's trace, lowering and XLA compile: jaxtune's trial program against the
                 hand-written one (fastest of --repeats, alternating; optimised HLO instructions)

All compute the same thing: the same MLP (Flax Linen by hand, NNX in the Trainer: the same
initialisers, other init draws), the same minibatch indices per step (the same key splits),
AdamW with the same hyperparameters, and the same metrics (mean training loss, test loss and
test accuracy). ``*_test_acc`` columns record each method's mean test accuracy to check it.

    python benchmarks/throughput.py                      # CPU defaults: N=1..64, 500 steps
    python benchmarks/throughput.py --ns 1,64,1024,4096 --steps 1000   # a GPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

# No persistent compilation cache for any method: jaxtune would load its program on a repeated
# end-to-end run where the others compile theirs again (set it to compare both with a cache).
os.environ.setdefault("JAXTUNE_CACHE_DIR", "none")

import flax.linen as nn  # noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import roofline  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor, default_compiler_options  # noqa: E402
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


def handwritten(hidden, batch, steps, x, y, xt, yt, jit=jax.jit):
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
        loss, g = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
        upd, ostate = opt(hp).update(g, ostate, params)
        return (optax.apply_updates(params, upd), ostate), loss

    def evaluate(params):
        logits = model.apply(params, xt)
        return {
            "test_loss": optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean(),
            "test_accuracy": (logits.argmax(-1) == yt).mean(),
        }

    def run(key, hp):  # the Trainer's metrics: mean training loss, test loss and accuracy
        k0, k1 = jax.random.split(key)

        def body(c, k):
            carry, total = c
            carry, loss = step(carry, k, hp)
            return (carry, total + loss), None

        (carry, total), _ = jax.lax.scan(body, (init(k0, hp), jnp.float32(0)), jax.random.split(k1, steps))
        return {"train_loss": total / steps, **evaluate(carry[0])}

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


def stages(a, arrays, hp, keys, jit, options):
    """One trial's trace, lowering and XLA compile, jaxtune's trial program (the Trainer, as
    ``jt.tune`` traces it) against the hand-written one, each built anew and alternating, fastest
    of REPEATS; with the instruction count of each optimised program."""
    one = ({k: v[0] for k, v in hp.items()}, keys[0])

    def hand():
        return jit(handwritten(a.hidden, a.batch, a.steps, *arrays)[3]), (one[1], one[0])

    def ours():
        ex = Executor(trainer(a.hidden, a.batch, a.steps, *arrays), SPACE, compiler_options=options)
        return jit(ex.trial_fn.single(())), one

    out = {}
    for name, make in [("hand", hand), ("jaxtune", ours)] * REPEATS:
        fn, args = make()
        t0 = time.perf_counter()
        traced = fn.trace(*args)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        compiled = lowered.compile()
        t3 = time.perf_counter()
        for stage, t in (("trace", t1 - t0), ("lower", t2 - t1), ("compile", t3 - t2)):
            out[f"stages_{name}_{stage}_s"] = min(out.get(f"stages_{name}_{stage}_s", t), t)
        out[f"stages_{name}_hlo_instructions"] = compiled.as_text().count(" = ")
    return out


def measure(n, a, arrays, methods):
    """One row: every method in ``methods`` on n trials (same hyperparameters and keys for all)."""
    options = {} if a.xla_defaults else default_compiler_options(jax.devices()[0])
    jit = functools.partial(jax.jit, compiler_options=options or None)
    hp = {
        k: jnp.asarray(v, jnp.float32) for k, v in jax.tree.map(np.asarray, SPACE.sample(jax.random.key(1), n)).items()
    }
    keys = jax.random.split(jax.random.key(0), n)
    devs = jax.devices()
    row = {"N": n, "devices": len(devs), "compiler_options": options}

    def fresh():  # a new closure: nothing compiled for one method or N is reused by another
        return handwritten(a.hidden, a.batch, a.steps, *arrays)

    def trial_inputs(i):
        """TrialFunction i's hyperparameters and key, on the device it runs on (trials alternate between devices)."""
        return jax.device_put(({k: v[i] for k, v in hp.items()}, keys[i]), devs[i % len(devs)])

    if "jaxtune" in methods:
        for width in a.vmap_widths:
            name = "jaxtune" if width == "auto" else f"jaxtune_w{width}"
            ex = Executor(
                trainer(a.hidden, a.batch, a.steps, *arrays),
                SPACE,
                vmap_width="auto" if width == "auto" else (None if width == "none" else int(width)),
                compiler_options=options,
            )
            first, _ = clock(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])
            t, out = best_of(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])
            row[f"{name}_s"], row[f"{name}_compile_s"] = t, first - t
            row[f"{name}_test_acc"] = float(np.mean(np.concatenate([m["test_accuracy"] for m in out])))
            if width == "auto":
                row["jaxtune_vmap_width"] = ex.vmap_width_of(())
    if "jaxtune_e2e" in methods:

        def e2e():  # a fresh trainer: traced and compiled anew
            fresh_trainer = trainer(a.hidden, a.batch, a.steps, *arrays)
            return jt.tune(fresh_trainer, SPACE, "random", trials=n, metric="test_accuracy", mode="max", progress=False)

        row["jaxtune_e2e_s"], _ = best_of(lambda: e2e().best["value"])
    if "stages" in methods:
        row.update(stages(a, arrays, hp, keys, jit, options))
    if "handwritten" in methods:
        vrun = jit(jax.vmap(fresh()[3]))
        parts = common.split_over_devices((keys, hp), n)  # the two lines that put a part on each device
        first, _ = clock(lambda: [vrun(*p) for p in parts])
        row["handwritten_s"], out = best_of(lambda: [vrun(*p) for p in parts])
        row["handwritten_compile_s"] = first - row["handwritten_s"]
        row["handwritten_e2e_s"] = first
        row["handwritten_test_acc"] = float(np.mean(np.concatenate([o["test_accuracy"] for o in out])))
    if "sequential" in methods and n <= a.seq_max:
        srun = jit(fresh()[3])
        inputs = [trial_inputs(i) for i in range(n)]
        # Compile (one executable per device used), then time the loop: calls dispatch
        # asynchronously, so trials on different devices run side by side.
        first, _ = clock(lambda: [srun(k, h) for h, k in inputs[: len(devs)]])
        row["sequential_compile_s"] = first
        row["sequential_s"], out = best_of(lambda: [srun(k, h) for h, k in inputs])
        row["sequential_test_acc"] = float(np.mean([o["test_accuracy"] for o in out]))
    if a.peaks:  # the fraction of this machine's peaks each method reached (benchmarks/roofline.py)
        peak = json.loads(a.peaks)
        cost = roofline.Cost(0.0, 0.0)
        for part_keys, part_hp in common.split_over_devices((keys, hp), n):  # what each device's part computes
            c = roofline.program_cost(jax.vmap(fresh()[3]), part_keys, part_hp)
            cost = roofline.Cost(cost.flops + c.flops, cost.bytes + c.bytes)
        row.update(flops=cost.flops, bytes=cost.bytes)
        for name in ("jaxtune", "handwritten", "sequential"):
            if f"{name}_s" in row:
                row.update(roofline.columns(name, cost, row[f"{name}_s"], peak))
    if "per_step" in methods and n <= a.naive_max:
        init, step, evaluate, _ = fresh()
        jstep, jeval, jinit = jit(step), jit(evaluate), jit(init)

        def naive(count):
            accs = []
            for i in range(count):
                h = {k: v[i] for k, v in hp.items()}
                k0, k1 = jax.random.split(keys[i])
                carry = jinit(k0, h)
                for k in jax.random.split(k1, a.steps):
                    carry, _ = jstep(carry, k, h)
                accs.append(jeval(carry[0])["test_accuracy"])
            return accs

        row["per_step_compile_s"], _ = clock(lambda: naive(1))  # one whole trial warms every program
        row["per_step_s"], accs = clock(lambda: naive(n))
        row["per_step_test_acc"] = float(np.mean(accs))
    if "optuna" in methods:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        def suggest(trial):
            h = {
                "lr": jnp.float32(trial.suggest_float("lr", 1e-4, 1e-1, log=True)),
                "b1": jnp.float32(1 - trial.suggest_float("omb1", 1e-2, 10**-0.5, log=True)),
                "wd": jnp.float32(trial.suggest_float("wd", 1e-6, 1e-2, log=True)),
            }
            return jax.device_put((h, jax.random.key(trial.number)), devs[trial.number % len(devs)])

        def optuna_scan(jobs):
            scan_run = jit(fresh()[3])  # fresh: compile counted

            def scan_objective(trial):
                h, key = suggest(trial)
                return float(scan_run(key, h)["test_accuracy"])

            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
            study.optimize(scan_objective, n_trials=n, n_jobs=jobs)

        row["optuna_scan_jobs"] = len(devs)
        row["optuna_scan_jobs_s"], _ = best_of(lambda: optuna_scan(len(devs)))
        if a.optuna_one_thread:
            row["optuna_scan_s"], _ = best_of(lambda: optuna_scan(1))
        if n <= a.naive_max:
            i2, s2, e2, _ = fresh()
            js, je, ji = jit(s2), jit(e2), jit(i2)

            def step_objective(trial):
                h, key = suggest(trial)
                k0, k1 = jax.random.split(key)
                carry = ji(k0, h)
                for k in jax.random.split(k1, a.steps):
                    carry, _ = js(carry, k, h)
                return float(je(carry[0])["test_accuracy"])

            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
            row["optuna_step_s"], _ = clock(lambda: study.optimize(step_objective, n_trials=n, n_jobs=len(devs)))
    if "hyperoptax" in methods:
        try:
            import hyperoptax as hox
        except ImportError:
            hox = None
        if hox is not None:
            hrun = fresh()[3]
            hspace = {
                "lr": hox.LogSpace(1e-4, 1e-1),
                "omb1": hox.LogSpace(1e-2, 10**-0.5),
                "wd": hox.LogSpace(1e-6, 1e-2),
            }

            def hfunc(key, c):
                return hrun(key, {"lr": c["lr"], "b1": 1 - c["omb1"], "wd": c["wd"]})["test_accuracy"]

            state, opt = hox.RandomSearch.init(hspace, n_parallel=n)
            row["hyperoptax_s"], _ = clock(lambda: opt.optimize(state, jax.random.key(0), hfunc, 1)[1][1])
    return row


COLUMNS = [
    "jaxtune_s",
    "handwritten_s",
    "sequential_s",
    "per_step_s",
    "jaxtune_e2e_s",
    "optuna_scan_jobs_s",
    "optuna_scan_s",
    "optuna_step_s",
    "hyperoptax_s",
]


def table(rows):
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    head = f"{'N':>6} " + " ".join(f"{c[:-2]:>13}" for c in cols)
    lines = [head]
    for r in rows:
        lines.append(f"{r['N']:>6} " + " ".join(f"{r[c]:13.3f}" if c in r else f"{'-':>13}" for c in cols))
    lines.append("")
    lines.append(f"{'N':>6} {'jt trials/s':>12} {'hand/jt':>8} {'seq/jt':>8} {'step/jt':>8} {'optuna_jobs/jt e2e':>18}")
    for r in rows:
        jt_s = r.get("jaxtune_s")
        if jt_s is None:
            continue

        def ratio(k, base=jt_s, r=r, w=8):
            return f"{r[k] / base:{w - 1}.2f}x" if k in r else f"{'-':>{w}}"

        e2e = ratio("optuna_scan_jobs_s", r.get("jaxtune_e2e_s", 1.0), w=18) if "jaxtune_e2e_s" in r else f"{'-':>18}"
        lines.append(
            f"{r['N']:>6} {r['N'] / jt_s:12.1f} {ratio('handwritten_s')} {ratio('sequential_s')} "
            f"{ratio('per_step_s')} {e2e}"
        )
    if any("jaxtune_flops_frac" in r for r in rows):
        lines += ["", f"{'N':>6} {'FLOPs/byte':>10}  % of peak FLOP/s (and bytes/s): jaxtune, hand-written, sequential"]
        for r in rows:
            pct = "  ".join(
                f"{100 * r[f'{m}_flops_frac']:5.1f} ({100 * r[f'{m}_bytes_frac']:4.1f})" if f"{m}_flops_frac" in r
                else f"{'-':>12}" for m in ("jaxtune", "handwritten", "sequential")
            )  # fmt: skip
            lines.append(f"{r['N']:>6} {r['flops'] / r['bytes']:10.1f}  {pct}")
    lines.append("(ratios above 1: jaxtune is faster)")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="1,2,8,32,128")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--methods", default="jaxtune,jaxtune_e2e,handwritten,sequential,per_step,optuna,hyperoptax")
    p.add_argument("--vmap-widths", default="auto", help="comma list of jaxtune vmap widths: auto, none, or ints")
    p.add_argument("--seq-max", type=int, default=64)
    p.add_argument("--naive-max", type=int, default=8)
    p.add_argument("--optuna-one-thread", action="store_true", help="also run Optuna with n_jobs=1")
    p.add_argument("--one-device", action="store_true", help="one JAX device for every method (no jt.use_cpu_cores)")
    p.add_argument("--xla-defaults", action="store_true", help="XLA's default compiler options for every method")
    p.add_argument("--repeats", type=int, default=3, help="run-only and e2e timings keep the fastest of this many")
    p.add_argument("--no-isolate", action="store_true", help="measure every (N, method) in this one process")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=".npz with x, y, x_test, y_test (default: generate MNIST-1D)")
    p.add_argument("--peaks", default=None, help=argparse.SUPPRESS)  # measured once, by the parent
    p.add_argument("--no-roofline", action="store_true", help="no FLOPs, bytes and fractions of peak")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()  # what the jaxtune CLI does, for every method
    a.vmap_widths = a.vmap_widths.split(",")
    global REPEATS
    REPEATS = a.repeats
    s = data.mnist1d(path=a.data)
    # The anchor trains on all 4000 training sequences and evaluates on the test set.
    arrays = (np.concatenate([s.train[0], s.val[0]]), np.concatenate([s.train[1], s.val[1]]), *s.test)
    if not a.no_roofline and a.peaks is None:
        a.peaks = json.dumps(roofline.peaks())
        argv = [*argv, "--peaks", a.peaks]
    methods = a.methods.split(",")
    ns = [int(v) for v in a.ns.split(",")]
    if a.worker or a.no_isolate:
        rows = [measure(n, a, arrays, set(methods)) for n in ns]
        if a.worker:
            print("ROW " + json.dumps(rows[0]), flush=True)
            return
    else:
        import tempfile

        base = [v for v in argv if v != "--no-isolate"]
        with tempfile.TemporaryDirectory() as tmp:
            npz = a.data or os.path.join(tmp, "mnist1d.npz")
            if not a.data:  # generated once, read by every worker
                data.save_npz(npz)
            rows = []
            for n in ns:
                row = {}
                for m in methods:
                    cmd = [sys.executable, os.path.abspath(__file__), *base, "--worker", "--ns", str(n), "--methods", m]
                    cmd += ["--data", npz]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        raise RuntimeError(f"{m} at N={n} failed:\n{proc.stderr[-3000:]}")
                    row.update(json.loads(proc.stdout.split("ROW ", 1)[1]))
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(table(rows))
    name = a.name or f"throughput_{jax.default_backend()}"
    payload = {"steps": a.steps, "hidden": a.hidden, "batch": a.batch, "isolated": not a.no_isolate, "rows": rows,
               "peaks": json.loads(a.peaks) if a.peaks else None}  # fmt: skip
    path = common.write(name, payload, a.out)
    fig = plot(rows, path.replace(".json", ".png"))
    if fig:
        print(f"figure: {fig}")


if __name__ == "__main__":
    main()
