"""Placing a task batch over devices: split along the task axis, meta-parameters replicated.

The compiled step of ``_train.py`` then runs each device's tasks locally and XLA all-reduces the
meta-gradient; nothing here changes the numbers, only where they are computed.
"""

from __future__ import annotations

from typing import Any

import jax


def task_mesh(devices: Any = None) -> jax.sharding.Mesh:
    """A one-axis mesh named ``"tasks"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(devices, ("tasks",))


def shard_task_batch(batch: Any, mesh: jax.sharding.Mesh | None = None) -> Any:
    """Place every array of ``batch`` (a tuple/pytree of ``[B, ...]``) split along ``B`` over the
    mesh's devices; ``B`` must divide evenly. The compiled step then runs each device's tasks
    locally and all-reduces the meta-gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> sx = shard_task_batch(jnp.zeros((4, 5, 3)))
        >>> tuple(sx.sharding.spec)
        ('tasks',)
    """
    mesh = task_mesh() if mesh is None else mesh
    devices = mesh.devices.size
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("tasks"))

    def place(array):
        if array.shape[0] % devices:
            raise ValueError(f"the task axis ({array.shape[0]}) must divide evenly over {devices} devices")
        return jax.device_put(array, sharding)

    return jax.tree_util.tree_map(place, batch)


def replicate(tree: Any, mesh: jax.sharding.Mesh | None = None) -> Any:
    """Copy every array of ``tree`` (meta-parameters, optimizer state) to all of the mesh's devices."""
    mesh = task_mesh() if mesh is None else mesh
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding), tree)
