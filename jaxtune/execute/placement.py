"""Where trials run: the devices of a sweep, the trial axis split over them, inputs put on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxtune.errors import InputError

__all__ = ["Placement", "spread", "lanes_computed"]


def spread(n: int, width: int, ndev: int) -> np.ndarray:
    """The lanes of a ``width``-lane program (split into ``ndev`` equal blocks, one per device)
    where a chunk's ``n`` trials go: dealt round the devices (trial ``j`` on device ``j % ndev``),
    each device's trials first in its block, so a chunk with fewer trials than lanes keeps every
    device busy and each device's idle lanes together at the end (where they are skipped)."""
    per = width // ndev
    j = np.arange(n)
    return (j % ndev) * per + j // ndev


def lanes_computed(n: int, width: int, ndev: int, vmap_width: int | None) -> int:
    """Lanes a device computes for a chunk of ``n`` trials (laid out by :func:`spread`) in a
    ``width``-lane program: all of its block with a full vmap, else its live trials rounded up
    to whole groups of ``vmap_width`` (idle groups are skipped)."""
    per = width // ndev
    if vmap_width is None:
        return per
    busiest = -(-n // ndev)
    return min(per, -(-busiest // vmap_width) * vmap_width)


class Placement:
    """The trial axis over ``devices`` (default: all, which spans every host after
    ``jax.distributed.initialize()``): a batch of N trials runs on ``devices_for(N)`` of them."""

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = list(devices) if devices is not None else jax.devices()
        if not self.devices:
            raise InputError("devices must name at least one device")
        self.num_devices = len(self.devices)

    @property
    def platform(self) -> str:
        """The devices' platform: ``"cpu"``, ``"gpu"``, ``"tpu"``..."""
        return self.devices[0].platform

    def devices_for(self, total: int) -> int:
        """How many devices a batch of ``total`` trials runs on: all of them, or one per trial when fewer.

        A batch smaller than the device count would otherwise pad every device with copies of
        a real trial: wasted work that, on a CPU, competes for the cores the real trials use.
        """
        return max(1, min(self.num_devices, total))

    def sharding(self, ndev: int, replicated: bool = False):
        """The trial axis split over the first ``ndev`` devices (None on one device)."""
        if ndev == 1:
            return None
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(self.devices[:ndev]), ("trials",))
        return NamedSharding(mesh, PartitionSpec() if replicated else PartitionSpec("trials"))

    def single_device(self, ndev: int):
        """The sharding of a one-device program when it must be pinned (not JAX's default device)."""
        if ndev == 1 and (self.num_devices > 1 or self.devices[0] != jax.devices()[0]):
            return jax.sharding.SingleDeviceSharding(self.devices[0])
        return None

    def put(self, tree: Any, ndev: int) -> Any:
        """Puts a chunk's inputs (a pytree of host arrays, trial axis first) on its ``ndev`` devices."""
        sharding = self.sharding(ndev)
        if sharding is None:
            return jax.device_put(tree, self.devices[0])
        # Each host fills only the shards its devices hold (works across hosts, too).
        return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree)
