"""MAML++ (Antoniou, Edwards & Storkey, ICLR 2019): per-step learning rates and batch norm."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ...._multi_step_loss import msl_weights as msl_weights
from ....transforms import EmptyState, per_parameter_sgd
from .._module_utils import clone_module, update_module
from ._base import BaseLearner, check_loss, check_lr
from ._per_step_batch_norm import PerStepBatchNorm as PerStepBatchNorm
from ._per_step_batch_norm import _replace_batch_norms
from ._per_step_batch_norm import carry_to_later_rows as carry_to_later_rows


def _detached(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(_detach_tensors(module))


def _detach_tensors(module: torch.nn.Module) -> torch.nn.Module:
    for child in module.modules():
        for name, value in list(child._parameters.items()):
            if value is not None:
                child._parameters[name] = torch.nn.Parameter(value.detach().clone())
    return module


class MAMLpp(BaseLearner):
    """MAML++: a learned learning rate per layer (parameter tensor) and per step (LSLR), and
    per-step batch-norm weights and running statistics (BNWB + BNRS).

    Args:
        model: the network; its ``BatchNorm`` layers are replaced *in place* by
            ``PerStepBatchNorm`` with ``adaptation_steps + 1`` rows (the last for the query pass
            after the final step).
        lr: initial value of every learning rate (float).
        adaptation_steps: the number of ``adapt`` calls per task.
        first_order: as in ``MAML``.
        allow_unused: as in ``MAML``.
        allow_nograd: as in ``MAML``.

    ``clone()`` starts at step 0; the forward at step ``s`` reads batch-norm row ``s``; each
    ``adapt`` uses ``lrs[p][s]`` then advances the step. Per-step batch-norm weights and
    biases are adapted too: step ``s``'s update moves every later row (``carry_to_later_rows``),
    so the next forward sees it and their rates are meta-learned like the others. Clones
    *share* the running statistics with the model (deliberately: BNRS accumulates per-step
    statistics across tasks), unlike ``MAML``. Use ``msl_weights`` for the multi-step loss.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        >>> mamlpp = l2l.algorithms.MAMLpp(net, lr=0.1, adaptation_steps=2)
        >>> mamlpp.lrs[0].shape, type(net[1]).__name__
        (torch.Size([2]), 'PerStepBatchNorm')
    """

    def __init__(self, model, lr, adaptation_steps, first_order=False, allow_unused=None, allow_nograd=False):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        if not isinstance(adaptation_steps, int) or adaptation_steps < 1:
            raise ValueError(f"adaptation_steps={adaptation_steps!r} must be a positive int")
        check_lr(lr)
        self.adaptation_steps = adaptation_steps
        _replace_batch_norms(model, adaptation_steps + 1)
        self.lrs = torch.nn.ParameterList(
            [
                torch.nn.Parameter(torch.full((adaptation_steps,), float(lr), dtype=p.dtype, device=p.device))
                for p in model.parameters()
            ]
        )
        self.step = 0

    functional = True  # adapt(meta_params, ...), task_loss and meta_batch_loss(task_map="vmap")

    def _extra_meta_parameters(self) -> dict:
        names = [name for name, _ in self.module.named_parameters()]
        return {"lrs": dict(zip(names, self.lrs))}

    def per_step_parameters(self) -> list[bool]:
        """One flag per ``module.parameters()`` entry: True for a ``PerStepBatchNorm`` weight/bias
        (``[rows, C]``, one row per step)."""
        per_step = {
            id(tensor)
            for layer in self.module.modules()
            if isinstance(layer, PerStepBatchNorm)
            for tensor in (layer.weight, layer.bias)
            if tensor is not None
        }
        return [id(p) in per_step for p in self.module.parameters()]

    def plain_module(self, row: int = 0, rates_of_step: int | None = None) -> torch.nn.Module:
        """A detached copy of the model with plain batch norm holding row ``row`` (for weight
        conversion, e.g. ``l2l_multi.interop.torch_to_flax``); with ``rates_of_step=s`` every
        parameter is instead filled with its learning rate at step ``s`` (so a converter that
        maps parameters maps the rates too)."""
        copy = clone_module(self.module)

        def replace(module: torch.nn.Module) -> None:
            for name, child in module.named_children():
                if isinstance(child, PerStepBatchNorm):
                    setattr(module, name, child.to_batch_norm(row))
                else:
                    replace(child)

        if isinstance(copy, PerStepBatchNorm):
            copy = copy.to_batch_norm(row)
        replace(copy)
        copy = _detached(copy)
        if rates_of_step is not None:
            with torch.no_grad():
                for param, rates in zip(copy.parameters(), self.lrs):
                    param.fill_(rates[rates_of_step])
        return copy

    def _set_step(self, step: int) -> None:
        self.step = step
        for layer in self.module.modules():
            if isinstance(layer, PerStepBatchNorm):
                layer.step = step

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A differentiable copy at step 0 that shares running statistics with the model."""
        clone = clone_module(self, share_buffers=True)
        clone.first_order, clone.allow_unused, clone.allow_nograd = self._options(
            first_order, allow_unused, allow_nograd
        )
        clone._set_step(0)
        return clone

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """``learner.adapt(loss)``: one step with this step's learning rates, then advance to the
        next step's batch norm (per-step batch-norm tensors: see ``carry_to_later_rows``)."""
        if self.step >= self.adaptation_steps:
            raise RuntimeError(
                f"adapt() called {self.step + 1} times but adaptation_steps={self.adaptation_steps}; "
                "clone() anew"
            )
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        grads = [
            carry_to_later_rows(g, self.step) if per_step and g is not None else g
            for g, per_step in zip(grads, self.per_step_parameters())
        ]
        rates = [lr[self.step] for lr in self.lrs]
        updates, _ = per_parameter_sgd(rates).update(grads, EmptyState())
        update_module(self.module, updates)
        self._set_step(self.step + 1)

    # -- the functional contract -------------------------------------------------------------
    @contextlib.contextmanager
    def _at_step(self, train: bool):
        """Functional calls drive the live layers' step (restored after) and read, never write,
        the running statistics."""
        layers = [m for m in self.module.modules() if isinstance(m, PerStepBatchNorm)]
        saved = [(m, m.training) for m in self.module.modules()]
        self.module.train(bool(train))
        for layer in layers:
            layer.update_statistics = False
        try:
            yield self._set_step
        finally:
            for layer in layers:
                layer.update_statistics = True
            for module, mode in saved:
                module.training = mode
            self._set_step(self.step)

    def _run(self, meta_params, x, y, loss, steps, set_step, query=None):
        """The adapted ``{name: tensor}`` after ``steps`` steps, and the query losses and
        outputs after each step when ``query=(qx, qy)`` is given (``None`` otherwise)."""
        from ._functional import call, check_tree

        module = self.module
        params = check_tree(meta_params["model"], module, "model")
        rates = check_tree(meta_params["lrs"], module, "lrs")
        per_step = {
            name: flag for (name, _), flag in zip(module.named_parameters(), self.per_step_parameters())
        }
        query_losses, outputs = [], None

        def support_loss(params):
            value = loss(call(module, params, x), y)
            return value, value

        for step in range(steps):
            set_step(step)
            grads, value = torch.func.grad(support_loss, has_aux=True)(params)
            if not _abstract(value):  # tensors inside vmap cannot be read
                check_loss(value)
            if self.first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            params = {
                name: p
                - rates[name][step]
                * (carry_to_later_rows(grads[name], step) if per_step[name] else grads[name])
                for name, p in params.items()
            }
            if query is not None:
                set_step(step + 1)
                outputs = call(module, params, query[0])
                query_losses.append(loss(outputs, query[1]))
        return params, query_losses, outputs

    def _steps(self, steps):
        steps = self.adaptation_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= self.adaptation_steps:
            raise ValueError(
                f"steps={steps!r} must be an int in [0, adaptation_steps={self.adaptation_steps}]"
            )
        return steps

    def _adapt_functional(self, meta_params, x, y, *, loss=None, steps=None, inner=None, train=True):
        """``adapt(meta_params, x, y, *, loss=None, steps=None, train=True)``: the adapted
        module's parameters ``{name: tensor}`` (per-step batch-norm rows kept) after ``steps``
        (default ``adaptation_steps``) steps; ``inner`` is refused (MAML++ steps with its learned
        per-step rates). Run it with ``torch.func.functional_call`` after setting the layers'
        step (``_set_step(steps)``), or use ``task_loss``."""
        if inner is not None:
            raise ValueError(
                f"MAMLpp adapts with its learned per-step rates; inner={inner!r:.60} is not supported"
            )
        loss = F.cross_entropy if loss is None else loss
        with self._at_step(train) as set_step:
            return self._run(meta_params, x, y, loss, self._steps(steps), set_step)[0]

    def task_loss(
        self,
        meta_params,
        support_x,
        support_y,
        query_x,
        query_y,
        *,
        loss=None,
        steps=None,
        train=True,
        step_weights=None,
    ):
        """``(query loss 0-d, query outputs [q, ...])`` after ``steps`` (default
        ``adaptation_steps``) steps on the support set, functionally (nothing changes in place).

        ``step_weights``: None: the query loss after the last step; ``steps`` weights (e.g.
        ``msl_weights(steps, epoch)``): the multi-step loss ``sum_s w[s] * L_query(after step
        s + 1)``. As the jax backend's ``MAMLpp.task_loss``."""
        from ._functional import call

        loss = F.cross_entropy if loss is None else loss
        steps = self._steps(steps)
        if step_weights is not None and len(step_weights) != max(steps, 1):
            raise ValueError(
                f"step_weights has {len(step_weights)} entries; need one weight per step ({steps})"
            )
        with self._at_step(train) as set_step:
            query = None if step_weights is None or steps == 0 else (query_x, query_y)
            params, query_losses, outputs = self._run(
                meta_params, support_x, support_y, loss, steps, set_step, query
            )
            if query is None:
                set_step(steps)
                outputs = call(self.module, params, query_x)
                query_losses = [loss(outputs, query_y)]
        if step_weights is None:
            return query_losses[-1], outputs
        return sum(w * value for w, value in zip(step_weights, query_losses)), outputs

    def functional_task_loss(self, meta_params, sx, sy, qx, qy, loss, steps):
        """The per-task function of ``meta_batch_loss``'s functional paths (vmap, sequential)."""
        return self.task_loss(meta_params, sx, sy, qx, qy, loss=loss, steps=steps, train=self.training)

    # -- the jax backend's layout ------------------------------------------------------------
    def flax_layout(self, tree: Mapping, **conversion) -> dict:
        """A torch-layout tree ``{"model": {name: value}, "lrs": {name: [steps]}}`` (values:
        this learner's parameters, their gradients, adapted parameters...; tensors or numpy) in
        the layout of the jax ``MAMLpp``'s meta-parameters: ``{"model": {"params": ...}, "lrs":
        ...}`` with ``adaptation_steps + 1`` rows on batch-norm leaves (numpy arrays).
        ``conversion``: ``flax_module=``, ``input_shape=`` of ``interop.torch_to_flax``."""
        from ._mamlpp_layout import flax_layout

        return flax_layout(self, tree, **conversion)

    def _flax_layout(self, tree: dict) -> dict:
        return self.flax_layout(tree)


def _abstract(value) -> bool:
    from ...._checks import _is_abstract

    return _is_abstract(value)
