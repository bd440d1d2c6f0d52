"""Datasets made of other MetaDatasets: a label subset (FilteredMetaDataset) and a union with
renumbered labels (UnionMetaDataset). Both keep the parent's array bookkeeping, so sampling plans work
on them unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import framework_of
from ._meta_dataset import MetaDataset


class FilteredMetaDataset(MetaDataset):
    """The samples of ``dataset`` whose label is in ``labels``, re-indexed ``0..M-1``.

    Args:
        dataset: a MetaDataset (or any dataset, wrapped first).
        labels: the label values to keep; unknown values raise ValueError.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, FilteredMetaDataset
        >>> data = FilteredMetaDataset(ArrayDataset(np.arange(6.0), np.array([0, 1, 2, 0, 1, 2])), [2])
        >>> len(data), data[1]
        (2, (np.float64(5.0), np.int64(2)))
    """

    def __init__(self, dataset: Any, labels: Sequence[Any]) -> None:
        parent = dataset if isinstance(dataset, MetaDataset) else MetaDataset(dataset)
        if len(labels) == 0:
            raise ValueError("labels is empty: FilteredMetaDataset needs at least one label")
        positions = np.unique(parent.label_positions(labels))
        keep = np.sort(
            np.concatenate([parent.members[parent.offsets[c] : parent.offsets[c + 1]] for c in positions])
        )
        self.parent = parent
        self.dataset = parent
        self.original_indices = keep
        self._size = len(keep)
        self._dicts = None
        self.bookkeeping_path = None
        remap = np.full(len(parent.labels), -1, dtype=np.int64)
        remap[positions] = np.arange(len(positions))
        self._set_bookkeeping([parent.labels[c] for c in positions], remap[parent.label_ids[keep]])

    def __getitem__(self, index: int) -> Any:
        return self.parent[int(self.original_indices[index])]

    def get_batch(self, indices: np.ndarray):
        return self.parent.get_batch(self.original_indices[indices])

    def numpy_arrays(self) -> None:
        return None  # its rows are a subset of the parent's: gather through get_batch

    @property
    def supports_batches(self) -> bool:
        return self.parent.supports_batches


class UnionMetaDataset(MetaDataset):
    """Several datasets concatenated, their labels renumbered so they never collide.

    Sample ``i`` is ``(x, label)`` where ``label`` is an int in ``range(total number of labels)``;
    dataset ``d``'s labels come after those of datasets ``0..d-1``. ``label_origins[label]`` is
    ``(d, original_label)``.

    Args:
        datasets: a non-empty sequence of MetaDatasets (others are wrapped first) whose samples
            are ``(x, y)`` pairs.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, UnionMetaDataset
        >>> a = ArrayDataset(np.zeros(4), np.array([0, 0, 1, 1]))
        >>> b = ArrayDataset(np.ones(2), np.array([0, 0]))
        >>> union = UnionMetaDataset([a, b])
        >>> union.labels, union[4][1], union.label_origins[2]
        ([0, 1, 2], 2, (1, 0))
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        if len(datasets) == 0:
            raise ValueError("datasets is empty: UnionMetaDataset needs at least one dataset")
        parts = [d if isinstance(d, MetaDataset) else MetaDataset(d) for d in datasets]
        self.datasets = parts
        self.dataset = parts
        self._starts = np.cumsum([0] + [len(p) for p in parts])
        self._label_starts = np.cumsum([0] + [len(p.labels) for p in parts])
        self.label_origins = [(d, label) for d, part in enumerate(parts) for label in part.labels]
        self._size = int(self._starts[-1])
        self._dicts = None
        self.bookkeeping_path = None
        label_ids = np.concatenate([p.label_ids + s for p, s in zip(parts, self._label_starts)])
        self._set_bookkeeping(list(range(len(self.label_origins))), label_ids)

    def __getitem__(self, index: int) -> Any:
        if not -self._size <= index < self._size:
            raise IndexError(f"index {index} is out of range for {self._size} samples")
        index %= self._size
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        x, _ = self.datasets[part][index - int(self._starts[part])]
        return x, int(self.label_ids[index])

    def get_batch(self, indices: np.ndarray):
        """``(inputs, targets)`` of many samples: one gather per part, in the order asked.

        ``inputs`` has the type the parts return (numpy, torch or jax); ``targets`` is int64
        ``[len(indices)]`` of union labels. Needs ``supports_batches``.
        """
        if not self.supports_batches:
            raise TypeError("get_batch needs every part of the union to support batches")
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and not (-self._size <= indices.min() and indices.max() < self._size):
            raise IndexError(f"indices must lie in [-{self._size}, {self._size}) for this union")
        indices = indices % self._size
        part_of = np.searchsorted(self._starts, indices, side="right") - 1
        order = np.argsort(part_of, kind="stable")  # gather part by part, then undo the sort
        parts, counts = np.unique(part_of[order], return_counts=True)
        local = indices[order] - self._starts[part_of[order]]
        inputs = _concatenate(
            [
                self.datasets[part].get_batch(chunk)[0]
                for part, chunk in zip(parts, np.split(local, np.cumsum(counts)[:-1]))
            ]
        )
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return _take(inputs, inverse), self.label_ids[indices]

    @property
    def supports_batches(self) -> bool:
        return all(part.supports_batches for part in self.datasets)

    def numpy_arrays(self) -> None:
        return None  # the parts may hold different array types: gather through get_batch


def _concatenate(chunks: list) -> Any:
    """Join arrays of one framework along axis 0 (the framework is imported only if in use)."""
    if len(chunks) == 1:
        return chunks[0]
    kind = framework_of(chunks[0])
    if kind == "torch":
        import torch

        return torch.cat(chunks)
    if kind == "jax":
        import jax.numpy as jnp

        return jnp.concatenate(chunks)
    return np.concatenate(chunks)


def _take(inputs: Any, positions: np.ndarray) -> Any:
    if framework_of(inputs) == "torch":
        import torch

        return inputs[torch.as_tensor(positions, device=inputs.device)]
    return inputs[positions]
