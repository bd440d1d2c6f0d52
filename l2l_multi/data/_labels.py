"""Every sample's label of a map-style dataset, as sorted distinct labels and int64 ids."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._arrays import to_numpy, to_python_label


def canonical_labels(values: Any) -> tuple[list, np.ndarray]:
    """Unique labels (sorted when comparable, else in order of appearance) and int64 ids."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf" and values.ndim == 1:
        unique, ids = np.unique(values, return_inverse=True)
        return [v.item() for v in unique], ids.astype(np.int64)
    values = [to_python_label(v) for v in values]
    for index, value in enumerate(values):
        if not isinstance(value, Hashable):
            raise ValueError(
                f"labels must be hashable; the label of sample {index} is a {type(value).__name__}: {value!r}"
            )
    unique = list(dict.fromkeys(values))
    try:
        unique = sorted(unique)
    except TypeError:
        pass  # mixed, incomparable label types keep their order of appearance
    position = {label: i for i, label in enumerate(unique)}
    return unique, np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))


def read_targets(dataset: Any, size: int) -> Any:
    """Every sample's label, from a ``targets``/``labels`` attribute when there is one."""
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if values is not None and not callable(values) and not isinstance(values, (str, bytes)):
            try:
                if len(values) == size:
                    if not isinstance(values, (list, tuple, np.ndarray)):
                        values = to_numpy(values)
                    return values
            except TypeError:
                pass
    # No label attribute: load every sample once (slow for big datasets; cache it).
    iterator = range(size)
    if size >= 10_000:
        iterator = tqdm(iterator, desc="indexing labels", unit="sample")
    labels = []
    for i in iterator:
        sample = dataset[i]
        if not isinstance(sample, (tuple, list)) or len(sample) < 2:
            raise TypeError(
                f"a MetaDataset's samples must be (x, y) pairs; dataset[{i}] is a "
                f"{type(sample).__name__}: {sample!r:.80}"
            )
        labels.append(sample[1])
    return labels
