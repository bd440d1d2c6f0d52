"""Non-transductive scoring for ``MetaLearner.evaluate(..., transductive=False)`` (torch).

With batch norm on batch statistics, scoring a task's queries in one forward pass lets every
query's prediction depend on the other queries (the transductive setting of Nichol, Achiam and
Schulman 2018, Sec. 5). Here each query ``j`` is scored by a forward pass over the batch
``[support ; query j]`` and only its own row is kept, so batch statistics come from the support
set and that query alone. Adaptation is unchanged (support set only); metric learners embed the
support set alone for their head, as in the transductive mode.

The per-query passes are vectorised with ``torch.func.vmap`` in chunks of about
``IMAGES_PER_CALL`` inputs; batch-norm layers run without writing running statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from .algorithms._functional import functional_mode
from .algorithms._mamlpp import PerStepBatchNorm

IMAGES_PER_CALL = (
    512  # inputs per vectorised call: [chunk, s + 1, ...] stays a few hundred MB for 84x84 inputs
)


@contextlib.contextmanager
def _read_only_statistics(*modules: torch.nn.Module):
    """Batch-norm layers that read (never write) running statistics, so they can run under vmap."""
    per_step = [m for module in modules for m in module.modules() if isinstance(m, PerStepBatchNorm)]
    saved = [(layer, layer.update_statistics) for layer in per_step]
    for layer in per_step:
        layer.update_statistics = False
    try:
        with functional_mode(*modules):
            yield
    finally:
        for layer, value in saved:
            layer.update_statistics = value


def each_query(
    forward: Callable[[torch.Tensor], torch.Tensor], support_x: torch.Tensor, query_x: torch.Tensor
) -> torch.Tensor:
    """``out[j] = forward(cat([support_x, query_x[j:j+1]]))[-1]`` for every query ``j``.

    Args:
        forward: maps ``[n, ...]`` inputs to ``[n, ...]`` outputs (a model, an adapted learner,
            a feature extractor); it must not write module state (see ``_read_only_statistics``).
        support_x: ``[s, ...]`` float inputs of one task.
        query_x: ``[q, ...]`` float inputs of the same task, same per-input shape and dtype.

    Returns:
        ``[q, ...]``: each query's output from a pass whose batch is the support set plus it.

    Example:
        >>> import torch
        >>> norm = torch.nn.BatchNorm1d(1, affine=False, track_running_stats=False)  # batch statistics
        >>> out = each_query(norm, torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.0], [3.0]]))
        >>> [round(v, 4) for v in out.flatten().tolist()]
        [0.0, 1.2247]
    """
    width = support_x.shape[0] + 1

    def one(x: torch.Tensor) -> torch.Tensor:
        return forward(torch.cat([support_x, x.unsqueeze(0)]))[-1]

    chunk = max(1, IMAGES_PER_CALL // width)
    return torch.func.vmap(one, chunk_size=chunk, randomness="different")(query_x)


def _flat(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings.reshape(embeddings.shape[0], -1)


def task_outputs(step, support_x, support_y, query_x, steps: int) -> torch.Tensor:
    """One task's non-transductive query outputs ``[q, ways]`` (or ``[q, outputs]``).

    ``step`` is the backend's ``TorchStep``: gradient-based learners (``spec.adapts``) adapt on
    ``(support_x [s, ...], support_y [s])`` with ``steps`` inner steps (``step._adapt``, the
    stateful loop), then score each query on ``[support ; query j]``; metric learners fit their
    head on the support embeddings (the support set embedded alone) and embed each query on
    ``[support ; query j]``. Fills no gradient.
    """
    algorithm = step.algorithm
    if step.spec.kind == "metric":
        features = algorithm.features
        with torch.no_grad(), _read_only_statistics(features):
            support = _flat(features(support_x))
            query = each_query(lambda x: _flat(features(x)), support_x, query_x)
            algorithm.head.fit_(support, support_y)
            return algorithm.head(query)
    learner = step._adapt(support_x, support_y, steps)
    with torch.no_grad(), _read_only_statistics(learner):
        return each_query(learner, support_x, query_x)


def evaluate_tasks(step, batch, steps: int):
    """``(task losses [B], outputs [B, q, ...])`` of a batch ``(sx [B, s, ...], sy [B, s],
    qx [B, q, ...], qy [B, q])`` scored non-transductively (``task_outputs`` task by task)."""
    sx, sy, qx, qy = batch
    outputs = torch.stack([task_outputs(step, *task, steps) for task in zip(sx, sy, qx)])
    task_losses = torch.stack([step.loss_fn(out, y) for out, y in zip(outputs, qy)])
    return task_losses, outputs
