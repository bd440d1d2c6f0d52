"""How the jax algorithms call a model: ``apply(variables, x, train) -> outputs``.

A model is a ``flax.linen.Module`` (variables ``{"params": ..., ["batch_stats": ...]}``) or a
plain function ``f(variables, x)``. Only ``variables["params"]`` is adapted in inner loops; other
collections (batch-norm running statistics) are read, never written: like the torch backend's
clones, adaptation never changes the model's statistics.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; logits ``[N, C]`` float, labels ``[N]`` int. Returns a 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
        1.3863
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def as_apply(model: Any, argument: str = "model") -> Callable[[Any, jax.Array, bool], jax.Array]:
    """``apply(variables, x, train)`` for a linen module or a plain ``f(variables, x)``; errors
    name ``argument`` ("model", "features", "head")."""
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover - flax is part of the jax extra
        nn = None
    if nn is not None and isinstance(model, nn.Module):
        takes_train = "train" in inspect.signature(type(model).__call__).parameters

        def apply(variables, x, train=True):
            kwargs = {"train": train} if takes_train else {}
            if train and "batch_stats" in variables:
                outputs, _ = model.apply(variables, x, mutable=["batch_stats"], **kwargs)
                return outputs
            return model.apply(variables, x, **kwargs)

        return apply
    if callable(model):
        return lambda variables, x, train=True: model(variables, x)
    raise TypeError(
        f"{argument} must be a flax.linen.Module or a function f(variables, x), got {type(model).__name__}"
    )


def init_variables(model: Any, key: jax.Array, sample_input: jax.Array) -> dict:
    """``model.init(key, sample_input)`` as a plain dict (the model's variables)."""
    if not hasattr(model, "init"):
        raise TypeError("init needs a flax.linen.Module; for a plain function build the variables yourself")
    variables = model.init(key, sample_input)
    return jax.tree_util.tree_map(lambda x: x, dict(variables))


def with_params(variables: dict, params: Any) -> dict:
    """``variables`` with its ``"params"`` collection replaced."""
    return {**variables, "params": params}
