"""Training a stored trial again: along its lineage, exactly, through the programs its sweep ran.

A compiled program fixes the order of every floating-point operation, and another program (a
trial alone instead of one lane of a vmapped batch) rounds differently: after thousands of steps
the two trainings part by more than rounding (a few 1e-3 of accuracy on a CNN at 32,000 steps).
So a population's trial (PBT, ASHA, median stopping) is replayed by a population of the same
width, every lane training that trial, through the same programs (initialisation, the mix of a
refill or an exploit, segments of the scheduler's length) on the same kind and number of
devices: its stored metrics come back bit for bit. That costs what the population's training of
those steps cost; ``exact=False`` trains the trial alone instead (equal up to float32 rounding).
A round sweep's trial of an objective with ``run_trial`` (``jt.train.Trainer``) is replayed by the
whole-trial program its sweep ran, with its state returned too, vmapped over as many copies of
the trial as the sweep's program vmapped trials together (:func:`_as_swept`): its stored metrics
come back bit for bit on the same kind and number of devices, at the cost of those copies.
Halving's trials, other objectives' and a replay to an earlier step are replayed alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxtune.errors import InputError

__all__ = ["lineage_chain", "replay_trial"]


def lineage_chain(trials: list[dict[str, Any]], lineage: dict, trial: dict[str, Any]) -> list[tuple[dict, int]]:
    """``[(trial, from_step), ...]``: ``trial`` and every ancestor whose state it continued, oldest first."""
    chain, key = [], (trial["round"], trial["slot"])
    by_key = {(t["round"], t["slot"]): t for t in trials}
    seen = set()
    while True:
        if key not in by_key or key in seen:
            raise InputError(
                f"replay: the lineage of trial {trial['round']}:{trial['slot']} is broken at {key[0]}:{key[1]} "
                "(a missing or cyclic parent: the stored lineage is damaged)"
            )
        seen.add(key)
        parent = lineage.get(key)
        chain.append((by_key[key], 0 if parent is None else parent[2]))
        if parent is None:
            return chain[::-1]
        key = parent[:2]


def replay_trial(objective, config: dict, chain: list[tuple[dict, int]], last_step: int, key_of, exact: bool):
    """Trains the last trial of ``chain`` to ``last_step``: ``(state, metrics)`` (see the module docstring).

    ``key_of(trial)`` is the key a trial was trained with.
    """
    from jaxtune.schedulers import is_scheduler
    from jaxtune.space import Space

    space = Space.from_description(config["space"])
    if exact and is_scheduler(config.get("strategy", {}).get("name")):
        return _through_population(objective, config, space, chain, last_step, key_of)
    trial = chain[-1][0]
    full = trial["params"].get("steps", getattr(objective, "steps", None))
    if exact and config.get("kind") == "rounds" and len(chain) == 1 and hasattr(objective, "run_trial") and (
        last_step is None or last_step == full
    ):
        return _as_swept(objective, space, config, trial, key_of(trial))
    return _alone(objective, space, config, chain, last_step, key_of)


def _as_swept(objective, space, config, trial: dict, key):
    """``(state, metrics)`` of a round sweep's trial through the program its sweep ran it in: the
    whole trial (``objective.run_trial``), alone if the sweep ran trials one at a time, else
    vmapped over as many copies as the sweep's program vmapped together (its ``vmap_width`` group,
    or every lane a device held), for a batch of the study's ``trials`` x ``seeds``."""
    import jax
    import jax.numpy as jnp

    from jaxtune.execute import Executor

    layout = config.get("layout", {})
    vmap_width = layout.get("vmap_width", "auto")
    ex = Executor(objective, space, max_batch=layout.get("max_batch"), vmap_width=vmap_width)
    dynamic, bind = _bound(space, trial, None)
    sizes = {n: m.size for n, m in bind(dynamic).items() if n in space.masked_names}
    bucket = ex.trial_fn.bucket_of(trial["params"])[: len(space.static_names)] + tuple(
        sizes.get(n) for n in space.masked_names
    )
    n = int(config.get("trials", 1)) * int(config.get("seeds", 1))
    ndev = ex.placement.devices_for(n)
    local = ex.programs.width(bucket, n, n, ndev) // ndev
    group = ex.vmap_width_of(bucket)
    copies = 1 if local == 1 or group == 1 else min(local, group or local)

    def run(d, k):
        return objective.run_trial(bind(d), k)

    if copies == 1:
        state, metrics = jax.jit(run)(dynamic, key)
    else:
        lanes = {k: jnp.stack([v] * copies) for k, v in dynamic.items()}
        many = jax.jit(jax.vmap(run))(lanes, jnp.stack([key] * copies))
        state, metrics = jax.tree.map(lambda a: a[0], many)
    metrics.pop("curves", None)
    return state, metrics


