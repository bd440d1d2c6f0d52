"""Learnable element-wise scaling (Meta-SGD's per-parameter learning rates)."""

from __future__ import annotations

import torch


class Scale(torch.nn.Module):
    """``forward(x) = alpha * x`` with a learnable ``alpha`` of shape ``shape`` (broadcast).

    Args:
        shape: shape of ``alpha`` (an int, a tuple, or ``None``/1 for one scalar).
        alpha: initial value of every entry (float).
        dtype: of ``alpha`` (default: torch's default float dtype).
        device: of ``alpha`` (default: CPU).

    Used as a gradient transform through ``l2l.optim.ModuleTransform(Scale)``, which builds one
    ``Scale`` per parameter with ``alpha`` of the parameter's shape (Meta-SGD, Li et al. 2017).

    Example:
        >>> import torch
        >>> Scale(3, alpha=0.5)(torch.ones(3))
        tensor([0.5000, 0.5000, 0.5000], grad_fn=<MulBackward0>)
    """

    def __init__(self, shape=None, alpha: float = 1.0, dtype=None, device=None):
        super().__init__()
        if shape is None:
            shape = (1,)
        elif isinstance(shape, int):
            shape = (shape,)
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape):
            raise ValueError(f"shape={shape!r} must contain positive sizes")
        self.alpha = torch.nn.Parameter(torch.full(shape, float(alpha), dtype=dtype, device=device))

    @classmethod
    def for_parameter(cls, parameter: torch.Tensor, alpha: float = 1.0) -> Scale:
        """One scale per element of ``parameter`` (same shape, dtype and device)."""
        return cls(tuple(parameter.shape) or (1,), alpha, dtype=parameter.dtype, device=parameter.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x
