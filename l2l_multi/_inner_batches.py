"""Inner-loop minibatches, one rule for both backends (Reptile's ``batch_size=`` and
``batch_order=``).

Nichol et al. (2018) adapt each task with several inner steps, each on a minibatch of the task's
training samples (Omniglot: 5 steps on batches of 10 drawn from 10 samples per class). Two orders:

* ``"interleaved"`` (the default): step ``i`` takes the ``batch_size`` samples at positions
  ``i * batch_size ...`` of the support set put in *class-interleaved* order (the first sample of
  each class in order of appearance, then the second of each, ...), wrapping around at the end.
  So every batch of ``k * ways`` samples holds ``k`` of each class, and a support set sampled
  class by class (as ``TaskDataset`` samples it) is not cut into one-class batches. A function of
  the labels only.
* ``"shuffled"``: the rule of Nichol et al.'s code (``_mini_batches`` without replacement): each
  pass over the support set visits it in a new random order, and the batches are taken in turn
  from the passes laid end to end (a batch may span two passes). So a batch's class make-up
  varies, and at test time (50 steps on 25 samples) the batches change from pass to pass.
  The random orders are drawn from the task itself: a seed is the wrapping sum of the 32-bit
  words of the support inputs (:func:`task_seed_numpy`), and pass ``p`` sorts the samples by the
  hash of ``(seed, p * support_size + j)``. So a task's batches are the same on both backends,
  under ``jit``/``vmap`` and from run to run, with no random key to thread through the steps.

:func:`batch_plan` is the static part of the interleaved rule (which positions of the
interleaved order each step takes); each backend computes the interleaved order of its labels
with its own ``argsort``. :func:`shuffled_plan_numpy` is the shuffled rule; the jax backend has
an array twin of it, checked against this one.
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


BATCH_ORDERS = ("interleaved", "shuffled")


def check_batch_order(order: Any, argument: str = "batch_order") -> str:
    """``order`` when it is one of ``BATCH_ORDERS``; else ``ValueError`` naming ``argument``."""
    if not isinstance(order, str) or order not in BATCH_ORDERS:
        raise ValueError(f"{argument}={order!r} must be one of {', '.join(map(repr, BATCH_ORDERS))}")
    return order


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


def mix32_numpy(words: np.ndarray) -> np.ndarray:
    """Wellons' ``lowbias32`` integer hash of ``words`` (uint32, any shape; uint32 out): a
    bijection of 32-bit words whose every output bit depends on every input bit."""
    words = np.asarray(words, np.uint32)
    with np.errstate(over="ignore"):  # products wrap modulo 2**32, as the hash intends
        words = words ^ (words >> np.uint32(16))
        words = words * np.uint32(0x7FEB352D)
        words = words ^ (words >> np.uint32(15))
        words = words * np.uint32(0x846CA68B)
        return words ^ (words >> np.uint32(16))


def task_seed_numpy(x: Any) -> int:
    """The shuffled order's seed of a support set ``x`` (any shape): the sum, modulo 2**32, of
    its 32-bit words (inputs narrower than 32 bits are first made float32, exactly), an int in
    ``[0, 2**32)``. Integer sums do not depend on the order of summation, so every backend and
    device computes the same seed."""
    x = np.ascontiguousarray(x)
    if x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    return int(x.view(np.uint32).sum(dtype=np.uint64) % np.uint64(2**32))


def shuffled_plan_numpy(
    seed: int, support_size: int, batch_size: int | None, steps: int
) -> np.ndarray | None:
    """Positions ``[steps, batch_size]`` (int64) into the support set for the ``"shuffled"``
    rule with seed ``seed`` (an int in ``[0, 2**32)``), or ``None`` when every step takes the
    whole support set (as :func:`batch_plan`).

    Example:
        >>> plan = shuffled_plan_numpy(7, 6, 4, 3)  # 12 positions: two passes over 6 samples
        >>> sorted(plan.reshape(-1)[:6].tolist()), sorted(plan.reshape(-1)[6:].tolist())
        ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5])
    """
    if batch_size is None or batch_size >= support_size:
        return None
    passes = -(-steps * batch_size // support_size)
    counter = np.arange(passes * support_size, dtype=np.uint32)
    keys = mix32_numpy(mix32_numpy(counter) ^ np.uint32(seed)).reshape(passes, support_size)
    order = np.argsort(keys, axis=1, kind="stable").reshape(-1)
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int64)


__all__ = [
    "BATCH_ORDERS",
    "batch_plan",
    "check_batch_order",
    "check_batch_size",
    "interleaved_order_numpy",
    "mix32_numpy",
    "shuffled_plan_numpy",
    "task_seed_numpy",
]
