"""Successive halving and Hyperband: many configurations on a small budget, the best few on ever larger ones."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.execute.population import supports_protocol
from jaxtune.space import Int, Space
from jaxtune.strategies.base import Strategy, make_spec, register, sanitize_scores


def budgets(low: int, high: int, eta: int) -> list[int]:
    """The budgets of a bracket, smallest first: ``high, high/eta, high/eta**2, ...`` down to ``low``."""
    rungs = int(math.floor(math.log(high / low, eta) + 1e-9)) + 1
    return [int(round(high / eta ** (rungs - 1 - k))) for k in range(rungs)]


class HalvingState(NamedTuple):
    """Successive halving's state: the bracket's configurations, which are alive, where it stands."""

    u: jax.Array  # f32[num_trials, dim]: the bracket's configurations (fidelity column set per rung)
    alive: jax.Array  # bool[num_trials]: lanes that run in the next rung
    rung: jax.Array  # i32[]: rung within the bracket (0: fresh configurations on the smallest budget)
    bracket: jax.Array  # i32[]: which bracket of the cycle
    model: tuple = ()  # BOHB: its observations (x[cap, d - 1], score[cap], level[cap], used[cap], written)
    start: tuple = ()  # a warm start's best configurations for the first bracket: (u[num_trials, dim], count)


@dataclasses.dataclass(frozen=True)
class _Halving:
    """The options successive halving and Hyperband share (see either for what they mean)."""

    fidelity: str = "steps"
    eta: int = 3
    continue_survivors: bool = True
    hyperband: ClassVar[bool] = False
    zooms: ClassVar[bool] = True  # later rounds evaluate survivors of round 0 (jaxtune.strategies.traits)

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the schedule to ``space``; the most aggressive bracket has ``num_trials`` configurations."""
        return halving_strategy(self.registry_name, space, num_trials, self.fidelity, self.eta,
                                hyperband=self.hyperband)


def is_halving(spec) -> bool:
    """Whether ``spec`` is successive halving or Hyperband (the options they share)."""
    return isinstance(spec, _Halving)


@register("successive_halving")
@dataclasses.dataclass(frozen=True)
class SuccessiveHalving(_Halving):
    """Successive halving (Jamieson & Talwalkar, 2016; one bracket of Hyperband, Li et al., 2017).

    A *bracket* samples ``num_trials`` configurations and trains them on the smallest budget;
    each next round trains the best ``1/eta`` of the last round's survivors on ``eta`` times the
    budget, up to the largest; then a new bracket starts with fresh samples. Rounds default to
    one bracket.

    The budget is a hyperparameter of the space that this strategy sets: ``fidelity`` names a
    ``jt.Int(low, high, static=True)`` (e.g. the Trainer's ``"steps"``), and the budgets are
    ``high, high/eta, high/eta**2, ...`` down to ``low``: ``Int(100, 2700)`` with ``eta=3`` gives
    100, 300, 900, 2700 steps. Each budget is one compiled program, reused by every bracket.

    With an objective that implements the stateful trial protocol (``jt.train.Trainer``), a
    survivor *continues* from its state: each rung trains only the steps its budget adds, and the
    survivors move into a narrower compiled program (one per width, reused by every bracket), so
    no lane idles. Each configuration is then one trial whose ``steps`` is the budget it reached:
    ``"ok"`` at the top budget, ``"stopped"`` below it. With any other objective (or
    ``continue_survivors=False``) a survivor trains again from the start on its larger budget,
    about ``eta / (eta - 1)`` times the steps, and every rung's trial is a complete, resumable run;
    slots of stopped trials stay empty (``valid``); a bracket whose survivors all diverged starts over.

    Args:
      fidelity: name of the budget parameter in the space.
      eta: keep ``1/eta`` of the trials each round and multiply the budget by ``eta`` (>= 2).
      continue_survivors: continue survivors from their state when the objective can.
    """


@register("hyperband")
@dataclasses.dataclass(frozen=True)
class Hyperband(_Halving):
    """Hyperband (Li et al., 2017): successive halving brackets from aggressive to cautious.

    With budgets ``b_0 < ... < b_S`` (as for ``"successive_halving"``), bracket ``s = S, ..., 0``
    starts ``n_s`` fresh configurations on budget ``b_{S-s}`` and halves them ``s`` times, up to
    ``b_S``; ``n_S = num_trials`` and ``n_s = ceil(num_trials * (S + 1) / (s + 1) / eta**(S - s))``,
    so every bracket costs about the same. The last bracket trains a few configurations on the
    full budget only: a hedge for problems where early results mislead. Rounds default to one
    pass over the brackets (``(S + 1)(S + 2) / 2`` rounds); the next pass starts again.

    Survivors continue from their state as in ``"successive_halving"``.

    Args:
      fidelity: name of the budget parameter in the space, a ``jt.Int(low, high, static=True)``.
      eta: keep ``1/eta`` of the trials each round and multiply the budget by ``eta`` (>= 2).
      continue_survivors: continue survivors from their state when the objective can.
    """

    hyperband: ClassVar[bool] = True


