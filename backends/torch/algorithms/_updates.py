"""learn2learn's functional update rules ``maml_update`` and ``meta_sgd_update``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._module_utils import update_module


def maml_update(
    model: torch.nn.Module, lr: float, grads: Sequence[torch.Tensor | None] | None = None
) -> torch.nn.Module:
    """One differentiable gradient step ``p <- p - lr * g`` on ``model``'s parameters, in place.

    Args:
        model: the module to update (typically a clone from ``l2l.clone_module``).
        lr: step size (float).
        grads: one tensor (its parameter's shape) or None per entry of ``list(model.parameters())``,
            e.g. from ``torch.autograd.grad(loss, model.parameters(), create_graph=True)``. When
            omitted, only the ``.update`` attributes already set on the parameters are applied.

    Returns:
        ``model`` itself, whose parameters are now graph nodes of the update. A length mismatch
        between ``grads`` and the parameters raises ValueError (learn2learn prints and carries on).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> old = model.weight.detach().clone()
        >>> _ = maml_update(model, 0.5, [torch.ones(1, 2)])
        >>> torch.allclose(model.weight, old - 0.5)
        True
    """
    if grads is None:
        return update_module(model)
    updates = [None if g is None else -lr * g for g in grads]
    return update_module(model, updates)


def meta_sgd_update(
    model: torch.nn.Module,
    lrs: Sequence[torch.Tensor] | None = None,
    grads: Sequence[torch.Tensor | None] | None = None,
) -> torch.nn.Module:
    """Meta-SGD's step ``p <- p - lr_p * g`` with one learning-rate tensor per parameter, in place.

    Args:
        model: the module to update.
        lrs: per-parameter learning rates, each broadcastable to its parameter (Meta-SGD uses
            one of the parameter's shape), in ``model.parameters()`` order.
        grads: gradients as for ``maml_update``. Both ``lrs`` and ``grads`` must be given to take
            a step; with neither, the ``.update`` attributes already set are applied.

    Returns:
        ``model`` itself.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> old = model.weight.detach().clone()
        >>> _ = meta_sgd_update(model, [torch.tensor([[1.0, 2.0]])], [torch.ones(1, 2)])
        >>> (old - model.weight).tolist()
        [[1.0, 2.0]]
    """
    if (lrs is None) != (grads is None):
        raise ValueError("meta_sgd_update: pass both lrs and grads, or neither")
    if grads is None:
        return update_module(model)
    lrs, grads = list(lrs), list(grads)
    if len(lrs) != len(grads):
        raise ValueError(f"meta_sgd_update: lrs has {len(lrs)} entries but grads has {len(grads)}")
    updates = [None if g is None else -lr * g for lr, g in zip(lrs, grads)]
    return update_module(model, updates)
