"""``TaskDataset.as_iterable()``: a task stream as an iterable dataset for DataLoaders.

Imported only when ``as_iterable()`` is called, so ``import l2l_multi`` still imports no framework.
With torch installed the stream subclasses ``torch.utils.data.IterableDataset`` (DataLoader then
iterates it instead of indexing it); without torch it is a plain iterable.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

try:
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # a jax-only install: a plain iterable serves
    _Base = object


class TaskStream(_Base):
    """Yields the tasks of a TaskDataset, split between DataLoader workers (see
    ``TaskDataset.as_iterable``). ``len()`` is ``num_tasks`` for fixed tasks; an endless stream
    has none."""

    def __init__(self, tasks: Any) -> None:
        self.tasks = copy.copy(tasks)  # its own stream position
        self.start = tasks._next_task if tasks.num_tasks < 0 else 0

    def __iter__(self) -> Iterator[Any]:
        worker, workers = _worker()
        index = self.start + worker
        if self.tasks.num_tasks > 0:
            for task_index in range(index, self.tasks.num_tasks, workers):
                yield self.tasks[task_index]
            return
        while True:
            yield self.tasks[index]
            index += workers

    def __len__(self) -> int:
        if self.tasks.num_tasks < 0:
            raise TypeError("an endless task stream has no length")
        return self.tasks.num_tasks

    def __repr__(self) -> str:
        return f"TaskStream({self.tasks!r}, start={self.start})"


def _worker() -> tuple[int, int]:
    """``(this worker's id, number of workers)`` inside a torch DataLoader worker, else (0, 1)."""
    torch = sys.modules.get("torch")
    info = None if torch is None else torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)
