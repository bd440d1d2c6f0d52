"""Core utilities of the jax backend (``l2l.accuracy``, ``l2l.magic_box``).

The stateful module utilities (``clone_module``, ``update_module``, ``detach_module``) have no
jax counterpart: jax parameters are immutable trees, so "cloning" is just using the tree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def magic_box(x: jax.Array) -> jax.Array:
    """DiCE's magic box: ``exp(x - stop_gradient(x))``, ones with the gradient of ``x``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> float(magic_box(jnp.array(0.3))), float(jax.grad(lambda x: magic_box(x))(0.3))
        (1.0, 1.0)
    """
    return jnp.exp(x - jax.lax.stop_gradient(x))


def accuracy(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of rows of ``predictions [N, classes]`` whose arg-max equals ``targets [N]``; 0-d.

    Example:
        >>> import jax.numpy as jnp
        >>> float(accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1])))
        0.5
    """
    if predictions.ndim != 2:
        raise ValueError(f"predictions must have shape [N, classes], got {predictions.shape}")
    if targets.size != predictions.shape[0]:
        raise ValueError(
            f"targets has {targets.size} elements but predictions has {predictions.shape[0]} rows"
        )
    return (predictions.argmax(axis=1) == targets.reshape(-1)).mean()
