"""The two shapes a task takes while its transforms run.

Before ``LoadData`` a task is a ``TaskDescription``: which samples (dataset indices, int64
arrays), in which class order, and optionally labels that replace the dataset's at load time.
After ``LoadData`` it is a ``TaskBatch`` (inputs and targets batched as arrays, viewed as a
sequence of ``(x, y)`` pairs) or, for datasets without batched access, a list of ``(x, y)``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


class TaskDescription:
    """Which samples make up a task, before any data is loaded.

    Attributes:
        dataset: the MetaDataset the indices refer to.
        classes: int64[n] label positions (into ``dataset.labels``) in task order, or None.
        indices: int64[m] dataset indices, or None meaning "every sample of ``classes``"
            (or of the whole dataset when ``classes`` is None too): kept lazy so that NWays
            followed by KShots never touches the unsampled samples.
        targets: int64[m] labels that replace the dataset's labels at load time, or None.
    """

    __slots__ = ("dataset", "classes", "indices", "targets")

    def __init__(self, dataset, classes=None, indices=None, targets=None) -> None:
        self.dataset = dataset
        self.classes = classes
        self.indices = indices
        self.targets = targets

    @property
    def is_lazy(self) -> bool:
        return self.indices is None

    def resolve_indices(self) -> np.ndarray:
        """int64[m]: the dataset indices of the task's samples, in task order."""
        if self.indices is not None:
            return self.indices
        data = self.dataset
        if self.classes is None:
            return np.arange(len(data), dtype=np.int64)
        return np.concatenate(
            [data.members[data.offsets[c] : data.offsets[c + 1]] for c in self.classes.tolist()]
        )

    def label_ids(self) -> np.ndarray:
        """int64[m]: the label position of each sample."""
        return self.dataset.label_ids[self.resolve_indices()]

    def candidate_classes(self) -> np.ndarray:
        """int64: the label positions present, in task order (first appearance)."""
        if self.is_lazy:
            if self.classes is None:
                return np.arange(len(self.dataset.labels), dtype=np.int64)
            return self.classes
        if self.classes is not None:
            return self.classes
        ids = self.label_ids()
        _, first = np.unique(ids, return_index=True)
        return ids[np.sort(first)]

    def select(self, positions: np.ndarray, classes=None) -> TaskDescription:
        """A description keeping the samples at ``positions`` (int64) of this one."""
        indices = self.resolve_indices()[positions]
        targets = None if self.targets is None else self.targets[positions]
        return TaskDescription(self.dataset, classes, indices, targets)

    def __len__(self) -> int:
        return len(self.resolve_indices())

    def __repr__(self) -> str:
        ways = "?" if self.classes is None else len(self.classes)
        size = "lazy" if self.is_lazy else len(self.indices)
        return f"TaskDescription(ways={ways}, samples={size})"


def take(values: Any, positions: np.ndarray) -> Any:
    """``values[positions]`` along the first axis for numpy, torch or jax arrays."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(values, torch.Tensor):
        return values[torch.as_tensor(positions, device=values.device)]
    return values[positions]


class TaskBatch(Sequence):
    """A loaded task: ``inputs[m, ...]`` and ``targets[m]`` arrays, iterable as ``(x, y)`` pairs.

    The arrays are numpy, or framework arrays when the dataset keeps its data on a device
    (``OnDeviceDataset``). ``indices`` (int64[m]) are the dataset indices of the samples.
    """

    __slots__ = ("inputs", "targets", "indices")

    def __init__(self, inputs: Any, targets: Any, indices: np.ndarray | None = None) -> None:
        self.inputs = inputs
        self.targets = targets
        self.indices = indices

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            positions = np.arange(len(self))[i]
            return self.reordered(positions)
        return self.inputs[i], self.targets[i]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for i in range(len(self)):
            yield self.inputs[i], self.targets[i]

    def reordered(self, positions: np.ndarray) -> TaskBatch:
        indices = None if self.indices is None else self.indices[positions]
        return TaskBatch(take(self.inputs, positions), take(self.targets, positions), indices)

    def __repr__(self) -> str:
        return f"TaskBatch({len(self)} samples, inputs {tuple(self.inputs.shape)})"
