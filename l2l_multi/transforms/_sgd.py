"""Stateless step rules: scaling, SGD and per-parameter (Meta-SGD) learning rates."""

from __future__ import annotations

import numbers
from typing import Any

from ._base import EmptyState, GradientTransformation
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


def sgd(learning_rate: Any) -> GradientTransformation:
    """Plain gradient descent: ``update = -learning_rate * grad`` (add it to the parameters).

    Args:
        learning_rate: a float or a scalar array of any floating dtype (differentiable).

    Example:
        >>> sgd(0.1).update([2.0], EmptyState())[0]
        [-0.2]
    """
    _check_step("learning_rate", learning_rate)
    if isinstance(learning_rate, (int, float)) and learning_rate < 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be >= 0 (updates are added to parameters)")
    return scale(-learning_rate if isinstance(learning_rate, (int, float)) else -1 * learning_rate)


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
