"""``l2l.data.samplers``: learn2learn's ``TasksetSampler`` (a DataLoader batch sampler of tasks)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._task import TaskBatch, TaskDescription
from ._task_dataset import TaskDataset


class TasksetSampler:
    """Yield each task of a ``TaskDataset`` as the list of dataset indices it is made of.

    Pass it as ``batch_sampler=`` of a ``torch.utils.data.DataLoader`` over the task dataset's
    underlying dataset: every batch is then one task's samples, loaded (and possibly prefetched)
    by the DataLoader's workers. Tasks come from ``taskset.build(i)``, so task ``i`` holds the same
    indices as ``taskset[i]``.

    Args:
        taskset: a ``TaskDataset``/``Taskset``; its transforms must end in a task description or in
            ``LoadData`` (which records the indices it loaded).
        shuffle: for a fixed number of tasks, visit them in a random order (a new order on every
            pass); an endless taskset is visited in order 0, 1, 2...
        seed: int seed of the shuffling order; None takes one from the OS. (learn2learn shuffles
            with Python's global ``random`` module.)

    Yields:
        ``list[int]`` dataset indices of one task, in task order.

    Example:
        >>> import numpy as np, l2l_multi as l2l
        >>> from l2l_multi.data.transforms import FusedNWaysKShots, LoadData
        >>> data = l2l.data.MetaDataset(l2l.data.ArrayDataset(np.random.rand(40, 3), np.arange(40) % 4))
        >>> tasks = l2l.data.Taskset(data, [FusedNWaysKShots(data, n=2, k=3), LoadData(data)],
        ...                          num_tasks=5, seed=0, backend="numpy")
        >>> batches = list(TasksetSampler(tasks, shuffle=False))
        >>> len(batches), len(batches[0]), batches[2] == TasksetSampler.task_indices(tasks, 2)
        (5, 6, True)
    """

    def __init__(self, taskset: TaskDataset, shuffle: bool = True, seed: int | None = None) -> None:
        if not isinstance(taskset, TaskDataset):
            raise TypeError(f"TasksetSampler: taskset must be a TaskDataset, got {type(taskset).__name__}")
        self.taskset = taskset
        self.shuffle = bool(shuffle)
        self._rng = np.random.default_rng(seed)

    @staticmethod
    def task_indices(taskset: TaskDataset, index: int) -> list[int]:
        """The dataset indices of task ``index`` of ``taskset``, as a list of ints."""
        task = taskset.build(index)
        if isinstance(task, TaskDescription):
            indices = task.resolve_indices()
        elif isinstance(task, TaskBatch) and task.indices is not None:
            indices = task.indices
        else:
            raise TypeError(
                f"TasksetSampler: task {index} is a {type(task).__name__} without dataset indices; end the "
                "task transforms with a sampling transform (NWays, KShots...) or LoadData"
            )
        return [int(i) for i in np.asarray(indices)]

    def __len__(self) -> int:
        if self.taskset.num_tasks < 0:
            raise TypeError("TasksetSampler over an endless taskset has no length")
        return self.taskset.num_tasks

    def __iter__(self) -> Iterator[list[int]]:
        if self.taskset.num_tasks < 0:
            index = 0
            while True:
                yield self.task_indices(self.taskset, index)
                index += 1
        order = np.arange(self.taskset.num_tasks)
        if self.shuffle:
            self._rng.shuffle(order)
        for index in order:
            yield self.task_indices(self.taskset, int(index))
