"""Build the single-trial objective from a Flax NNX model, an Optax optimizer and data.

:class:`Trainer` is a callable ``trainer(hp, key) -> metrics`` that ``jt.tune`` vmaps like any
objective. Inside one trial it

* builds the model from ``model(hp, nnx.Rngs(key))`` (so static hyperparameters such as depth
  can shape it) and the optimizer from ``optimizer(hp)`` with *traced* values (learning rate,
  momentum, weight decay, decay rates are data, so new values never recompile);
* trains with ``lax.scan`` in segments of ``eval_every`` steps, evaluating every split of
  ``eval_data`` after each segment (the learning curves) and at the end;
* draws data order, initialisation and dropout from the trial's own key; BatchNorm statistics
  and dropout RNG state are per-trial state carried through the scan.

How the model is called: every step draws ``batch_size`` training examples uniformly, with
replacement, from the trial's key, and calls the model in train mode (Dropout on, BatchNorm
updating) as ``model(x)``, or ``model(x, rngs=nnx.Rngs(dropout=step_key))`` when its ``__call__``
takes ``rngs`` (the Flax NNX tutorial's convention); evaluation, in eval mode, ``model(x)``.

Hyperparameters the model reads: a value held in a ``jt.layers.Hyper`` variable (the rate of
``jt.layers.Dropout``, a masked width) is set from the trial's current ``hp`` at every segment
and in ``model_of``, so values that change between segments (PBT's explore, babysit's ``set``)
reach the model; a model that keeps one in its state any other way is refused by ``init``.

A traced ``hp["batch_size"]`` is masked: every step draws ``Trainer.batch_size`` (the largest)
examples and weighs the first ``batch_size``: the smaller batch's loss and gradients, one program.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxtune._checks import MAX_STEPS, check_int
from jaxtune._trees import leading_blocks
from jaxtune.errors import InputError, InputTypeError
from jaxtune.layers import Hyper, live_params, patch_convs, reached_by, refuse_static_tracers, traced_values_explained
from jaxtune.schedules import SCHEDULES
from jaxtune.space import Choice, Float, Int, Masked, Space
from jaxtune.trainer_inputs import check_milestones, data_splits, milestones_reached

__all__ = ["Trainer", "accuracy", "set_mode"]

_MODE_ATTRS = ("deterministic", "use_running_average")


def _merge(graphdef, *states) -> nnx.Module:
    # Fresh Variables, so a model merged inside jax.grad/scan may update its RNG counts and batch
    # statistics (merging without a copy reuses Variables created at an outer trace level).
    if _MERGE_COPIES:
        return nnx.merge(graphdef, *states, copy=True)
    return nnx.merge(graphdef, *states)


_MERGE_COPIES = "copy" in inspect.signature(nnx.merge).parameters


def _unmasked(hp: Mapping[str, Any]) -> dict[str, Any]:
    """``hp`` with every :class:`~jaxtune.space.Masked` width as its plain int value."""
    return {n: int(v.value) if isinstance(v, Masked) else v for n, v in hp.items()}


def _takes_rngs(model: nnx.Module) -> bool:
    """Whether ``model.__call__`` accepts an ``rngs`` argument."""
    try:
        return "rngs" in inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        return False


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example top-1 accuracy (1.0 or 0.0)."""
    return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def set_mode(model: nnx.Module, train: bool) -> nnx.Module:
    """A view of ``model`` in train or eval mode (Dropout, BatchNorm); a no-op for other models."""
    keys = {a for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Module) for a in _MODE_ATTRS if hasattr(m, a)}
    if not keys:
        return model
    if hasattr(nnx, "view"):
        return nnx.view(model, **{k: not train for k in keys})
    model.train() if train else model.eval()  # flax versions before nnx.view
    return model


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """A single-trial training objective for ``jt.tune``, built from Flax NNX and Optax.

    Args:
      model: ``model(hp, rngs) -> nnx.Module``; ``hp`` holds static values as Python values.
      optimizer: ``optimizer(hp) -> optax.GradientTransformation`` built from traced values,
        e.g. ``lambda hp: optax.adamw(hp["lr"], b1=hp["b1"], weight_decay=hp["wd"])``.
      data: training arrays ``(x, y)``.
      eval_data: ``{split: (x, y)}``, e.g. ``{"val": ..., "test": ...}``; each split reports
        ``{split}_loss`` and ``{split}_{metric}`` for every metric. A split named ``"train"``
        (e.g. the training data itself, to see memorisation) reports ``train_accuracy``, and its
        ``train_loss`` (eval mode, at the segment's end) replaces the segment's mean training loss.
      loss: per-example loss ``loss(outputs, y) -> f32[batch]`` (default: softmax cross-entropy
        with integer labels).
      metrics: ``{name: fn(outputs, y) -> f32[batch]}`` averaged over each eval split.
      steps: optimizer steps per trial; a ``steps`` hyperparameter (an integer, ``static=True``)
        overrides it per trial: the budget that ``"successive_halving"`` sets.
      batch_size: examples per step; with a traced ``hp["batch_size"]`` it is the largest batch.
      eval_every: evaluate every this many steps (must divide ``steps``; a tuned budget that it
        does not divide ends with one shorter segment) and keep the learning
        curves; None evaluates only at the end.
      schedule: a learning-rate schedule applied to the optimizer as a multiplier of its learning
        rate (:mod:`jaxtune.schedules`, every shape parameter traced, so it can be tuned):
        ``"constant"``, ``"cosine"``, ``"linear"`` or ``"exponential"``, each after a linear warmup.
        Its shape comes from the space or defaults: ``warmup`` (a fraction of the trial's steps,
        default 0) and ``decay_end`` (the final multiplier, default 0; 0.01 for exponential).
        None (the default) leaves the optimizer as it is.
      patch_convs: run the model's ``nnx.Conv`` layers as patches @ kernel
        (:func:`jaxtune.layers.patch_convs`: the same function and parameters; under vmap one
        batched matmul instead of a grouped convolution, 7-8x faster on CPU and GPU). False
        keeps them as they are.
      milestones: ``{name: (metric, threshold)}`` (or ``(metric, "<=", threshold)``): a metric
        ``name``, the first evaluated step at which ``metric`` reached the threshold, budget + 1 if
        never (:mod:`jaxtune.trainer_inputs`), e.g. ``{"steps_to_generalise": ("val_accuracy", 0.95)}``;
        where a trial trains in one program (rounds; a population's segments keep the curve instead).
      full_batch: every step uses the whole training set (gradient descent on the full batch,
        as grokking's papers train); ``batch_size`` is then unused and cannot be tuned.

    Examples:
      >>> import jaxtune as jt
      >>> x, y = np.random.default_rng(0).normal(size=(96, 6)).astype(np.float32), np.arange(96) % 3
      >>> trainer = Trainer(model=lambda hp, rngs: nnx.Linear(6, 3, rngs=rngs),
      ...                   optimizer=lambda hp: optax.adam(hp["lr"]),
      ...                   data=(x[:64], y[:64]), eval_data={"val": (x[64:], y[64:])}, steps=20, batch_size=16)
      >>> space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log")})
      >>> result = jt.tune(trainer, space, trials=4, metric="val_loss", progress=False)
      >>> sorted(result.best["metrics"])
      ['n_params', 'train_loss', 'val_accuracy', 'val_loss']
    """

    model: Callable[[Mapping[str, Any], nnx.Rngs], nnx.Module]
    optimizer: Callable[[Mapping[str, Any]], optax.GradientTransformation]
    data: tuple[Any, Any]
    eval_data: Mapping[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    loss: Callable[[jax.Array, jax.Array], jax.Array] = optax.softmax_cross_entropy_with_integer_labels
    metrics: Mapping[str, Callable[[jax.Array, jax.Array], jax.Array]] = dataclasses.field(
        default_factory=lambda: {"accuracy": accuracy}
    )
    steps: int = 1000
    batch_size: int = 128
    eval_every: int | None = None
    schedule: str | None = None
    patch_convs: bool = True
    full_batch: bool = False
    milestones: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_int("Trainer: steps", self.steps, 1, MAX_STEPS)
        check_int("Trainer: batch_size", self.batch_size)
        e = check_int("Trainer: eval_every", self.eval_every, none=True)
        if e is not None and self.steps % e:
            raise InputError(f"Trainer: eval_every must divide steps={self.steps}, got {e!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise InputError(f"Trainer: schedule must be one of {sorted(SCHEDULES)} or None, got {self.schedule!r}")
        check_milestones(self.milestones, self.eval_every)
        if not isinstance(self.full_batch, bool):
            raise InputTypeError(f"Trainer: full_batch must be True or False, got {self.full_batch!r}")
        if not callable(self.model) or not callable(self.optimizer):
            raise InputTypeError("Trainer: model and optimizer must be callables: model(hp, rngs), optimizer(hp)")
        train, splits = data_splits(self.data, self.eval_data)
        object.__setattr__(self, "_data", train)
        object.__setattr__(self, "_arrays", splits)

    def validate_space(self, space: Space) -> None:
        """Checks a space against this trainer before a sweep starts (called by ``jt.tune``)."""
        steps = space.params.get("steps")
        if steps is not None and (not steps.static or isinstance(steps, Float)):
            raise InputError(
                f"steps (the training budget) sets the length of the training loop: it must be an integer with "
                f"static=True, got {steps!r}"
            )
        p = space.params.get("batch_size")
        if p is None:
            return
        if self.full_batch:
            raise InputError(f"batch_size is tuned ({p!r}) but Trainer(full_batch=True) trains on the whole training "
                             "set every step: drop batch_size from the space or set full_batch=False")  # fmt: skip
        top = max(p.values) if isinstance(p, Choice) else p.high if isinstance(p, Int) else None
        if top is None:
            raise InputTypeError(f"batch_size must be a jt.Int or a jt.Choice of ints, got {p!r}")
        if not p.static and top > self.batch_size:
            raise InputError(
                f"batch_size goes up to {top} but Trainer(batch_size={self.batch_size}) is the largest batch a "
                f"masked step can hold: set Trainer batch_size >= {top}"
            )

    def _init(self, hp, key):
        k_model, k_data = jax.random.split(key)
        with traced_values_explained():
            model = self.model(hp, nnx.Rngs(k_model))
        refuse_static_tracers(model)
        if self.patch_convs:
            model = patch_convs(model)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return graphdef, params, rest, k_data

    def batch_loss(self, graphdef, params, rest, x, y, weights, key=None):
        """Weighted training loss of one batch and the updated non-parameter state.

        The model is called in train mode as ``model(x)``, or ``model(x, rngs=nnx.Rngs(dropout=key))``
        when its ``__call__`` takes ``rngs`` (the Flax NNX tutorial passes Dropout's keys that way).
        """
        model = _merge(graphdef, params, rest)
        train = set_mode(model, train=True)
        with traced_values_explained():
            out = train(x, rngs=nnx.Rngs(dropout=key)) if key is not None and _takes_rngs(model) else train(x)
        loss = jnp.sum(weights * self.loss(out, y))
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def evaluate(self, graphdef, params, rest) -> dict[str, jax.Array]:
        """``{split}_loss`` and ``{split}_{metric}`` on every eval split, and ``n_params``: the
        trainable parameters the model uses (:func:`jaxtune.layers.live_params`), a cost to trade
        against accuracy (``metric=["val_accuracy", "n_params"]``) or to bound (a constraint)."""
        model = set_mode(_merge(graphdef, params, rest), train=False)
        out = {"n_params": live_params(model)}
        for split, (x, y) in self._arrays.items():
            with traced_values_explained():
                pred = model(x)
            out[f"{split}_loss"] = jnp.mean(self.loss(pred, y))
            for name, fn in self.metrics.items():
                out[f"{split}_{name}"] = jnp.mean(fn(pred, y))
        return out

    def _batch(self, hp):
        """(examples used per step, examples drawn per step, per-example weights).

        Every trial draws ``max(batch_size, Trainer.batch_size)`` indices a step and uses a prefix,
        so a masked (traced) batch size sees exactly the examples the same static size would.
        """
        if self.full_batch:
            n = self._data[0].shape[0]
            return n, n, jnp.full((n,), 1.0 / n)
        # The Trainer's own setting unless the space tunes it (not a default the space forgot).
        bs = hp["batch_size"] if "batch_size" in hp else self.batch_size
        if isinstance(bs, (int, np.integer)):
            bs = int(bs)
            return bs, max(bs, self.batch_size), jnp.full((bs,), 1.0 / bs)
        live = jnp.arange(self.batch_size) < bs
        return self.batch_size, self.batch_size, live / jnp.asarray(bs, jnp.float32)

    # The stateful trial protocol (jaxtune.execute.population): init, train a segment, evaluate.
    def init(self, hp: Mapping[str, Any], key: jax.Array) -> dict[str, Any]:
        """A trial's state before its first step: parameters, other model state (BatchNorm
        statistics, RNG counts), optimizer state, the step count and the key of its data order.

        Every leaf is an array with a fixed shape (for a bucket), so a population of states is one
        pytree with a trial axis. The traced hyperparameters are not in it: they travel beside it
        (``train`` takes them), so they can change between segments without recompiling; for
        that, a model that keeps one in its state other than in a ``jt.layers.Hyper`` is refused.
        """
        self._refuse_kept_hyperparameters(hp)
        return self._start(hp, key)

    def _start(self, hp, key):
        _, params, rest, k_data = self._init(hp, key)
        opt_state = self._optimizer(hp).init(params)
        return {"params": params, "rest": rest, "opt_state": opt_state, "step": jnp.zeros((), jnp.int32), "key": k_data}

    def train(self, hp: Mapping[str, Any], state: dict[str, Any], steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Trains ``steps`` more optimizer steps (static) from ``state``; the new state and
        ``{"train_loss": mean over these steps}``.

        Step ``t`` (counted from the trial's start) draws its batch with ``fold_in(key, t)``, so
        training in segments of any lengths equals training straight through, bit for bit.
        The optimizer is rebuilt from ``hp`` at every call: new values of traced hyperparameters
        (a halved learning rate, an explored momentum) take effect from the next step.
        """
        x, y = self._data
        graphdef, hyper = self._structure(hp)
        tx = self._optimizer(hp)
        used, drawn, weights = self._batch(hp)
        grad_fn = jax.value_and_grad(self.batch_loss, argnums=1, has_aux=True)

        def step(carry, k):
            params, rest, opt_state, loss_sum = carry
            idx = None if self.full_batch else jax.random.randint(k, (drawn,), 0, x.shape[0])[:used]
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            # Keys for a model that takes Dropout's rngs at call time: a stream apart from the batch's.
            (loss, rest), grads = grad_fn(graphdef, params, rest, xb, yb, weights, jax.random.fold_in(k, 1))
            updates, opt_state = tx.update(grads, opt_state, params)
            # The segment's mean training loss is summed in the carry rather than stacked as a
            # scan output: no per-step write of a loss array (one more kernel a step on a GPU).
            return (optax.apply_updates(params, updates), rest, opt_state, loss_sum + loss), None

        # One key per step, made in one batched call before the loop (cheaper on CPUs than a
        # fold_in inside it); under JAX's partitionable threefry (the default) these equal
        # split(key, total)[t], the keys of a hand-written loop.
        t = state["step"] + jnp.arange(steps, dtype=jnp.int32)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(state["key"], t)
        carry = (state["params"], self._with_hyper(hp, hyper, state["rest"]), state["opt_state"], jnp.float32(0))
        (params, rest, opt_state, loss_sum), _ = jax.lax.scan(step, carry, keys)
        new = {**state, "params": params, "rest": rest, "opt_state": opt_state, "step": state["step"] + steps}
        return new, {"train_loss": loss_sum / steps}

    def evaluate_state(self, hp: Mapping[str, Any], state: dict[str, Any]) -> dict[str, jax.Array]:
        """``{split}_loss`` and ``{split}_{metric}`` of a trial's state, on every eval split."""
        graphdef, hyper = self._structure(hp)
        return self.evaluate(graphdef, state["params"], self._with_hyper(hp, hyper, state["rest"]))

    def model_of(self, hp: Mapping[str, Any], state: dict[str, Any]) -> nnx.Module:
        """The trained NNX model of a trial's ``state`` (from :meth:`train` or ``Result.replay``), in eval mode.

        ``hp`` may hold plain Python values (``result.best["params"]``); ``jt.layers.Hyper``
        values (a dropout rate) are set from it. A masked width comes back at its true size: a
        trial with ``hidden = 33`` trained in the 64-unit bucket gives a model whose layers have
        33 units (the live units are the first ones, so this model computes what the masked one
        did); see :meth:`unpadded`.
        """
        hp = _unmasked(hp)
        state = self.unpadded(hp, state)
        graphdef, hyper = self._structure(hp)
        rest = self._with_hyper(hp, hyper, state["rest"])
        return set_mode(nnx.merge(graphdef, state["params"], rest), train=False)

    def unpadded(self, hp: Mapping[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        """``state`` at the trial's true widths: every array of a masked width cut to its live units.

        A ``masked=True`` width trains in its power-of-two bucket (``hidden = 33`` holds ``(64, 64)``
        kernels, units past 33 masked out); the live units are the first ones, so each array at the
        true widths is the stored one's leading block (``kernel[:33, :33]``): parameters, model and
        optimizer state alike. A state with the true shapes comes back unchanged.
        """
        hp = _unmasked(hp)

        def shapes():
            _, params, rest, _ = self._init(hp, jax.random.key(0))
            return params, rest, self._optimizer(hp).init(params)

        params, rest, opt_state = jax.eval_shape(shapes)
        return {
            **state,
            "params": leading_blocks(state["params"], params, "params"),
            "rest": leading_blocks(state["rest"], rest, "rest", missing_ok=True),
            "opt_state": leading_blocks(state["opt_state"], opt_state, "opt_state"),
        }

    def reseed(self, state: dict[str, Any], key: jax.Array) -> dict[str, Any]:
        """``state`` with its own data order from ``key`` (a copied trial must not train as its donor does)."""
        return {**state, "key": key}

    def _structure(self, hp):
        """The model's structure for ``hp`` and whether it holds ``jt.layers.Hyper`` values (traced
        abstractly: no parameters are initialised)."""

        def parts(key):
            graphdef, _, rest, _ = self._init(hp, key)
            return graphdef, nnx.filter_state(rest, Hyper)

        graphdef, hyper = jax.eval_shape(parts, jax.random.key(0))
        return graphdef, bool(jax.tree.leaves(hyper))

    def _with_hyper(self, hp, hyper: bool, rest):
        """``rest`` with every ``jt.layers.Hyper`` value set from ``hp`` (the model is built again for
        it; under jit the unused initialisation is dead code)."""
        if not hyper:
            return rest
        return nnx.merge_state(rest, nnx.filter_state(self._init(hp, jax.random.key(0))[2], Hyper))

    def _refuse_kept_hyperparameters(self, hp) -> None:
        """Refuses a model whose state (other than ``Hyper`` values) is computed from a traced hyperparameter."""
        names = [n for n, v in hp.items() if isinstance(v, jax.Array)]
        if not names:
            return
        paths = []

        def kept(*values):
            rest = self._init({**hp, **dict(zip(names, values))}, jax.random.key(0))[2]
            rest = nnx.filter_state(rest, nnx.Not(Hyper))
            flat = jax.tree_util.tree_flatten_with_path(rest)[0]
            paths[:] = [jax.tree_util.keystr(p) for p, _ in flat]
            return [leaf for _, leaf in flat]

        specs = [jax.ShapeDtypeStruct(jnp.shape(hp[n]), jnp.result_type(hp[n])) for n in names]
        reached = reached_by(jax.make_jaxpr(kept)(*specs), names)
        found = {p: sorted(r) for p, r in zip(paths, reached) if r}
        if found:
            hps = sorted({n for r in found.values() for n in r})
            raise InputError(
                f"model(hp, rngs) keeps the traced hyperparameter(s) {hps} in its state ({', '.join(found)}): a "
                "population (PBT's explore) or babysit's set would change hp while the model trained on with its first "
                "value. Hold the value in a jt.layers.Hyper variable (jt.layers.Dropout does, for a dropout rate): the "
                "Trainer sets Hyper values from hp at every segment"
            )

    def __call__(self, hp: Mapping[str, Any], key: jax.Array) -> dict[str, Any]:
        """Trains one trial; its final metrics (and curves, with ``eval_every``): :meth:`run_trial`."""
        return self.run_trial(hp, key)[1]

    def run_trial(self, hp: Mapping[str, Any], key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(state, metrics)``: :meth:`init`, then :meth:`train` and :meth:`evaluate_state` every
        ``eval_every`` steps (what an exact replay of a round sweep's trial runs, :mod:`jaxtune.replay`)."""

        def segment(state, steps):
            state, metrics = self.train(hp, state, steps)
            return state, {**metrics, **self.evaluate_state(hp, state)}

        steps = self._steps(hp)
        every = min(self.eval_every or steps, steps)
        full, last = divmod(steps, every)
        state = self._start(hp, key)  # one hp throughout: any model state is fine here
        state, curves = jax.lax.scan(lambda s, _: segment(s, every), state, None, length=full)
        ends = (jnp.arange(full, dtype=jnp.int32) + 1) * every
        if last:  # a tuned budget that eval_every does not divide: one shorter last segment
            state, tail = segment(state, last)
            curves = jax.tree.map(lambda c, t: jnp.concatenate([c, t[None]]), curves, tail)
            ends = jnp.append(ends, jnp.int32(steps))
        final = {k: v[-1] for k, v in curves.items()}
        final.update(milestones_reached(self.milestones, {"step": ends, **curves}, steps))
        if self.eval_every is not None:
            final["curves"] = {"step": ends, **curves}
        return state, final

    def _optimizer(self, hp) -> optax.GradientTransformation:
        """The user's optimizer, with the learning-rate schedule multiplying its updates if one is set.

        A multiplier after the optimizer equals a scheduled learning rate for every optimizer
        whose last step scales by it (SGD, Adam, AdamW with its decoupled weight decay, ...).
        """
        tx = self.optimizer(hp)
        if self.schedule is None:
            return tx
        make, end = SCHEDULES[self.schedule]
        steps = self._steps(hp)
        end = 1.0 if end is None else hp.get("decay_end", end)
        return optax.chain(tx, optax.scale_by_schedule(make(1.0, steps, hp.get("warmup", 0.0) * steps, end)))

    def _steps(self, hp) -> int:
        """Optimizer steps of this trial: ``hp["steps"]`` when the space tunes the budget."""
        steps = hp["steps"] if "steps" in hp else self.steps
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 1:
            return int(steps)
        raise InputTypeError(
            f"steps must reach the trial as a Python int >= 1 (static=True in the space), got {steps!r}"
        )
