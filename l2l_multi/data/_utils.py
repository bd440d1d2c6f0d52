"""Small helpers around tasks: splitting them and iterating forever."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .._arrays import to_numpy
from ._task import take


def partition_task(data: Any, labels: Any, shots: int = 1) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Split a task into support (adaptation) and query (evaluation) sets.

    The first ``shots`` samples of every class go to the support set, the rest to the query set.

    Args:
        data: ``[m, ...]`` array (numpy, torch or jax); labels: ``[m]`` array of the same kind.
        shots: support samples per class (int >= 0; every class must have that many). With 0 the
            support set is empty (``[0, ...]``) and the query set holds the whole task, as in
            learn2learn.

    Returns:
        ``((support_data, support_labels), (query_data, query_labels))``, same array type as the
        input, classes in order of first appearance.

    Example:
        >>> import numpy as np
        >>> (xs, ys), (xq, yq) = partition_task(np.arange(6), np.array([0, 0, 0, 1, 1, 1]), shots=1)
        >>> xs.tolist(), xq.tolist()
        ([0, 3], [1, 2, 4, 5])
    """
    if isinstance(shots, bool) or not isinstance(shots, numbers.Integral) or shots < 0:
        raise ValueError(f"shots must be a non-negative integer, got {shots!r}")
    _check_array("data", data, 1, "[m, ...]")
    label_values = to_numpy(labels)
    if label_values.ndim != 1 or len(label_values) != len(data):
        raise ValueError(
            f"labels must have shape [{len(data)}] to match data; got {tuple(label_values.shape)}"
        )
    support, query = _split_positions(label_values, shots)
    return (take(data, support), take(labels, support)), (take(data, query), take(labels, query))


def _check_array(argument: str, value: Any, min_ndim: int, layout: str) -> None:
    ndim = getattr(value, "ndim", None)
    if not isinstance(ndim, int) or not hasattr(value, "shape"):
        raise TypeError(
            f"{argument} must be an array {layout} (numpy, torch or jax), got {type(value).__name__}; "
            "convert lists with np.asarray first"
        )
    if ndim < min_ndim:
        raise ValueError(f"{argument} must have shape {layout}, got {tuple(value.shape)}")


def _split_positions(label_values: np.ndarray, shots: int) -> tuple[np.ndarray, np.ndarray]:
    support, query = [], []
    _, first = np.unique(label_values, return_index=True)
    for label in label_values[np.sort(first)]:
        positions = np.flatnonzero(label_values == label)
        if len(positions) < shots:
            raise ValueError(f"shots={shots} but label {label.item()!r} has only {len(positions)} samples")
        support.append(positions[:shots])
        query.append(positions[shots:])
    return np.concatenate(support), np.concatenate(query)


def partition_task_batch(data: Any, labels: Any, shots: int = 1) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``partition_task`` for a stacked batch of tasks (``TaskDataset.sample_batch``).

    Args:
        data: ``[B, m, ...]`` array (numpy, torch or jax); labels: ``[B, m]`` integer array.
        shots: support samples per class (int >= 0); every task must split into equal-sized parts.

    Returns:
        ``((support_data [B, s, ...], support_labels [B, s]), (query_data [B, q, ...],
        query_labels [B, q]))`` in the input's array type.

    Example:
        >>> import numpy as np
        >>> y = np.array([[0, 0, 1, 1], [1, 0, 1, 0]])
        >>> (xs, ys), (xq, yq) = partition_task_batch(np.arange(8).reshape(2, 4), y, shots=1)
        >>> xs.tolist(), yq.tolist()
        ([[0, 2], [4, 5]], [[0, 1], [1, 0]])
    """
    if isinstance(shots, bool) or not isinstance(shots, numbers.Integral) or shots < 0:
        raise ValueError(f"shots must be a non-negative integer, got {shots!r}")
    _check_array("data", data, 2, "[B, m, ...]")
    label_values = to_numpy(labels)
    if label_values.ndim != 2 or label_values.shape != tuple(data.shape[:2]):
        raise ValueError(
            f"labels must have shape [B, m] = {tuple(data.shape[:2])} to match data; got {label_values.shape}"
        )
    splits = [_split_positions(task_labels, shots) for task_labels in label_values]
    if len({(len(s), len(q)) for s, q in splits}) != 1:
        raise ValueError(
            "tasks of the batch split into different support/query sizes; use fixed ways and shots"
        )
    support = np.stack([s for s, _ in splits])
    query = np.stack([q for _, q in splits])
    rows = np.arange(len(splits))[:, None]

    def gather(values: Any, positions: np.ndarray) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(values, torch.Tensor):
            device = values.device
            return values[torch.as_tensor(rows, device=device), torch.as_tensor(positions, device=device)]
        return values[rows, positions]

    return (gather(data, support), gather(labels, support)), (gather(data, query), gather(labels, query))


class InfiniteIterator:
    """Iterate over ``iterable`` forever, starting it again whenever it is exhausted.

    Example:
        >>> it = InfiniteIterator([1, 2]); [next(it) for _ in range(5)]
        [1, 2, 1, 2, 1]
    """

    def __init__(self, iterable: Iterable) -> None:
        self.iterable = iterable
        self._iterator = iter(iterable)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.iterable)
            try:
                return next(self._iterator)
            except StopIteration:
                raise ValueError("iterable is empty: InfiniteIterator has nothing to repeat") from None
