"""Reptile (Nichol, Achiam & Schulman 2018): first-order meta-learning by interpolation."""

from __future__ import annotations

import torch

from .._module_utils import clone_module, detach_module
from ._base import BaseLearner, check_lr


class Reptile(BaseLearner):
    """Adapt a detached copy with plain SGD, then move the model towards the adapted weights.

    Args:
        model: any ``torch.nn.Module``.
        lr: inner-loop SGD learning rate (float).
        allow_unused: as in ``MAML``.
        allow_nograd: as in ``MAML``.

    Workflow per meta-batch: ``learner = reptile.clone()``; ``learner.adapt(loss)`` for k steps;
    ``reptile.accumulate(learner, weight=1 / meta_batch)`` adds ``weight * (theta - phi)`` to the
    model's ``.grad``; then ``meta_optimizer.step()``. With ``torch.optim.SGD(lr=epsilon)`` this is
    the paper's update ``theta <- theta + epsilon * mean(phi - theta)``.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(3, 1)
        >>> reptile = l2l.algorithms.Reptile(model, lr=0.1)
        >>> learner = reptile.clone()
        >>> learner.adapt(learner(torch.ones(2, 3)).pow(2).mean())
        >>> reptile.accumulate(learner)
        >>> torch.allclose(model.weight.grad, model.weight - learner.module.weight)
        True
    """

    def __init__(self, model, lr, allow_unused=None, allow_nograd=False):
        super().__init__(model, True, allow_unused, allow_nograd)
        self.lr = float(check_lr(lr))

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A detached copy (no graph to the model) whose parameters require grad as the model's do."""
        clone = clone_module(self)
        detach_module(clone, keep_requires_grad=True)
        _, clone.allow_unused, clone.allow_nograd = self._options(True, allow_unused, allow_nograd)
        return clone

    functional = True
    detached_inner_loop = True

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One SGD step ``phi <- phi - lr * grad`` on this (cloned) learner; no graph is kept."""
        _, allow_unused, allow_nograd = self._options(True, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, True, allow_unused, allow_nograd)
        with torch.no_grad():
            for param, grad in zip(params, grads):
                if grad is not None:
                    param.sub_(self.lr * grad)

    def accumulate(self, learner: Reptile, weight: float = 1.0) -> None:
        """Add ``weight * (theta - phi)`` to each model parameter's ``.grad`` (created if missing)."""
        if not isinstance(learner, Reptile):
            raise TypeError(f"learner must come from Reptile.clone(), got {type(learner).__name__}")
        with torch.no_grad():
            for theta, phi in zip(self.module.parameters(), learner.module.parameters()):
                if not theta.requires_grad:
                    continue
                delta = weight * (theta - phi)
                theta.grad = delta.clone() if theta.grad is None else theta.grad + delta
