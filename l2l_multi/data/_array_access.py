"""Datasets whose samples are rows of two arrays, so that a task can gather its rows at once.

``MetaDataset`` asks ``array_source(dataset)`` once. Three kinds are recognised:

* ``"batches"``: our own protocol, a ``get_batch(indices)`` method and a true ``supports_batches``
  (``ArrayDataset``, ``OnDeviceDataset``, the vision datasets without transforms);
* ``"tensors"``: a ``torch.utils.data.TensorDataset`` of exactly two tensors whose class keeps
  TensorDataset's own ``__getitem__`` (sample ``i`` is then ``(tensors[0][i], tensors[1][i])``);
* ``"data_targets"``: torchvision style, array attributes ``data`` and ``targets`` of the dataset's
  length, no ``transform`` / ``target_transform`` / ``transforms`` set, and ``dataset[i]`` equal to
  ``(data[i], targets[i])`` (same input type, dtype, shape and values; equal label) at eight spread
  indices. torchvision's own MNIST/CIFAR classes return PIL images and therefore fail this check.

A dataset can refuse all of this by setting ``supports_batches = False``. Transforms set after the
MetaDataset was made are seen: availability is re-checked on every access.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .._arrays import framework_of, to_python_label
from ._task import take

_TRANSFORM_ATTRIBUTES = ("transform", "target_transform", "transforms")
_SPOT_CHECKS = 8


class ArraySource:
    """Row access to a recognised dataset (see the module docstring for the kinds).

    ``available()`` says whether batched access is valid now; ``gather(indices)`` returns
    ``(inputs[m, ...], targets[m])`` in the dataset's own array type for int64 ``indices[m]``;
    ``numpy_arrays()`` returns zero-copy numpy views of both arrays, or None when they have none
    (a CUDA tensor, a tensor requiring grad) or batched access is off now.
    """

    __slots__ = ("dataset", "kind", "_plain", "_views_of", "_views")

    def __init__(self, dataset: Any, kind: str) -> None:
        self.dataset = dataset
        self.kind = kind
        self._plain = kind == "batches" and _plain_get_batch(dataset)  # get_batch is a row gather
        self._views_of: tuple | None = None  # the (inputs, targets) objects the views were made of
        self._views: tuple | None = None

    def __getstate__(self) -> tuple:
        return self.dataset, self.kind  # numpy views would pickle a second copy of the data

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)

    def arrays(self) -> tuple[Any, Any] | None:
        """The dataset's current ``(inputs, targets)`` arrays, or None when rows cannot be
        gathered now (a transform was set, the protocol says no)."""
        dataset = self.dataset
        if self.kind == "tensors":
            tensors = dataset.tensors
            return (tensors[0], tensors[1]) if len(tensors) == 2 else None
        if self.kind == "data_targets":
            if _has_transform(dataset):
                return None
            return dataset.data, dataset.targets
        if not getattr(dataset, "supports_batches", False):
            return None
        if self._plain:
            inputs, targets = dataset.inputs, dataset.targets
            if type(inputs) is np.ndarray and type(targets) is np.ndarray:
                return inputs, targets
        return None  # batches, but through the dataset's own get_batch

    def available(self) -> bool:
        if self.kind == "batches":
            return bool(getattr(self.dataset, "supports_batches", False))
        return self.arrays() is not None

    def gather(self, indices: np.ndarray) -> tuple[Any, Any]:
        if self.kind == "batches":
            return self.dataset.get_batch(indices)
        arrays = self.arrays()
        if arrays is None:
            raise TypeError(
                f"{type(self.dataset).__name__} has a transform set: its samples are no "
                "longer rows of its arrays, so they cannot be gathered in a batch"
            )
        return take(arrays[0], indices), take(arrays[1], indices)

    def numpy_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Zero-copy numpy views ``(inputs[N, ...], targets[N])`` of the current arrays (made
        again only when the dataset's arrays are replaced), or None (see the class docstring)."""
        arrays = self.arrays()
        if arrays is None:
            return None
        if self._views_of is None or arrays[0] is not self._views_of[0] or arrays[1] is not self._views_of[1]:
            self._views_of = arrays
            views = (_numpy_view(arrays[0]), _numpy_view(arrays[1]))
            self._views = None if views[0] is None or views[1] is None else views
        return self._views

    def __repr__(self) -> str:
        return f"ArraySource({type(self.dataset).__name__}, kind={self.kind!r})"


def array_source(dataset: Any) -> ArraySource | None:
    """The ``ArraySource`` of ``dataset``, or None when its samples are not provably array rows."""
    if hasattr(type(dataset), "supports_batches") and hasattr(dataset, "get_batch"):
        return ArraySource(dataset, "batches")  # our protocol; its flag is read on each access
    if getattr(dataset, "supports_batches", None) is False:
        return None  # the dataset refuses batched access
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dataset, torch.utils.data.TensorDataset):
        if (
            type(dataset).__getitem__ is torch.utils.data.TensorDataset.__getitem__
            and len(dataset.tensors) == 2
        ):
            return ArraySource(dataset, "tensors")
        return None
    if _looks_like_rows(dataset):
        return ArraySource(dataset, "data_targets")
    return None


def source_targets(source: ArraySource | None) -> Any:
    """The labels array of a ``"tensors"`` source (TensorDataset has no ``targets``), else None."""
    if source is not None and source.kind == "tensors":
        return source.dataset.tensors[1]
    return None


def _plain_get_batch(dataset: Any) -> bool:
    from ._datasets import ArrayDataset

    return isinstance(dataset, ArrayDataset) and type(dataset).get_batch is ArrayDataset.get_batch


def _has_transform(dataset: Any) -> bool:
    return any(getattr(dataset, name, None) is not None for name in _TRANSFORM_ATTRIBUTES)


def _looks_like_rows(dataset: Any) -> bool:
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if not (_is_array(data) and _is_array(targets)):
        return False
    try:
        size = len(dataset)
    except TypeError:
        return False
    if not (
        size > 0 and data.ndim >= 1 and len(data) == size and targets.ndim == 1 and len(targets) == size
    ) or _has_transform(dataset):
        return False
    for index in sorted({int(i) for i in np.linspace(0, size - 1, _SPOT_CHECKS)}):
        try:
            sample = dataset[index]
            x, y = sample
        except Exception:  # any failure means "not provably rows"
            return False
        if not (_same_array(x, data[index]) and to_python_label(y) == to_python_label(targets[index])):
            return False
    return True


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or framework_of(value) == "torch"


def _same_array(a: Any, b: Any) -> bool:
    if type(a) is not type(b) or getattr(a, "dtype", None) != getattr(b, "dtype", None):
        return False
    if tuple(a.shape) != tuple(b.shape):
        return False
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    torch = sys.modules["torch"]
    return bool(torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, 0, 0, equal_nan=True)))


def _numpy_view(array: Any) -> np.ndarray | None:
    if isinstance(array, np.ndarray):
        return array
    if framework_of(array) == "torch" and array.device.type == "cpu" and not array.requires_grad:
        try:
            return array.numpy()  # zero-copy: shares the tensor's memory
        except (TypeError, RuntimeError):  # bfloat16 and other dtypes numpy lacks
            return None
    return None
