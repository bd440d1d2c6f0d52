"""Turn a finished task into ``(inputs, targets)`` arrays of the bound backend.

The data layer works in numpy; conversion to framework arrays happens once, here, through the
backend module's ``asarray`` / ``stack`` (zero-copy where the framework allows).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from .._arrays import framework_of, to_numpy
from .._backend import available_backends, load_backend
from ._task import TaskBatch, TaskDescription


class _NumpyArrays:
    """The ``"numpy"`` output type: same interface as a backend module's array helpers."""

    NAME = "numpy"

    @staticmethod
    def asarray(value: Any, device: Any = None) -> np.ndarray:
        return to_numpy(value)

    @staticmethod
    def stack(items: list, device: Any = None) -> np.ndarray:
        return np.stack([to_numpy(item) for item in items])


def resolve_output(backend: str | None) -> tuple[str, Any]:
    """``(name, array module)`` for ``backend`` in {None (current), "torch", "jax", "numpy"}."""
    if backend == "numpy":
        return "numpy", _NumpyArrays
    if backend is not None and backend not in available_backends():
        raise ValueError(
            f"backend={backend!r} is not a known backend; available: "
            f"{', '.join(repr(name) for name in (*available_backends(), 'numpy'))} (None: the current one)"
        )
    module = load_backend(backend)
    return module.NAME, module


def native_arrays(task: Any, load) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a finished task, as numpy or as the arrays the dataset holds.

    ``load`` is the LoadData to apply when the transforms stopped before loading.
    """
    if isinstance(task, TaskDescription) or task is None:
        task = load(task)
    if isinstance(task, TaskBatch):
        return task.inputs, integer_labels(task.targets)
    try:
        inputs = [pair[0] for pair in task]
        targets = [pair[1] for pair in task]
    except (TypeError, IndexError) as error:
        raise TypeError(
            "the default task_collate expects a task made of (x, y) pairs; the last transform "
            f"returned a {type(task).__name__}. Pass task_collate= to handle other shapes."
        ) from error
    if not inputs:
        raise ValueError("the task is empty: the transforms kept no samples")
    if all(framework_of(x) == "numpy" for x in inputs):
        inputs = np.stack([np.asarray(x) for x in inputs])
    if all(framework_of(y) == "numpy" for y in targets):
        targets = np.asarray([to_numpy(y) for y in targets])
    return inputs, integer_labels(targets)


def integer_labels(targets: Any) -> Any:
    # integer labels of any width become int64: what torch's losses expect (jax narrows to
    # int32 without x64)
    if isinstance(targets, np.ndarray) and targets.dtype.kind in "iu":
        return targets.astype(np.int64, copy=False)
    return targets


def convert(arrays: types.ModuleType, value: Any, device: Any) -> Any:
    if isinstance(value, list):
        return arrays.stack(value, device)
    return arrays.asarray(value, device)


def fresh_converter(arrays: types.ModuleType, device: Any) -> Any:
    """``value -> array of the bound backend`` for arrays the data layer has just made
    (C-contiguous, writeable, owned by nobody else): torch on the CPU takes them zero-copy with
    ``torch.from_numpy`` and no checks; everything else goes through ``convert``."""
    if arrays.NAME == "torch" and device is None:
        from_numpy = sys.modules["torch"].from_numpy

        def to_torch(value: Any) -> Any:
            return from_numpy(value) if type(value) is np.ndarray else convert(arrays, value, device)

        return to_torch
    if arrays.NAME == "numpy":
        return lambda value: value if type(value) is np.ndarray else convert(arrays, value, device)
    return lambda value: convert(arrays, value, device)
