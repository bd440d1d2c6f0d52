"""Momentum: an exponentially decaying trace of past updates (optax's ``trace``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ._base import GradientTransformation
from ._tree import tree_map


class TraceState(NamedTuple):
    """``trace``: the momentum buffer, a tree shaped like the parameters (their dtypes)."""

    trace: Any


def _check_decay(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{argument}={value!r} must be a float in [0, 1)")


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Heavy-ball momentum: ``t <- g + decay * t``; the update is ``t`` (or, with ``nesterov``,
    ``g + decay * t`` with the new ``t``). Compose with ``scale(-lr)``: ``sgd(lr, momentum)`` does.

    Args:
        decay: the momentum coefficient, a float in [0, 1).
        nesterov: Nesterov's look-ahead variant (Sutskever et al. 2013).

    The state is ``TraceState(trace)`` with one zero array per parameter (same shape and dtype;
    ``init`` needs arrays: numpy, torch or jax). Updates and state are plain array arithmetic, so
    gradients flow through them (second order in torch, ``jax.grad`` through ``jax.lax.scan``).
    Gradients that are ``None`` (torch parameters without gradient) leave their trace unchanged.
    Same numbers as ``optax.trace``.

    Example:
        >>> import numpy as np
        >>> t = trace(0.5)
        >>> state = t.init([np.zeros(2)])
        >>> _, state = t.update([np.ones(2)], state)
        >>> t.update([np.ones(2)], state)[0][0].tolist()   # 1 + 0.5 * 1
        [1.5, 1.5]
    """
    _check_decay("decay", decay)
    nesterov = bool(nesterov)

    def init(params):
        return TraceState(tree_map(lambda p: array_namespace(p).zeros_like(p), params))

    def update(grads, state, params=None):
        new_trace = tree_map(lambda t, g: t if g is None else g + decay * t, state.trace, grads)
        if nesterov:
            updates = tree_map(lambda g, t: g + decay * t, grads, new_trace)
        else:
            updates = tree_map(lambda g, t: t, grads, new_trace)
        return updates, TraceState(new_trace)

    return GradientTransformation(init, update)


__all__ = ["TraceState", "trace"]
