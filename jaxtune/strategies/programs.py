"""A strategy's compiled programs for one rounds sweep: the first round's initialisation and plan
in one program, then plan and tell, compiled on worker threads and cached for later sweeps of the
same strategy in the process."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError
from jaxtune.execute import Executor
from jaxtune.keys import INIT_STREAM, round_keys
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy

__all__ = ["StrategyPrograms", "compile_strategy", "whole_batches"]

# A strategy's compiled programs by what it was built from (Arguments.strategy_key), compiler
# options and devices: a later jt.tune call in the process with the same ones reuses them.
_PROGRAMS: dict[tuple, dict] = {}
MAX_CACHED = 32


class StrategyPrograms:
    """The strategy's programs for one sweep, compiled once on worker threads: the first round's
    (initialisation and plan in one program), then plan and tell for later rounds.

    They are submitted only after the objective has been traced and the metric checked (so a bad
    argument compiles nothing), and after the objective's first program (which takes longest); a
    one-round sweep compiles only the first round's (its critical path is the trial program's
    compile, which the others would share the cores with). With ``key`` (what the strategy was
    built from), they are cached for later sweeps.
    """

    def __init__(self, strategy: Strategy, space: Space, trials: int, seed: int, executor: Executor,
                 key: str | None = None, rounds: int = 2, warm: bool = False):  # fmt: skip
        self.root = jax.random.key(seed)
        state0 = jax.eval_shape(strategy.init, self.root)
        u0, _ = jax.eval_shape(strategy.ask, self.root, state0)
        if u0.shape != (trials, space.dim):
            raise InputError(f"strategy asked for points of shape {u0.shape}, expected {(trials, space.dim)}")

        def init(root):
            return strategy.init(jax.random.fold_in(root, INIT_STREAM))

        def plan(root, r, state):
            """A round's points, strategy state, valid lanes, hyperparameters and trial keys."""
            ask_key, trial_key = round_keys(root, r)
            u, state = strategy.ask(ask_key, state)
            return u, state, strategy.valid(state), space.from_unit(u), jax.random.split(trial_key, trials)

        jit = functools.partial(jax.jit, compiler_options=executor.compiler_options or None)
        told = (strategy.objectives,) if strategy.objectives > 1 else ()  # every objective, or one score
        scores = jax.ShapeDtypeStruct((trials, *told), jnp.float32)
        self._lower = {
            "first": lambda: jit(lambda root: plan(root, np.int32(0), init(root))).lower(self.root),
            "init": lambda: jit(init).lower(self.root),
            "plan": lambda: jit(plan).lower(self.root, np.int32(0), state0),
            "tell": lambda: jit(strategy.tell).lower(state0, u0, scores),
            "warm": lambda: jit(strategy.warm or strategy.tell).lower(state0, u0, scores),
        }
        self._executor = executor
        cached = None if key is None else (key, repr(sorted(executor.compiler_options.items())), str(jax.devices()))
        if cached in _PROGRAMS:  # the same strategy, space and device in an earlier jt.tune call of this process
            self._programs = _PROGRAMS[cached]
        else:
            self._programs = {}
            if cached is not None:
                _PROGRAMS[cached] = self._programs
                while len(_PROGRAMS) > MAX_CACHED:
                    _PROGRAMS.pop(next(iter(_PROGRAMS)))  # the oldest
        first = ("init", "warm", "plan") if warm else ("first", "plan", "tell") if rounds > 1 else ("first",)
        for name in first:
            self._program(name)
        self.state, self.rounds, self.told, self.trials = None, rounds, 0, trials

    def _program(self, name: str):
        """The future of program ``name``, submitted for compiling on first use."""
        if name not in self._programs:
            self._programs[name] = self._executor.compile_async(self._lower[name]())
        return self._programs[name]

    def ask(self, r: int):
        """Round ``r``'s ``(u, valid, hp, keys)``; advances the strategy state past its ``ask``."""
        if self.state is None and r == 0:
            u, self.state, valid, hp, keys = self._program("first").result()(self.root)
        else:
            if self.state is None:
                self.state = self._program("init").result()(self.root)
            u, self.state, valid, hp, keys = self._program("plan").result()(self.root, np.int32(r), self.state)
        return u, np.asarray(valid), hp, keys

    def warm(self, u: np.ndarray, scores: np.ndarray) -> None:
        """Tells the strategy a stored study's points and scores before its first round (warm
        start): in whole batches of the sweep's trials, the last filled by repeating the first
        (best) points, never by invented ones."""
        self.state = self._program("init").result()(self.root)
        tell = self._program("warm").result()  # the strategy's own warm start, or its tell
        for part_u, part_s in whole_batches(u, scores, self.trials):
            self.state = tell(self.state, jnp.asarray(part_u, jnp.float32), jnp.asarray(part_s, jnp.float32))

    def tell(self, u: jax.Array, scores: np.ndarray) -> None:
        """Tells the strategy a round's scores (lower is better, +inf for diverged or empty lanes);
        after the sweep's last round nothing asks it again, so that round's is not computed."""
        self.told += 1
        if self.told >= self.rounds:
            return
        self.state = self._program("tell").result()(self.state, u, jnp.asarray(scores, jnp.float32))


def compile_strategy(strategy: Strategy, space: Space, trials: int, executor: Executor,
                     rounds: int) -> tuple[int, float]:  # fmt: skip
    """Compiles the programs a rounds sweep of ``strategy`` compiles (as the rounds driver does, not
    cached for later sweeps): how many, and the wall seconds until the last is ready (what
    :func:`jaxtune.plan` adds to a sweep's compiling)."""
    t = time.perf_counter()
    driver = StrategyPrograms(strategy, space, trials, 0, executor, rounds=rounds)
    for future in driver._programs.values():
        future.result()
    return len(driver._programs), time.perf_counter() - t


def whole_batches(u: np.ndarray, scores: np.ndarray, trials: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``u[W, d]`` and ``scores[W]`` as whole batches of ``trials`` rows (what a strategy's ``tell``
    takes), the last filled by repeating rows from the first."""
    n = max(1, -(-len(u) // trials))
    idx = np.concatenate([np.arange(len(u)), np.arange(n * trials - len(u)) % len(u)])
    return [(u[idx[i * trials : (i + 1) * trials]], scores[idx[i * trials : (i + 1) * trials]]) for i in range(n)]
