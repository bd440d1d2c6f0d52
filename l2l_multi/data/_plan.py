"""A fast path for the standard few-shot pipeline.

``[NWays, KShots | FusedNWaysKShots], LoadData, [RemapLabels], [ConsecutiveLabels after it]`` on a
dataset with batched access is recognised when a TaskDataset is made and run by one kernel call
per batch of tasks (``plan_tasks``), followed by one gather of the inputs. The kernel draws the
same seeds as the transforms would one by one, so the tasks are identical to those of the
transform chain (tests check this); any other pipeline takes the general path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._kernel_mode import kernels
from ._kernels_py import REMAP_NONE, REMAP_ORDERED, REMAP_SHUFFLED
from ._meta_dataset import MetaDataset
from ._task import TaskBatch
from ._transforms import ConsecutiveLabels, FusedNWaysKShots, KShots, LoadData, NWays, RemapLabels


class TaskPlan:
    """The fusable pipeline's parameters; ``build(base_seed, task_indices)`` makes the tasks."""

    def __init__(self, dataset: MetaDataset, candidates: np.ndarray, n: int, k: int,
                 replacement: bool, fused: bool, remap: int, consecutive: bool) -> None:
        self.dataset = dataset
        self.candidates = candidates
        self.n, self.k, self.replacement = n, k, replacement
        self.fused, self.remap, self.consecutive = fused, remap, consecutive

    def build(self, base_seed: int, task_indices: np.ndarray) -> tuple[Any, Any, np.ndarray]:
        """``(inputs [B, n*k, ...], targets [B, n*k], indices int64[B, n*k])``."""
        data = self.dataset
        indices, labels = kernels().plan_tasks(
            data.offsets, data.members, self.candidates, self.n, self.k, self.replacement,
            self.fused, self.remap, self.consecutive, base_seed, task_indices,
        )
        inputs, targets = data.get_batch(indices.ravel())
        inputs = inputs.reshape(indices.shape + tuple(inputs.shape[1:]))
        targets = labels if self.remap != REMAP_NONE else targets.reshape(indices.shape)
        return inputs, targets, indices

    def build_one(self, base_seed: int, task_index: int) -> TaskBatch:
        inputs, targets, indices = self.build(base_seed, np.array([task_index], dtype=np.int64))
        return TaskBatch(inputs[0], targets[0], indices[0])


def compile_plan(dataset: MetaDataset, transforms: list) -> TaskPlan | None:
    """The TaskPlan equivalent to ``transforms``, or None when they are not the standard chain."""
    if not dataset.supports_batches or any(getattr(t, "dataset", None) is not dataset
                                           for t in transforms):
        return None
    kinds = [type(t) for t in transforms]
    if kinds[:1] == [FusedNWaysKShots]:
        head, rest, fused = transforms[0], transforms[1:], True
        n, k, replacement, candidates = head.n, head.k, head.replacement, head._candidates
    elif kinds[:2] == [NWays, KShots]:
        ways, shots = transforms[:2]
        rest, fused = transforms[2:], False
        n, k, replacement = ways.n, shots.k, shots.replacement
        candidates = np.arange(len(dataset.labels), dtype=np.int64)
    else:
        return None
    tail = [type(t) for t in rest]
    if tail not in ([LoadData], [LoadData, RemapLabels], [LoadData, RemapLabels, ConsecutiveLabels]):
        return None
    sizes = dataset.offsets[candidates + 1] - dataset.offsets[candidates]
    if not replacement and sizes.min() < k:
        return None  # some classes are too small: the transforms check each drawn class
    remap = REMAP_NONE
    if RemapLabels in tail:
        remap = REMAP_SHUFFLED if rest[1].shuffle else REMAP_ORDERED
    return TaskPlan(dataset, candidates, n, k, replacement, fused, remap,
                    consecutive=ConsecutiveLabels in tail)
