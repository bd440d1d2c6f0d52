"""Small differentiable functions of the learn2learn API."""

from __future__ import annotations

import torch


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """DiCE's magic box (Foerster et al. 2018): ``exp(x - x.detach())``.

    Evaluates to ones (shape and dtype of ``x``) but its gradient is ``x``'s gradient, so
    ``magic_box(sum of log-probs) * return`` gives unbiased higher-order policy gradients.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.3], requires_grad=True)
        >>> y = magic_box(x)
        >>> y.item(), torch.autograd.grad(y.sum(), x)[0].item()
        (1.0, 1.0)
    """
    return torch.exp(x - x.detach())


def accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max matches the label.

    Args:
        predictions: ``[N, classes]`` scores (any float dtype).
        targets: ``[N]`` integer labels (or any shape with N elements).

    Returns:
        A 0-d float tensor in [0, 1].

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])).item()
        0.5
    """
    if predictions.dim() != 2:
        raise ValueError(f"predictions must have shape [N, classes], got {tuple(predictions.shape)}")
    if targets.numel() != predictions.shape[0]:
        raise ValueError(
            f"targets has {targets.numel()} elements but predictions has {predictions.shape[0]} rows"
        )
    return (predictions.argmax(dim=1) == targets.reshape(-1)).float().mean()
