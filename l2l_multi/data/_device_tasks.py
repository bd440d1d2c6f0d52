"""Task batches gathered on the device: the dataset is copied to the accelerator once, and each
batch sends only its index plan there (the sample rows and, for Omniglot, each sample's quarter
turns: a few kilobytes), drawn by the same seeded Cython sampler as ``TaskDataset.sample_batch``,
so the tasks are identical to the host path's. The gather, the rotation and the scaling to
``[0, 1]`` (a 256-entry table) run on the device. A background thread may prepare the next batches meanwhile.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from ._kernels_py import REMAP_NONE

BACKENDS = ("torch", "jax")


class DeviceTasks:
    """``sample_batch(n)`` as ``TaskDataset.sample_batch(n)`` gives it, computed on ``device``.

    Args:
        tasks: a ``TaskDataset`` on the fast path (``FusedNWaysKShots`` or ``NWays`` + ``KShots``,
            ``LoadData``, optional ``RemapLabels``/``ConsecutiveLabels``) over a ``MetaDataset`` of
            numpy arrays (``ArrayDataset``) or of the vision benchmarks' stored images
            (``ConvertedView``; Omniglot's rotations are done on the device). Its stream advances
            as ``sample_batch`` would advance it; use this object's ``state_dict`` for checkpoints.
        backend: "torch" or "jax" (the arrays returned); device: a torch device or a jax device
            (default: the backend's default).
        prefetch: batches prepared ahead by a background thread (0: none). With it, every call
            must ask for the same ``n``.

    ``sample_batch(n)`` returns ``X [n, m, ...]`` float32 and ``y [n, m]`` int64 (int32 on jax
    without x64) on the device, equal to the host path's values.
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
        self.table = None if self.scale is None else self.ops.put(np.arange(256, dtype=np.float32)
                                                                  / np.float32(self.scale))
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._size: int | None = None
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
        if self.turns is None:
            inputs = self.ops.take(self.images, plan["rows"])
        else:
            inputs = self.ops.rotated(self.images, self.pixels, self.table, plan["rows"], plan["turns"])
            inputs = inputs.reshape(*plan["rows"].shape, 1, *self.shape)
        return inputs, self.ops.labels(plan["labels"])

    # -- sampling --------------------------------------------------------------------------
    def sample_batch(self, n: int) -> tuple[Any, Any]:
        """The next ``n`` tasks: ``X [n, m, ...]`` float32, ``y [n, m]`` on the device."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not self.prefetch:
            batch = self.gather(self.index_plan(n))
            self._state = self.tasks.state_dict()
            return batch
        if self._size is None:
            self._start(n)
        elif n != self._size:
            raise ValueError(f"n={n}: with prefetch every call takes the first call's n={self._size}")
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def _start(self, n: int) -> None:
        self._size, self._queue = n, queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()

        def produce():
            try:
                while not self._stop.is_set():
                    batch = self.gather(self.index_plan(n))
                    self._queue.put((batch, self.tasks.state_dict()))
            except BaseException as error:  # handed to the consumer
                self._queue.put(error)

        self._thread = threading.Thread(target=produce, name="device-tasks", daemon=True)
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
            self._thread = self._queue = self._size = None
            self.tasks.load_state_dict(self._state)

    def state_dict(self) -> dict:
        """The stream's position after the batches handed out so far (prefetched ones not counted)."""
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.tasks.load_state_dict(state)
        self._state = self.tasks.state_dict()


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

        self.torch, self.device = torch, torch.device("cpu" if device is None else device)

    def put(self, array):
        return self.torch.as_tensor(np.ascontiguousarray(array)).to(self.device)

    def _send(self, array):
        return self.torch.as_tensor(array).to(self.device, non_blocking=True)

    def labels(self, labels):
        return self._send(labels)

    def take(self, inputs, rows):
        return inputs[self._send(rows)]

    def rotated(self, images, pixels, table, rows, turns):
        """``table[images[rows, pixels[turns]]]``: float32 ``[*rows.shape, H*W]``."""
        rows, turns = self._send(rows).reshape(-1), self._send(turns).reshape(-1).long()
        picked = images.index_select(0, rows).gather(1, pixels[turns])  # uint8 [n, H*W]
        return table.index_select(0, picked.reshape(-1).int()).reshape(*turns.shape, -1)


class _JaxOps:
    def __init__(self, device):
        import jax

        self.jax = jax
        self.device = jax.devices()[0] if device is None else device
        self._take = jax.jit(lambda inputs, rows: inputs[rows])
        self._rotated = jax.jit(self._rotate)

    def put(self, array):
        return self.jax.device_put(np.ascontiguousarray(array), self.device)

    def labels(self, labels):
        return self.jax.device_put(labels, self.device)

    def take(self, inputs, rows):
        return self._take(inputs, self.put(rows))

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
