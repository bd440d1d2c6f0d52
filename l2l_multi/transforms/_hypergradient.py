"""Hypergradient descent (Baydin et al., ICLR 2018): SGD that adapts its own learning rate."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ._base import GradientTransformation
from ._tree import tree_leaves, tree_map


class HypergradientState(NamedTuple):
    """``learning_rate``: the current rate (scalar array); ``previous_grads``: last step's grads."""

    learning_rate: Any
    previous_grads: Any


def hypergradient_sgd(learning_rate: float, hyper_learning_rate: float) -> GradientTransformation:
    """SGD-HD: before each step ``lr += hyper_learning_rate * <g_t, g_{t-1}>``, then ``-lr * g_t``.

    The dot product runs over all parameters together (one global rate, the paper's SGD-HD).
    ``init`` needs the parameters (arrays of any float dtype) to size the gradient memory; the
    rate is kept as a scalar array of the first parameter's dtype.

    Example:
        >>> import numpy as np
        >>> t = hypergradient_sgd(0.1, 0.01)
        >>> state = t.init([np.zeros(2)])
        >>> _, state = t.update([np.ones(2)], state)
        >>> u, state = t.update([np.ones(2)], state)   # <g1, g0> = 2 -> lr = 0.1 + 0.02
        >>> round(float(state.learning_rate), 6)
        0.12
    """
    if learning_rate <= 0 or hyper_learning_rate < 0:
        raise ValueError(
            f"learning_rate={learning_rate!r} must be > 0 and "
            f"hyper_learning_rate={hyper_learning_rate!r} >= 0"
        )

    def init(params):
        leaves = tree_leaves(params)
        if not leaves:
            raise ValueError("params has no array leaves; hypergradient_sgd needs them to size its state")
        xp = array_namespace(leaves[0])
        rate = xp.asarray(learning_rate, dtype=leaves[0].dtype)
        return HypergradientState(rate, tree_map(xp.zeros_like, params))

    def update(grads, state, params=None):
        products = [
            (g * previous).sum() for g, previous in zip(tree_leaves(grads), tree_leaves(state.previous_grads))
        ]
        rate = state.learning_rate + hyper_learning_rate * sum(products)
        updates = tree_map(lambda g: -(rate * g), grads)
        return updates, HypergradientState(rate, grads)

    return GradientTransformation(init, update)
