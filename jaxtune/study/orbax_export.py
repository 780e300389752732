"""A trained trial's model as an Orbax checkpoint: the state ``nnx.state(model)`` gives, at the
trial's true widths, which a Flax training script restores into its own model (Flax's own way:
``ocp.StandardCheckpointer().restore(path, abstract_state)``, then ``nnx.merge`` or ``nnx.update``).
Orbax comes with Flax (its ``orbax-checkpoint`` dependency); ``jaxtune[orbax]`` names it."""

from __future__ import annotations

import os
from typing import Any

from jaxtune.errors import InputError, InputTypeError, MissingDependencyError

__all__ = ["model_state", "save_orbax"]


def model_state(objective: Any, hp: dict, state: dict):
    """The trained model's ``nnx.state`` (every variable: parameters, batch statistics, ...) from a
    trial's ``state``, through ``objective.model_of`` (the Trainer's: true widths, eval mode)."""
    from flax import nnx

    if not hasattr(objective, "model_of"):
        raise InputTypeError(f"an Orbax checkpoint holds a model: the objective needs model_of(hp, state), as "
                             f"jt.train.Trainer has; got {type(objective).__name__}")  # fmt: skip
    return nnx.state(objective.model_of(hp, state))


def save_orbax(path: str | os.PathLike, tree: Any) -> str:
    """Writes ``tree`` (e.g. :func:`model_state`) as an Orbax checkpoint at the new folder ``path``;
    returns its absolute path.

    Raises:
      InputError: ``path`` exists already, or its parent folder is missing or not writable.
      MissingDependencyError: orbax-checkpoint is not installed.
    """
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:
        raise MissingDependencyError("Orbax checkpoints need orbax-checkpoint: pip install 'jaxtune[orbax]'") from e
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.exists(path):
        raise InputError(f"orbax checkpoint: {path!r} exists already; name a new folder")
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise InputError(f"orbax checkpoint: the folder {parent!r} is missing or not writable")
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(path, tree)
        checkpointer.wait_until_finished()
    finally:
        checkpointer.close()
    return path
