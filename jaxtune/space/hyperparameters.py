"""The dict of hyperparameters a trial receives, which notes what the objective reads.

While jaxtune traces an objective it hands it a :class:`Hyperparameters` dict. Reading a name the
space does not define raises :class:`MissingHyperparameterError` (a clear message instead of a
bare ``KeyError``); ``hp.get(name, default)`` of such a name is noted, so a sweep can say which
values stay at the objective's defaults; names of the space that are never read are noted too.
It is a ``dict`` and a pytree like one, so objectives use it as they would a dict.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxtune.errors import MissingHyperparameterError

__all__ = ["Hyperparameters", "MissingHyperparameterError", "Reads"]




class Reads:
    """What an objective read from its hyperparameters while it was traced."""

    def __init__(self):
        self.read: set[str] = set()
        self.defaulted: dict[str, Any] = {}  # names read with a default that the space lacks


class Hyperparameters(dict):
    """A dict of one trial's hyperparameters that records reads into a :class:`Reads`."""

    def __init__(self, values: dict[str, Any], reads: Reads | None = None, inactive: dict[str, Any] | None = None):
        super().__init__(values)
        self._reads = reads
        self._inactive = inactive or {}  # conditional names absent from this trial: {name: when}

    def __getitem__(self, name):
        if self._reads is not None:
            self._reads.read.add(name)
        return super().__getitem__(name)

    def __missing__(self, name):
        raise MissingHyperparameterError(name, list(self), self._inactive.get(name))

    def get(self, name, default=None):
        """``hp.get(name, default)``; a default taken because the space lacks ``name`` is noted."""
        if self._reads is not None:
            self._reads.read.add(name)
            if name not in self and name not in self._inactive:
                self._reads.defaulted[name] = default
        return super().get(name, default)


jax.tree_util.register_pytree_node(
    Hyperparameters,
    lambda hp: (tuple(dict.values(hp)), tuple(dict.keys(hp))),
    lambda keys, values: Hyperparameters(dict(zip(keys, values))),
)
