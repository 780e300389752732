"""Compare two search strategies on a problem of your own, 1,000 seeds at once.

A strategy is pure ask/tell on the unit cube, so a whole sweep is one ``lax.scan`` and a
thousand seeds of it one ``vmap``: the comparison below runs 1,000 sweeps of 500 evaluations per
strategy in seconds, on a CPU.

    python examples/compare_strategies.py
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

import jaxtune as jt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--evals", type=int, default=500)
    a = p.parse_args(argv)

    # A learning-rate-like valley on a log scale, plus a momentum-like parameter near 1.
    space = jt.Space({"lr": jt.Float(1e-5, 1.0, scale="log"), "b1": jt.Float(0.5, 0.999, scale="reverse_log")})
    valley = jt.bench.Problem(
        "valley", space, lambda hp: (jnp.log10(hp["lr"]) + 2.5) ** 2 + (jnp.log10(1 - hp["b1"]) + 2) ** 2, 0.0
    )
    res = jt.bench.run([valley], ["random", "coarse_to_fine"], seeds=a.seeds, evals=a.evals, trials=25)
    print(res.table())
    wins = np.mean(res.final("valley", "coarse_to_fine") < res.final("valley", "random"))
    print(f"coarse_to_fine finds a better point than random search in {wins:.0%} of {a.seeds} seeds")
    return res


if __name__ == "__main__":
    main()
