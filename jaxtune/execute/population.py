"""A population: trials of one bucket whose states stay on the device, trained in segments.

The executor (:class:`~jaxtune.Executor`) runs a trial from initialisation to its final metrics
in one program. A :class:`Population` keeps each trial's *state* instead, so that between
segments a scheduler can continue a lane, stop it, restart it with a new configuration
(refill) or copy another lane's state into it with new hyperparameters (exploit/explore).

It needs an objective that implements the stateful trial protocol (``jt.train.Trainer`` does):

* ``init(hp, key) -> state``: a pytree of arrays (parameters, optimizer state, step, data key);
* ``train(hp, state, steps) -> (state, {"train_loss": ...})`` with ``steps`` static; training
  in segments must equal training straight through;
* ``evaluate_state(hp, state) -> {metric: scalar}``;
* optionally ``reseed(state, key) -> state``: a copied state's own randomness (its data order).

The traced hyperparameters travel beside the states (``hp``, one value per lane), so changing
them between segments recompiles nothing. Programs (one per kind and segment length) are
compiled once and reused; states are donated between segments (updated in place); only the N
metric values of a segment come back to the host. Every decision between segments is one
gather over the trial axis and one select, on the device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError, InputTypeError
from jaxtune.execute.placement import Placement
from jaxtune.execute.platform import default_compiler_options, program_budget
from jaxtune.execute.programs import ProgramCache, over_leading_axis, over_live_lanes
from jaxtune.execute.timing import CLOCK, jit_counted
from jaxtune.execute.trial_function import TrialFunction
from jaxtune.space import Space

__all__ = ["Population", "PROTOCOL", "StatefulTrial", "supports_protocol", "require_protocol"]

PROTOCOL = ("init", "train", "evaluate_state")


@runtime_checkable
class StatefulTrial(Protocol):
    """The stateful trial protocol (see the module docstring); ``jt.train.Trainer`` implements it.

    An objective that implements it can live between segments: populations (PBT, ASHA, median
    stopping), halving that continues survivors, babysitting, ``Result.replay`` and export.
    """

    def init(self, hp: Mapping[str, Any], key: jax.Array) -> Any:
        """A trial's initial state."""

    def train(self, hp: Mapping[str, Any], state: Any, steps: int) -> tuple[Any, dict[str, jax.Array]]:
        """The state after ``steps`` more steps (static), and the segment's metrics."""

    def evaluate_state(self, hp: Mapping[str, Any], state: Any) -> dict[str, jax.Array]:
        """The metrics of a state."""


def supports_protocol(objective: Any) -> bool:
    """Whether ``objective`` implements :class:`StatefulTrial` (the one place this is checked)."""
    return isinstance(objective, StatefulTrial) and all(callable(getattr(objective, n)) for n in PROTOCOL)


def require_protocol(objective: Any, who: str) -> None:
    """Raises :class:`~jaxtune.InputTypeError` naming ``who`` needs the protocol, unless ``objective`` has it."""
    if not supports_protocol(objective):
        raise InputTypeError(
            f"{who} trains in segments: the objective must implement init(hp, key), train(hp, state, steps) and "
            f"evaluate_state(hp, state), as jt.train.Trainer does; got {objective!r}"
        )


def _once(make: Callable) -> Callable:
    """A method whose result is kept per arguments: each program (and the state spec) is traced
    once per population, not at every segment or decision."""

    @functools.wraps(make)
    def kept(self, *args):
        key = (make.__name__, *args)
        if key not in self._ready:
            self._ready[key] = make(self, *args)
        return self._ready[key]

    return kept


