"""GBML: gradient-based meta-learning with a learned gradient transform (learn2learn's wrapper)."""

from __future__ import annotations

import torch

from ....transforms import EmptyState, sgd
from .._module_utils import update_module
from ..optim._parameter_update import ParameterUpdate
from ._base import AdaptationError, BaseLearner, check_lr


class GBML(BaseLearner):
    """Inner step ``p <- p - lr * T_p(grad_p)`` with learnable transforms ``T_p``.

    Meta-SGD is ``GBML(model, ModuleTransform(Scale))``, Meta-Curvature
    ``GBML(model, MetaCurvatureTransform)`` and Meta-KFO
    ``GBML(model, KroneckerTransform(KroneckerLinear), adapt_transform=True)``.

    Args:
        module: the model (any ``torch.nn.Module``).
        transform: a transform factory, called once per parameter (see ``l2l.optim``).
        lr: inner-loop learning rate (float).
        adapt_transform: also adapt the transforms (Meta-KFO): at each ``adapt`` the loss is
            differentiated w.r.t. the transform that produced the current parameters, the
            transform takes a plain step ``T <- T - lr * dloss/dT``, and the updated transform
            then maps this step's gradient. On the first step the loss does not depend on the
            transform yet, so it changes from the second step on.
        first_order, allow_unused, allow_nograd: as in ``MAML``.

    ``learner.compute_update`` is the ``ParameterUpdate`` holding the transforms; its parameters
    are part of ``GBML.parameters()`` and are meta-learned with the model.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(4, 2)
        >>> meta_sgd = l2l.algorithms.GBML(model, l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.1)
        >>> sum(p.numel() for p in meta_sgd.parameters())
        20
    """

    def __init__(
        self, module, transform, lr=1.0, adapt_transform=False, first_order=False, allow_unused=False,
        allow_nograd=False,
    ):
        super().__init__(module, first_order, allow_unused, allow_nograd)
        self.lr = check_lr(lr)
        self.adapt_transform = bool(adapt_transform)
        self.compute_update = ParameterUpdate(module.named_parameters(), transform)

    def adapt(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One transformed gradient step (see ``MAML.adapt`` for errors)."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        transform_params = list(self.compute_update.parameters()) if self.adapt_transform else []
        grads = self._gradients(
            loss, params + transform_params, first_order, True, allow_nograd or bool(transform_params),
        )
        model_grads, transform_grads = grads[: len(params)], grads[len(params):]
        unused = [i for i, (p, g) in enumerate(zip(params, model_grads)) if g is None and p.requires_grad]
        if unused and not allow_unused:
            raise AdaptationError(
                f"parameters {unused} were not used to compute the loss; pass allow_unused=True to leave "
                "them unchanged"
            )
        step = sgd(self.lr)
        if transform_params:
            # The current transform produced the current parameters (at the previous step), so
            # this loss's gradient w.r.t. it is its adaptation signal; update it before use.
            transform_updates, _ = step.update(transform_grads, EmptyState())
            update_module(self.compute_update, transform_updates)
        updates, _ = step.update(self.compute_update.transform_gradients(model_grads), EmptyState())
        update_module(self.module, updates)
