"""``MetaLearner`` on several jax devices (a ``jax.distributed`` job of several processes, or one
process with several GPUs): one global mesh over every process's devices, the meta-parameters and
optimizer state replicated on it, each task batch sharded over it along the task axis, so the one
compiled step computes each device's tasks where they are and all-reduces the meta-gradient.

Every process passes the same whole batch (the same seeded sampler on every process); each one
places only the tasks of its own devices. Results are read back on every process.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from .algorithms import task_mesh


def joined_job() -> bool:
    """True when the job has several devices: several processes (``jax.distributed``), or one
    process that sees several accelerators (one host's GPUs)."""
    return jax.device_count() > 1


class GlobalMesh:
    """Places arrays on the global ``"tasks"`` mesh and reads them back (see the module docstring)."""

    def __init__(self):
        self.mesh = task_mesh(jax.devices())
        self.devices = self.mesh.devices.size
        self.tasks = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("tasks"))
        self.everywhere = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def replicate(self, tree: Any) -> Any:
        """Every array of ``tree`` (the same values on every process) as a replicated global array."""

        def place(value):
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, self.everywhere, lambda index: value[index])

        return jax.tree_util.tree_map(place, tree)

    def shard(self, batch: tuple, pad: bool = False) -> tuple[tuple, int]:
        """``(batch as global arrays split along the task axis, B)``. The task count ``B`` must
        divide over the mesh's devices unless ``pad``, which repeats the last task to fill the
        last device (for evaluation, whose per-task results are then cut to ``B``)."""
        count = int(batch[0].shape[0])
        extra = -count % self.devices
        if extra and not pad:
            raise ValueError(
                f"a meta-batch of {count} tasks does not divide over the job's {self.devices} devices "
                f"({jax.process_count()} processes): choose a multiple of {self.devices}"
            )

        def place(array):
            array = np.asarray(array)
            if extra:
                array = np.concatenate([array, np.repeat(array[-1:], extra, axis=0)])
            return jax.make_array_from_callback(array.shape, self.tasks, lambda index: array[index])

        return tuple(place(array) for array in batch), count

    @staticmethod
    def host(tree: Any) -> Any:
        """Every array of ``tree`` as a numpy array with its global value (gathered when other
        processes hold parts of it; every process must call this together for such arrays)."""

        def read(value):
            if not isinstance(value, jax.Array) or value.is_fully_addressable:
                return np.asarray(value)
            if value.is_fully_replicated:
                return np.asarray(value.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(value, tiled=True))

        return jax.tree_util.tree_map(read, tree)
