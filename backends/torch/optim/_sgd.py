"""``DifferentiableSGD``: a gradient step that keeps the graph (the core ``sgd`` transform)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ....transforms import EmptyState, sgd
from .._module_utils import update_module


class DifferentiableSGD(torch.nn.Module):
    """``p <- p - lr * g`` on every parameter of a module, in place and differentiably.

    Args:
        lr: learning rate (float, or a 0-d tensor that is itself learned).

    ``forward(module, gradients=None)``: ``gradients`` has one tensor (or ``None``) per entry of
    ``list(module.parameters())``; when omitted, each parameter's ``.grad`` is used. Returns the
    module.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = l2l.clone_module(torch.nn.Linear(2, 1, bias=False))
        >>> before = model.weight.clone()
        >>> _ = DifferentiableSGD(0.5)(model, [torch.ones(1, 2)])
        >>> torch.allclose(model.weight, before - 0.5)
        True
    """

    def __init__(self, lr: float | torch.Tensor):
        super().__init__()
        self.lr = lr
        self.rule = sgd(lr)

    def forward(self, module: torch.nn.Module, gradients: Sequence[torch.Tensor | None] | None = None):
        params = list(module.parameters())
        if gradients is None:
            gradients = [p.grad for p in params]
        updates, _ = self.rule.update(list(gradients), EmptyState())
        return update_module(module, updates)
