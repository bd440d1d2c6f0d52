"""Task transforms: each refines a task (see ``_task.py``) and returns the new one.

A transform is any callable ``task -> task``; the first receives ``None`` (the whole dataset).
Randomness comes from the stream of the task being built (``_random.current_task_random``), so
a seeded ``TaskDataset`` rebuilds task ``i`` identically in every run and kernel mode.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any

import numpy as np

from .._arrays import to_numpy, to_python_label
from ._kernel_mode import kernels
from ._meta_dataset import MetaDataset
from ._random import current_task_random
from ._task import TaskBatch, TaskDescription


def _positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)


# One MetaDataset per raw dataset object, shared by every transform built on that object, so that
# ``TaskDataset(raw, [NWays(raw, 5), KShots(raw, 1), LoadData(raw)])`` indexes the labels once and
# its transforms agree on one wrapper. Weak values: the entry goes when no transform holds it.
_WRAPPERS: weakref.WeakValueDictionary[int, MetaDataset] = weakref.WeakValueDictionary()


def _as_meta_dataset(dataset: Any) -> MetaDataset:
    """``dataset`` itself when it is a MetaDataset, else the (shared) MetaDataset wrapping it."""
    if isinstance(dataset, MetaDataset):
        return dataset
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(
            f"dataset must be a MetaDataset or a map-style dataset (__len__ and __getitem__(i) -> "
            f"(x, y)), got {type(dataset).__name__}"
        )
    wrapper = _WRAPPERS.get(id(dataset))
    if wrapper is None or wrapper.dataset is not dataset:  # ids are reused after garbage collection
        wrapper = _WRAPPERS[id(dataset)] = MetaDataset(dataset)
    return wrapper


def _description(task: Any, dataset: MetaDataset, transform: str) -> TaskDescription:
    if task is None:
        return TaskDescription(dataset)
    if isinstance(task, TaskDescription):
        return task
    raise TypeError(
        f"{transform} works on task descriptions; it received a {type(task).__name__}. "
        "Place it before LoadData in task_transforms."
    )


def _check_shots(dataset: MetaDataset, classes: np.ndarray, k: int, sizes: np.ndarray) -> None:
    short = np.flatnonzero(sizes < k)
    if short.size:
        c = int(short[0])
        raise ValueError(
            f"k={k} is larger than the {int(sizes[c])} samples of label "
            f"{dataset.labels[int(classes[c])]!r}; lower k or pass replacement=True"
        )


class TaskTransform:
    """Base class: a callable ``task -> task`` bound to a MetaDataset.

    ``dataset`` may also be a plain map-style dataset of ``(x, y)`` (a torch ``TensorDataset``,
    an ``ArrayDataset``): it is wrapped in a MetaDataset, one wrapper per dataset object shared by
    all transforms built on it, which ``TaskDataset(dataset, ...)`` then uses too.
    """

    def __init__(self, dataset: MetaDataset) -> None:
        self.dataset = _as_meta_dataset(dataset)

    def __call__(self, task: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "dataset" and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class NWays(TaskTransform):
    """Keep ``n`` classes drawn at random (without replacement) from those in the task.

    Args:
        dataset: the MetaDataset.
        n: number of classes (ways); at most the number of labels.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, MetaDataset, TaskDataset
        >>> from l2l_multi.data.transforms import NWays, KShots, LoadData
        >>> data = MetaDataset(ArrayDataset(np.zeros((40, 3)), np.arange(40) % 8))
        >>> tasks = TaskDataset(data, [NWays(data, 5), KShots(data, 2), LoadData(data)],
        ...                     seed=0, backend="numpy")
        >>> x, y = tasks.sample(); x.shape, len(set(y.tolist()))
        ((10, 3), 5)
    """

    def __init__(self, dataset: MetaDataset, n: int = 2) -> None:
        super().__init__(dataset)
        self.n = _positive_int(n, "n")
        if self.n > len(self.dataset.labels):
            raise ValueError(
                f"n={self.n} is larger than the number of classes in the dataset ({len(self.dataset.labels)})"
            )

    def __call__(self, task: Any) -> TaskDescription:
        task = _description(task, self.dataset, "NWays")
        candidates = task.candidate_classes()
        if self.n > len(candidates):
            raise ValueError(
                f"n={self.n} is larger than the number of classes in the task ({len(candidates)})"
            )
        seed = current_task_random().next_seed()
        chosen = candidates[kernels().choose(len(candidates), self.n, seed)]
        if task.is_lazy:
            return TaskDescription(self.dataset, classes=chosen)
        lookup = np.full(len(self.dataset.labels), -1, dtype=np.int64)
        lookup[chosen] = np.arange(self.n)
        rank = lookup[task.label_ids()]
        keep = np.flatnonzero(rank >= 0)
        keep = keep[np.argsort(rank[keep], kind="stable")]  # class-major, in drawn order
        return task.select(keep, classes=chosen)


class KShots(TaskTransform):
    """Keep ``k`` samples of every class in the task.

    Args:
        dataset: the MetaDataset.
        k: samples per class.
        replacement: draw with replacement (a class may then have fewer than ``k`` samples).

    Returns a description whose samples are class-major: the ``k`` shots of the first class,
    then of the second, ...
    """

    def __init__(self, dataset: MetaDataset, k: int = 1, replacement: bool = False) -> None:
        super().__init__(dataset)
        self.k = _positive_int(k, "k")
        self.replacement = bool(replacement)

    def __call__(self, task: Any) -> TaskDescription:
        task = _description(task, self.dataset, "KShots")
        data = self.dataset
        classes = task.candidate_classes()
        seed = current_task_random().next_seed()
        if task.is_lazy:
            if not self.replacement:
                _check_shots(data, classes, self.k, data.offsets[classes + 1] - data.offsets[classes])
            indices = kernels().sample_shots(
                data.offsets, data.members, classes, self.k, self.replacement, seed
            )
            return TaskDescription(data, classes=classes, indices=indices)
        lookup = np.full(len(data.labels), -1, dtype=np.int64)
        lookup[classes] = np.arange(len(classes))
        local = lookup[task.label_ids()]
        present = np.flatnonzero(local >= 0)
        offsets, members = kernels().group_by_label(local[present], len(classes))
        if not self.replacement:
            _check_shots(data, classes, self.k, np.diff(offsets))
        picks = kernels().sample_shots(
            offsets,
            present[members],
            np.arange(len(classes), dtype=np.int64),
            self.k,
            self.replacement,
            seed,
        )
        return task.select(picks, classes=classes)


class FusedNWaysKShots(TaskTransform):
    """NWays, then KShots, in one kernel call; optionally restricted to ``filter_labels``.

    Args:
        dataset: the MetaDataset.
        n: ways; k: shots per class; replacement: sample shots with replacement.
        filter_labels: optional label values to draw the classes from.
    """

    def __init__(
        self, dataset, n: int = 2, k: int = 1, replacement: bool = False, filter_labels=None
    ) -> None:
        super().__init__(dataset)
        self.n = _positive_int(n, "n")
        self.k = _positive_int(k, "k")
        self.replacement = bool(replacement)
        self.filter_labels = None if filter_labels is None else list(filter_labels)
        if self.filter_labels is None:
            self._candidates = np.arange(len(self.dataset.labels), dtype=np.int64)
        else:
            self._candidates = self.dataset.label_positions(self.filter_labels, "filter_labels")
        if self.n > len(self._candidates):
            raise ValueError(
                f"n={self.n} is larger than the number of classes available ({len(self._candidates)})"
            )
        if not self.replacement:
            data = self.dataset
            sizes = data.offsets[self._candidates + 1] - data.offsets[self._candidates]
            _check_shots(data, self._candidates, self.k, sizes)
        self._filter = None if filter_labels is None else FilterLabels(self.dataset, self.filter_labels)
        self._ways = NWays(self.dataset, self.n)
        self._shots = KShots(self.dataset, self.k, self.replacement)

    def __call__(self, task: Any) -> TaskDescription:
        task = _description(task, self.dataset, "FusedNWaysKShots")
        if not task.is_lazy or task.classes is not None:
            # an already narrowed task: filter, then the unfused transforms (same stream use)
            if self._filter is not None:
                task = self._filter(task)
            return self._shots(self._ways(task))
        data = self.dataset
        classes, indices = kernels().fused_ways_shots(
            data.offsets,
            data.members,
            self._candidates,
            self.n,
            self.k,
            self.replacement,
            current_task_random().next_seed(),
        )
        return TaskDescription(data, classes=classes, indices=indices)


class FilterLabels(TaskTransform):
    """Keep only the samples whose label is one of ``labels`` (label values, not positions)."""

    def __init__(self, dataset: MetaDataset, labels) -> None:
        super().__init__(dataset)
        self.labels = list(labels)
        if not self.labels:
            raise ValueError("labels is empty: FilterLabels needs at least one label")
        self._positions = self.dataset.label_positions(self.labels, "labels")

    def __call__(self, task: Any) -> TaskDescription:
        task = _description(task, self.dataset, "FilterLabels")
        if task.is_lazy:
            classes = task.candidate_classes()
            return TaskDescription(self.dataset, classes=classes[np.isin(classes, self._positions)])
        keep = np.flatnonzero(np.isin(task.label_ids(), self._positions))
        classes = None if task.classes is None else task.classes[np.isin(task.classes, self._positions)]
        return task.select(keep, classes=classes)


class LoadData(TaskTransform):
    """Load the described samples: returns a ``TaskBatch`` (batched arrays) when the dataset
    supports batched access (``ArrayDataset``, ``OnDeviceDataset``), else a list of ``(x, y)``."""

    def __call__(self, task: Any):
        task = _description(task, self.dataset, "LoadData")
        indices = task.resolve_indices()
        if self.dataset.supports_batches:
            inputs, targets = self.dataset.get_batch(indices)
            if task.targets is not None:
                targets = task.targets
            return TaskBatch(inputs, targets, indices)
        pairs = [self.dataset[i] for i in indices.tolist()]
        if task.targets is not None:
            pairs = [(pair[0], y) for pair, y in zip(pairs, task.targets.tolist())]
        return [(pair[0], pair[1]) for pair in pairs]


def _task_labels(task: Any) -> list:
    if isinstance(task, TaskBatch):
        return to_numpy(task.targets).tolist()
    if isinstance(task, TaskDescription):
        return (task.targets if task.targets is not None else task.label_ids()).tolist()
    return [to_python_label(pair[1]) for pair in task]


class RemapLabels(TaskTransform):
    """Relabel the task's classes ``0..n-1`` (in order of first appearance; shuffled if asked).

    Works before LoadData (the new labels replace the dataset's at load time) and after it.

    Args:
        dataset: the MetaDataset.
        shuffle: assign the new labels in a random order.
    """

    def __init__(self, dataset: MetaDataset, shuffle: bool = True) -> None:
        super().__init__(dataset)
        self.shuffle = bool(shuffle)

    def __call__(self, task: Any):
        if task is None:
            task = TaskDescription(self.dataset)
        labels = _task_labels(task)
        distinct = list(dict.fromkeys(labels))
        order = np.arange(len(distinct))
        if self.shuffle:
            order = kernels().choose(len(distinct), len(distinct), current_task_random().next_seed())
        mapping = dict(zip(distinct, order.tolist()))
        new = np.fromiter((mapping[y] for y in labels), dtype=np.int64, count=len(labels))
        if isinstance(task, TaskDescription):
            return TaskDescription(task.dataset, task.classes, task.resolve_indices(), new)
        if isinstance(task, TaskBatch):
            return TaskBatch(task.inputs, new, task.indices)
        return [(pair[0], y) for pair, y in zip(task, new.tolist())]


class ConsecutiveLabels(TaskTransform):
    """Reorder the task's samples so that equal labels are consecutive, labels ascending
    (stable: samples of one class keep their order)."""

    def __call__(self, task: Any):
        if task is None:
            task = TaskDescription(self.dataset)
        order = np.argsort(np.asarray(_task_labels(task)), kind="stable")
        if isinstance(task, TaskDescription):
            return task.select(order, classes=task.classes)
        if isinstance(task, TaskBatch):
            return task.reordered(order)
        return [task[i] for i in order.tolist()]
