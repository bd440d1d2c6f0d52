"""Task batches gathered on the device: the dataset is copied to the accelerator once, and each
batch sends only its index plan there (the sample rows and, for Omniglot, each sample's quarter
turns: a few kilobytes), drawn by the same seeded Cython sampler as ``TaskDataset.sample_batch``,
so the tasks are identical to the host path's. The gather, the rotation and the scaling to
``[0, 1]`` (a 256-entry table) run on the device. A background thread may prepare the next batches meanwhile.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

import numpy as np

from ._kernels_py import REMAP_NONE

BACKENDS = ("torch", "jax")


class DeviceTasks:
    """``TaskDataset.sample_batch(n)``'s tasks, gathered on ``device`` from a copy of the dataset
    made there once; per batch only the index plan (a few kilobytes) crosses to the device.

    Args:
        tasks: a ``TaskDataset`` on the fast path (``FusedNWaysKShots`` or ``NWays`` + ``KShots``,
            ``LoadData``, optional ``RemapLabels``/``ConsecutiveLabels``) over a ``MetaDataset`` of
            numpy arrays (``ArrayDataset``) or of the vision benchmarks' stored images
            (``ConvertedView``; Omniglot's rotations are done on the device). Its stream advances
            as ``sample_batch`` would advance it; use this object's ``state_dict`` for checkpoints
            (the same dict as ``tasks.state_dict()``, so either pipeline resumes the other's).
        backend: "torch" or "jax" (the arrays returned).
        device: a torch device (default CPU; "cuda" means the current GPU) or a jax device
            (default: this process's first local device).
        prefetch: batches prepared ahead by a background thread (int >= 0; 0: none). With it,
            every call must ask for the same batch (``n``, and ``shots`` for ``sample_split``).

    ``sample_batch(n)`` returns ``X [n, m, ...]`` float32 and ``y [n, m]`` int64 (int32 on jax
    without x64), equal to the host path's values; ``sample_split(n, shots)`` returns
    ``partition_task_batch``'s split of them without reading anything back from the device.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, DeviceTasks, MetaDataset, TaskDataset
        >>> from l2l_multi.data.transforms import FusedNWaysKShots, LoadData, RemapLabels
        >>> data = MetaDataset(ArrayDataset(np.arange(40.0, dtype=np.float32).reshape(20, 2),
        ...                                 np.arange(20) % 5))
        >>> def stream():
        ...     return TaskDataset(data, [FusedNWaysKShots(data, 2, 2), LoadData(data),
        ...                               RemapLabels(data)], seed=0, backend="numpy")
        >>> X, y = DeviceTasks(stream(), "torch").sample_batch(3)
        >>> tuple(X.shape), str(X.dtype), tuple(y.shape)
        ((3, 4, 2), 'torch.float32', (3, 4))
        >>> bool((X.numpy() == stream().sample_batch(3)[0]).all())
        True
    """

    def __init__(self, tasks: Any, backend: str, device: Any = None, prefetch: int = 0):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch={prefetch!r} must be an int >= 0")
        plan = getattr(tasks, "_plan", None)
        if plan is None or tasks.task_collate is not None:
            raise ValueError(
                "tasks must take the fast path (FusedNWaysKShots or NWays + KShots, LoadData, optional "
                "RemapLabels/ConsecutiveLabels, no task_collate)"
            )
        self.tasks, self.plan, self.backend, self.prefetch = tasks, plan, backend, prefetch
        source = getattr(plan.dataset, "dataset", None)
        arrays = plan.dataset.numpy_arrays()
        if arrays is not None:  # plain arrays: rows are the samples themselves
            images, self.rows, self.turns, self.scale = arrays[0], None, None, None
            self.targets = np.asarray(arrays[1])
        elif hasattr(source, "rows") and hasattr(source, "images"):  # a ConvertedView
            images, self.rows, self.targets = np.asarray(source.images), source.rows, source.targets
            self.turns = getattr(source.convert, "quarter_turns", None)
            self.scale = getattr(source.convert, "scale", None)
            if self.turns is None or self.scale is None:
                raise ValueError(
                    "the dataset converts its images on the host in a way the device path does not know "
                    "(only Omniglot's rotate-and-scale is carried over)"
                )
        else:
            raise ValueError("tasks' dataset has no numpy arrays or stored images to copy to the device")
        self.ops = _TorchOps(device) if backend == "torch" else _JaxOps(device)
        self.images = self.ops.put(images)  # once
        self.shape = images.shape[1:]
        if self.turns is not None:  # stored [M, H, W]: rows and rotations become one gather
            self.images = self.ops.put(images.reshape(len(images), -1))
            self.pixels = self.ops.put(rotation_pixels(*self.shape))
        # uint8 -> float32 through a table made by numpy, as the host converts: XLA's CPU division
        # differs from numpy's in the last bit
        self.table = (
            None
            if self.scale is None
            else self.ops.put(np.arange(256, dtype=np.float32) / np.float32(self.scale))
        )
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._request: tuple | None = None  # what the prefetch thread prepares
        self._state = tasks.state_dict()  # the stream's position before the next batch handed out

    # -- the index plan (host) and the gather (device) -------------------------------------
    def index_plan(self, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` tasks' plan, advancing the stream: ``rows`` int64 ``[n, m]`` (rows of
        the stored arrays), ``labels`` int64 ``[n, m]``, ``turns`` int8 ``[n, m]`` or absent."""
        tasks = self.tasks
        task_indices = np.asarray([tasks._next_index() for _ in range(n)], dtype=np.int64)
        samples, labels = self.plan.sampler().plan(tasks.seed, task_indices)
        if self.plan.remap == REMAP_NONE:
            labels = self.targets[samples]
        plan = {"labels": np.asarray(labels, dtype=np.int64)}
        plan["rows"] = samples if self.rows is None else self.rows[samples]
        if self.turns is not None:
            plan["turns"] = np.asarray(self.turns[samples], dtype=np.int8)
        return plan

    def gather(self, plan: dict[str, np.ndarray]) -> tuple[Any, Any]:
        """``(X, y)`` on the device for an ``index_plan``."""
        return self._inputs(plan["rows"], plan.get("turns")), self.ops.labels(plan["labels"])

    def _inputs(self, rows: np.ndarray, turns: np.ndarray | None) -> Any:
        if self.turns is None:
            return self.ops.take(self.images, rows)
        inputs = self.ops.rotated(self.images, self.pixels, self.table, rows, turns)
        return inputs.reshape(*rows.shape, 1, *self.shape)

    def split(self, plan: dict[str, np.ndarray], shots: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """``((support X, y), (query X, y))`` on the device for an ``index_plan``: the plan is
        reordered on the host (support samples first, as ``partition_task_batch`` picks them),
        gathered once, and cut."""
        order, cut = support_query_order(plan["labels"], shots)
        reordered = {key: np.take_along_axis(value, order, axis=1) for key, value in plan.items()}
        inputs = self._inputs(reordered["rows"], reordered.get("turns"))
        stop, labels = order.shape[1], reordered["labels"]
        return (
            (self.ops.part(inputs, 0, cut), self.ops.labels(np.ascontiguousarray(labels[:, :cut]))),
            (self.ops.part(inputs, cut, stop), self.ops.labels(np.ascontiguousarray(labels[:, cut:]))),
        )

    # -- sampling --------------------------------------------------------------------------
    def sample_batch(self, n: int) -> tuple[Any, Any]:
        """The next ``n`` tasks: ``X [n, m, ...]`` float32, ``y [n, m]`` on the device."""
        _check_count(n)
        return self._next((n, None))

    def sample_split(self, n: int, shots: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """The next ``n`` tasks split into support and query sets on the device:
        ``((X [n, s, ...], y [n, s]), (X [n, q, ...], y [n, q]))`` with ``s = shots * ways``,
        equal to ``partition_task_batch(*tasks.sample_batch(n), shots=shots)``."""
        _check_count(n)
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise ValueError(f"shots must be a non-negative int, got {shots!r}")
        return self._next((n, shots))

    def _make(self, request: tuple) -> Any:
        n, shots = request
        plan = self.index_plan(n)
        return self.gather(plan) if shots is None else self.split(plan, shots)

    def _next(self, request: tuple) -> Any:
        if not self.prefetch:
            batch = self._make(request)
            self._state = self.tasks.state_dict()
            return batch
        if self._request is None:
            self._start(request)
        elif request != self._request:
            raise ValueError(
                f"with prefetch every call asks for the first call's batch (n, shots) = {self._request}, "
                f"got {request}"
            )
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def _start(self, request: tuple) -> None:
        self._request, self._queue = request, queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        arguments = (weakref.ref(self), request, self._queue, self._stop)
        self._thread = threading.Thread(target=_produce, args=arguments, name="device-tasks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the prefetch thread (the stream stays where ``state_dict`` says)."""
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.01)
            self._thread = self._queue = self._request = None
            self.tasks.load_state_dict(self._state)

    def state_dict(self) -> dict:
        """The stream's position after the batches handed out so far (prefetched ones not counted)."""
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        """Moves the stream to ``state`` (a ``state_dict`` of this object or of the ``TaskDataset``)."""
        self.close()
        self.tasks.load_state_dict(state)
        self._state = self.tasks.state_dict()


def support_query_order(labels: np.ndarray, shots: int) -> tuple[np.ndarray, int]:
    """``(order int64 [n, m], s)``: for integer ``labels [n, m]``, each task's positions with its
    ``s`` support samples first, then its queries, exactly as ``partition_task_batch`` picks them
    (classes in order of first appearance, each class's first ``shots`` samples in support), so
    ``take_along_axis(x, order[:, :s], 1)`` is its support set. Vectorised over the tasks (that
    function loops over them in Python). Raises ``ValueError`` as it does for a class with fewer
    than ``shots`` samples or tasks that split into different sizes."""
    labels = np.asarray(labels)
    count, size = labels.shape
    by_label = np.argsort(labels, axis=1, kind="stable")  # each class together, positions ascending
    sorted_labels = np.take_along_axis(labels, by_label, axis=1)
    starts = np.ones((count, size), dtype=bool)
    starts[:, 1:] = sorted_labels[:, 1:] != sorted_labels[:, :-1]
    start = np.maximum.accumulate(np.where(starts, np.arange(size), 0), axis=1)
    occurrence = np.arange(size) - start  # the sample's rank within its class
    first = np.take_along_axis(by_label, start, axis=1)  # where its class first appears
    support = occurrence < shots
    per_task = support.sum(axis=1)
    if (per_task != shots * starts.sum(axis=1)).any():
        raise ValueError(f"shots={shots} but a class of a task has fewer samples")
    if (per_task != per_task[0]).any():
        raise ValueError(
            "tasks of the batch split into different support/query sizes; use fixed ways and shots"
        )
    key = np.where(support, 0, size * size) + first * size + occurrence
    order = np.take_along_axis(by_label, np.argsort(key, axis=1, kind="stable"), axis=1)
    return order.astype(np.int64), int(per_task[0])


def _produce(owner, request: tuple, batches: queue.Queue, stop: threading.Event) -> None:
    """The prefetch thread's loop. It holds its ``DeviceTasks`` only weakly while it waits for
    room in the queue, so one dropped without ``close()`` (an error in a training loop) is freed,
    its device copy of the dataset with it, and the thread ends."""
    while not stop.is_set():
        tasks = owner()
        if tasks is None:
            return
        try:
            item: Any = (tasks._make(request), tasks.tasks.state_dict())
        except BaseException as error:  # handed to the consumer
            item = error
        del tasks
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                break
            except queue.Full:
                if owner() is None:
                    return
        if isinstance(item, BaseException):
            return


def _check_count(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


def rotation_pixels(height: int, width: int) -> np.ndarray:
    """int64 ``[4, H*W]``: row ``k`` lists, for each pixel of an image turned by ``k`` quarter
    turns counter-clockwise (``np.rot90(image, k)``), the flat pixel of the original it shows."""
    if height != width:
        raise ValueError(f"rotations need square images, got {height}x{width}")
    flat = np.arange(height * width).reshape(height, width)
    return np.stack([np.rot90(flat, k).ravel() for k in range(4)])


class _TorchOps:
    def __init__(self, device):
        import torch

        device = torch.device("cpu" if device is None else device)
        if device.type == "cuda" and device.index is None:  # the prefetch thread's current GPU may differ
            device = torch.device("cuda", torch.cuda.current_device())
        self.torch, self.device = torch, device

    def put(self, array):
        return self.torch.as_tensor(np.ascontiguousarray(array)).to(self.device)

    def _send(self, array):
        return self.torch.as_tensor(array).to(self.device, non_blocking=True)

    def labels(self, labels):
        return self._send(labels)

    def take(self, inputs, rows):
        return inputs[self._send(rows)]

    def part(self, inputs, start, stop):
        return inputs[:, start:stop].contiguous()

    def rotated(self, images, pixels, table, rows, turns):
        """``table[images[rows, pixels[turns]]]``: float32 ``[*rows.shape, H*W]``."""
        rows, turns = self._send(rows).reshape(-1), self._send(turns).reshape(-1).long()
        picked = images.index_select(0, rows).gather(1, pixels[turns])  # uint8 [n, H*W]
        return table.index_select(0, picked.reshape(-1).int()).reshape(*turns.shape, -1)


class _JaxOps:
    def __init__(self, device):
        import jax

        # device None: uncommitted arrays on the default device (this process's first), as
        # jnp.asarray makes them from the host path's numpy, so a jitted step taking them is the
        # same executable (committed ones change its compilation key)
        self.jax, self.device = jax, device
        self._take = jax.jit(lambda inputs, rows: inputs[rows])
        self._rotated = jax.jit(self._rotate)

    def put(self, array):
        return self.jax.device_put(np.ascontiguousarray(array), self.device)

    def labels(self, labels):
        return self.jax.device_put(labels, self.device)

    def take(self, inputs, rows):
        return self._take(inputs, self.put(rows))

    def part(self, inputs, start, stop):
        return inputs[:, start:stop]

    def _rotate(self, images, pixels, table, rows, turns):
        jnp = self.jax.numpy
        # XLA's CPU gathers are slow: the four turns as whole-array rot90s and a select instead
        side = int(round(pixels.shape[1] ** 0.5))
        picked = jnp.take(images, rows.reshape(-1), axis=0).reshape(-1, side, side)  # uint8
        turns = turns.reshape(-1, 1, 1)
        out = picked
        for k in (1, 2, 3):
            out = jnp.where(turns == k, jnp.rot90(picked, k, axes=(1, 2)), out)
        return table[out.astype(jnp.int32)].reshape(*rows.shape, -1)

    def rotated(self, images, pixels, table, rows, turns):
        return self._rotated(images, pixels, table, self.put(rows), self.put(turns))
