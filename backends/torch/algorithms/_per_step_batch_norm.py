"""MAML++'s per-step batch norm (BNWB + BNRS): a batch-norm layer with one row of weights and
running statistics per adaptation step, the in-place swap of a model's batch norms for it, and
the inner-loop direction of its per-step tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PerStepBatchNorm(torch.nn.Module):
    """Batch norm with one weight, bias and set of running statistics per adaptation step
    (MAML++'s BNWB and BNRS). ``step`` selects the row used by the next forward pass.

    Built from an existing ``torch.nn.BatchNorm{1,2,3}d`` by ``from_batch_norm``; inputs and
    outputs as the original layer (``[N, C, ...]``). Without ``track_running_stats`` (as the
    original layer) there are no running statistics and every forward uses the batch's.
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
        track_running_stats: bool = True,
    ):
        super().__init__()
        options = {"dtype": dtype, "device": device}
        self.eps, self.momentum, self.step, self.rows = eps, momentum, 0, steps
        # False inside the functional paths: batch statistics are used but the running rows are
        # not written (an in-place write of a shared buffer is impossible under vmap)
        self.update_statistics = True
        self.weight = torch.nn.Parameter(torch.ones(steps, num_features, **options)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(steps, num_features, **options)) if affine else None
        tracked = bool(track_running_stats)
        self.register_buffer("running_mean", torch.zeros(steps, num_features, **options) if tracked else None)
        self.register_buffer("running_var", torch.ones(steps, num_features, **options) if tracked else None)

    @classmethod
    def from_batch_norm(cls, layer: torch.nn.modules.batchnorm._BatchNorm, steps: int) -> PerStepBatchNorm:
        """Copy ``layer``'s weights and statistics into every step's row."""
        ref = next((t for t in (layer.weight, layer.running_mean) if t is not None), None)
        options = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
        new = cls(
            layer.num_features,
            steps,
            layer.eps,
            layer.momentum,
            layer.affine,
            track_running_stats=layer.running_mean is not None,
            **options,
        )
        new.plain_type = type(layer)  # for ``to_batch_norm``
        with torch.no_grad():
            if layer.affine:
                new.weight.copy_(layer.weight.expand_as(new.weight))
                new.bias.copy_(layer.bias.expand_as(new.bias))
            if layer.running_mean is not None:
                new.running_mean.copy_(layer.running_mean.expand_as(new.running_mean))
                new.running_var.copy_(layer.running_var.expand_as(new.running_var))
        return new

    def to_batch_norm(self, row: int) -> torch.nn.modules.batchnorm._BatchNorm:
        """A plain batch-norm layer (the class this one replaced; ``BatchNorm2d`` if built
        directly) holding row ``row``'s weight, bias and running statistics (copies)."""
        if not 0 <= row < self.rows:
            raise ValueError(f"row={row!r} must be in [0, {self.rows})")
        plain_type = getattr(self, "plain_type", torch.nn.BatchNorm2d)
        ref = next(t for t in (self.weight, self.running_mean) if t is not None)
        layer = plain_type(
            ref.shape[1],
            self.eps,
            self.momentum,
            self.weight is not None,
            self.running_mean is not None,
            dtype=ref.dtype,
            device=ref.device,
        )
        with torch.no_grad():
            if self.weight is not None:
                layer.weight.copy_(self.weight[row])
                layer.bias.copy_(self.bias[row])
            if self.running_mean is not None:
                layer.running_mean.copy_(self.running_mean[row])
                layer.running_var.copy_(self.running_var[row])
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = min(self.step, self.rows - 1)
        batch_statistics = self.training or self.running_mean is None
        read_only = self.running_mean is None or (self.training and not self.update_statistics)
        y = F.batch_norm(
            x,
            None if read_only else self.running_mean[s],
            None if read_only else self.running_var[s],
            None,
            None,
            batch_statistics,
            0.1 if self.momentum is None else self.momentum,
            self.eps,
        )
        if self.weight is None:
            return y
        # Scale and shift outside the fused op: under torch.func.vmap the fused affine gives a
        # wrong second-order gradient (pytorch/functorch issue 534); outside it is exact.
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return y * self.weight[s].reshape(shape) + self.bias[s].reshape(shape)


def _replace_batch_norms(module: torch.nn.Module, steps: int) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, PerStepBatchNorm.from_batch_norm(child, steps))
            count += 1
        else:
            count += _replace_batch_norms(child, steps)
    return count


def carry_to_later_rows(grad: torch.Tensor, step: int) -> torch.Tensor:
    """The inner-loop direction of a per-step batch-norm tensor ``[rows, C]`` at ``step``.

    The forward at ``step`` reads row ``step`` only, so ``grad`` is zero elsewhere; the next
    forward reads row ``step + 1``. Applying the gradient to row ``step`` (as before this fix)
    changed nothing that was read again, so the step's rate had no effect and no
    meta-gradient. Instead row ``step``'s gradient moves every later row: the adapted weight at
    step ``r`` is its meta-learned row ``W[r]`` plus the sum of the earlier steps' updates
    (``W[r] - sum_{s<r} lr[s] * g_s``), MAML's inner loop on per-step offsets.

    Returns a ``[rows, C]`` tensor: ``g[step]`` in every row after ``step``, zero up to it.
    """
    rows = grad.shape[0]
    later = (torch.arange(rows, device=grad.device) > step).to(grad.dtype)
    return later.reshape((rows,) + (1,) * (grad.dim() - 1)) * grad[step].unsqueeze(0)
