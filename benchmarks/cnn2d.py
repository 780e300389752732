"""A 2-D CNN as people bring it: the Flax NNX MNIST tutorial's CNN on scikit-learn digits.

The model (:class:`jaxtune.tasks.models.TutorialCNN`: Conv-Dropout-BatchNorm, pools, two Linear
layers) is the tutorial's, resized for 8x8 images; AdamW with lr, b1 and weight decay tuned,
batch 32, 500 steps (the built-in task ``digits_cnn``). Parts (``--parts``):

  equality  the Trainer's automatic patches @ kernel (jt.layers.patch_convs) vs the model's
            nnx.Conv as written, same init and data: test losses after a few steps, in full
            float32 and at the backend's default precision
  plan      run time per trial on this machine for the CPU plans: vmapped groups of 8 (the
            default) and one trial after another inside a program (vmap width 1), each with
            the convolutions as patches and as nnx.Conv
  one       one trial: ``jt.tune(trials=1)`` end to end vs the same Trainer under a plain
            ``jax.jit`` (compile + run), each traced anew, alternating, fastest of --repeats
  e2e       a 48-trial sweep end to end: jaxtune (coarse-to-fine, 3 rounds of 16) vs Optuna (TPE,
            n_jobs = devices threads, trials alternating between devices) with two objectives:
            ``optuna_jit`` the same Trainer under a plain ``jax.jit`` (hyperparameters traced:
            one compile per device), ``optuna_tutorial`` the tutorial's own loop (``nnx.Optimizer``
            with Python-float hyperparameters and an ``nnx.jit`` train step per batch: one compile
            per trial, nnx.Conv). One run each (minutes long; --no-tutorial leaves the last out).

With --roofline, one trial's FLOPs (XLA's cost analysis, through its loops) and this machine's
measured peaks give each time's fraction of peak FLOP/s: run-only times on one device against one
device's share of the peak, end-to-end sweeps (compile included) against all devices'.

Every method runs on the same devices (one per core on a CPU, as the jaxtune CLI does) with the
same compiler options (jaxtune's for the platform).

    python benchmarks/cnn2d.py                       # all parts, CPU defaults
    python benchmarks/cnn2d.py --parts equality,plan --n 64   # a GPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import roofline  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor, default_compiler_options  # noqa: E402
from jaxtune.tasks import classify, data  # noqa: E402
from jaxtune.tasks.models import TutorialCNN  # noqa: E402


def clock(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def task(a, conv="patches", steps=None):
    return classify.digits_cnn(steps=steps or a.steps, batch_size=a.batch, conv=conv)


def sample(space, n, seed=1):
    return {k: jnp.asarray(v) for k, v in space.sample(jax.random.key(seed), n).items()}


def equality(a, row):
    """Test losses of PatchConv and nnx.Conv trials after a.check_steps steps (same init, same data)."""
    n = 4
    hp = sample(classify.default_space(), n)
    keys = jax.random.split(jax.random.key(0), n)

    def losses(conv):
        ex = Executor(task(a, conv, a.check_steps).objective, classify.default_space())
        return np.concatenate([m["test_loss"] for _, m, _ in ex.run(hp, keys)])

    with jax.default_matmul_precision("highest"):
        row["check_max_abs_loss_diff"] = float(np.max(np.abs(losses("patches") - losses("nnx"))))
    row["check_max_abs_loss_diff_default_precision"] = float(np.max(np.abs(losses("patches") - losses("nnx"))))
    row["check_steps"] = a.check_steps


def plan(a, row, options):
    """Run seconds per trial (fastest of 2 after a compile) for each CPU plan and conv."""
    hp = sample(classify.default_space(), a.n)
    keys = jax.random.split(jax.random.key(0), a.n)
    for conv in ("patches", "nnx"):
        for width in (8, 1):
            ex = Executor(
                task(a, conv, a.plan_steps).objective,
                classify.default_space(),
                vmap_width=width,
                compiler_options=options,
            )
            first, _ = clock(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])
            t = min(clock(lambda ex=ex: [m for _, m, _ in ex.run(hp, keys)])[0] for _ in range(2))
            row[f"plan_{conv}_w{width}_s_per_trial"] = t / a.n
            row[f"plan_{conv}_w{width}_compile_s"] = first - t
            print(f"  plan {conv} vmap_width={width}: {t / a.n:.3f} s/trial, compile {first - t:.1f} s", flush=True)


def one_trial(a, row, options):
    """jt.tune(trials=1) vs jax.jit(trainer), end to end and run only, each traced anew."""
    space = classify.default_space()
    hp = {k: v[0] for k, v in sample(space, 1).items()}
    key = jax.random.key(0)
    hp1 = {k: v[None] for k, v in hp.items()}
    jit = functools.partial(jax.jit, compiler_options=options or None)
    tune_e2e, jit_e2e, tune_run, jit_run = [], [], [], []
    for _ in range(a.repeats):
        t, result = clock(
            lambda: jt.tune(task(a).objective, space, "random", trials=1, progress=False, metric="val_loss")
        )
        tune_e2e.append(t)
        fn = jit(task(a).objective)
        t, out = clock(lambda fn=fn: fn(hp, key))
        jit_e2e.append(t)
        jit_run.append(clock(lambda fn=fn: fn(hp, key))[0])
        ex = Executor(task(a).objective, space, compiler_options=options)
        clock(lambda ex=ex: [m for _, m, _ in ex.run(hp1, key[None])])
        tune_run.append(clock(lambda ex=ex: [m for _, m, _ in ex.run(hp1, key[None])])[0])
    row.update(
        one_trial_tune_e2e_s=min(tune_e2e),
        one_trial_jit_e2e_s=min(jit_e2e),
        one_trial_executor_run_s=min(tune_run),
        one_trial_jit_run_s=min(jit_run),
        one_trial_repeats=a.repeats,
    )
    print(
        f"  one trial: jt.tune {min(tune_e2e):.2f} s vs jax.jit {min(jit_e2e):.2f} s end to end "
        f"({min(tune_e2e) / min(jit_e2e):.3f}x); run only {min(tune_run):.3f} vs {min(jit_run):.3f} s",
        flush=True,
    )


def tutorial_objective(trial, splits, a, devs):
    """The Flax NNX tutorial's training loop as an Optuna objective (its ordinary form)."""
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    b1 = 1 - trial.suggest_float("one_minus_b1", 1e-3, 0.2, log=True)
    wd = trial.suggest_float("wd", 1e-5, 1.0, log=True)
    (x, y), (xv, yv) = splits.train, splits.val
    with jax.default_device(devs[trial.number % len(devs)]):
        model = TutorialCNN(rngs=nnx.Rngs(trial.number))
        optimizer = nnx.Optimizer(model, optax.adamw(lr, b1=b1, b2=0.999, eps=1e-8, weight_decay=wd), wrt=nnx.Param)

        @nnx.jit
        def train_step(model, optimizer, xb, yb):
            def loss_fn(model):
                return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads)
            return loss

        @nnx.jit
        def eval_step(model, xv, yv):
            return jnp.mean(jnp.argmax(model(xv), -1) == yv)

        rng = np.random.default_rng(trial.number)
        model.train()
        for _ in range(a.steps):
            idx = rng.integers(0, len(x), a.batch)
            train_step(model, optimizer, x[idx], y[idx])
        model.eval()
        return float(eval_step(model, xv, yv))


