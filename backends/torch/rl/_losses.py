"""The policy-gradient losses of MAML's inner step on torch: DiCE's, and the original MAML code's plain
one (``inner_loss="dice"|"plain"``; the choice is explained in ``l2l_multi._inner_losses``)."""

from __future__ import annotations

import torch

from .._functions import magic_box


def dice_policy_loss(log_probs: torch.Tensor, advantages: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Policy-gradient loss through DiCE's magic box:
    ``-sum(magic_box(log_probs) * advantages) / sum(masks)``.

    Its gradient is the REINFORCE estimator's, and, unlike ``-(log_probs * advantages)``, its second
    derivative keeps the score-function term ``grad log pi grad log pi^T``, which MAML needs to
    differentiate through an adaptation step on sampled episodes.

    Args:
        log_probs: ``[T, N]`` log-probabilities of the taken actions (differentiable).
        advantages: ``[T, N]`` advantages (treated as constants).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d tensor.

    Example:
        >>> import torch
        >>> log_probs = torch.zeros(3, 2, requires_grad=True)
        >>> dice_policy_loss(log_probs, torch.ones(3, 2), torch.ones(3, 2)).item()
        -1.0
    """
    return plain_policy_loss(magic_box(log_probs), advantages, masks)  # the magic box is the only change


def plain_policy_loss(log_probs: torch.Tensor, advantages: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The original MAML code's policy-gradient loss: ``-sum(log_probs * advantages) / sum(masks)``.

    The same value and gradient as :func:`dice_policy_loss`; its second derivative lacks the
    score-function term, so a meta-gradient through an adaptation step on it is biased, with lower
    variance (``inner_loss="plain"``; see ``l2l_multi._inner_losses``).

    Args:
        log_probs: ``[T, N]`` log-probabilities of the taken actions (differentiable).
        advantages: ``[T, N]`` advantages (treated as constants).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d tensor.

    Example:
        >>> import torch
        >>> plain_policy_loss(-torch.ones(3, 2), torch.ones(3, 2), torch.ones(3, 2)).item()
        1.0
    """
    weighted = log_probs * advantages.detach() * masks
    return -weighted.sum() / masks.sum().clamp_min(1e-8)


# the loss of each ``inner_loss`` name
INNER_LOSS_FUNCTIONS = {"dice": dice_policy_loss, "plain": plain_policy_loss}
