"""Differentiable copies and in-place differentiable updates of ``torch.nn.Module`` objects.

These are the stateful building blocks of the learn2learn API (``clone_module``,
``update_module``, ``detach_module``). A clone is a shallow copy of the module tree whose
parameters are ``param.clone()`` results, so gradients flow from the clone back to the original.

Buffers (batch-norm running statistics) are never shared silently. ``clone_module`` gives the
clone its own copies by default (``share_buffers=False``): a clone in training mode updates its
own running statistics and the original model's stay as they were. Pass ``share_buffers=True``
to have clones write into the model's buffers (learn2learn's behaviour, used by MAML++'s
per-step statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

_Memo = dict


def _shallow_copy(module: torch.nn.Module) -> torch.nn.Module:
    clone = module.__new__(type(module))
    clone.__dict__ = module.__dict__.copy()
    clone._parameters = module._parameters.copy()
    clone._buffers = module._buffers.copy()
    clone._modules = module._modules.copy()
    return clone


def _refresh_rnn_weights(module: torch.nn.Module) -> None:
    # nn.RNNBase keeps a list that aliases its weight tensors; rebuild it after swapping them.
    if isinstance(module, torch.nn.RNNBase):
        module._flat_weights = [getattr(module, name, None) for name in module._flat_weights_names]


def clone_module(
    module: torch.nn.Module, memo: _Memo | None = None, share_buffers: bool = False
) -> torch.nn.Module:
    """A differentiable copy of ``module``: gradients of the clone's outputs reach ``module``.

    Each parameter ``p`` becomes ``p.clone()`` (a non-leaf tensor of the same shape, dtype and
    device); a parameter used in several places stays shared in the clone (``memo`` maps
    original tensors to their clones and can be passed to clone several modules consistently).
    Submodules, hooks and attributes are copied shallowly, RNN weights are relinked.

    Args:
        module: any ``torch.nn.Module``.
        memo: optional ``{original tensor: clone}`` mapping, updated in place.
        share_buffers: False (default): buffers are copied, so running statistics updated by the
            clone never change ``module``. True: the clone reuses ``module``'s buffers.

    Returns:
        A module of the same class as ``module``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 1)
        >>> clone = clone_module(model)
        >>> clone(torch.ones(2, 3)).sum().backward()
        >>> model.weight.grad.shape
        torch.Size([1, 3])
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    memo = {} if memo is None else memo
    clone = _shallow_copy(module)
    for key, param in module._parameters.items():
        if param is None:
            continue
        if param not in memo:
            memo[param] = param.clone()
        clone._parameters[key] = memo[param]
    for key, buffer in module._buffers.items():
        if buffer is None or share_buffers:
            continue
        if buffer not in memo:
            memo[buffer] = buffer.clone()
        clone._buffers[key] = memo[buffer]
    for key, child in module._modules.items():
        if child is not None:
            clone._modules[key] = clone_module(child, memo, share_buffers)
    _refresh_rnn_weights(clone)
    return clone


def update_module(
    module: torch.nn.Module, updates: Sequence[torch.Tensor | None] | None = None, memo: _Memo | None = None
) -> torch.nn.Module:
    """Replace every parameter ``p`` of ``module`` by ``p + update``, in place and differentiably.

    Args:
        module: the module to update (typically a clone).
        updates: one tensor (shape of its parameter) or ``None`` per entry of
            ``list(module.parameters())``. If omitted, each parameter's ``.update`` attribute is
            used where set (learn2learn's convention).
        memo: optional ``{old tensor: new tensor}`` mapping, so shared parameters stay shared.

    Returns:
        ``module`` itself.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> old = model.weight.detach().clone()
        >>> _ = update_module(model, [torch.ones(1, 2)])
        >>> torch.equal(model.weight, old + 1)
        True
    """
    if updates is not None:
        params = list(module.parameters())
        updates = list(updates)
        if len(updates) != len(params):
            raise ValueError(
                f"updates has {len(updates)} entries but the module has {len(params)} parameters"
            )
        for index, (param, update) in enumerate(zip(params, updates)):
            if update is not None and update.shape != param.shape:
                raise ValueError(
                    f"updates[{index}] has shape {tuple(update.shape)}, its parameter {tuple(param.shape)}"
                )
            param.update = update
    _apply_updates(module, {} if memo is None else memo)
    return module


def _apply_updates(module: torch.nn.Module, memo: _Memo) -> None:
    for key, param in module._parameters.items():
        if param is None:
            continue
        if param in memo:
            module._parameters[key] = memo[param]
            continue
        update = getattr(param, "update", None)
        if update is not None:
            new = param + update
            param.update = None
            memo[param] = new
            module._parameters[key] = new
    for child in module._modules.values():
        if child is not None:
            _apply_updates(child, memo)
    _refresh_rnn_weights(module)


def detach_module(module: torch.nn.Module, keep_requires_grad: bool = False) -> torch.nn.Module:
    """Cut ``module``'s parameters and buffers from the autograd graph, in place.

    Args:
        keep_requires_grad: keep ``requires_grad`` of each parameter (so the detached module can
            start a new graph); by default detached parameters do not require gradients.

    Returns:
        ``module`` itself.

    Example:
        >>> import torch
        >>> clone = clone_module(torch.nn.Linear(2, 2))
        >>> detach_module(clone).weight.grad_fn is None
        True
    """
    memo: _Memo = {}
    _detach(module, keep_requires_grad, memo)
    return module


def _detach(module: torch.nn.Module, keep_requires_grad: bool, memo: _Memo) -> None:
    for store in (module._parameters, module._buffers):
        for key, tensor in store.items():
            if tensor is None:
                continue
            if tensor not in memo:
                detached = tensor.detach()
                if keep_requires_grad and tensor.requires_grad:
                    detached.requires_grad_(True)
                memo[tensor] = detached
            store[key] = memo[tensor]
    for child in module._modules.values():
        if child is not None:
            _detach(child, keep_requires_grad, memo)
    _refresh_rnn_weights(module)


def clone_parameters(parameters: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """``[p.clone() for p in parameters]``: differentiable copies, same shapes and dtypes."""
    return [p.clone() for p in parameters]


def clone_named_parameters(module: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: p.clone()}`` for ``module.named_parameters()`` (differentiable copies).

    ``module`` may also be a ``{name: tensor}`` mapping (learn2learn's ``param_dict``, e.g.
    ``dict(model.named_parameters())``); its tensors are cloned the same way.
    """
    items = module.items() if isinstance(module, Mapping) else module.named_parameters()
    return {name: p.clone() for name, p in items}
