"""learn2learn's ``clone_distribution`` / ``detach_distribution`` for ``torch.distributions``."""

from __future__ import annotations

import copy

import torch

from ._module_utils import clone_module, detach_module


def _check_distribution(function: str, dist: object) -> None:
    if not isinstance(dist, torch.distributions.Distribution):
        raise TypeError(
            f"{function}: dist must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )


def clone_distribution(dist: torch.distributions.Distribution) -> torch.distributions.Distribution:
    """A copy of ``dist`` whose tensors are differentiable clones of the original's.

    Every tensor attribute (``loc``, ``scale``, ``logits``, cached ``probs``...) is replaced by
    ``tensor.clone()``, so gradients through the copy reach whatever the original's tensors depend
    on; module attributes go through ``clone_module`` and nested distributions are cloned in turn.
    Unlike learn2learn 0.2.0 (which deep-copies first), parameters that are outputs of a graph
    (non-leaf tensors, e.g. a policy's mean) are accepted.

    Args:
        dist: any ``torch.distributions.Distribution``; parameters of any shape and float dtype.

    Returns:
        A new distribution of the same type, batch shape and event shape.

    Example:
        >>> import torch
        >>> loc = torch.zeros(3, requires_grad=True)
        >>> copy = clone_distribution(torch.distributions.Normal(loc * 2, 1.0))
        >>> copy.log_prob(torch.ones(3)).sum().backward()
        >>> loc.grad.tolist()
        [2.0, 2.0, 2.0]
    """
    _check_distribution("clone_distribution", dist)
    clone = copy.copy(dist)  # shallow: the tensors below are replaced, never shared or deep-copied
    clone.__dict__ = dict(dist.__dict__)
    for key, item in dist.__dict__.items():
        if isinstance(item, torch.Tensor):
            clone.__dict__[key] = item.clone()
        elif isinstance(item, torch.nn.Module):
            clone.__dict__[key] = clone_module(item)
        elif isinstance(item, torch.distributions.Distribution):
            clone.__dict__[key] = clone_distribution(item)
    return clone


def detach_distribution(dist: torch.distributions.Distribution) -> torch.distributions.Distribution:
    """Detach every tensor of ``dist`` from its graph, in place, and return ``dist``.

    Tensors that require grad are replaced by ``tensor.detach()`` (same values, no history);
    module attributes go through ``detach_module`` and nested distributions are detached in turn.
    Typical use: the "old" policy of a TRPO/PPO ratio.

    Args:
        dist: any ``torch.distributions.Distribution``.

    Returns:
        ``dist`` itself, now holding no tensor that requires grad.

    Example:
        >>> import torch
        >>> loc = torch.zeros(2, requires_grad=True)
        >>> old = detach_distribution(torch.distributions.Normal(loc + 1, 1.0))
        >>> old.loc.requires_grad, old.loc.tolist()
        (False, [1.0, 1.0])
    """
    _check_distribution("detach_distribution", dist)
    for key, item in list(dist.__dict__.items()):
        if isinstance(item, torch.Tensor):
            if item.requires_grad:
                dist.__dict__[key] = item.detach()
        elif isinstance(item, torch.nn.Module):
            dist.__dict__[key] = detach_module(item)
        elif isinstance(item, torch.distributions.Distribution):
            dist.__dict__[key] = detach_distribution(item)
    return dist
