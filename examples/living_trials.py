"""Living trials on MNIST-1D: population-based training, then ASHA, then the PBT winner as a model.

python examples/living_trials.py                # 16 lanes, 600 steps (a few minutes on a CPU)
python examples/living_trials.py --steps 60     # a quick look
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp

import jaxtune as jt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lanes", type=int, default=16)
    a = p.parse_args(argv)
    task = jt.tasks.get("mnist1d_mlp", steps=a.steps)
    trainer, space = task.objective, task.space  # lr, b1, wd: all traced

    segment = max(1, a.steps // 6)
    pbt = jt.tune(trainer, space, "pbt", trials=a.lanes, metric="val_accuracy", mode="max", progress=False,
                  strategy_options={"segment": segment})  # fmt: skip
    print(f"PBT: best val accuracy {pbt.best['value']:.3f}, {len(pbt.lineage)} exploits; its schedule:")
    for step, params in pbt.history(pbt.best):
        print(f"  from step {step:4d}: " + ", ".join(f"{k}={v:.3g}" for k, v in params.items()))

    asha = jt.tune(trainer, space, "asha", trials=a.lanes, metric="val_accuracy", mode="max", progress=False,
                   strategy_options={"min_steps": max(1, a.steps // 9), "eta": 3})  # fmt: skip
    stopped = sum(t["status"] == "stopped" for t in asha.trials)
    print(f"ASHA: best val accuracy {asha.best['value']:.3f}; {len(asha)} configurations, {stopped} stopped early, "
          f"lane utilisation {asha.utilisation:.0%}")  # fmt: skip

    # The winner's weights: replayed exactly along its lineage, as a ready NNX model.
    state = pbt.replay(trainer, pbt.best)  # through the population's own programs: bit for bit
    model = trainer.model_of(pbt.best["params"], state)
    x, y = trainer.eval_data["test"]
    print(f"PBT winner, replayed: test accuracy {float(jnp.mean(jnp.argmax(model(x), -1) == y)):.3f}")
    return pbt, asha


if __name__ == "__main__":
    main()
