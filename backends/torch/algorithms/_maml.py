"""MAML (Finn et al., ICML 2017) and Meta-SGD (Li et al., 2017) as stateful learners."""

from __future__ import annotations

import torch

from ....transforms import sgd
from ....transforms._inner import check_inner
from ._base import BaseLearner, check_lr


class MAML(BaseLearner):
    """Model-agnostic meta-learning: ``clone()`` a learner per task, ``adapt(loss)`` it with
    ``p <- p - lr * grad`` (or any inner optimizer), and backpropagate the adapted learner's
    query loss into ``model``.

    Args:
        model: any ``torch.nn.Module``.
        lr: inner-loop learning rate (float or a 0-d tensor): the inner step is ``sgd(lr)``.
        first_order: drop second-order terms (FOMAML): inner gradients are not differentiated.
        allow_unused: leave parameters that do not influence the loss unchanged instead of
            raising (default: the value of ``allow_nograd``).
        allow_nograd: skip parameters with ``requires_grad=False`` instead of raising.
        inner: instead of ``lr``, an inner optimizer from ``l2l_multi.transforms``
            (``adam(1e-3)``, ``sgd(0.1, momentum=0.9)``, ``chain(clip_by_global_norm(1.0),
            sgd(0.4))``...); updates are added (optax's convention). Pass ``lr`` or ``inner``,
            not both (``ValueError``). Its state starts at the first ``adapt`` of a clone, is
            kept on the clone (``learner.inner_state``) and threaded through its successive
            ``adapt`` calls; second-order meta-gradients flow through it.

    Functional form (the contract shared with the jax backend): ``maml.meta_parameters()`` is
    ``{"model": {name: parameter}}``; ``maml.adapt(meta_params, x, y, steps=...)`` returns the
    adapted parameters without touching the module, ``maml.task_loss(...)`` the query loss, and
    ``l2l.algorithms.meta_batch_loss(maml, meta_params, sx, sy, qx, qy)`` a whole meta-batch.

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
        >>> adam = l2l.algorithms.MAML(torch.nn.Linear(4, 2), inner=l2l.transforms.adam(1e-2))
        >>> learner = adam.clone()
        >>> for _ in range(3):
        ...     learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
        >>> int(learner.inner_state[0].count)
        3
    """

    functional = True

    def __init__(self, model, lr=None, first_order=False, allow_unused=None, allow_nograd=False, inner=None):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        self._set_inner(lr, inner)

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One inner-optimizer step on ``loss`` (a scalar tensor), in place and differentiable.

        Raises ``AdaptationError`` (a RuntimeError) when autograd cannot differentiate the loss
        w.r.t. the parameters, naming the flag that would allow it; ``FloatingPointError`` on a
        non-finite loss.
        """
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        self._inner_step(self.module, grads)


class MetaSGD(BaseLearner):
    """Meta-SGD: MAML with a learned learning rate per parameter element (Li et al. 2017).

    Args:
        model: any ``torch.nn.Module``.
        lr: initial value of every learning rate (float).
        first_order: see ``MAML``.
        lrs: optional list of tensors (one per parameter, same shapes) to use as the rates.
        inner: an inner optimizer (``l2l_multi.transforms``) whose updates the learned rates
            multiply element-wise: ``p <- p + lrs_p * u_p``. Default ``sgd(1.0)``, i.e.
            ``u = -grad`` (Meta-SGD). Give it a unit learning rate (``adam(1.0)``,
            ``sgd(1.0, momentum=0.9)``) so that ``lrs`` stay the step sizes; ``lr`` remains the
            rates' initial value, so ``lr`` and ``inner`` combine here. State as in ``MAML``.

    ``adapt`` computes ``p <- p - lrs_p * grad_p``; ``lrs`` are meta-learned with the model.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> meta_sgd = l2l.algorithms.MetaSGD(torch.nn.Linear(4, 2), lr=0.1)
        >>> [tuple(lr.shape) for lr in meta_sgd.lrs]
        [(2, 4), (2,)]
    """

    def __init__(
        self, model, lr=1.0, first_order=False, lrs=None, allow_unused=None, allow_nograd=False, inner=None
    ):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        check_lr(lr)
        if inner is not None:
            self.inner = check_inner(inner)
        params = list(model.parameters())
        if lrs is None:
            lrs = [torch.nn.Parameter(torch.full_like(p, float(lr)).detach()) for p in params]
        else:
            lrs = [check_lr(rate, f"lrs[{index}]") for index, rate in enumerate(lrs)]
            if len(lrs) != len(params) or any(a.shape != p.shape for a, p in zip(lrs, params)):
                raise ValueError("lrs must hold one tensor per model parameter, of the same shape")
            lrs = [a if isinstance(a, torch.nn.Parameter) else torch.nn.Parameter(a) for a in lrs]
        self.lrs = torch.nn.ParameterList(lrs)

    functional = True
    learned_rates = True

    def _extra_meta_parameters(self) -> dict:
        return {"lrs": dict(zip((name for name, _ in self.module.named_parameters()), self.lrs))}

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One step ``p <- p + lrs_p * u_p`` with ``u`` the inner optimizer's update (``-grad_p`` by
        default; see ``MAML.adapt`` for errors)."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        self._inner_step(self.module, grads, scales=list(self.lrs))

    def inner_transform(self):
        """The inner optimizer whose updates ``lrs`` multiply: ``inner``, else ``sgd(1.0)``."""
        return self.inner if self.inner is not None else sgd(1.0)


__all__ = ["MAML", "MetaSGD"]
