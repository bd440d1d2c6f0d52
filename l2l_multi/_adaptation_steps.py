"""Per-step episode batches of multi-step meta-RL adaptation, shared by both backends' ``TaskBatch``.

A task's training data is one episode batch with its advantages (one adaptation step) or equally long
lists/tuples of them (one step per item, in order). Only the container logic lives here: the arrays
stay the backend's (torch tensors, jax arrays), and episode batches are recognised by duck typing.
"""

from __future__ import annotations

from typing import Any


def adaptation_steps(episodes: Any, advantages: Any) -> tuple[tuple[Any, Any], ...]:
    """``(episodes, advantages)`` pairs, one per adaptation step.

    Args:
        episodes: one episode batch (a record with an ``observations`` field, arrays ``[T, N, ...]``)
            or a non-empty list/tuple of them, one per step.
        advantages: the matching ``[T, N]`` float array, or a list/tuple with one per episode batch.

    Returns:
        a tuple of ``S`` pairs; ``S = 1`` for a single batch.

    Raises:
        TypeError: ``episodes`` is neither an episode batch nor a list/tuple of them.
        ValueError: ``advantages`` is not a list/tuple as long as ``episodes``.

    Example:
        >>> from collections import namedtuple
        >>> Batch = namedtuple("Batch", "observations")
        >>> len(adaptation_steps(Batch(0), 0.5)), len(adaptation_steps([Batch(0), Batch(1)], [0.5, 0.5]))
        (1, 2)
    """
    # a tuple of batches has no ``observations``: that tells one batch from a list of them
    if hasattr(episodes, "observations"):
        return ((episodes, advantages),)
    if not isinstance(episodes, (list, tuple)) or not all(hasattr(e, "observations") for e in episodes):
        raise TypeError(
            f"train episodes must be an Episodes or a list/tuple of them (one per adaptation step), "
            f"got {type(episodes).__name__}"
        )
    if not isinstance(advantages, (list, tuple)) or len(advantages) != len(episodes) or not episodes:
        count = len(advantages) if isinstance(advantages, (list, tuple)) else type(advantages).__name__
        raise ValueError(
            f"train advantages must be a list/tuple with one array per episode batch: got {len(episodes)} "
            f"episode batches and advantages {count}"
        )
    return tuple(zip(episodes, advantages))


def task_batch_steps(batch) -> int:
    """The number of adaptation steps ``S`` (int >= 1) of a ``TaskBatch`` (static under ``jit``)."""
    return len(adaptation_steps(batch.train, batch.train_advantages))


def task_batch_from_steps(cls, train, train_advantages, valid, valid_advantages):
    """A ``cls`` (a backend's ``TaskBatch``) from per-step lists ``train``/``train_advantages`` (length
    ``S`` each); one step keeps the one-step layout (an episode batch, not a tuple of one)."""
    if len(train) == 1 and len(train_advantages) == 1:
        return cls(train[0], train_advantages[0], valid, valid_advantages)
    return cls(tuple(train), tuple(train_advantages), valid, valid_advantages)
