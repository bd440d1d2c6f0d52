"""Small modules and helpers: ``Lambda``, ``Flatten``, ``freeze``, ``unfreeze``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class Lambda(torch.nn.Module):
    """Wrap a function as a module, e.g. inside ``torch.nn.Sequential``.

    Example:
        >>> import torch
        >>> Lambda(lambda x: 2 * x)(torch.ones(2))
        tensor([2., 2.])
    """

    def __init__(self, function: Callable):
        super().__init__()
        if not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        self.function = function

    def forward(self, *args, **kwargs):
        return self.function(*args, **kwargs)


class Flatten(torch.nn.Module):
    """``[N, ...] -> [N, prod(...)]``.

    Example:
        >>> import torch
        >>> Flatten()(torch.zeros(4, 3, 2, 2)).shape
        torch.Size([4, 12])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


def _set_requires_grad(module: torch.nn.Module, names: Iterable[str] | None, value: bool) -> torch.nn.Module:
    wanted = None if names is None else set(names)
    named = dict(module.named_parameters())
    if wanted is not None and not wanted <= named.keys():
        raise ValueError(
            f"parameters {sorted(wanted - named.keys())} are not in the module; it has {sorted(named)}"
        )
    for name, param in named.items():
        if wanted is None or name in wanted:
            param.requires_grad_(value)
    return module


def freeze(module: torch.nn.Module, parameters: Iterable[str] | None = None) -> torch.nn.Module:
    """Stop gradients to ``module``'s parameters (all, or those named in ``parameters``).

    Example:
        >>> import torch
        >>> freeze(torch.nn.Linear(2, 2)).weight.requires_grad
        False
    """
    return _set_requires_grad(module, parameters, False)


def unfreeze(module: torch.nn.Module, parameters: Iterable[str] | None = None) -> torch.nn.Module:
    """Undo ``freeze``: the parameters (all, or those named) require gradients again."""
    return _set_requires_grad(module, parameters, True)
