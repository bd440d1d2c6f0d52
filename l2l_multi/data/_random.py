"""Per-task random streams.

A ``TaskDataset`` with base seed ``s`` gives task ``i`` the stream ``TaskRandom.for_task(s, i)``.
Every transform that needs randomness draws a fresh 64-bit seed from the stream of the task
being built (``current_task_random()``), so task ``i`` is the same on every run, machine,
backend and kernel mode, and does not depend on which tasks were built before it.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._kernels_py import SeedStream

SEED_LIMIT = 1 << 64


def check_seed(seed: Any, argument: str = "seed", span: int = 1) -> int:
    """``seed`` as a Python int, refusing what a 64-bit stream cannot hold without collisions.

    Task streams are SplitMix64 streams seeded by 64 bits, so seeds must lie in ``[0, 2**64)``:
    masking a larger or negative int would give it another seed's tasks (2**64 would be 0).

    Args:
        seed: an int (Python or numpy, not bool).
        argument: the name used in the error message.
        span: how many consecutive seeds ``seed, seed + 1, ...`` the caller derives from it; all
            of them must be in range.

    Returns:
        ``int(seed)``.

    Raises:
        ValueError: not an int, a bool, or out of range (the message names ``argument``).

    Example:
        >>> check_seed(7), check_seed(2**64 - 1)
        (7, 18446744073709551615)
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{argument} must be an int or None, got {seed!r}")
    seed = int(seed)
    top = SEED_LIMIT - span
    if not 0 <= seed <= top:
        allowed = "[0, 2**64)" if span == 1 else f"[0, 2**64 - {span}] (it seeds {span} streams)"
        raise ValueError(
            f"{argument} must be an int in {allowed}, got {seed}; task streams take 64-bit seeds, "
            "and a negative or larger seed would silently give another seed's tasks"
        )
    return seed


def check_numpy_seed(seed: Any, argument: str = "seed") -> int:
    """``seed`` as a Python int for ``np.random.default_rng``: any non-negative int (numpy's
    SeedSequence takes every bit of it, so large seeds never collide), not a bool.

    Raises:
        ValueError: naming ``argument``, the value and what is allowed.

    Example:
        >>> check_numpy_seed(2**70)
        1180591620717411303424
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{argument} must be a non-negative int, got {seed!r}")
    return int(seed)


class TaskRandom(SeedStream):
    """A SplitMix64 stream of 64-bit seeds for one task (``TaskRandom.for_task(seed, i)``)."""

    __slots__ = ()

    def numpy_generator(self) -> np.random.Generator:
        """A numpy Generator seeded from this stream, for user transforms (e.g. augmentations)."""
        return np.random.default_rng(self.next_seed())


_current: contextvars.ContextVar[TaskRandom | None] = contextvars.ContextVar("l2l_task_random", default=None)


def current_task_random() -> TaskRandom:
    """The stream of the task being built; outside a TaskDataset, a fresh unseeded one."""
    stream = _current.get()
    return stream if stream is not None else TaskRandom(secrets.randbits(64))


def task_rng() -> np.random.Generator:
    """A numpy Generator for the task being built, for randomness in custom task transforms.

    Inside ``TaskDataset`` sampling it is derived from the task's seed, so seeded task streams
    stay reproducible; outside, it is freshly seeded from the OS.

    Example:
        >>> import numpy as np, l2l_multi as l2l
        >>> rotate = lambda task: [(np.rot90(x, l2l.data.task_rng().integers(4)), y) for x, y in task]
    """
    return current_task_random().numpy_generator()


@contextlib.contextmanager
def building_task(stream: TaskRandom) -> Iterator[TaskRandom]:
    token = _current.set(stream)
    try:
        yield stream
    finally:
        _current.reset(token)
