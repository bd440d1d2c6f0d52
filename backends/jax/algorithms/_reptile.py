"""Reptile (Nichol et al. 2018) on the jax backend: adapt with SGD, move towards the result."""

from __future__ import annotations

import jax

from ._gradient_based import _GradientBased


class Reptile(_GradientBased):
    """First-order by construction: ``meta_gradient`` returns ``theta - phi`` for one task, the
    pseudo-gradient that an optax optimizer (``optax.sgd(epsilon)``) turns into the paper's step
    ``theta <- theta + epsilon * (phi - theta)`` (averaged over tasks by the train step).

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> reptile = Reptile(nn.Dense(2), lr=0.1)
        >>> meta = reptile.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
        >>> direction = reptile.meta_gradient(meta, jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]), steps=2)
        >>> direction["model"]["params"]["kernel"].shape
        (3, 2)
    """

    def __init__(self, model, lr):
        super().__init__(model, lr, first_order=True)

    def meta_gradient(self, meta_params, x, y, *, loss=None, steps=1, train=True):
        """``theta - phi`` as a tree shaped like ``meta_params`` (zeros for non-params)."""
        adapted = self.adapt(jax.lax.stop_gradient(meta_params), x, y, loss=loss, steps=steps, train=train)
        delta = jax.tree_util.tree_map(lambda a, b: a - b, meta_params["model"]["params"], adapted["params"])
        zeros = jax.tree_util.tree_map(jax.numpy.zeros_like, meta_params)
        zeros["model"] = {**zeros["model"], "params": delta}
        return zeros