def _bound(space, trial: dict, fidelity: str | None):
    """``(dynamic, bind)``: a trial's traced hyperparameters as arrays, and ``bind(dynamic)``, its
    hyperparameters as its sweep's program saw them: static values as Python values, masked
    widths as :class:`~jaxtune.space.Masked` in the bucket of the program that ran it (its own
    power-of-two bucket, or the larger one it shared: ``trial.program``), the rest traced.

    The static values and bucket sizes are closed over, so ``bind`` can run under ``jit``.
    """
    import jax.numpy as jnp

    from jaxtune.space import Masked, bucket_size

    params = {n: v for n, v in trial["params"].items() if n != fidelity}
    static, masked = set(space.static_names), set(space.masked_names)
    fixed = {n: v for n, v in params.items() if n in static}
    ran = getattr(trial, "program", {})  # a larger bucket's program ran it (program sharing)
    sizes = {n: int(ran.get(n, bucket_size(int(v)))) for n, v in params.items() if n in masked}
    dynamic = {n: jnp.asarray(v, jnp.int32 if isinstance(v, int) else jnp.float32)
               for n, v in params.items() if n not in static}  # fmt: skip

    def bind(values):
        return {**fixed, **{n: Masked(v, sizes[n]) if n in sizes else v for n, v in values.items()}}

    return dynamic, bind


def _alone(objective, space, config, chain, last_step, key_of):
    import jax

    fidelity = config.get("strategy", {}).get("fidelity")
    dynamic, bind = _bound(space, chain[0][0], fidelity)
    state = jax.jit(lambda d, key: objective.init(bind(d), key))(dynamic, key_of(chain[0][0]))
    for i, (t, start) in enumerate(chain):
        if start >= last_step:
            break
        if i and hasattr(objective, "reseed"):  # a copy trains with its own randomness
            state = objective.reseed(state, key_of(t))
        end = min(chain[i + 1][1] if i + 1 < len(chain) else last_step, last_step)
        dynamic, bind = _bound(space, t, fidelity)
        if end > start:
            train = jax.jit(lambda d, s, bind=bind, n=end - start: objective.train(bind(d), s, n))
            state, _ = train(dynamic, state)
    dynamic, bind = _bound(space, chain[-1][0], fidelity)
    return state, jax.jit(lambda d, s: objective.evaluate_state(bind(d), s))(dynamic, state)


def _through_population(objective, config, space, chain, last_step, key_of):
    import jax

    from jaxtune.execute.population import Population
    from jaxtune.schedulers import make_scheduler

    lanes, options = config["trials"], {k: v for k, v in config["strategy"].items() if k != "name"}
    segment = make_scheduler(config["strategy"]["name"], space, lanes, config["steps"], **options).segment
    from_unit = jax.jit(space.from_unit)  # the driver's hyperparameters: the same program, the same bits

    lanes *= int(config.get("seeds", 1))  # the population's width: a configuration's seeds are lanes

    def every_lane(trial):  # every lane trains ``trial``: its hyperparameters and its key in each
        return from_unit(np.tile(np.asarray(trial["unit"], np.float32), (lanes, 1))), _copies(key_of(trial), lanes)

    pop = Population(objective, space, (), lanes)
    first = chain[0][0]
    hp, keys = every_lane(first)
    pop.start(hp, keys)
    if first["round"] > 0:  # a lane refilled mid-run was initialised by the mix program
        pop.replace(hp, restart=np.ones(lanes, bool), keys=keys)
    step, metrics = 0, None
    for i, (t, start) in enumerate(chain):
        if start >= last_step:
            break
        if i:  # an exploit: the copy takes its own hyperparameters and randomness
            hp, keys = every_lane(t)
            pop.replace(hp, keys=keys, reseed=np.ones(lanes, bool))
        end = min(chain[i + 1][1] if i + 1 < len(chain) else last_step, last_step)
        if (end - step) % segment:
            raise InputError(f"replay: trial {t['round']}:{t['slot']} ends a stretch at step {end}, not a segment "
                             f"boundary of {segment} steps (the stored lineage does not match the study's scheduler)")
        while step < end:
            metrics = pop.train(segment)
            step += segment
    state = pop.lanes([0])[0]
    return state, {} if metrics is None else {n: v[0] for n, v in metrics.items()}


def _copies(key, n: int):
    """``n`` copies of one key (every lane trains the same trial)."""
    import jax.numpy as jnp

    return jnp.broadcast_to(key, (n,))
