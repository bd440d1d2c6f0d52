"""``LearnableOptimizer``: meta-descent, an optimizer whose update rule is itself trained."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._module_utils import update_module
from ._transforms import build_transform


class LearnableOptimizer(torch.nn.Module):
    """An optimizer whose step ``p <- p - lr * T_p(grad)`` is differentiable w.r.t. ``T``'s parameters.

    After ``step()``, each model parameter is the (detached) old value minus ``lr`` times the
    transformed gradient, so the *next* loss's ``backward()`` reaches the transforms: optimise
    ``learnable_optimizer.parameters()`` with any torch optimizer (one-step meta-descent, the
    learn2learn scheme; with a ``Scale`` transform this is hypergradient descent with
    per-parameter rates, Baydin et al. 2018).

    Args:
        model: the module being trained (not registered as a submodule).
        transform: a transform factory (``ModuleTransform(Scale)``, ``KroneckerTransform(...)``...).
        lr: step size (float).

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = LearnableOptimizer(model, l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.1)
        >>> meta_opt = torch.optim.SGD(opt.parameters(), lr=0.01)
        >>> for _ in range(3):
        ...     opt.zero_grad(); meta_opt.zero_grad()
        ...     model(torch.ones(4, 2)).pow(2).mean().backward()
        ...     opt.step(); meta_opt.step()
        >>> sum(p.grad is not None for p in opt.parameters())
        2
    """

    def __init__(self, model: torch.nn.Module, transform: Callable, lr: float = 1.0):
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.info = {"model": model}  # a dict, so the model is not registered as our submodule
        self.lr = lr
        modules = [build_transform(transform, p, name) for name, p in model.named_parameters()]
        if any(m is None for m in modules):
            raise ValueError("transform returned None for some parameter; every parameter needs a transform")
        self.transforms = torch.nn.ModuleList(modules)

    @property
    def model(self) -> torch.nn.Module:
        return self.info["model"]

    def step(self, closure: Callable | None = None):
        """Apply one differentiable update using the parameters' ``.grad``; returns ``closure()``."""
        loss = closure() if closure is not None else None
        updates = []
        for param, transform in zip(self.model.parameters(), self.transforms):
            if param.grad is None:
                updates.append(None)
                continue
            updates.append(-self.lr * transform(param.grad.detach()))
        # Start each step from the detached current value: the graph spans one step only.
        memo: dict = {}
        for module in self.model.modules():
            for key, param in module._parameters.items():
                if param is None:
                    continue
                if param not in memo:
                    memo[param] = param.detach().requires_grad_(param.requires_grad)
                module._parameters[key] = memo[param]
        update_module(self.model, updates)
        for param in self.model.parameters():
            if param.requires_grad:
                param.retain_grad()  # non-leaf now; keep .grad for the next step
        return loss

    def zero_grad(self, set_to_none: bool = True):
        """Clear the model's gradients (the transforms' are cleared by their own optimizer)."""
        for param in self.model.parameters():
            param.grad = None
