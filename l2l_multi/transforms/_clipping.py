"""Clipping: element-wise and by the global norm of all gradients (optax's semantics)."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from ._base import EmptyState, GradientTransformation
from ._tree import tree_leaves, tree_map


def _check_positive(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{argument}={value!r} must be a float > 0")


def clip(max_delta: float) -> GradientTransformation:
    """Clip every gradient element to ``[-max_delta, max_delta]`` (float > 0).

    Stateless (``EmptyState``); shapes and dtypes unchanged; the derivative is 1 inside the
    interval and 0 outside. Same numbers as ``optax.clip``.

    Example:
        >>> import numpy as np
        >>> clip(1.0).update([np.array([-3.0, 0.5, 2.0])], EmptyState())[0][0].tolist()
        [-1.0, 0.5, 1.0]
    """
    _check_positive("max_delta", max_delta)

    def update(grads, state, params=None):
        return tree_map(lambda g: array_namespace(g).clip(g, -max_delta, max_delta), grads), state

    return GradientTransformation(lambda params: EmptyState(), update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Rescale all gradients together so that their global L2 norm is at most ``max_norm``.

    ``g <- g * max_norm / ||g||`` when ``||g|| > max_norm`` (``||g||`` over every leaf), else
    unchanged. Stateless (``EmptyState``); ``None`` leaves are skipped. Same numbers as
    ``optax.clip_by_global_norm``, written so that its derivative stays finite when every
    gradient is zero (the norm's square root is taken of ``max(||g||^2, max_norm^2) > 0``; optax
    divides by the norm in a branch it discards, which differentiates to NaN there).

    Example:
        >>> import numpy as np
        >>> t = clip_by_global_norm(1.0)
        >>> t.update([np.array([3.0]), np.array([4.0])], EmptyState())[0]   # norm 5 -> 1
        [array([0.6]), array([0.8])]
    """
    _check_positive("max_norm", max_norm)

    def update(grads, state, params=None):
        leaves = tree_leaves(grads)
        if not leaves:
            return grads, state
        xp = array_namespace(leaves[0])
        squared = sum(xp.sum(g * g) for g in leaves)
        norm = xp.sqrt(xp.clip(squared, max_norm * max_norm, None))  # >= max_norm > 0
        small = norm <= max_norm  # then norm == max_norm exactly: ||g|| <= max_norm
        return tree_map(lambda g: xp.where(small, g, (g / xp.astype(norm, g.dtype)) * max_norm), grads), state

    return GradientTransformation(lambda params: EmptyState(), update)


__all__ = ["clip", "clip_by_global_norm"]
