"""Datasets with batched access: arrays in memory, on a device, or generated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._arrays import to_numpy
from ._collate import resolve_output
from ._random import check_numpy_seed
from ._task import take


class ArrayDataset:
    """A map-style dataset over two arrays: sample ``i`` is ``(inputs[i], targets[i])``.

    Supports batched loading (``get_batch``), which ``LoadData`` uses instead of one
    ``__getitem__`` per sample.

    Args:
        inputs: array of shape ``[N, ...]`` (numpy or anything ``np.asarray`` reads).
        targets: array of shape ``[N]`` of labels (ints, or anything hashable).

    Example:
        >>> import numpy as np
        >>> data = ArrayDataset(np.zeros((3, 2), np.float32), np.array([0, 1, 1]))
        >>> len(data), data[2][1]
        (3, np.int64(1))
    """

    supports_batches = True

    def __init__(self, inputs: Any, targets: Any) -> None:
        self.inputs = np.asarray(inputs)
        self.targets = np.asarray(targets)
        if self.inputs.ndim == 0 or self.targets.ndim != 1:
            raise ValueError(
                f"inputs must have a leading sample axis and targets must be 1-d; got shapes "
                f"{self.inputs.shape} and {self.targets.shape}"
            )
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"inputs has {len(self.inputs)} samples but targets has {len(self.targets)}")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.inputs[index], self.targets[index]

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs[indices], targets[indices])`` for int64 ``indices``."""
        return self.inputs[indices], self.targets[indices]


class OnDeviceDataset:
    """A dataset copied once into framework arrays on a device, for fast task loading.

    Every sample is loaded (through ``transform`` when given), stacked and moved to ``device``
    as arrays of the backend current at construction; tasks then gather rows on the device.

    Args:
        dataset: a map-style dataset of ``(x, y)`` with equal-shaped ``x``.
        device: a torch device / jax device, or None for the default.
        transform: optional ``x -> x`` applied once per sample while loading.
        backend: "torch", "jax" or "numpy"; None binds the current backend.

    Attributes:
        inputs: ``[N, ...]`` array; targets: ``[N]`` array (both of the bound backend).
    """

    supports_batches = True

    def __init__(
        self, dataset: Any, device: Any = None, transform: Callable | None = None, backend: str | None = None
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("dataset is empty: OnDeviceDataset needs at least one sample")
        self.backend, arrays = resolve_output(backend)
        self.device = device
        if transform is None and getattr(dataset, "supports_batches", False):
            inputs, targets = dataset.get_batch(np.arange(len(dataset)))
        else:
            xs, ys = [], []
            for i in tqdm(
                range(len(dataset)), desc="loading to device", unit="sample", disable=len(dataset) < 10_000
            ):
                x, y = dataset[i][:2]
                xs.append(to_numpy(transform(x) if transform is not None else x))
                ys.append(to_numpy(y))
            inputs, targets = np.stack(xs), np.asarray(ys)
        self.inputs = arrays.asarray(inputs, device)
        self.targets = arrays.asarray(targets, device)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.inputs[index], self.targets[index]

    def get_batch(self, indices: np.ndarray) -> tuple[Any, Any]:
        return take(self.inputs, indices), take(self.targets, indices)


def synthetic_classification(
    num_classes: int = 64,
    samples_per_class: int = 20,
    shape: tuple[int, ...] = (16,),
    noise: float = 0.5,
    seed: int = 0,
) -> ArrayDataset:
    """A built-in few-shot dataset needing no download: Gaussian clusters around class centres.

    Class ``c``'s centre is drawn from N(0, I); its samples are centre + N(0, noise^2 I).

    Returns:
        ArrayDataset with inputs float32 ``[num_classes * samples_per_class, *shape]`` and
        targets int64 (class-major order).

    Example:
        >>> data = synthetic_classification(num_classes=5, samples_per_class=3, shape=(2,))
        >>> data.inputs.shape, data.inputs.dtype, data.targets[:4].tolist()
        ((15, 2), dtype('float32'), [0, 0, 0, 1])
    """
    for name, value in (("num_classes", num_classes), ("samples_per_class", samples_per_class)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in shape
    ):
        raise ValueError(f"shape must be a tuple of positive ints, got {shape!r}")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
        raise ValueError(f"noise must be a float >= 0, got {noise!r}")
    rng = np.random.default_rng(check_numpy_seed(seed))
    centres = rng.standard_normal((num_classes, *shape))
    targets = np.repeat(np.arange(num_classes, dtype=np.int64), samples_per_class)
    inputs = centres[targets] + noise * rng.standard_normal((len(targets), *shape))
    return ArrayDataset(inputs.astype(np.float32), targets)
