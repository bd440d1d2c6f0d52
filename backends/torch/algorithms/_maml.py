"""MAML (Finn et al., ICML 2017) and Meta-SGD (Li et al., 2017) as stateful learners."""

from __future__ import annotations

import torch

from ....transforms import EmptyState, per_parameter_sgd, sgd
from .._module_utils import update_module
from ._base import BaseLearner, check_lr


class MAML(BaseLearner):
    """Model-agnostic meta-learning: ``clone()`` a learner per task, ``adapt(loss)`` it with
    ``p <- p - lr * grad``, and backpropagate the adapted learner's query loss into ``model``.

    Args:
        model: any ``torch.nn.Module``.
        lr: inner-loop learning rate (float or a 0-d tensor).
        first_order: drop second-order terms (FOMAML): inner gradients are not differentiated.
        allow_unused: leave parameters that do not influence the loss unchanged instead of
            raising (default: the value of ``allow_nograd``).
        allow_nograd: skip parameters with ``requires_grad=False`` instead of raising.

    Batch norm: a clone gets its own copy of the running statistics (see ``clone_module``), so
    adapting clones never changes ``model``'s statistics.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> maml = l2l.algorithms.MAML(torch.nn.Linear(4, 2), lr=0.1)
        >>> x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
        >>> learner = maml.clone()
        >>> learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
        >>> torch.nn.functional.cross_entropy(learner(x), y).backward()
        >>> maml.module.weight.grad.shape
        torch.Size([2, 4])
    """

    def __init__(self, model, lr, first_order=False, allow_unused=None, allow_nograd=False):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        self.lr = check_lr(lr)

    def adapt(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One gradient step on ``loss`` (a scalar tensor), in place and differentiable.

        Raises ``AdaptationError`` (a RuntimeError) when autograd cannot differentiate the loss
        w.r.t. the parameters, naming the flag that would allow it; ``FloatingPointError`` on a
        non-finite loss.
        """
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        updates, _ = sgd(self.lr).update(grads, EmptyState())
        update_module(self.module, updates)


class MetaSGD(BaseLearner):
    """Meta-SGD: MAML with a learned learning rate per parameter element (Li et al. 2017).

    Args:
        model: any ``torch.nn.Module``.
        lr: initial value of every learning rate (float).
        first_order: see ``MAML``.
        lrs: optional list of tensors (one per parameter, same shapes) to use as the rates.

    ``adapt`` computes ``p <- p - lrs_p * grad_p``; ``lrs`` are meta-learned with the model.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> meta_sgd = l2l.algorithms.MetaSGD(torch.nn.Linear(4, 2), lr=0.1)
        >>> [tuple(lr.shape) for lr in meta_sgd.lrs]
        [(2, 4), (2,)]
    """

    def __init__(self, model, lr=1.0, first_order=False, lrs=None, allow_unused=None, allow_nograd=False):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        check_lr(lr)
        params = list(model.parameters())
        if lrs is None:
            lrs = [torch.nn.Parameter(torch.full_like(p, float(lr)).detach()) for p in params]
        else:
            lrs = [check_lr(rate, f"lrs[{index}]") for index, rate in enumerate(lrs)]
            if len(lrs) != len(params) or any(a.shape != p.shape for a, p in zip(lrs, params)):
                raise ValueError("lrs must hold one tensor per model parameter, of the same shape")
            lrs = [a if isinstance(a, torch.nn.Parameter) else torch.nn.Parameter(a) for a in lrs]
        self.lrs = torch.nn.ParameterList(lrs)

    def adapt(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One step ``p <- p - lrs_p * grad_p`` (see ``MAML.adapt`` for errors)."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        updates, _ = per_parameter_sgd(list(self.lrs)).update(grads, EmptyState())
        update_module(self.module, updates)


__all__ = ["MAML", "MetaSGD"]
