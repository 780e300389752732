"""Panda mode: babysit one model segment by segment, edit it, roll it back, fork it.

When compute is scarce (one model barely fits, or the budget allows a handful of trials), the
ideas jaxtune stands on say: babysit one model, watch its learning curve, and nudge it. A
:class:`Babysitter` trains one configuration ``segment`` steps at a time with the stateful trial
protocol (``jt.train.Trainer`` implements it) and keeps the run as a *tree* in the same SQLite
storage as sweeps. Between segments you can

* ``set(lr=...)``: change traced hyperparameters from the current step on (an event at that
  step; no recompile);
* ``rollback(step)``: go back to the checkpoint at ``step`` on the current path. **Rule: the
  checkpoint's hyperparameters come back with it** (those in force when it was written); edits
  made after it stay in the tree, on the abandoned branch;
* ``fork([{"lr": 1e-3}, {"lr": 3e-3}], segments=2)``: try K edits side by side from the current
  state, as K lanes of one program, then ``adopt("b")`` one of them (the others stay in the tree);
* stop at any time; ``jt.babysit(...)`` with the same storage and name resumes at the head.

Every node of the tree records its step, event, hyperparameters, metrics and the program it ran
in (width and lane); :meth:`Babysitter.replay` retrains any path from the initial key and
reproduces its parameters bit for bit on CPU (tested).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune._trees import restore_tree, tree_arrays
from jaxtune.analysis.report import fmt, render_tree
from jaxtune.errors import InputError, InputTypeError, StorageError, UnknownNameError
from jaxtune.execute.population import Population, require_protocol
from jaxtune.keys import TRIAL_STREAM
from jaxtune.result import MODES, minimised
from jaxtune.space import Space, bucket_size
from jaxtune.space.params import check_value
from jaxtune.study import nodes as node_tree
from jaxtune.study.study import Study, objective_settings

__all__ = ["Babysitter", "babysit"]

LABELS = "abcdefghijklmnopqrstuvwxyz"


class Babysitter:
    """One model (or a few forks) trained segment by segment, with its history as a tree.

    Args:
      objective: implements the stateful trial protocol (``init``, ``train``, ``evaluate_state``).
      space: the hyperparameters' space (bounds, scales, which are static).
      hp: the starting configuration; a missing name takes the middle of its range on its scale.
      storage: SQLite path (None: in memory, nothing survives the process).
      name: the run's name in the storage; an existing run of that name resumes at its head.
      seed: the run's seed (its key: initialisation and data order).
      segment: steps per segment.
      metric: the metric to watch (default: the first the objective's evaluation returns).
      mode: ``"min"`` or ``"max"`` for ``metric``.

    Examples:
      >>> sitter = jt.babysit(trainer, space, {"lr": 3e-3}, storage="panda.db", segment=200)
      >>> sitter.train(3)                       # 600 steps
      >>> sitter.set(lr=1e-3)                   # from step 600 on
      >>> sitter.fork([{"lr": 3e-4}, {"lr": 1e-3}], segments=2)
      >>> sitter.adopt("a")
    """

    def __init__(
        self,
        objective: Any,
        space: Space,
        hp: Mapping[str, Any] | None = None,
        *,
        storage: str | None = None,
        name: str = "babysit",
        seed: int = 0,
        segment: int = 100,
        metric: str | None = None,
        mode: str = "min",
    ):
        require_protocol(objective, "babysit")
        if not isinstance(space, Space):
            raise InputTypeError(f"babysit: space must be a jt.Space, got {type(space).__name__}")
        check_int("segment", segment)
        check_int("seed", seed, low=0)
        if mode not in MODES:
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}")
        self.objective, self.space, self.segment, self.seed, self.mode = objective, space, segment, seed, mode
        self.hp = self._full(hp or {})
        self.static = {n: self.hp[n] for n in space.static_names}
        self.bucket = tuple(self.hp[n] for n in space.static_names) + tuple(
            bucket_size(self.hp[n]) for n in space.masked_names
        )
        self._pops: dict[int, Population] = {}
        pop = self._pop(1)
        names = list(jax.eval_shape(lambda h, s: pop.segment_one(h, s, 1)[1], *self._abstract(pop)))
        if metric is None:
            metric = next((n for n in names if n != "train_loss"), names[0])
        elif metric not in names:
            raise InputError(f"metric {metric!r} is not among the objective's metrics {names}")
        self.metric = metric
        self.name = name
        config = {
            "kind": "babysit",
            "space": space.describe(),
            "seed": seed,
            "segment": segment,
            "metric": metric,
            "mode": mode,
            "program": pop.trial_fn.fingerprint(self.bucket),
            "objective": getattr(objective, "__qualname__", type(objective).__qualname__),
            "settings": objective_settings(objective),
            "layout": {"jax": jax.__version__},
            "hp": {n: v for n, v in self.hp.items()},
        }
        self.study = Study(storage, name, config, check=("kind", "space", "seed", "segment", "program", "hp"))
        self.store, self.sid = self.study.store, self.study.sid
        self.nodes, self.head = node_tree.read(self.store, self.sid)
        self._states: dict[int, Any] = {}
        if not self.nodes:
            key = jax.random.fold_in(jax.random.key(seed), TRIAL_STREAM)  # the initial state: the run's key
            pop.start(self._lane_hp(pop, [self.hp]), key[None])
            metrics = self._evaluate(pop)[0]
            self._record([self._node(None, 0, "start", self.hp, metrics, 1, 0)], pop, [0], head=0)
        else:
            self.hp = dict(self.nodes[self.head]["hp"])

    # ---------------------------------------------------------------- helpers
    def _full(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(hp) - set(self.space.params))
        if unknown:
            raise UnknownNameError(f"babysit: unknown hyperparameters {unknown}; the space has {self.space.names}")
        centre = self.space.to_python(self.space.from_unit(jnp.full((1, self.space.dim), 0.5)))[0]
        return {n: check_value(n, p, hp[n]) if n in hp else centre[n] for n, p in self.space.params.items()}

    def _pop(self, width: int) -> Population:
        if width not in self._pops:
            self._pops[width] = Population(self.objective, self.space, self.bucket, width, devices=jax.devices()[:1])
        return self._pops[width]

    def _abstract(self, pop: Population):
        hp = {n: jax.ShapeDtypeStruct((), s.dtype) for n, s in pop.trial_fn.dynamic_example().items()}
        keys = jax.ShapeDtypeStruct((2,), jnp.uint32)
        return hp, jax.eval_shape(pop.init_one, hp, keys)

    def _lane_hp(self, pop: Population, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        example = pop.trial_fn.dynamic_example()
        return {n: np.asarray([r[n] for r in rows], s.dtype) for n, s in example.items()}

    def _evaluate(self, pop: Population) -> list[dict[str, float]]:
        hp = pop.hp
        out = jax.vmap(lambda h, s: self.objective.evaluate_state(pop.trial_fn.bind(self.bucket, h), s))(hp, pop.state)
        out = jax.device_get(out)
        return [{n: float(np.asarray(v)[i]) for n, v in out.items()} for i in range(pop.width)]

    def _node(self, parent, step, event, hp, metrics, width, lane) -> dict[str, Any]:
        return {"id": len(self.nodes), "parent": parent, "step": step, "event": event, "hp": dict(hp),
                "metrics": metrics, "width": width, "lane": lane}  # fmt: skip

    def _record(self, new: list[dict], pop: Population | None, lanes: Sequence[int | None], head: int) -> None:
        """Stores ``new`` nodes (the state of lane ``lanes[i]`` of ``pop`` with each; None: an event
        that keeps its parent's state) and moves the head, in one transaction."""
        rows = []
        self._states = {}  # host copies of the newest checkpoints only; older ones load from storage
        for node, lane in zip(new, lanes):
            blob = None
            if lane is not None:
                state = jax.device_get(pop.lanes([lane])[0])
                self._states[node["id"]] = state
                blob = _pack(state)
            rows.append({**node, "state": blob})
            self.nodes.append({**node, "has_state": blob is not None})
        node_tree.add(self.store, self.sid, rows, head)
        self.head = head

    def _state_of(self, node: int) -> Any:
        """The state at ``node`` (an event node's is its nearest ancestor's with a checkpoint)."""
        node = self._checkpoint(node)
        if node not in self._states:
            _, template = self._abstract(self._pop(1))
            try:
                self._states[node] = _unpack(node_tree.state(self.store, self.sid, node), template)
            except Exception as e:  # a damaged blob: zip, npz or shape errors alike
                raise StorageError(
                    f"{self.store.path}: the stored state of node #{node} (step {self.nodes[node]['step']}) is "
                    f"damaged ({type(e).__name__}); roll back to an earlier checkpoint (rollback STEP), or start a "
                    "new run under another name"
                ) from e
        return self._states[node]

    def _load(self, pop: Population, state: Any) -> None:
        stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * pop.width), state)
        pop.load_state(stacked)

    def _train(self, rows: Sequence[Mapping[str, Any]], start: Any, segments: int):
        """Trains ``len(rows)`` lanes from ``start`` with hyperparameters ``rows``; yields every
        lane's metrics after each segment, with the population (its lanes' states)."""
        pop = self._pop(len(rows))
        self._load(pop, start)
        pop.set_hp(self._lane_hp(pop, rows))
        for _ in range(segments):
            metrics = pop.train(self.segment)
            yield [{n: float(v[i]) for n, v in metrics.items()} for i in range(pop.width)], pop

    # ---------------------------------------------------------------- what users call
    @property
    def step(self) -> int:
        """Training steps of the current state."""
        return self.nodes[self.head]["step"]

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics at the head (the last evaluation on the current path)."""
        return self.nodes[self._checkpoint(self.head)]["metrics"]

    def _checkpoint(self, node: int) -> int:
        while not self.nodes[node]["has_state"]:
            node = self.nodes[node]["parent"]
        return node

    def path(self, node: int | None = None) -> list[dict[str, Any]]:
        """The nodes from the start to ``node`` (default: the head)."""
        node = self.head if node is None else node
        out = []
        while node is not None:
            out.append(self.nodes[node])
            node = self.nodes[node]["parent"]
        return out[::-1]

    def curve(self, node: int | None = None) -> list[tuple[int, dict[str, float]]]:
        """The learning curve along the path to ``node``: ``[(step, metrics), ...]``."""
        return [(n["step"], n["metrics"]) for n in self.path(node) if n["has_state"]]

    def events(self, node: int | None = None) -> list[tuple[int, str]]:
        """The edits along the path to ``node``: ``[(step, event), ...]`` (segments of training left out)."""
        return [(n["step"], n["event"]) for n in self.path(node) if n["event"] != "train"]

    def train(self, segments: int = 1) -> dict[str, float]:
        """Trains ``segments`` more segments with the current hyperparameters; the metrics after them.
        Each segment is stored as it ends (Ctrl-C keeps every finished one)."""
        self._check_segments(segments)
        for metrics, pop in self._train([self.hp], self._state_of(self.head), segments):
            node = self._node(self.head, self.step + self.segment, "train", self.hp, metrics[0], 1, 0)
            self._record([node], pop, [0], head=node["id"])
        return self.metrics

    def _check_segments(self, segments: int) -> None:
        """Refuses a number of segments that is not an int >= 1, or that would take the step count
        past what a training state's int32 step counter holds."""
        check_int("segments", segments)
        most = (MAX_STEP - self.step) // self.segment
        if segments > most:
            raise InputError(f"segments must be at most {most} from step {self.step} ({self.segment} steps each: "
                             f"step counters are int32), got {segments}")  # fmt: skip

    def set(self, **changes: Any) -> dict[str, Any]:
        """Changes traced hyperparameters from the current step on (recorded as an event); returns
        the hyperparameters now in force."""
        if not changes:
            raise InputError("set: give at least one name=value")
        bad = sorted(set(changes) - set(self.space.params))
        if bad:
            raise UnknownNameError(f"set: unknown hyperparameters {bad}; the space has {self.space.names}")
        static = sorted(set(changes) & set(self.space.static_names))
        if static:
            raise InputError(f"set: {static} are static (they fix the program's shapes); only traced ones can change")
        new = {**self.hp, **{n: check_value(n, self.space.params[n], v) for n, v in changes.items()}}
        event = "set " + " ".join(f"{n}={fmt(v)}" for n, v in changes.items())
        node = self._node(self.head, self.step, event, new, self.metrics, 1, 0)
        self._record([node], None, [None], head=node["id"])
        self.hp = new
        return dict(new)

    def rollback(self, step: int) -> None:
        """Goes back to the checkpoint at ``step`` on the current path. Its hyperparameters come
        back with it (those in force when it was written); later nodes stay in the tree."""
        check_int("step", step, low=0)
        found = [n for n in self.path() if n["has_state"] and n["step"] == step]
        if not found:
            steps = sorted({n["step"] for n in self.path() if n["has_state"]})
            raise InputError(f"rollback: no checkpoint at step {step} on the current path; checkpoints are at {steps}")
        target = found[-1]
        node = self._node(target["id"], step, f"rollback to step {step}", target["hp"], target["metrics"], 1, 0)
        self._record([node], None, [None], head=node["id"])
        self.hp = dict(target["hp"])

    def fork(self, edits: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], segments: int = 1):
        """Trains K edits of the current configuration side by side from the current state (K
        lanes of one program) for ``segments`` segments. Returns ``{label: metrics}``; the branches
        stay in the tree, and :meth:`adopt` makes one of them the current path."""
        self._check_segments(segments)
        count = len(edits)
        if not count or count > len(LABELS):  # (zip would drop edits past the last label)
            raise InputError(f"fork: give 1 to {len(LABELS)} edits, got {count}")
        labelled = dict(edits) if isinstance(edits, Mapping) else dict(zip(LABELS, edits))
        bad = [label for label in labelled if not isinstance(label, str) or not label.isidentifier()]
        if bad:
            raise InputError(f"fork: branch labels must be identifiers such as 'a' or 'low_lr', got {bad}")
        rows = []
        for label, edit in labelled.items():
            static = sorted(set(edit) & set(self.space.static_names))
            unknown = sorted(set(edit) - set(self.space.params))
            if unknown or static:
                what = f"unknown hyperparameters {unknown}" if unknown else f"static hyperparameters {static}"
                raise InputError(f"fork {label!r}: {what}; traced ones are {self.space.names}")
            rows.append({**self.hp, **{n: check_value(n, self.space.params[n], v) for n, v in edit.items()}})
        last = {label: None for label in labelled}
        parents = {label: self.head for label in labelled}
        for s, (metrics, pop) in enumerate(self._train(rows, self._state_of(self.head), segments)):
            new = []
            for i, (label, edit) in enumerate(labelled.items()):
                event = f"fork {label}: " + " ".join(f"{n}={fmt(v)}" for n, v in edit.items()) if s == 0 else "train"
                node = self._node(parents[label], self.step + (s + 1) * self.segment, event, rows[i], metrics[i],
                                  pop.width, i)  # fmt: skip
                node["id"] += i
                parents[label] = last[label] = node["id"]
                new.append(node)
            self._record(new, pop, list(range(pop.width)), head=self.head)
        return {label: self.nodes[last[label]]["metrics"] for label in labelled}

    def branches(self) -> dict[str, int]:
        """The tips of the last fork's branches, ``{label: node}`` (empty once one was adopted or
        the run moved on), read from the tree: a resumed run can still adopt."""
        forks = [n for n in self.nodes if n["event"].startswith("fork ")]
        if not forks:
            return {}
        origin = forks[-1]["parent"]
        if self.head != origin:
            return {}
        by_id = {n["id"]: n for n in forks}
        first = forks[-1]["id"]
        while first - 1 in by_id and by_id[first - 1]["parent"] == origin:  # one fork's nodes: consecutive ids
            first -= 1
        tips = {}
        for i in range(first, forks[-1]["id"] + 1):
            tip = i
            while True:  # follow the branch's own training segments to its end
                nxt = [c for c in self.nodes if c["parent"] == tip and c["event"] == "train"]
                if not nxt:
                    break
                tip = nxt[0]["id"]
            tips[by_id[i]["event"][5:].split(":")[0]] = tip
        return tips

    def adopt(self, label: str) -> None:
        """Makes branch ``label`` of the last fork the current path (its hyperparameters too)."""
        tips = self.branches()
        if label not in tips:
            raise InputError(f"adopt: no branch {label!r}; the last fork's branches are {sorted(tips)}")
        tip = self.nodes[tips[label]]
        node = self._node(tip["id"], tip["step"], f"adopt {label}", tip["hp"], tip["metrics"], 1, 0)
        self._record([node], None, [None], head=node["id"])
        self.hp = dict(tip["hp"])

    @property
    def state(self) -> Any:
        """The current state (parameters, optimizer state, step, key) on the host."""
        return self._state_of(self.head)

    def model(self):
        """The current model, ready to use (``objective.model_of``, which ``jt.train.Trainer`` has)."""
        if not hasattr(self.objective, "model_of"):
            raise InputTypeError(f"{type(self.objective).__name__} has no model_of(hp, state)")
        return self.objective.model_of(self.hp, jax.tree.map(jnp.asarray, self.state))

    def replay(self, node: int | None = None) -> Any:
        """Trains the path to ``node`` (default: the head) again from the run's key, each segment
        in the program it first ran in (same width and lane), and returns the state: equal, bit
        for bit on CPU, to the stored checkpoint."""
        path = [n for n in self.path(node) if n["has_state"]]
        pop = self._pop(1)
        key = jax.random.fold_in(jax.random.key(self.seed), TRIAL_STREAM)
        pop.start(self._lane_hp(pop, [path[0]["hp"]]), key[None])
        state = jax.device_get(pop.lanes([0])[0])
        for n in path[1:]:
            rows = [n["hp"]] * n["width"]
            for _, pop in self._train(rows, state, 1):
                state = jax.device_get(pop.lanes([n["lane"]])[0])
        return state

    def tree(self) -> str:
        """The run as a tree of checkpoints and events, branches drawn with ``├─``/``└─``
        (the head marked ``*``)."""
        return render_tree(self.nodes, self.head, self.metric)

    def best(self) -> dict[str, Any]:
        """The checkpoint with the best value of the watched metric anywhere in the tree."""
        ok = [n for n in self.nodes if n["has_state"] and self.metric in n["metrics"]]
        return min(ok, key=lambda n: minimised(n["metrics"][self.metric], self.mode))

    def close(self) -> None:
        """Releases the storage (and the run's lock)."""
        self.store.close()

    def __enter__(self) -> Babysitter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The most steps a session trains: optimizer and schedule step counters are int32.
MAX_STEP = 2**31 - 1


def babysit(objective: Any, space: Space, hp: Mapping[str, Any] | None = None, **options: Any) -> Babysitter:
    """Starts (or resumes, from ``storage`` and ``name``) babysitting one model: see :class:`Babysitter`."""
    return Babysitter(objective, space, hp, **options)


def _pack(state: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **tree_arrays(state, "s"))
    return buf.getvalue()


def _unpack(blob: bytes, template: Any) -> Any:
    return restore_tree(np.load(io.BytesIO(blob)), "s", template)