class Population:
    """``width`` lanes of trials of bucket ``bucket``, their states on the device.

    Args:
      objective: implements the stateful trial protocol (see the module docstring).
      space: the space its hyperparameters come from.
      bucket: the static values (and masked sizes) every lane shares.
      width: the number of lanes.
      devices: devices to shard the lanes over (default: all that divide ``width`` evenly).
      compiler_options: XLA options (``"auto"``: the measured best for the platform).
      vmap_width: lanes vmapped together in a training segment, groups run in sequence (None:
        every lane of a device at once; :func:`jaxtune.plan` passes the width a round sweep uses).
    """

    def __init__(
        self,
        objective: Any,
        space: Space,
        bucket: tuple,
        width: int,
        *,
        devices: Sequence[jax.Device] | None = None,
        compiler_options: Mapping[str, Any] | str = "auto",
        vmap_width: int | None = None,
    ):
        require_protocol(objective, "a population")
        self.objective = objective
        self.trial_fn = TrialFunction(objective, space)
        self.space = space
        self.bucket = tuple(bucket)
        self.width = int(width)
        placement = Placement(devices)
        # The most devices that split the lanes evenly: every device holds the same share.
        ndev = max(d for d in range(1, min(placement.num_devices, self.width) + 1) if self.width % d == 0)
        self.placement = Placement(placement.devices[:ndev])
        self.ndev = ndev
        if compiler_options == "auto":
            compiler_options = default_compiler_options(self.placement.devices[0])
        self.compiler_options = dict(compiler_options)
        self.vmap_width = check_int("vmap_width", vmap_width, none=True)
        self.programs = ProgramCache(self.compiler_options, program_budget(self.placement.devices))
        self.hp: dict[str, jax.Array] | None = None
        self.state: Any = None
        self._ready: dict[Any, Any] = {}  # compiled programs and the state spec, once made (no retracing)
        self._dyn = [n for n in space.names if n not in space.static_names]

    # Single-lane functions with the bucket's static values bound.
    def init_one(self, hp, key_data):
        """One lane's initial state (``key_data``: its key as raw uint32 data)."""
        return self.objective.init(self.trial_fn.bind(self.bucket, hp), jax.random.wrap_key_data(key_data))

    def segment_one(self, hp, state, steps: int):
        """One lane trained ``steps`` steps from ``state``: its new state and metrics."""
        bound = self.trial_fn.bind(self.bucket, hp)
        state, metrics = self.objective.train(bound, state, steps)
        return state, {**metrics, **self.objective.evaluate_state(bound, state)}

    def _reseed_one(self, state, key_data):
        reseed = getattr(self.objective, "reseed", None)
        return state if reseed is None else reseed(state, jax.random.wrap_key_data(key_data))

    # Specs and programs.
    def lane_sharding(self):
        """How arrays with a leading lane axis are placed on the devices."""
        return self.placement.sharding(self.ndev) or self.placement.single_device(self.ndev)

    def _replicated(self):
        return self.placement.sharding(self.ndev, replicated=True) if self.ndev > 1 else self.lane_sharding()

    def _specs(self):
        sharding = self.lane_sharding()
        hp = {
            n: jax.ShapeDtypeStruct((self.width,), s.dtype, sharding=sharding)
            for n, s in self.trial_fn.dynamic_example().items()
        }
        keys = jax.ShapeDtypeStruct((self.width, 2), jnp.uint32, sharding=sharding)
        return hp, keys

    def _over_lanes(self, fn: Callable, n_args: int, group: int | None = None, skipped: Callable | None = None):
        """``fn`` vmapped over lanes (or over groups of ``group`` lanes in sequence, as the round
        executor's ``vmap_width``); with several devices, each runs its own lanes (shard_map).
        With ``skipped``, the third argument holds the lanes' live flags and a group of lanes in
        sequence none of which is live returns ``skipped(*args)`` without running ``fn``."""
        local = self.width // self.ndev
        if skipped is None:
            batched = over_leading_axis(fn, local, group)
        else:
            over = over_live_lanes(fn, local, group, skipped)
            batched = lambda *args: over(args[2], *args)  # noqa: E731
        if self.ndev == 1:
            return batched
        sharding = self.placement.sharding(self.ndev)
        return jax.shard_map(
            batched,
            mesh=sharding.mesh,
            in_specs=(sharding.spec,) * n_args,
            out_specs=sharding.spec,
            check_vma=False,
        )

    @property
    def compiles(self) -> int:
        """Programs compiled so far."""
        return self.programs.compiles

    def _compile(self, key, fn: Callable, args: tuple, out_shardings, donate: tuple[int, ...] = ()):
        def lower():
            return jax.jit(fn, out_shardings=out_shardings, donate_argnums=donate).lower(*args)

        return self.programs.get(key, lower), lower

    @_once
    def state_spec(self):
        """Shapes, dtypes and shardings of the population's states (nothing is computed)."""
        hp, keys = self._specs()
        with CLOCK.count("compile_s"):  # tracing the initialisation, once per population
            shapes = jax.eval_shape(jax.vmap(self.init_one), hp, keys)
        sharding = self.lane_sharding()
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)

    def nbytes(self) -> int:
        """Bytes of the population's states (every lane)."""
        return sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in jax.tree.leaves(self.state_spec()))

    @_once
    def _init_program(self):
        hp, keys = self._specs()
        return self._compile(("init",), self._over_lanes(self.init_one, 2), (hp, keys), self.lane_sharding())[0]

    @_once
    def segment_program(self, steps: int):
        """The compiled program that trains every lane ``steps`` steps (compiled once, cached)."""
        hp, _ = self._specs()
        state = self.state_spec()
        fn = self._over_lanes(lambda h, s: self.segment_one(h, s, steps), 2, self.vmap_width)
        program, lower = self._compile(("segment", steps), fn, (hp, state), (self.lane_sharding(), self._replicated()),
                                       (1,))  # fmt: skip
        if not self.programs.fits(("segment", steps), lower):
            need, budget = self.programs.need(("segment", steps), lower), self.programs.memory_budget
            raise InputError(
                f"a population of {self.width} lanes needs {need / 2**20:.0f} MiB per segment, more than the "
                f"{budget / 2**20:.0f} MiB this device can give a program: use fewer trials"
            )
        return program

    @_once
    def masked_program(self, steps: int):
        """The compiled program that trains the lanes flagged live ``steps`` steps and evaluates the
        lanes flagged to; the other lanes keep their state and get NaN metrics. With lanes run one
        at a time (``vmap_width=1``) a lane that is not live costs nothing (a real branch), so one
        program serves every number of live lanes; vmapped, both branches run (still correct)."""
        hp, _ = self._specs()
        flags = jax.ShapeDtypeStruct((self.width,), jnp.bool_, sharding=self.lane_sharding())

        def one(h, s, live, evaluate):
            bound = self.trial_fn.bind(self.bucket, h)
            trained = lambda s: self.objective.train(bound, s, steps)  # noqa: E731
            s, m = jax.lax.cond(live, trained, lambda s: (s, _nans(jax.eval_shape(trained, s)[1])), s)
            scored = lambda s: self.objective.evaluate_state(bound, s)  # noqa: E731
            e = jax.lax.cond(evaluate, scored, lambda s: _nans(jax.eval_shape(scored, s)), s)
            return s, m, e

        def skipped(shapes, h, s, live, evaluate):  # a group of idle lanes: their states as they are
            return s, _nans(shapes[1]), _nans(shapes[2])

        fn = self._over_lanes(one, 4, self.vmap_width, skipped)
        args = (hp, self.state_spec(), flags, flags)
        out = (self.lane_sharding(), self._replicated(), self._replicated())
        return self._compile(("masked", steps), fn, args, out, (1,))[0]

    @_once
    def _mix_program(self, refill: bool):
        state = self.state_spec()
        lanes = jax.ShapeDtypeStruct((self.width,), jnp.int32, sharding=self._replicated())
        mask = jax.ShapeDtypeStruct((self.width,), jnp.bool_, sharding=self._replicated())
        hp, keys = self._specs()

        def mix(state, src, key_data, rekey, hp, restart):
            moved = jax.tree.map(lambda s: s[src], state)  # exploit: a lane takes its donor's state
            reseeded = jax.vmap(self._reseed_one)(moved, key_data)
            moved = jax.tree.map(lambda r, m: _select(rekey, r, m), reseeded, moved)
            if not refill:
                return moved
            fresh = self._over_lanes(self.init_one, 2)(hp, key_data)  # refill: a lane starts afresh
            return jax.tree.map(lambda f, m: _select(restart, f, m), fresh, moved)

        args = (state, lanes, keys, mask, hp, mask)
        return self._compile(("mix", refill), mix, args, self.lane_sharding(), (0,))[0]

    # What the driver calls.
    def _put_hp(self, hp: Mapping[str, Any]) -> dict[str, jax.Array]:
        host = {n: np.asarray(hp[n]) for n in self._dyn}
        if any(v.shape != (self.width,) for v in host.values()):
            raise InputError(f"a population of {self.width} lanes needs one value per lane for each of {self._dyn}")
        return self.placement.put(host, self.ndev)

    def _put_keys(self, keys: jax.Array) -> jax.Array:
        return self.placement.put(np.asarray(jax.random.key_data(keys)), self.ndev)

    def load_state(self, state: Any) -> None:
        """Places host arrays of the population's states (as :meth:`state_spec` shapes them) on the devices."""
        if self.ndev > 1:  # each process fills the shards its devices hold (across processes, too)
            def put(x):
                if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # a key travels as its raw data
                    data = self.placement.put(np.asarray(jax.random.key_data(x)), self.ndev)
                    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
                return self.placement.put(np.asarray(x), self.ndev)

            self.state = jax.tree.map(put, state)
        else:
            self.state = jax.device_put(state, self.lane_sharding())

    def start(self, hp: Mapping[str, Any], keys: jax.Array) -> None:
        """Initialises every lane: ``hp`` ``{name: [width]}`` (the space's values), one key per lane."""
        self.hp = self._put_hp(hp)
        program = self._init_program()
        with CLOCK.count("trials_s"):
            self.state = jax.block_until_ready(program(self.hp, self._put_keys(keys)))

    def train(self, steps: int, live: np.ndarray | None = None, evaluate: bool = True) -> dict[str, np.ndarray]:
        """Trains every lane ``steps`` more steps; each lane's metrics after them, on the host.

        With ``live`` (one flag per lane) only those lanes train, and only they are evaluated, if
        ``evaluate`` (without it only the training metrics come back): the others keep their state
        and get NaN metrics (:meth:`masked_program`).
        """
        if self.state is None:
            raise InputError("Population.train before Population.start")
        if live is None:
            program, flags = self.segment_program(int(steps)), ()
        else:
            live = np.asarray(live, bool)
            if live.shape != (self.width,):
                raise InputError(f"live needs one flag per lane ({self.width}), got shape {live.shape}")
            program, flags = self.masked_program(int(steps)), self.placement.put((live, live & evaluate), self.ndev)
        with CLOCK.count("trials_s"):  # to the metrics on the host
            self.state, metrics, *scores = program(self.hp, self.state, *flags)
            if scores and evaluate:  # the masked program returns the evaluation apart
                metrics = {**metrics, **scores[0]}
            return {n: np.asarray(v) for n, v in jax.device_get(metrics).items()}

    def set_hp(self, hp: Mapping[str, Any]) -> None:
        """Replaces every lane's traced hyperparameters (from the next segment on; no recompile)."""
        self.hp = self._put_hp(hp)

    def replace(
        self,
        hp: Mapping[str, Any],
        *,
        source: np.ndarray | None = None,
        restart: np.ndarray | None = None,
        keys: jax.Array | None = None,
        reseed: np.ndarray | None = None,
    ) -> None:
        """Applies a decision to every lane at once, then sets the lanes' hyperparameters to ``hp``.

        Args:
          hp: every lane's hyperparameters from now on (``{name: [width]}``).
          source: lane ``i`` takes the state of lane ``source[i]`` (exploit; ``i`` itself to keep its own).
          restart: lanes that start afresh from ``init(hp[i], keys[i])`` (refill).
          keys: one key per lane, for restarted and reseeded lanes.
          reseed: lanes whose (copied) state gets its own randomness from ``keys[i]``.
        """
        lanes = np.arange(self.width)
        source = lanes if source is None else np.asarray(source, np.int32)
        restart = np.zeros(self.width, bool) if restart is None else np.asarray(restart, bool)
        reseed = np.zeros(self.width, bool) if reseed is None else np.asarray(reseed, bool)
        if (restart.any() or reseed.any()) and keys is None:
            raise InputError("Population.replace: restarted or reseeded lanes need keys")
        self.hp = self._put_hp(hp)
        if not restart.any() and not reseed.any() and np.array_equal(source, lanes):
            return
        key_data = self._put_keys(keys if keys is not None else jax.random.split(jax.random.key(0), self.width))
        replicated = self._replicated()
        # Lanes that restart get their initial state computed in the same program; the other
        # lanes' is computed and dropped (an init costs far less than a segment).
        self.state = self._mix_program(bool(restart.any()))(
            self.state,
            jax.device_put(source.astype(np.int32), replicated),
            key_data,
            jax.device_put(reseed, replicated),
            self.hp,
            jax.device_put(restart, replicated),
        )
        jax.block_until_ready(self.state)  # a decision's time is the scheduler's, not the next segment's

    def take(self, other: Population, lanes: Sequence[int]) -> None:
        """Makes this population's lanes the lanes ``lanes`` of ``other`` (states and hyperparameters,
        gathered on the device): survivors moving into a narrower program."""
        idx = np.asarray(lanes, np.int32)
        if idx.shape != (self.width,):
            raise InputError(f"take needs {self.width} lanes, got {idx.shape[0]}")
        # Onto this population's devices even when it has one and ``other`` several (None would
        # leave the gathered arrays where the gather put them).
        if list(other.placement.devices) != list(self.placement.devices):  # (a checkpoint of another layout)
            from jaxtune._trees import on_host  # through the host: programs do not span two device sets

            self.load_state(jax.tree.map(lambda a: a[idx], on_host(other.state)))
            self.hp = None if other.hp is None else self._put_hp({n: v[idx] for n, v in on_host(other.hp).items()})
            return
        sharding = self.lane_sharding() or jax.sharding.SingleDeviceSharding(self.placement.devices[0])
        gather = _gather_onto(sharding)  # one program, not an op per array; its result where it belongs
        self.state = gather(other.state, idx)
        self.hp = None if other.hp is None else gather(other.hp, idx)
        jax.block_until_ready(self.state)

    def lanes(self, which: Sequence[int]) -> list[Any]:
        """The states of lanes ``which`` (one pytree per lane; for checkpoints and export)."""
        return [jax.tree.map(lambda a, i=i: a[i], self.state) for i in which]


@functools.cache
def _gather_onto(sharding):
    """Lanes ``i`` of every array of a tree (leading lane axis), placed with ``sharding``: one
    compiled program per shape (its compiling counted in ``Result.timing``), which also moves lanes
    between processes' devices under ``jax.distributed``."""
    return jit_counted(lambda tree, i: jax.tree.map(lambda a: a[i], tree), out_shardings=sharding)


def _nans(shapes: Any) -> Any:
    """Arrays of ``shapes`` (``ShapeDtypeStruct``) filled with NaN (zeros for non-float dtypes)."""
    fill = lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.inexact) else 0, s.dtype)  # noqa: E731
    return jax.tree.map(fill, shapes)


def _select(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """``a`` where ``mask`` (one flag per lane, leading axis), else ``b``."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def segment_lengths(total: int, every: int) -> list[int]:
    """Segments of ``every`` steps covering ``total`` (the last one shorter if ``every`` does not divide it)."""
    full, last = divmod(total, every)
    return [every] * full + ([last] if last else [])
