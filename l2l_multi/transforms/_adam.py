"""Adam (Kingma & Ba, 2015) as a differentiable, stateful gradient transform.

Second order through Adam: the denominator ``sqrt(nu_hat)`` has an infinite derivative at 0, and
an exactly-zero gradient element is common (a dead ReLU, an unused class). Differentiating the
inner loop then multiplies that infinity by a zero and the meta-gradient turns NaN. ``eps_root``
moves the square root off zero: ``sqrt(nu_hat + eps_root)``. Its default here,
``DEFAULT_EPS_ROOT = 1e-16``, is the inner-loop choice: ``sqrt(1e-16) = 1e-8 = eps``, so the
forward value changes only for gradient elements below about ``1e-8`` (where Adam's ``eps`` already
dominates), it is exactly representable as a normal float32 and float64 (not in float16), and
every meta-gradient stays finite. optax's default is ``eps_root=0``: pass
``eps_root=DEFAULT_EPS_ROOT`` to ``optax.adam`` for the same numbers, or ``eps_root=0.0`` here
for optax's (and torch.optim.Adam's) when nothing differentiates through the step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ._base import GradientTransformation, chain
from ._sgd import _check_step, scale
from ._tree import tree_leaves, tree_map

DEFAULT_EPS_ROOT = 1e-16


class ScaleByAdamState(NamedTuple):
    """``count``: steps taken (0-d int32 array); ``mu``, ``nu``: first and second moments
    (trees shaped like the parameters, their dtypes). Field names and order as optax's."""

    count: Any
    mu: Any
    nu: Any


def _check_rate(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{argument}={value!r} must be a float in [0, 1)")


def _check_nonnegative(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{argument}={value!r} must be a float >= 0")


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = DEFAULT_EPS_ROOT
) -> GradientTransformation:
    """Adam's direction without the learning rate: ``mu_hat / (sqrt(nu_hat + eps_root) + eps)``.

    Args:
        b1: decay rate of the first moment, a float in [0, 1).
        b2: decay rate of the second moment, a float in [0, 1).
        eps: added to the denominator outside the square root (float >= 0).
        eps_root: added inside the square root (float >= 0); keeps second-order
            meta-gradients finite when a gradient element is exactly zero (see the module
            docstring for the default, ``1e-16``; optax's default is 0).

    ``init(params)`` needs arrays (numpy, torch or jax) and returns
    ``ScaleByAdamState(count=0 (int32, 0-d), mu=zeros, nu=zeros)``; updates have the gradients'
    shapes and dtypes. Bias correction uses the count cast to each moment's dtype. ``None``
    gradients (torch) give ``None`` updates and leave their moments unchanged. Same numbers as
    ``optax.scale_by_adam`` with the same arguments (tested to 1e-12 in float64).

    Example:
        >>> import numpy as np
        >>> t = scale_by_adam()
        >>> state = t.init([np.zeros(3)])
        >>> updates, state = t.update([np.array([2.0, -0.5, 0.0])], state)
        >>> np.round(updates[0], 6).tolist(), int(state.count)   # the first step is sign(g)
        ([1.0, -1.0, 0.0], 1)
    """
    _check_rate("b1", b1)
    _check_rate("b2", b2)
    _check_nonnegative("eps", eps)
    _check_nonnegative("eps_root", eps_root)

    def init(params):
        leaves = tree_leaves(params)
        if not leaves:
            raise ValueError("params has no array leaves; scale_by_adam needs them to size its state")
        xp = array_namespace(leaves[0])
        count = xp.zeros((), dtype=xp.int32, device=array_device(leaves[0]))
        zeros = lambda p: array_namespace(p).zeros_like(p)  # noqa: E731
        return ScaleByAdamState(count, tree_map(zeros, params), tree_map(zeros, params))

    def update(grads, state, params=None):
        count = state.count + 1
        mu = tree_map(lambda m, g: m if g is None else (1 - b1) * g + b1 * m, state.mu, grads)
        nu = tree_map(lambda v, g: v if g is None else (1 - b2) * (g * g) + b2 * v, state.nu, grads)

        def direction(g, m, v):
            xp = array_namespace(m)
            steps = xp.astype(count, m.dtype)
            m_hat = m / (1 - b1**steps)
            v_hat = v / (1 - b2**steps)
            return m_hat / (xp.sqrt(v_hat + eps_root) + eps)

        return tree_map(direction, grads, mu, nu), ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update)


def adam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = DEFAULT_EPS_ROOT,
) -> GradientTransformation:
    """Adam: ``chain(scale_by_adam(b1, b2, eps, eps_root), scale(-learning_rate))``.

    Args:
        learning_rate: a float >= 0 or a scalar array (differentiable: a learned rate).
        b1: see ``scale_by_adam``.
        b2: see ``scale_by_adam``.
        eps: see ``scale_by_adam``.
        eps_root: see ``scale_by_adam`` (defaults to ``1e-16`` so that inner loops stay twice
            differentiable; optax's default is 0).

    The state is ``(ScaleByAdamState, EmptyState())``, optax's structure; the first step moves
    each element by about ``learning_rate`` (``sign(g)``), so inner-loop rates are those of Adam
    (1e-3 .. 1e-1), not of SGD.

    Example:
        >>> import numpy as np
        >>> t = adam(0.1)
        >>> state = t.init({"w": np.zeros(2)})
        >>> updates, state = t.update({"w": np.array([3.0, -2.0])}, state)
        >>> np.round(updates["w"], 6).tolist()
        [-0.1, 0.1]
    """
    _check_step("learning_rate", learning_rate)
    if isinstance(learning_rate, (int, float)) and learning_rate < 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be >= 0 (updates are added to parameters)")
    negative = -learning_rate if isinstance(learning_rate, (int, float)) else -1 * learning_rate
    return chain(scale_by_adam(b1, b2, eps, eps_root), scale(negative))


__all__ = ["DEFAULT_EPS_ROOT", "ScaleByAdamState", "adam", "scale_by_adam"]
