"""MAML++ (Antoniou, Edwards & Storkey, ICLR 2019): per-step learning rates and batch norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ....transforms import EmptyState, per_parameter_sgd
from .._module_utils import clone_module, update_module
from ._base import BaseLearner, check_lr


class PerStepBatchNorm(torch.nn.Module):
    """Batch norm with one weight, bias and set of running statistics per adaptation step
    (MAML++'s BNWB and BNRS). ``step`` selects the row used by the next forward pass.

    Built from an existing ``torch.nn.BatchNorm{1,2,3}d`` by ``from_batch_norm``; inputs and
    outputs as the original layer (``[N, C, ...]``).
    """

    def __init__(
        self,
        num_features: int,
        steps: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        dtype=None,
        device=None,
    ):
        super().__init__()
        options = {"dtype": dtype, "device": device}
        self.eps, self.momentum, self.step = eps, momentum, 0
        self.weight = torch.nn.Parameter(torch.ones(steps, num_features, **options)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(steps, num_features, **options)) if affine else None
        self.register_buffer("running_mean", torch.zeros(steps, num_features, **options))
        self.register_buffer("running_var", torch.ones(steps, num_features, **options))

    @classmethod
    def from_batch_norm(cls, layer: torch.nn.modules.batchnorm._BatchNorm, steps: int) -> PerStepBatchNorm:
        """Copy ``layer``'s weights and statistics into every step's row."""
        ref = layer.weight if layer.weight is not None else layer.running_mean
        new = cls(layer.num_features, steps, layer.eps, layer.momentum, layer.affine, ref.dtype, ref.device)
        with torch.no_grad():
            if layer.affine:
                new.weight.copy_(layer.weight.expand_as(new.weight))
                new.bias.copy_(layer.bias.expand_as(new.bias))
            if layer.running_mean is not None:
                new.running_mean.copy_(layer.running_mean.expand_as(new.running_mean))
                new.running_var.copy_(layer.running_var.expand_as(new.running_var))
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = min(self.step, self.running_mean.shape[0] - 1)
        return F.batch_norm(
            x,
            self.running_mean[s],
            self.running_var[s],
            None if self.weight is None else self.weight[s],
            None if self.bias is None else self.bias[s],
            self.training,
            0.1 if self.momentum is None else self.momentum,
            self.eps,
        )


def _replace_batch_norms(module: torch.nn.Module, steps: int) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, PerStepBatchNorm.from_batch_norm(child, steps))
            count += 1
        else:
            count += _replace_batch_norms(child, steps)
    return count


def msl_weights(adaptation_steps: int, epoch: int, anneal_epochs: int = 10) -> list[float]:
    """MAML++'s multi-step loss weights for the query losses after each adaptation step.

    Start uniform (``1 / steps``); over ``anneal_epochs`` the weights of earlier steps decay to
    ``0.03 / steps`` and the last step's grows accordingly (the schedule of the paper's code).

    Example:
        >>> msl_weights(4, 0)
        [0.25, 0.25, 0.25, 0.25]
        >>> [round(w, 4) for w in msl_weights(4, 100)]
        [0.0075, 0.0075, 0.0075, 0.9775]
    """
    if adaptation_steps < 1 or epoch < 0 or anneal_epochs < 1:
        raise ValueError(
            f"need adaptation_steps >= 1, epoch >= 0, anneal_epochs >= 1; got {adaptation_steps}, {epoch}, "
            f"{anneal_epochs}"
        )
    uniform = 1.0 / adaptation_steps
    decay = uniform / anneal_epochs
    floor = 0.03 / adaptation_steps
    weights = [max(uniform - epoch * decay, floor) for _ in range(adaptation_steps - 1)]
    weights.append(
        min(uniform + epoch * (adaptation_steps - 1) * decay, 1.0 - (adaptation_steps - 1) * floor)
    )
    return weights


class MAMLpp(BaseLearner):
    """MAML++: a learned learning rate per layer (parameter tensor) and per step (LSLR), and
    per-step batch-norm weights and running statistics (BNWB + BNRS).

    Args:
        model: the network; its ``BatchNorm`` layers are replaced *in place* by
            ``PerStepBatchNorm`` with ``adaptation_steps + 1`` rows (the last for the query pass
            after the final step).
        lr: initial value of every learning rate (float).
        adaptation_steps: the number of ``adapt`` calls per task.
        first_order, allow_unused, allow_nograd: as in ``MAML``.

    ``clone()`` starts at step 0; each ``adapt`` uses ``lrs[p][step]`` then advances the step,
    which also selects the batch-norm row. Clones *share* the running statistics with the
    model (deliberately: BNRS accumulates per-step statistics across tasks), unlike ``MAML``.
    Use ``msl_weights`` for the multi-step loss.

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

    def adapt(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One step with this step's learning rates, then advance to the next step's batch norm."""
        if self.step >= self.adaptation_steps:
            raise RuntimeError(
                f"adapt() called {self.step + 1} times but adaptation_steps={self.adaptation_steps}; "
                "clone() anew"
            )
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        rates = [lr[self.step] for lr in self.lrs]
        updates, _ = per_parameter_sgd(rates).update(grads, EmptyState())
        update_module(self.module, updates)
        self._set_step(self.step + 1)
