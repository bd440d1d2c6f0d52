"""A fast path for the standard few-shot pipeline.

``[NWays, KShots | FusedNWaysKShots], LoadData, [RemapLabels], [ConsecutiveLabels after it]`` on a
dataset with batched access is recognised when a TaskDataset is made and run by one kernel call
per batch of tasks (a ``PlanSampler`` bound to the plan, which keeps its buffers between calls;
``plan_tasks`` is the same as one function), followed by one gather of the inputs (from zero-copy
numpy views of the arrays where they have them). The kernel draws the same seeds as the
transforms would one by one, so the tasks are identical to those of the transform chain (tests
check this); any other pipeline takes the general path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernel_mode
from ._kernel_mode import kernels
from ._kernels_py import REMAP_NONE, REMAP_ORDERED, REMAP_SHUFFLED
from ._meta_dataset import MetaDataset
from ._task import TaskBatch
from ._transforms import ConsecutiveLabels, FusedNWaysKShots, KShots, LoadData, NWays, RemapLabels


class TaskPlan:
    """The fusable pipeline's parameters; ``build(base_seed, task_indices)`` makes the tasks."""

    def __init__(
        self,
        dataset: MetaDataset,
        candidates: np.ndarray,
        n: int,
        k: int,
        replacement: bool,
        fused: bool,
        remap: int,
        consecutive: bool,
    ) -> None:
        self.dataset = dataset
        self.candidates = candidates
        self.n, self.k, self.replacement = n, k, replacement
        self.fused, self.remap, self.consecutive = fused, remap, consecutive
        self._samplers: dict[str, Any] = {}  # a PlanSampler per kernel mode, made on first use

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_samplers": {}}  # rebuilt where unpickled (compiled or not)

    def sampler(self) -> Any:
        """The ``PlanSampler`` of the current kernel mode, bound to this plan's arguments."""
        mode = _kernel_mode._mode
        sampler = self._samplers.get(mode)
        if sampler is None:
            data = self.dataset
            sampler = self._samplers[mode] = kernels().PlanSampler(
                data.offsets,
                data.members,
                self.candidates,
                self.n,
                self.k,
                self.replacement,
                self.fused,
                self.remap,
                self.consecutive,
            )
        return sampler

    def build(
        self, base_seed: int, task_indices: np.ndarray, prefer_numpy: bool = False
    ) -> tuple[Any, Any, np.ndarray]:
        """``(inputs [B, n*k, ...], targets [B, n*k], indices int64[B, n*k])`` for int64
        ``task_indices[B]``; inputs in the dataset's array type, or numpy when ``prefer_numpy``
        and the arrays have a numpy view."""
        indices, labels = self.sampler().plan(base_seed, task_indices)
        inputs, targets = self._gather(indices.ravel(), prefer_numpy)
        inputs = inputs.reshape(indices.shape + tuple(inputs.shape[1:]))
        targets = labels if self.remap != REMAP_NONE else targets.reshape(indices.shape)
        return inputs, targets, indices

    def sample_one(self, base_seed: int, task_index: int) -> tuple[Any, Any] | None:
        """``(inputs [n*k, ...], targets [n*k])`` of one task (numpy where the arrays have a numpy
        view), or None when the dataset's batched access is off now (e.g. a transform was set)."""
        arrays = self.dataset.numpy_arrays()
        if arrays is None and not self.dataset.supports_batches:
            return None
        indices, labels = self.sampler().plan_one(base_seed, task_index)
        if arrays is None:
            inputs, targets = self.dataset.get_batch(indices)
            return inputs, (labels if self.remap != REMAP_NONE else targets)
        inputs = arrays[0].take(indices, axis=0)
        return inputs, (labels if self.remap != REMAP_NONE else arrays[1].take(indices, axis=0))

    def _gather(self, indices: np.ndarray, prefer_numpy: bool) -> tuple[Any, Any]:
        arrays = self.dataset.numpy_arrays() if prefer_numpy else None
        if arrays is None:
            return self.dataset.get_batch(indices)
        return arrays[0].take(indices, axis=0), arrays[1].take(indices, axis=0)

    def build_one(self, base_seed: int, task_index: int) -> TaskBatch:
        inputs, targets, indices = self.build(base_seed, np.array([task_index], dtype=np.int64))
        return TaskBatch(inputs[0], targets[0], indices[0])


def compile_plan(dataset: MetaDataset, transforms: list) -> TaskPlan | None:
    """The TaskPlan equivalent to ``transforms``, or None when they are not the standard chain."""
    if not dataset.supports_batches or any(getattr(t, "dataset", None) is not dataset for t in transforms):
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
    return TaskPlan(
        dataset, candidates, n, k, replacement, fused, remap, consecutive=ConsecutiveLabels in tail
    )