def e2e(a, row, options):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    devs = jax.devices()
    space = classify.default_space()
    rounds, per_round = 3, a.trials // 3
    t = time.perf_counter()
    tk = task(a)
    result = jt.tune(
        tk.objective,
        space,
        "coarse_to_fine",
        trials=per_round,
        rounds=rounds,
        metric=tk.metric,
        mode=tk.mode,
        progress=False,
    )
    row["e2e_jaxtune_s"] = time.perf_counter() - t
    row["e2e_jaxtune_best_val_acc"] = result.best["metrics"]["val_accuracy"]
    print(f"  jaxtune: {row['e2e_jaxtune_s']:.1f} s, best val acc {row['e2e_jaxtune_best_val_acc']:.3f}", flush=True)

    jit = functools.partial(jax.jit, compiler_options=options or None)
    trainer = jit(task(a).objective)

    def jit_objective(trial):
        hp = {
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "b1": 1 - trial.suggest_float("one_minus_b1", 1e-3, 0.2, log=True),
            "wd": trial.suggest_float("wd", 1e-5, 1.0, log=True),
        }
        hp, key = jax.device_put(
            ({k: np.float32(v) for k, v in hp.items()}, jax.random.key(trial.number)), devs[trial.number % len(devs)]
        )
        return float(trainer(hp, key)["val_accuracy"])

    data_splits = data.digits()  # the splits the task trains and selects on
    objectives = [("optuna_jit", jit_objective)]
    if not a.no_tutorial:
        objectives.append(("optuna_tutorial", lambda trial: tutorial_objective(trial, data_splits, a, devs)))
    for name, objective in objectives:
        t = time.perf_counter()
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=a.trials, n_jobs=len(devs))
        row[f"e2e_{name}_s"] = time.perf_counter() - t
        row[f"e2e_{name}_best_val_acc"] = study.best_value
        print(f"  {name}: {row[f'e2e_{name}_s']:.1f} s, best val acc {study.best_value:.3f}", flush=True)
    row["e2e_trials"] = a.trials
    row["e2e_optuna_jobs"] = len(devs)


