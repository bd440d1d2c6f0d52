"""The JAX backend: array conversion for the data layer and capability flags."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._arrays import to_numpy

NAME = "jax"
SUPPORTS_JIT = True
SUPPORTS_VMAP = True


def _canonical(array: np.ndarray) -> np.ndarray:
    # Without x64, jax would narrow 64-bit types anyway; doing it here keeps it explicit.
    if not jax.config.jax_enable_x64:
        if array.dtype == np.int64 or array.dtype == np.uint64:
            return array.astype(np.int32)
        if array.dtype == np.float64:
            return array.astype(np.float32)
    return array


def asarray(value: Any, device: Any = None) -> jax.Array:
    """A jax array from numpy, a jax array, a torch tensor, or anything numpy reads."""
    if isinstance(value, jax.Array):
        array = value
    else:
        array = jnp.asarray(_canonical(to_numpy(value)))
    return array if device is None else jax.device_put(array, device)


def stack(items: list, device: Any = None) -> jax.Array:
    """Stack a list of arrays / scalars along a new first axis."""
    if all(isinstance(item, jax.Array) for item in items):
        array = jnp.stack(items)
        return array if device is None else jax.device_put(array, device)
    return asarray(np.stack([to_numpy(item) for item in items]), device)
