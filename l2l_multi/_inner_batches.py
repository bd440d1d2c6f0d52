"""Inner-loop minibatches, one rule for both backends (Reptile's ``batch_size=``).

Nichol et al. (2018) adapt each task with several inner steps, each on a minibatch of the task's
training samples (Omniglot: 5 steps on batches of 10 drawn from 10 samples per class). Here
step ``i`` takes the ``batch_size`` samples at positions ``i * batch_size ...`` of the support
set put in *class-interleaved* order (the first sample of each class in order of appearance,
then the second of each, ...), wrapping around at the end. So every batch of ``k * ways``
samples holds ``k`` of each class, and a support set sampled class by class (as
``TaskDataset`` samples it) is not cut into one-class batches. The order is a function of the
labels only, so it is the same on both backends and under ``jit``/``vmap``.

:func:`batch_plan` is the static part (which positions of the interleaved order each step
takes); each backend computes the interleaved order of its labels with its own ``argsort``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def check_batch_size(batch_size: Any, argument: str = "batch_size") -> int | None:
    """``batch_size`` when it is ``None`` (every step on the whole support set) or an int >= 1;
    else ``ValueError`` naming ``argument``."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(
            f"{argument}={batch_size!r} must be None (each inner step on the whole support set) or an "
            "int >= 1 (samples per inner step)"
        )
    return int(batch_size)


def batch_plan(support_size: int, batch_size: int | None, steps: int) -> np.ndarray | None:
    """Positions ``[steps, batch_size]`` (int64) into the class-interleaved support order, or
    ``None`` when every step takes the whole support set (``batch_size`` None or not smaller than
    ``support_size``).

    Example:
        >>> batch_plan(5, 2, 3).tolist()
        [[0, 1], [2, 3], [4, 0]]
        >>> batch_plan(5, 5, 3) is None
        True
    """
    if batch_size is None or batch_size >= support_size:
        return None
    start = np.arange(steps, dtype=np.int64)[:, None] * batch_size
    return (start + np.arange(batch_size, dtype=np.int64)) % support_size


def interleaved_order_numpy(labels: Any) -> np.ndarray:
    """The class-interleaved order of ``labels`` ``[s]`` (ints) as positions ``[s]`` (numpy; the
    backends compute the same with their own arrays, see the module docstring).

    Example:
        >>> interleaved_order_numpy(np.array([0, 0, 1, 1, 2, 2])).tolist()
        [0, 2, 4, 1, 3, 5]
    """
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    rank = np.tril(same, -1).sum(1)  # how many earlier samples share this one's class
    return np.argsort(rank, kind="stable")


__all__ = ["batch_plan", "check_batch_size", "interleaved_order_numpy"]
