"""Stateless step rules: scaling, SGD and per-parameter (Meta-SGD) learning rates."""

from __future__ import annotations

import numbers
from typing import Any

from ._base import EmptyState, GradientTransformation, chain
from ._momentum import trace
from ._tree import tree_map


def _stateless(rule) -> GradientTransformation:
    def update(grads, state, params=None):
        return rule(grads), state

    return GradientTransformation(lambda params: EmptyState(), update)


def _check_step(argument: str, value: Any) -> None:
    # a Python number, or an array (numpy, torch, jax, a tracer): anything else would fail, or
    # silently repeat a string, only when the first update multiplies it
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "shape")):
        raise TypeError(f"{argument}={value!r} must be a float or a scalar array")


def scale(step_size: Any) -> GradientTransformation:
    """Multiply every gradient by ``step_size`` (a Python float or a scalar array, which stays
    differentiable: gradients flow into a learned step size).

    Example:
        >>> scale(0.5).update([2.0, None], EmptyState())[0]
        [1.0, None]
    """
    _check_step("step_size", step_size)
    return _stateless(lambda grads: tree_map(lambda g: step_size * g, grads))


def sgd(learning_rate: Any, momentum: float | None = None, nesterov: bool = False) -> GradientTransformation:
    """Gradient descent: ``update = -learning_rate * grad`` (add it to the parameters), with
    optional (Nesterov) momentum: ``chain(trace(momentum, nesterov), scale(-learning_rate))``.

    Args:
        learning_rate: a float >= 0 or a scalar array of any floating dtype (differentiable).
        momentum: ``None`` (plain SGD, stateless) or the momentum coefficient in [0, 1).
        nesterov: Nesterov momentum (needs ``momentum``).

    The state is ``EmptyState()`` without momentum and ``(TraceState, EmptyState())`` with it;
    the same numbers as ``optax.sgd`` with the same arguments.

    Example:
        >>> sgd(0.1).update([2.0], EmptyState())[0]
        [-0.2]
        >>> import numpy as np
        >>> heavy_ball = sgd(0.1, momentum=0.9)
        >>> state = heavy_ball.init([np.zeros(1)])
        >>> for _ in range(2):
        ...     updates, state = heavy_ball.update([np.ones(1)], state)
        >>> np.round(updates[0], 6).tolist()   # -0.1 * (1 + 0.9)
        [-0.19]
    """
    _check_step("learning_rate", learning_rate)
    if isinstance(learning_rate, (int, float)) and learning_rate < 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be >= 0 (updates are added to parameters)")
    if nesterov and momentum is None:
        raise ValueError("nesterov=True needs momentum (a float in [0, 1)); got momentum=None")
    descent = scale(-learning_rate if isinstance(learning_rate, (int, float)) else -1 * learning_rate)
    if momentum is None:
        return descent
    return chain(trace(momentum, nesterov), descent)


def per_parameter_sgd(learning_rates: Any) -> GradientTransformation:
    """Meta-SGD's rule (Li et al. 2017): ``update = -learning_rates * grad`` element-wise.

    Args:
        learning_rates: a pytree with the structure of the gradients; each leaf broadcasts
            against its gradient (same shape for Meta-SGD, a scalar for per-layer rates).

    Example:
        >>> per_parameter_sgd([0.1, 1.0]).update([2.0, 3.0], EmptyState())[0]
        [-0.2, -3.0]
    """

    def rule(grads):
        return tree_map(lambda g, lr: None if g is None else -(lr * g), grads, learning_rates)

    return _stateless(rule)
