"""TaskDataset: a (seeded) stream of few-shot tasks built by task transforms."""

from __future__ import annotations

import numbers
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._arrays import framework_of
from ._collate import convert, fresh_converter, integer_labels, native_arrays, resolve_output
from ._fingerprint import bind_dataset, describe_dataset, describe_transforms, pipeline_differences
from ._kernels_py import mix64
from ._plan import compile_plan
from ._random import TaskRandom, building_task, check_seed
from ._transforms import LoadData

_SAMPLER_SALT = 0x6C326C5F73616D70  # separates sample()'s index stream from the task streams


class TaskDataset:
    """Tasks drawn from a dataset by a list of task transforms.

    Args:
        dataset: a MetaDataset, or any map-style dataset of ``(x, y)`` (wrapped for you).
        task_transforms: callables applied in order, the first to ``None``; e.g.
            ``[NWays(d, 5), KShots(d, 1), LoadData(d)]``. Plain callables may follow LoadData:
            they receive the task's ``(x, y)`` pairs and return new pairs.
        num_tasks: ``-1`` for an endless stream of distinct tasks, or a positive number of
            fixed tasks: task ``i`` is then always the same.
        task_collate: optional ``task -> output``; by default the task's inputs and targets are
            stacked into ``(X[m, ...], y[m])`` arrays of the bound backend.
        seed: int in ``[0, 2**64)`` making the whole stream reproducible (across runs, machines,
            backends and kernel modes); None draws one from the OS.
        backend: "torch", "jax" or "numpy"; None binds the current ``l2l.get_backend()``.
        device: where the arrays go (a torch device or a jax device), or None.

    Returns tasks as ``(X, y)``: X of shape ``[ways * shots, *sample_shape]`` with the dataset's
    dtype, y int64 (int32 under jax without x64).

    ``len()`` is ``num_tasks``, and 1 for an endless stream (as in learn2learn). A TaskDataset
    pickles (DataLoader workers started by ``spawn`` get a working copy); ``as_iterable()`` makes
    it an ``IterableDataset``. The standard pipeline (``[NWays, KShots]`` or ``FusedNWaysKShots``,
    ``LoadData``, optional ``RemapLabels``, ``ConsecutiveLabels``) on an array-backed dataset (an
    ``ArrayDataset``, a ``TensorDataset`` of two tensors, ``.data``/``.targets`` rows without a
    transform) takes a fast path: one kernel call and one gather per task, same tasks.

    Example:
        >>> import numpy as np, l2l_multi as l2l
        >>> from l2l_multi.data.transforms import NWays, KShots, LoadData, RemapLabels
        >>> data = l2l.data.MetaDataset(l2l.data.ArrayDataset(np.random.rand(60, 4), np.arange(60) % 6))
        >>> tasks = l2l.data.TaskDataset(
        ...     data, [NWays(data, 3), KShots(data, 2), LoadData(data), RemapLabels(data)],
        ...     num_tasks=100, seed=1, backend="numpy")
        >>> X, y = tasks[7]; X.shape, sorted(set(y.tolist()))
        ((6, 4), [0, 1, 2])
        >>> Xb, yb = tasks.sample_batch(4); Xb.shape, yb.shape
        ((4, 6, 4), (4, 6))
    """

    def __init__(
        self,
        dataset: Any,
        task_transforms: Sequence[Callable] | None = None,
        num_tasks: int = -1,
        task_collate: Callable | None = None,
        seed: int | None = None,
        backend: str | None = None,
        device: Any = None,
    ) -> None:
        self.task_transforms = list(task_transforms or [])
        for position, transform in enumerate(self.task_transforms):
            if not callable(transform):
                raise TypeError(
                    f"task_transforms[{position}] is a {type(transform).__name__}, not a callable"
                )
        self.dataset = bind_dataset(dataset, self.task_transforms)
        if (
            isinstance(num_tasks, bool)
            or not isinstance(num_tasks, numbers.Integral)
            or num_tasks == 0
            or num_tasks < -1
        ):
            raise ValueError(
                f"num_tasks must be -1 (endless stream) or a positive integer, got {num_tasks!r}"
            )
        if num_tasks >= 1 << 32:
            raise ValueError(f"num_tasks must be below 2**32, got {num_tasks}")
        self.num_tasks = int(num_tasks)
        self.task_collate = task_collate
        self.seed = secrets.randbits(64) if seed is None else check_seed(seed)
        self.backend, self._arrays = resolve_output(backend)
        self.device = device
        self._fresh = fresh_converter(self._arrays, device)
        self._load = LoadData(self.dataset)
        self._sampler = TaskRandom(mix64(self.seed ^ _SAMPLER_SALT))
        self._initial_sampler_state = self._sampler._state
        self._next_task = 0
        self._dataset_description: str | None = None  # computed on the first state_dict()
        # the standard few-shot chain runs as one kernel call per batch (identical tasks)
        self._plan = compile_plan(self.dataset, self.task_transforms)

    # -- building tasks ------------------------------------------------------------------------
    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"task index must be an int, got {type(index).__name__}")
        index = int(index)
        if self.num_tasks > 0:
            if not -self.num_tasks <= index < self.num_tasks:
                raise IndexError(f"task index {index} is out of range for num_tasks={self.num_tasks}")
            index %= self.num_tasks
        elif index < 0:
            raise IndexError(f"task index {index} is negative; an endless TaskDataset has no end")
        return index

    def build(self, index: int) -> Any:
        """Task ``index`` as the transforms left it, before collation (e.g. a TaskBatch)."""
        index = self._check_index(index)
        if self._plan is not None and self.dataset.supports_batches:
            return self._plan.build_one(self.seed, index)
        with building_task(TaskRandom.for_task(self.seed, index)):
            task = None
            for transform in self.task_transforms:
                task = transform(task)
            return task

    def _next_index(self) -> int:
        if self.num_tasks > 0:
            return ((self._sampler.next_seed() >> 32) * self.num_tasks) >> 32
        index = self._next_task
        self._next_task += 1
        return index

    # -- public access -------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Any:
        """Task ``index``: ``(X, y)`` arrays (or what ``task_collate`` returns)."""
        return self._task(self._check_index(index))

    def _task(self, index: int) -> Any:
        if self._plan is not None and self.task_collate is None:
            # the fast path: one kernel call and one gather, no per-sample objects
            task = self._plan.sample_one(self.seed, index)
            if task is not None:
                inputs, targets = task
                return self._fresh(inputs), self._fresh(integer_labels(targets))
        task = self.build(index)
        if self.task_collate is not None:
            return self.task_collate(task)
        return self._convert(*native_arrays(task, self._load))

    def sample(self) -> Any:
        """The next task of the stream: a random one of the ``num_tasks`` fixed tasks, or, for an
        endless stream, tasks 0, 1, 2, ... in turn (each distinct and reproducible)."""
        return self._task(self._next_index())

    def sample_batch(self, n: int) -> tuple[Any, Any]:
        """The next ``n`` tasks of the stream stacked for vmap: ``X[n, m, ...]`` and ``y[n, m]``.

        Same tasks as ``n`` calls of ``sample()``. All tasks must have the same shapes.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if self.task_collate is not None:
            raise ValueError("sample_batch stacks (X, y) tasks; it cannot use a custom task_collate")
        indices = [self._next_index() for _ in range(n)]
        if self._plan is not None and self.dataset.supports_batches:
            inputs, targets, _ = self._plan.build(
                self.seed, np.asarray(indices, dtype=np.int64), prefer_numpy=True
            )
            return self._fresh(inputs), self._fresh(integer_labels(targets))
        tasks = [native_arrays(self.build(index), self._load) for index in indices]
        shapes = {(tuple(np.shape(x)), tuple(np.shape(y))) for x, y in tasks}
        if len(shapes) > 1:
            raise ValueError(
                f"sample_batch needs tasks of one shape; got shapes {sorted(shapes)[:3]}; "
                "use fixed ways and shots (KShots without replacement of a short class fails)"
            )
        # per-sample framework arrays (a torch Dataset's tensors) are stacked per task first
        inputs = [self._arrays.stack(x, self.device) if isinstance(x, list) else x for x, _ in tasks]
        targets = [self._arrays.stack(y, self.device) if isinstance(y, list) else y for _, y in tasks]
        if all(framework_of(x) == "numpy" for x in inputs):
            inputs = np.stack(inputs)
        if all(framework_of(y) == "numpy" for y in targets):
            targets = np.stack(targets)
        return self._convert(inputs, targets)

    def restart(self) -> None:
        """Rewinds the stream: the next ``sample()`` calls give the same tasks as after construction."""
        self._next_task = 0
        self._sampler._state = self._initial_sampler_state

    def state_dict(self) -> dict[str, int | str]:
        """The stream's position and the pipeline's fingerprint, for checkpoints.

        A plain dict (JSON-serialisable): ints ``seed``, ``next_task``, ``sampler`` (the
        position) and ``num_tasks``; strings ``dataset`` (size, label count and a digest of the
        labels) and ``transforms`` (each transform and its parameters). ``load_state_dict`` of it
        makes the following ``sample()`` / ``sample_batch()`` calls give exactly the tasks they
        would have given here, and refuses a state from another pipeline.

        Example:
            >>> import l2l_multi as l2l
            >>> from l2l_multi.data.transforms import NWays, KShots, LoadData
            >>> data = l2l.data.MetaDataset(l2l.data.synthetic_classification(num_classes=8))
            >>> tasks = l2l.data.TaskDataset(data, [NWays(data, 2), KShots(data, 1), LoadData(data)],
            ...     seed=0, backend="numpy")
            >>> _ = tasks.sample(); state = tasks.state_dict(); x, _ = tasks.sample()
            >>> tasks.load_state_dict(state); bool((tasks.sample()[0] == x).all())
            True
        """
        return {**self._fingerprint(), "next_task": self._next_task, "sampler": self._sampler._state}

    def _fingerprint(self) -> dict[str, int | str]:
        if self._dataset_description is None:
            self._dataset_description = describe_dataset(self.dataset)
        return {
            "seed": self.seed,
            "num_tasks": self.num_tasks,
            "dataset": self._dataset_description,
            "transforms": describe_transforms(self.task_transforms),
        }

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        """Restores a position saved by ``state_dict`` of the same pipeline.

        Raises:
            ValueError: ``state`` is not such a dict, or it comes from another pipeline (another
                seed, ``num_tasks``, dataset or transforms; the message lists each difference).

        A state saved before fingerprints existed (only ``seed``, ``next_task``, ``sampler``) is
        loaded after its seed is checked, with a warning that the rest cannot be.
        """
        _check_state(state)
        if set(state) == _LEGACY_STATE_KEYS:
            if state["seed"] != self.seed:
                raise ValueError(
                    f"state was saved from a TaskDataset with seed {state['seed']}, this one has "
                    f"seed {self.seed}"
                )
            warnings.warn(
                "this TaskDataset state was saved without a pipeline fingerprint (by an older "
                "version): only its seed can be checked against this pipeline",
                stacklevel=2,
            )
        else:
            differences = pipeline_differences(state, self._fingerprint())
            if differences:
                raise ValueError(
                    "state was saved from another task pipeline; it differs in " + "; ".join(differences)
                )
        self._next_task = int(state["next_task"])
        self._sampler._state = int(state["sampler"])

    def _convert(self, inputs: Any, targets: Any) -> tuple[Any, Any]:
        return convert(self._arrays, inputs, self.device), convert(self._arrays, targets, self.device)

    def __len__(self) -> int:
        """``num_tasks``; 1 for an endless stream, as learn2learn's (its ``__iter__`` never ends:
        to feed an endless stream to a DataLoader use ``as_iterable()``)."""
        return 1 if self.num_tasks < 0 else self.num_tasks

    def as_iterable(self) -> Any:
        """This stream as an iterable dataset (a ``torch.utils.data.IterableDataset`` when torch
        is installed) yielding ``(X, y)`` tasks, for ``DataLoader(tasks.as_iterable(), ...)``.

        An endless stream yields tasks ``p, p + 1, ...`` forever from its position ``p`` (the
        next task ``sample()`` would give); fixed tasks are yielded once each, in order. With
        several DataLoader workers, worker ``w`` of ``W`` yields every ``W``-th of those tasks
        starting at the ``w``-th, so together they give each task once and build the same tasks
        as this process. The iterable holds a copy of this TaskDataset: sampling here does not
        move it. Picklable, so it works with workers started by ``spawn``.

        Example:
            >>> import numpy as np, l2l_multi as l2l
            >>> from l2l_multi.data.transforms import NWays, KShots, LoadData
            >>> data = l2l.data.ArrayDataset(np.random.rand(40, 3), np.arange(40) % 8)
            >>> tasks = l2l.data.TaskDataset(data, [NWays(data, 2), KShots(data, 1), LoadData(data)],
            ...                              seed=0, backend="numpy")
            >>> stream = iter(tasks.as_iterable())
            >>> bool((next(stream)[0] == tasks[0][0]).all()), len(tasks)
            (True, 1)
        """
        from ._task_stream import TaskStream

        return TaskStream(self)

    def __getstate__(self) -> dict:
        # the backend module and its converter are process-local: bound again when unpickled
        return {key: value for key, value in self.__dict__.items() if key not in ("_arrays", "_fresh")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.backend, self._arrays = resolve_output(self.backend)
        self._fresh = fresh_converter(self._arrays, self.device)

    def __iter__(self) -> Iterator[Any]:
        """Every fixed task in order; an endless stream yields ``sample()`` forever."""
        if self.num_tasks > 0:
            for index in range(self.num_tasks):
                yield self[index]
        else:
            while True:
                yield self.sample()

    def __repr__(self) -> str:
        tasks = "endless" if self.num_tasks < 0 else self.num_tasks
        return f"TaskDataset({self.dataset!r}, tasks={tasks}, backend={self.backend!r})"


Taskset = TaskDataset

_LEGACY_STATE_KEYS = {"seed", "next_task", "sampler"}
_STATE_TYPES = {
    "seed": int,
    "next_task": int,
    "sampler": int,
    "num_tasks": int,
    "dataset": str,
    "transforms": str,
}


def _check_state(state: Any) -> None:
    """Refuse anything but a ``TaskDataset.state_dict()`` (current or legacy), naming the fault."""
    if not isinstance(state, dict) or set(state) not in (_LEGACY_STATE_KEYS, set(_STATE_TYPES)):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"state must be a dict from TaskDataset.state_dict() with the keys {sorted(_STATE_TYPES)}, "
            f"got {keys}"
        )
    for key in state:
        value, kind = state[key], _STATE_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"state[{key!r}] must be {'an int' if kind is int else 'a str'}, got {value!r}")
    if not 0 <= state["sampler"] < 1 << 64 or state["next_task"] < 0:
        raise ValueError(
            f"state holds an impossible position: next_task={state['next_task']} (>= 0 allowed), "
            f"sampler={state['sampler']} ([0, 2**64) allowed)"
        )