def bracket_plan(num_trials: int, levels: int, eta: int, hyperband: bool) -> list[list[tuple[int, int]]]:
    """Each bracket's rungs as ``(configurations, budget index)``, brackets in the order they run.

    With ``S = levels - 1``, bracket ``s`` (``S`` down to 0 for Hyperband, ``S`` alone otherwise)
    starts ``n_s = min(num_trials, ceil(num_trials * (S + 1) / (s + 1) / eta**(S - s)))``
    configurations on budget ``S - s`` and keeps ``n_s // eta**i`` (at least 1) at rung ``i``.
    """
    top = levels - 1
    out = []
    for s in range(top, -1, -1) if hyperband else [top]:
        n = min(num_trials, math.ceil(num_trials * (top + 1) / (s + 1) / eta ** (top - s)))
        out.append([(max(1, n // eta**i), top - s + i) for i in range(s + 1)])
    return out


def _budget_parameter(name: str, space: Space, fidelity: str, eta: int) -> Int:
    """The space's budget parameter, checked: a static Int spanning at least one factor of ``eta``."""
    check_int(f"{name}: eta", eta, 2)
    p = space.params.get(fidelity)
    if p is None:
        raise InputError(
            f"{name}: fidelity {fidelity!r} is not in the space {space.names}; add the budget, "
            f'e.g. "steps": jt.Int(100, 2700, scale="log", static=True)'
        )
    if not isinstance(p, Int) or not p.static:
        raise InputError(f"{name}: fidelity {fidelity!r} must be a jt.Int(low, high, static=True) budget, got {p!r}")
    if p.high < eta * p.low:
        raise InputError(
            f"{name}: fidelity {fidelity!r} spans {p.low}..{p.high}, less than one factor of eta={eta}: make "
            "high >= eta * low"
        )
    return p


def _observed(memory: tuple, x: jax.Array, score: jax.Array, alive: jax.Array, budget: jax.Array) -> tuple:
    """A model's observations (BOHB) with the ``alive`` rows of ``(x, score)`` at budget index
    ``budget`` added, the oldest overwritten once ``capacity`` rows are held."""
    xs, scores, at, used, written = memory
    cap = xs.shape[0]
    row = jnp.where(alive, (written + jnp.cumsum(alive) - 1) % cap, cap)  # cap: dropped
    level = jnp.full(alive.shape, budget, jnp.int32)
    return (xs.at[row].set(x, mode="drop"), scores.at[row].set(score, mode="drop"),
            at.at[row].set(level, mode="drop"), used.at[row].set(True, mode="drop"),
            written + alive.sum().astype(jnp.int32))  # fmt: skip


def _warm(state: HalvingState, u, scores, model, column: int, units, first: int) -> HalvingState:
    """A stored study, told before the first round: BOHB's model observes each point at the budget
    nearest its own; Hyperband and successive halving start their first bracket (``first``
    configurations) from the best, up to half of it (the first batch told holds the best)."""
    s = sanitize_scores(scores)
    if model is not None:
        others = jnp.concatenate([u[:, :column], u[:, column + 1 :]], axis=1)
        at = jnp.argmin(jnp.abs(u[:, column : column + 1] - units[None, :]), axis=1)
        return state._replace(model=_observed(state.model, others, s, jnp.ones(s.shape, bool), at))
    given, count = state.start
    take = jnp.minimum(-(-first // 2), jnp.isfinite(s).sum()).astype(jnp.int32)
    seeding = count == 0  # only the first batch told (the best points) seeds the bracket
    return state._replace(start=(jnp.where(seeding, u, given), jnp.where(seeding, take, count)))


def _rung_tables(plan, top: int) -> tuple[jax.Array, jax.Array]:
    """Per bracket and rung: the trials that run, and the index of their budget (padded to
    ``top + 1`` rungs)."""
    sizes = np.ones((len(plan), top + 1), np.int32)
    level = np.zeros((len(plan), top + 1), np.int32)
    for b, rungs in enumerate(plan):
        for i, (n, budget) in enumerate(rungs):
            sizes[b, i] = n
            level[b, i] = budget
    return jnp.asarray(sizes), jnp.asarray(level)


def halving_strategy(name: str, space: Space, num_trials: int, fidelity: str, eta: int, hyperband: bool,
                     model=None) -> Strategy:  # fmt: skip
    """Successive halving over a cycle of brackets (one bracket: plain successive halving); with a
    ``model`` (:class:`~jaxtune.strategies.BOHB`), each bracket's fresh configurations are its
    proposals from the observations told so far."""
    p = _budget_parameter(name, space, fidelity, eta)
    steps = budgets(p.low, p.high, eta)
    top = len(steps) - 1  # S: halvings in the most aggressive bracket
    plan = bracket_plan(num_trials, len(steps), eta, hyperband)
    brackets = [len(rungs) - 1 for rungs in plan]
    configs = [rungs[0][0] for rungs in plan]
    sizes, level = _rung_tables(plan, top)
    rungs = jnp.asarray([s + 1 for s in brackets], jnp.int32)
    starts = jnp.asarray(configs, jnp.int32)
    units = jnp.asarray(np.asarray(p.to_unit(jnp.asarray(steps, jnp.float32))), jnp.float32)
    column = space.names.index(fidelity)
    dim = space.dim
    lanes = jnp.arange(num_trials)

    def others(u):  # the coordinates of every hyperparameter but the budget
        return jnp.concatenate([u[:, :column], u[:, column + 1 :]], axis=1)

    def init(key):
        zero = jnp.zeros((), jnp.int32)
        cap = 0 if model is None else model.capacity
        memory = () if model is None else (jnp.zeros((cap, dim - 1)), jnp.full((cap,), jnp.inf),
                                           jnp.zeros((cap,), jnp.int32), jnp.zeros((cap,), bool), zero)  # fmt: skip
        return HalvingState(
            u=jnp.zeros((num_trials, dim), jnp.float32), alive=lanes < starts[0], rung=zero, bracket=zero,
            model=memory, start=(jnp.zeros((num_trials, dim), jnp.float32), zero),
        )  # fmt: skip

    def ask(key, state):
        fresh = jax.random.uniform(key, (num_trials, dim))
        given, count = state.start  # a warm start's best, once
        fresh = jnp.where((lanes < count)[:, None], given, fresh)
        state = state._replace(start=(given, jnp.where(state.rung == 0, 0, count).astype(jnp.int32)))
        if model is not None:
            x, score, at, used, _ = state.model
            chosen = used & (at == modelled_level(at, used, len(steps), dim - 1))
            proposed = model.propose(jax.random.fold_in(key, 1), others(fresh), x, score, chosen)
            fresh = jnp.concatenate([proposed[:, :column], fresh[:, column : column + 1], proposed[:, column:]], 1)
        u = jnp.where(state.rung == 0, fresh, state.u)
        u = u.at[:, column].set(units[level[state.bracket, state.rung]])
        return u, state._replace(u=u)

    def tell(state, u, scores):
        b = state.bracket
        s = jnp.where(state.alive, sanitize_scores(scores), jnp.inf)
        memory = () if model is None else _observed(state.model, others(state.u), s, state.alive,
                                                    level[state.bracket, state.rung])  # fmt: skip
        rung = state.rung + 1
        rank = jnp.argsort(jnp.argsort(s))  # 0 = best; ties broken by slot
        alive = (rank < sizes[b, jnp.minimum(rung, top)]) & jnp.isfinite(s)
        # After the bracket's largest budget, or when every survivor diverged: the next bracket.
        restart = (rung >= rungs[b]) | ~alive.any()
        b = jnp.where(restart, (b + 1) % len(brackets), b).astype(jnp.int32)
        return HalvingState(
            u=state.u,
            alive=jnp.where(restart, lanes < starts[b], alive),
            rung=jnp.where(restart, 0, rung).astype(jnp.int32),
            bracket=b,
            model=memory,
            start=state.start,
        )

    rounds = sum(s + 1 for s in brackets)
    warm = functools.partial(_warm, model=model, column=column, units=units, first=int(starts[0]))
    return Strategy(init, ask, tell, lambda state: state.alive, num_trials, dim, num_rounds=rounds, warm=warm)


def modelled_level(level: jax.Array, used: jax.Array, levels: int, dim: int) -> jax.Array:
    """The largest budget index with at least ``dim + 3`` observations (-1: none has)."""
    counts = jnp.zeros((levels,), jnp.int32).at[jnp.where(used, level, levels)].add(1, mode="drop")
    enough = counts >= dim + 3
    return jnp.where(enough.any(), levels - 1 - jnp.argmax(enough[::-1]), -1)


# Most training calls a rung of the shared population (lanes one at a time) is split into: more,
# and each rung length gets its own program instead of pieces of one length.
MAX_PIECES = 64


def continued_halving(strategy, options, objective):
    """The halving spec if this sweep continues survivors from their state, else None."""
    spec = make_spec(strategy, **(options or {})) if isinstance(strategy, str) else strategy
    if is_halving(spec) and spec.continue_survivors and supports_protocol(objective):
        return spec
    return None


def piece_of(plan, levels) -> int | None:
    """The steps of one training call in the shared population: the greatest common divisor of
    every rung's steps, unless a rung would need more than :data:`MAX_PIECES` calls (None: each
    rung its own length, a program per length)."""
    lengths = set()
    for rungs in plan:
        budgets = [levels[level] for _, level in rungs]
        lengths.update(b - a for a, b in zip([0, *budgets], budgets))
    piece = math.gcd(*lengths)
    return piece if max(lengths) // piece <= MAX_PIECES else None
