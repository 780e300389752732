"""The MNIST-1D paper's CNN: convolutions as patches @ kernel vs plain vmap of nnx.Conv.

Plain ``vmap`` of a convolution over trials becomes a grouped convolution with tiny groups;
``PatchConv1d`` computes the same function as one batched matmul. Both variants start from the
same parameters and see the same data, so their results must agree within float tolerance.

The equality check runs in full float32 (``jax.default_matmul_precision("highest")``) and again
at the backend's default precision. On GPUs the default for float32 matmuls and convolutions is
TF32 (10-bit mantissa, ~1e-3 relative), and the two variants round differently (one matmul
against a convolution algorithm): that, amplified by a few Adam steps at learning rates up to
0.1, is what separates their losses on a GPU at default precision; in float32 they agree as on
a CPU.

    python benchmarks/cnn.py                          # CPU: N=1,8,32, 200 steps
    python benchmarks/cnn.py --ns 64,256 --steps 1000 # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import throughput  # noqa: E402

from jaxtune.execute import Executor  # noqa: E402
from jaxtune.tasks import classify, data  # noqa: E402
from jaxtune.tasks.models import CNN  # noqa: E402
from jaxtune.train import Trainer  # noqa: E402


def run(conv, n, a, arrays, steps=None):
    x, y, xt, yt = arrays
    trainer = Trainer(
        model=lambda hp, rngs: CNN(conv=conv, rngs=rngs),
        optimizer=classify.adamw,
        data=(x, y),
        eval_data={"test": (xt, yt)},
        steps=steps or a.steps,
        batch_size=100,
        patch_convs=False,  # each variant as written: nnx.Conv stays a (grouped, vmapped) convolution
    )
    ex = Executor(trainer, throughput.SPACE, vmap_width=None if a.full_vmap else "auto")
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in throughput.SPACE.sample(jax.random.key(1), n).items()}
    keys = jax.random.split(jax.random.key(0), n)
    t = time.perf_counter()
    jax.block_until_ready([m for _, m, _ in ex.run(hp, keys)])
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready([m for _, m, _ in ex.run(hp, keys)])
    sec = time.perf_counter() - t
    acc = np.concatenate([m["test_accuracy"] for m in out])
    loss = np.concatenate([m["test_loss"] for m in out])
    return sec, first - sec, acc, loss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="1,8,32")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--check-steps", type=int, default=10, help="steps of the short run that checks equality")
    p.add_argument("--full-vmap", action="store_true", help="vmap every trial of a chunk at once (GPU default)")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    s = data.mnist1d(path=a.data)
    arrays = (np.concatenate([s.train[0], s.val[0]]), np.concatenate([s.train[1], s.val[1]]), *s.test)
    rows = []
    for n in [int(v) for v in a.ns.split(",")]:
        p_s, p_c, p_acc, p_loss = run("patches", n, a, arrays)
        g_s, g_c, g_acc, g_loss = run("nnx", n, a, arrays)
        # Equality: after a few steps both variants agree to float tolerance; over long runs a
        # chaotic (high learning rate) trial amplifies rounding differences, so medians are kept too.
        with jax.default_matmul_precision("highest"):
            p_short = run("patches", n, a, arrays, steps=a.check_steps)[3]
            g_short = run("nnx", n, a, arrays, steps=a.check_steps)[3]
        p_default = run("patches", n, a, arrays, steps=a.check_steps)[3]
        g_default = run("nnx", n, a, arrays, steps=a.check_steps)[3]
        row = {
            "N": n,
            "check_steps": a.check_steps,
            "check_precision": "highest",
            "check_max_abs_loss_diff": float(np.max(np.abs(p_short - g_short))),
            "check_max_abs_loss_diff_default_precision": float(np.max(np.abs(p_default - g_default))),
            "median_abs_loss_diff": float(np.median(np.abs(p_loss - g_loss))),
            "patches_s": p_s,
            "patches_compile_s": p_c,
            "grouped_s": g_s,
            "grouped_compile_s": g_c,
            "speedup": g_s / p_s,
            "patches_trials_per_s": n / p_s,
            "best_test_acc": float(p_acc.max()),
            "max_abs_loss_diff": float(np.max(np.abs(p_loss - g_loss))),
            "same_accuracy_fraction": float(np.mean(np.abs(p_acc - g_acc) <= 2e-3)),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"{'N':>6} {'grouped s':>10} {'patches s':>10} {'speedup':>8} {'trials/s':>9} {'short |dloss|':>13} "
        f"{'median |dloss|':>14}"
    )
    for r in rows:
        print(
            f"{r['N']:>6} {r['grouped_s']:10.3f} {r['patches_s']:10.3f} {r['speedup']:7.2f}x "
            f"{r['patches_trials_per_s']:9.1f} {r['check_max_abs_loss_diff']:13.2e} {r['median_abs_loss_diff']:14.2e}"
        )
    common.write(f"cnn_{jax.default_backend()}", {"steps": a.steps, "rows": rows}, a.out)


if __name__ == "__main__":
    main()
