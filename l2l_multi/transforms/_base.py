"""The gradient-transform protocol shared by every backend (optax's design).

A transform is a pair of pure functions, ``init(params) -> state`` and
``update(grads, state, params=None) -> (updates, state)``, acting leaf-wise on a pytree (a list
of torch tensors, a dict of jax arrays, ...). Updates are *added* to parameters
(``apply_updates``), so a descent step returns ``-learning_rate * grad``. Everything here is
plain array arithmetic, hence differentiable in torch and jit/vmap-able in jax, and composes
with optax: an optax ``GradientTransformation`` is accepted wherever one of ours is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._tree import tree_map

Params = Any
Updates = Any
State = Any


class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params=None) -> (updates, state)``."""

    init: Callable[[Params], State]
    update: Callable[..., tuple[Updates, State]]


class LearnableTransformation(GradientTransformation):
    """A transform whose state is its *meta-learned parameters* (a preconditioner).

    Same fields and calling convention as ``GradientTransformation``; the distinct type marks
    the learnable family (``elementwise_scale``, ``kronecker``, ``meta_curvature``) so learners
    can tell a preconditioner from a complete optimizer without guessing. ``update`` returns a
    *direction* in the ``scale_by_*`` sense (like ``optax.scale_by_adam``: no learning rate, no
    sign flip): ``GBML`` puts ``init(params)`` into the meta-parameters and hands the direction
    to its inner optimizer (default ``sgd(lr)``, i.e. ``p - lr * T(g)``). Any other
    ``GradientTransformation`` given to ``GBML`` is a complete optimizer whose updates are added.

    Wrap your own ``(init, update)`` pair in it to mark it learnable.

    Example:
        >>> import numpy as np
        >>> doubling = LearnableTransformation(
        ...     lambda params: {"w": np.full_like(params["w"], 2.0)},
        ...     lambda grads, scales, params=None: ({"w": scales["w"] * grads["w"]}, scales))
        >>> isinstance(doubling, GradientTransformation), is_learnable(doubling)
        (True, True)
    """

    __slots__ = ()


def is_learnable(transform: Any) -> bool:
    """True for a ``LearnableTransformation`` (a meta-learned preconditioner), else False.

    Example:
        >>> from l2l_multi.transforms import elementwise_scale, sgd
        >>> is_learnable(elementwise_scale()), is_learnable(sgd(0.1))
        (True, False)
    """
    return isinstance(transform, LearnableTransformation)


def is_transform(value: Any) -> bool:
    """True when ``value`` has callable ``init`` and ``update`` (ours, optax's, or any twin)."""
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


class EmptyState(NamedTuple):
    """State of a transform that keeps none."""


def identity() -> GradientTransformation:
    """Updates equal gradients (a building block for ``chain``).

    Example:
        >>> identity().update([1.0, 2.0], EmptyState())[0]
        [1.0, 2.0]
    """
    return GradientTransformation(
        lambda params: EmptyState(), lambda grads, state, params=None: (grads, state)
    )


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is the tuple of their states.

    Example:
        >>> from l2l_multi.transforms import scale
        >>> t = chain(scale(2.0), scale(-0.5))
        >>> t.update([4.0], t.init([0.0]))[0]
        [-4.0]
    """
    for index, transform in enumerate(transforms):
        if not is_transform(transform):
            raise TypeError(
                f"transforms[{index}]={transform!r} is not a GradientTransformation (init, update)"
            )

    def init(params: Params) -> State:
        return tuple(transform.init(params) for transform in transforms)

    def update(grads: Updates, state: State, params: Params = None) -> tuple[Updates, State]:
        # zip would silently drop the extra transforms or states (optax raises here too)
        plain = isinstance(state, (tuple, list)) and not hasattr(state, "_fields")
        if not plain or len(state) != len(transforms):
            found = f"a state of {len(state)} entries" if plain else f"a {type(state).__name__}"
            raise ValueError(
                f"chain of {len(transforms)} transforms got {found}; pass the state from this chain's "
                "own init"
            )
        new_state = []
        for transform, inner_state in zip(transforms, state):
            grads, inner_state = transform.update(grads, inner_state, params)
            new_state.append(inner_state)
        return grads, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leaf-wise; a ``None`` update leaves its parameter unchanged.

    Shapes and dtypes are those of ``params``; the sum is differentiable in both arguments.

    Example:
        >>> apply_updates([1.0, 2.0], [0.5, None])
        [1.5, 2.0]
    """
    if updates is None:
        return params
    return tree_map(lambda p, u: p if u is None else p + u, params, _fill_none(updates, params))


def _fill_none(updates: Updates, params: Params) -> Updates:
    # tree_map skips None leaves of its first tree, so make the update tree explicit about them.
    if isinstance(updates, dict):
        extra = sorted(set(updates) - set(params), key=str) if isinstance(params, dict) else None
        if extra:
            raise ValueError(f"updates has keys {extra} that params does not have")
        return {k: _fill_none(updates.get(k), params[k]) for k in params}
    if isinstance(updates, (list, tuple)) and isinstance(params, (list, tuple)):
        if len(updates) != len(params):
            raise ValueError(f"updates has {len(updates)} entries but params has {len(params)}")
        return (
            type(updates)(_fill_none(u, p) for u, p in zip(updates, params))
            if not hasattr(updates, "_fields")
            else type(updates)(*(_fill_none(u, p) for u, p in zip(updates, params)))
        )
    return updates
