"""GBML: gradient-based meta-learning with a learned gradient transform (learn2learn's wrapper)."""

from __future__ import annotations

import torch

from ....transforms import EmptyState, is_learnable, sgd
from ....transforms._base import is_transform
from ....transforms._inner import UNSET
from .._module_utils import update_module
from ..optim._parameter_update import ParameterUpdate
from ..optim._transforms import PairTransform
from ._base import AdaptationError, BaseLearner


class GBML(BaseLearner):
    """Inner step ``p <- p - lr * T_p(grad_p)`` with learnable transforms ``T_p``, or any
    complete inner optimizer.

    Meta-SGD is ``GBML(model, ModuleTransform(Scale))``, Meta-Curvature
    ``GBML(model, MetaCurvatureTransform)`` and Meta-KFO
    ``GBML(model, KroneckerTransform(KroneckerLinear), adapt_transform=True)``.

    The rule for ``transform`` (the same on the jax backend):

    * a transform *factory* (``ModuleTransform``, ``KroneckerTransform``,
      ``MetaCurvatureTransform``, ``TransformDictionary``, any ``f(param) -> module``) or a core
      ``LearnableTransformation`` (``l2l_multi.transforms.kronecker()``, ``meta_curvature()``,
      ``elementwise_scale()``, in their default ``layout="torch"``: held per parameter by
      ``l2l.optim.LearnableTransformModule``; the jax backend's ``GBML`` takes the same pairs with
      ``layout="flax"``) is a learnable preconditioner: it returns a
      direction ``T(g)`` (no learning rate, no sign flip; ``scale_by_*`` in optax's terms) and
      the inner optimizer steps along it: by default ``sgd(lr)``, i.e. ``p - lr * T(g)`` (``lr``
      defaults to 1.0), or ``inner=`` (then ``lr`` is refused);
    * a ``GradientTransformation`` (``l2l_multi.transforms.sgd(0.4)``, ``adam(1e-3)``, a
      ``chain``...) is a complete optimizer whose updates are added, exactly as
      ``MAML(model, inner=transform)``; ``lr``, ``inner`` and ``adapt_transform`` are refused
      with it (``GBML(model, transforms.sgd(lr))`` adapts as ``MAML(model, lr)``).

    Args:
        module: the model (any ``torch.nn.Module``).
        transform: a transform factory, called once per parameter (see ``l2l.optim``), or a
            complete inner optimizer (see above).
        lr: inner-loop learning rate along ``T(g)`` (float; default 1.0).
        adapt_transform: also adapt the transforms (Meta-KFO): at each ``adapt`` the loss is
            differentiated w.r.t. the transform that produced the current parameters, the
            transform takes a plain step ``T <- T - lr * dloss/dT``, and the updated transform
            then maps this step's gradient. On the first step the loss does not depend on the
            transform yet, so it changes from the second step on. Needs the default SGD inner step.
        first_order: as in ``MAML``.
        allow_unused: as in ``MAML``.
        allow_nograd: as in ``MAML``.
        inner: the optimizer that steps along ``T(g)`` (``l2l_multi.transforms``; state as in
            ``MAML``), instead of ``sgd(lr)``.

    ``learner.compute_update`` is the ``ParameterUpdate`` holding the transforms (``None`` for a
    complete optimizer); its parameters are part of ``GBML.parameters()`` and are meta-learned
    with the model.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(4, 2)
        >>> meta_sgd = l2l.algorithms.GBML(model, l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.1)
        >>> sum(p.numel() for p in meta_sgd.parameters())
        20
        >>> plain = l2l.algorithms.GBML(torch.nn.Linear(4, 2), l2l.transforms.sgd(0.1))  # == MAML(lr=0.1)
        >>> plain.compute_update is None
        True
    """

    def __init__(
        self,
        module,
        transform,
        lr=UNSET,
        adapt_transform=False,
        first_order=False,
        allow_unused=False,
        allow_nograd=False,
        inner=None,
    ):
        super().__init__(module, first_order, allow_unused, allow_nograd)
        self.adapt_transform = bool(adapt_transform)
        if is_learnable(transform):  # a core pair: held per parameter by LearnableTransformModule
            transform = PairTransform(transform)
        if is_transform(transform):
            refused = [
                f"{name}={value!r:.60}"
                for name, value in (("lr", lr), ("inner", inner))
                if value is not UNSET and value is not None
            ]
            if refused or self.adapt_transform:
                refused += ["adapt_transform=True"] if self.adapt_transform else []
                raise ValueError(
                    f"transform is a complete optimizer (a GradientTransformation whose updates are added), "
                    f"so GBML refuses {', '.join(refused)}: put the learning rate into the transform, e.g. "
                    "GBML(model, transforms.sgd(lr))"
                )
            self._set_inner(None, transform)
            self.compute_update = None
            return
        if self.adapt_transform and inner is not None:
            raise ValueError(
                f"adapt_transform=True takes the default SGD inner step (lr=...); got inner={inner!r:.60}"
            )
        self._set_inner(1.0 if lr is UNSET and inner is None else lr, inner)
        self.compute_update = ParameterUpdate(module.named_parameters(), transform)

    @property
    def functional(self) -> bool:  # Meta-KFO's transform adaptation runs on clones only
        return not self.adapt_transform

    def _extra_meta_parameters(self) -> dict:
        if self.compute_update is None:
            return {}
        return {"transform": dict(self.compute_update.named_parameters())}

    def precondition(self, meta_params, grads):
        """``T_p(grad_p)`` with the transform modules run on ``meta_params["transform"]``."""
        if self.compute_update is None:
            return grads
        from ._functional import call

        tree, out = meta_params["transform"], dict(grads)
        modules = iter(enumerate(self.compute_update.transforms_modules))
        for (name, _), has in zip(self.module.named_parameters(), self.compute_update.has_transform):
            if not has:
                continue
            index, module = next(modules)
            prefix = f"transforms_modules.{index}."
            if name in out:
                params = {key[len(prefix) :]: value for key, value in tree.items() if key.startswith(prefix)}
                out[name] = call(module, params, out[name])
        return out

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One transformed gradient step (see ``MAML.adapt`` for errors)."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        if self.compute_update is None:  # a complete optimizer: MAML's step
            grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
            self._inner_step(self.module, grads)
            return
        transform_params = list(self.compute_update.parameters()) if self.adapt_transform else []
        grads = self._gradients(
            loss,
            params + transform_params,
            first_order,
            True,
            allow_nograd or bool(transform_params),
        )
        model_grads, transform_grads = grads[: len(params)], grads[len(params) :]
        unused = [i for i, (p, g) in enumerate(zip(params, model_grads)) if g is None and p.requires_grad]
        if unused and not allow_unused:
            raise AdaptationError(
                f"parameters {unused} were not used to compute the loss; pass allow_unused=True to leave "
                "them unchanged"
            )
        if transform_params:
            # The current transform produced the current parameters (at the previous step), so
            # this loss's gradient w.r.t. it is its adaptation signal; update it before use.
            transform_updates, _ = sgd(self.lr).update(transform_grads, EmptyState())
            update_module(self.compute_update, transform_updates)
        self._inner_step(self.module, self.compute_update.transform_gradients(model_grads))