def fractions_of_peak(a, row):
    """One trial's FLOPs and each measured time's fraction of this machine's peak FLOP/s."""
    peak = roofline.peaks()
    space = classify.default_space()
    hp = {k: v[0] for k, v in sample(space, 1).items()}
    flops = roofline.program_cost(task(a).objective, hp, jax.random.key(0)).flops
    row.update(trial_flops=flops, peak_flops_per_s=peak["flops_per_s"], peak_devices=peak["devices"])
    one_device = peak["flops_per_s"] / peak["devices"]
    for name in ("one_trial_executor_run_s", "one_trial_jit_run_s"):
        if name in row:
            row[name.replace("_s", "_flops_frac")] = flops / row[name] / one_device
    for name in ("e2e_jaxtune_s", "e2e_optuna_jit_s", "e2e_optuna_tutorial_s"):
        if name in row:
            row[name.replace("_s", "_flops_frac")] = row["e2e_trials"] * flops / row[name] / peak["flops_per_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="equality,plan,one,e2e")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n", type=int, default=8, help="trials for the plan part")
    p.add_argument("--plan-steps", type=int, default=200, help="steps per trial in the plan part")
    p.add_argument("--trials", type=int, default=48, help="trials for the e2e part (3 rounds)")
    p.add_argument("--check-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one-device", action="store_true")
    p.add_argument("--no-tutorial", action="store_true", help="e2e without the tutorial's own loop")
    p.add_argument("--roofline", action="store_true", help="FLOPs per trial and fractions of peak")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()
    options = default_compiler_options(jax.devices()[0])
    row = {"devices": jax.device_count(), "compiler_options": options, "steps": a.steps, "batch": a.batch}
    parts = a.parts.split(",")
    if "equality" in parts:
        equality(a, row)
        print(
            f"  equality after {a.check_steps} steps: {row['check_max_abs_loss_diff']:.2e} (float32), "
            f"{row['check_max_abs_loss_diff_default_precision']:.2e} (default precision)",
            flush=True,
        )
    if "plan" in parts:
        row["plan_n"], row["plan_steps"] = a.n, a.plan_steps
        plan(a, row, options)
    if "one" in parts:
        one_trial(a, row, options)
    if "e2e" in parts:
        e2e(a, row, options)
    if a.roofline:
        fractions_of_peak(a, row)
    print(json.dumps(row))
    common.write(a.name or f"cnn2d_{jax.default_backend()}", row, a.out)


if __name__ == "__main__":
    main()
