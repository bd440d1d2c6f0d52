"""``EpisodicBatcher``: task datasets as a ``LightningDataModule`` (learn2learn's
``learn2learn.utils.lightning.EpisodicBatcher``)."""

from __future__ import annotations

from ._import import pl


class Epochifier:
    """``length`` tasks drawn with ``tasks.sample()``: an iterable Lightning takes as a loader.

    Each item is one task as ``sample()`` returns it (for a ``TaskDataset``, ``(data, labels)``).
    Indexing also samples (learn2learn's behaviour; the index is ignored).

    Example:
        >>> class Counter:
        ...     count = 0
        ...     def sample(self):
        ...         self.count += 1
        ...         return self.count
        >>> list(Epochifier(Counter(), 3)), len(Epochifier(Counter(), 3))
        ([1, 2, 3], 3)
    """

    def __init__(self, tasks, length: int):
        if not callable(getattr(tasks, "sample", None)):
            raise TypeError(f"tasks must have a sample() method (a TaskDataset), got {type(tasks).__name__}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"epoch_length must be a positive int, got {length!r}")
        self.tasks, self.length = tasks, length

    def __getitem__(self, index):
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of an epoch of {self.length} tasks")
        return self.tasks.sample()

    def __iter__(self):
        for _ in range(self.length):
            yield self.tasks.sample()

    def __len__(self) -> int:
        return self.length


class EpisodicBatcher(pl.LightningDataModule):
    """Serve task datasets to a Lightning ``Trainer``: each loader yields ``epoch_length`` tasks,
    one per step, each drawn with ``sample()``.

    Args:
        train_tasks: the training task dataset (anything with ``sample()``).
        validation_tasks: default ``train_tasks``.
        test_tasks: default ``validation_tasks``.
        epoch_length: tasks per epoch of each loader (int >= 1).

    Example:
        >>> class Tasks:
        ...     def sample(self):
        ...         return "task"
        >>> batcher = EpisodicBatcher(Tasks(), epoch_length=2)
        >>> list(batcher.train_dataloader()), len(batcher.test_dataloader())
        (['task', 'task'], 2)
    """

    def __init__(self, train_tasks, validation_tasks=None, test_tasks=None, epoch_length: int = 1):
        super().__init__()
        self.train_tasks = train_tasks
        self.validation_tasks = train_tasks if validation_tasks is None else validation_tasks
        self.test_tasks = self.validation_tasks if test_tasks is None else test_tasks
        self.epoch_length = epoch_length
        Epochifier(self.train_tasks, epoch_length)  # check the arguments now, not at the first epoch

    @staticmethod
    def epochify(taskset, epoch_length: int) -> Epochifier:
        """``Epochifier(taskset, epoch_length)``."""
        return Epochifier(taskset, epoch_length)

    def train_dataloader(self) -> Epochifier:
        return Epochifier(self.train_tasks, self.epoch_length)

    def val_dataloader(self) -> Epochifier:
        return Epochifier(self.validation_tasks, self.epoch_length)

    def test_dataloader(self) -> Epochifier:
        return Epochifier(self.test_tasks, self.epoch_length)
