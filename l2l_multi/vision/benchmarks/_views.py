"""Datasets that present stored images (uint8, compact) as model-ready float32 arrays on demand.

A benchmark keeps each split's images once, as stored, and converts only the samples a task
gathers: ``get_batch`` keeps the task pipeline's single-gather fast path, and memory stays at
the size of the raw images (mini-ImageNet as float32 CHW would take 3.3 GB for its train split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class ConvertedView:
    """Sample ``i`` is ``(convert(images[rows[i]], i), targets[i])``, gathered in batches.

    Args:
        images: ``[M, ...]`` stored images (any dtype, usually uint8).
        rows: int64 ``[N]``: which stored image each sample shows.
        targets: int64 ``[N]`` class labels of the samples.
        convert: ``convert(batch [n, ...], sample_indices int64[n]) -> float32 [n, ...]``.
        class_names: optional names of the classes (index = label).

    Example:
        >>> import numpy as np
        >>> view = ConvertedView(np.arange(6, dtype=np.uint8).reshape(3, 2), np.array([2, 0]),
        ...                      np.array([0, 1]), lambda x, i: x.astype(np.float32) / 2)
        >>> view.get_batch(np.array([0, 1]))[0].tolist()
        [[2.0, 2.5], [0.0, 0.5]]
    """

    supports_batches = True

    def __init__(
        self,
        images: Any,
        rows: np.ndarray,
        targets: np.ndarray,
        convert: Callable[[np.ndarray, np.ndarray], np.ndarray],
        class_names: list | None = None,
    ):
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        if self.rows.shape != self.targets.shape or self.rows.ndim != 1:
            raise ValueError(
                f"rows {self.rows.shape} and targets {self.targets.shape} must be equal 1-d shapes"
            )
        self.convert = convert
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        inputs, targets = self.get_batch(np.array([index], dtype=np.int64))
        return inputs[0], targets[0]

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        return self.convert(np.asarray(self.images[self.rows[indices]]), indices), self.targets[indices]
