"""Per-task random streams.

A ``TaskDataset`` with base seed ``s`` gives task ``i`` the stream ``TaskRandom.for_task(s, i)``.
Every transform that needs randomness draws a fresh 64-bit seed from the stream of the task
being built (``current_task_random()``), so task ``i`` is the same on every run, machine,
backend and kernel mode, and does not depend on which tasks were built before it.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
from collections.abc import Iterator

import numpy as np

from ._kernels_py import SeedStream


class TaskRandom(SeedStream):
    """A SplitMix64 stream of 64-bit seeds for one task (``TaskRandom.for_task(seed, i)``)."""

    __slots__ = ()

    def numpy_generator(self) -> np.random.Generator:
        """A numpy Generator seeded from this stream, for user transforms (e.g. augmentations)."""
        return np.random.default_rng(self.next_seed())


_current: contextvars.ContextVar[TaskRandom | None] = contextvars.ContextVar(
    "l2l_task_random", default=None
)


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
