"""``MetaLearner`` under ``torch.distributed``: every rank receives the same meta-batch, computes
its own contiguous share of the tasks, and the ranks combine what they computed so each one holds
exactly what a single process holding every task would (up to the order of float additions).

Used by ``backends/torch/training.py`` when a process group with more than one rank is
initialised before the learner is built (``torchrun``, or ``l2l_multi.experiment`` 's
``--processes``); with one process nothing here runs.
"""

from __future__ import annotations

import torch

from .algorithms import average_gradients, broadcast_parameters, task_slice


def joined_group() -> bool:
    """True when ``torch.distributed`` is initialised with more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RankShare:
    """This rank's share of each meta-batch and the collectives that combine the shares.

    Built once per learner (after the model): broadcasts rank 0's parameters and buffers so the
    ranks start identical even when their seeds differ.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device):
        import torch.distributed as dist

        self.dist, self.device = dist, device  # nccl communicates CUDA tensors only
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        broadcast_parameters(module)
        self._checked = False  # average_gradients verifies the ranks agree on the first call only

    def slice(self, batch: tuple) -> tuple[tuple, int]:
        """``(this rank's tasks of every array of batch, their count)``; arrays are ``[B, ...]``."""
        share = task_slice(int(batch[0].shape[0]), self.rank, self.size)
        return tuple(array[share] for array in batch), share.stop - share.start

    def backward(self, batch: tuple, backward, optimizer, classify: bool, parameters) -> tuple:
        """``backward(this rank's share) -> (mean loss, logits)`` filling ``.grad``, then the
        gradients averaged over every task; returns ``(loss, logits or None, accuracy or None)``
        with the loss and accuracy meant over every task. A rank without tasks (fewer tasks than
        ranks) adds nothing but joins every collective."""
        total = int(batch[0].shape[0])
        share, count = self.slice(batch)
        zero = torch.zeros((), device=self.device)
        if count:
            loss, logits = backward(share)
        else:
            optimizer.zero_grad()
            loss, logits = zero, None
        accuracy = None
        if classify:
            accuracy = (logits.detach().argmax(-1) == share[3]).float().mean() if count else zero
        self.average(parameters, count)
        loss, accuracy = self.mean_metrics([loss.detach(), accuracy], count, total)
        return loss, logits, accuracy

    def average(self, parameters, num_tasks: int) -> None:
        """Every rank's ``.grad``: the task-count-weighted mean of the ranks' mean gradients."""
        average_gradients(parameters, num_tasks=num_tasks, check=not self._checked)
        self._checked = True

    def mean_metrics(self, values: list[torch.Tensor | None], num_tasks: int, total: int) -> list:
        """Means over all tasks of per-rank means (0-d tensors, ``None`` kept): one all-reduce of
        ``num_tasks * value``; a rank without tasks contributes zeros."""
        present = [v for v in values if v is not None]
        if not present:
            return values
        buffer = torch.stack([v.detach().to(torch.float64) for v in present]) * num_tasks
        if num_tasks == 0:
            buffer = torch.zeros_like(buffer)  # an empty share's placeholders may be NaN
        self.dist.all_reduce(buffer)
        buffer = (buffer / total).to(present[0].dtype)
        reduced = iter(buffer.unbind())
        return [None if v is None else next(reduced) for v in values]

    def evaluate(self, batch: tuple, score, nothing: tuple) -> tuple:
        """``score(this rank's share) -> (task losses, task accuracies or None)`` (numpy ``[n]``),
        gathered over the ranks: ``[B]`` each, in task order. ``nothing``: the empty share's pair."""
        total = int(batch[0].shape[0])
        share, count = self.slice(batch)
        losses, accuracies = score(share) if count else nothing
        return self.gather_tasks(losses, total), self.gather_tasks(accuracies, total)

    def gather_tasks(self, values, total: int, dtype=torch.float64):
        """The per-task ``[n]`` arrays of every rank, concatenated in rank order: ``[total]``.
        ``values`` is this rank's numpy array (or ``None``, then ``None`` is returned)."""
        if values is None:
            return None
        width = -(-total // self.size)  # the largest share: task_slice's first ranks hold one more
        padded = torch.zeros(width, dtype=dtype, device=self.device)
        padded[: len(values)] = torch.as_tensor(values, dtype=dtype, device=self.device)
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self.dist.all_gather(parts, padded)
        pieces = []
        for rank, part in enumerate(parts):
            share = task_slice(total, rank, self.size)
            pieces.append(part[: share.stop - share.start])
        return torch.cat(pieces).cpu().numpy().astype(values.dtype)
