"""The policy-gradient losses of MAML's inner step on jax: DiCE's, and the original MAML code's plain
one (``inner_loss="dice"|"plain"``; the choice is explained in ``l2l_multi._inner_losses``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..utils import magic_box


def dice_policy_loss(log_probs: jax.Array, advantages: jax.Array, masks: jax.Array) -> jax.Array:
    """Policy-gradient loss through DiCE's magic box:
    ``-sum(magic_box(log_probs) * advantages) / sum(masks)``.

    Its gradient is REINFORCE's; its second derivative keeps the score-function term that MAML needs to
    differentiate through an adaptation step on sampled episodes.

    Args:
        log_probs: ``[T, N]`` log-probabilities of the taken actions (differentiable).
        advantages: ``[T, N]`` advantages (gradients stopped).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> float(dice_policy_loss(jnp.zeros((3, 2)), jnp.ones((3, 2)), jnp.ones((3, 2))))
        -1.0
    """
    return plain_policy_loss(magic_box(log_probs), advantages, masks)  # the magic box is the only change


def plain_policy_loss(log_probs: jax.Array, advantages: jax.Array, masks: jax.Array) -> jax.Array:
    """The original MAML code's policy-gradient loss: ``-sum(log_probs * advantages) / sum(masks)``.

    The same value and gradient as :func:`dice_policy_loss`; its second derivative lacks the
    score-function term (``inner_loss="plain"``; see ``l2l_multi._inner_losses``).

    Args:
        log_probs: ``[T, N]`` log-probabilities of the taken actions (differentiable).
        advantages: ``[T, N]`` advantages (gradients stopped).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> float(plain_policy_loss(-jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones((3, 2))))
        1.0
    """
    weighted = log_probs * jax.lax.stop_gradient(advantages) * masks
    return -weighted.sum() / jnp.maximum(masks.sum(), 1e-8)


# the loss of each ``inner_loss`` name
INNER_LOSS_FUNCTIONS = {"dice": dice_policy_loss, "plain": plain_policy_loss}
