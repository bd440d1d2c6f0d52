"""``l2l.vision.transforms``: learn2learn's ``RandomClassRotation`` task transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import task_rng
from ..data._task import TaskBatch, TaskDescription


def _quarter_turns(degrees: Sequence[float]) -> list[int]:
    turns = []
    for angle in degrees:
        if float(angle) % 90.0 != 0.0:
            raise ValueError(
                f"RandomClassRotation: degrees must be multiples of 90 (exact turns), got {angle!r}"
            )
        turns.append(int(float(angle) // 90.0) % 4)
    if not turns:
        raise ValueError("RandomClassRotation: degrees must not be empty")
    return turns


def _rotate(images: Any, turns: int) -> Any:
    """Rotate ``images[..., H, W]`` counter-clockwise by ``turns`` quarter turns."""
    if isinstance(images, np.ndarray):
        return np.rot90(images, turns, axes=(-2, -1))
    if hasattr(images, "rot90"):  # torch tensors
        return images.rot90(turns, (-2, -1))
    import jax.numpy as jnp  # the only other array type a TaskBatch holds

    return jnp.rot90(images, turns, axes=(-2, -1))


class RandomClassRotation:
    """Rotate all images of a class by one angle drawn per class from ``degrees``.

    Place it after ``LoadData`` (learn2learn's Omniglot benchmark puts it last). Each class of
    the task gets its own angle, drawn from ``l2l.data.task_rng()`` so seeded task streams stay
    reproducible; learn2learn 0.2.0 draws one per class too, but its lambda closes over the last
    class's rotation, so every image of a task ends up rotated alike.

    Args:
        dataset: the task's MetaDataset (kept for learn2learn's signature; the classes are read from
            the task's labels, which are per-class after ``RemapLabels`` as before it).
        degrees: angles in degrees, multiples of 90 (e.g. ``[0, 90, 180, 270]``); rotations are exact
            quarter turns, counter-clockwise, over the last two axes.

    Input/returns: a ``TaskBatch`` (``inputs[m, ..., H, W]``, any dtype) or a list of ``(x, y)``
    pairs; the same kind comes back, each image rotated. Odd quarter turns need ``H == W``.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import TaskBatch
        >>> task = TaskBatch(np.arange(8.0).reshape(2, 1, 2, 2), np.array([0, 1]))
        >>> out = RandomClassRotation(None, [90])(task)
        >>> out.inputs[0, 0].tolist()
        [[1.0, 3.0], [0.0, 2.0]]
    """

    def __init__(self, dataset: Any, degrees: Sequence[float]) -> None:
        self.dataset = dataset
        self.degrees = list(degrees)
        self._turns = _quarter_turns(self.degrees)

    def _draw(self, labels: list) -> dict:
        rng = task_rng()
        classes = list(dict.fromkeys(labels))
        picks = rng.integers(0, len(self._turns), len(classes))
        return {c: self._turns[p] for c, p in zip(classes, picks.tolist())}

    def __call__(self, task: Any) -> Any:
        if task is None or isinstance(task, TaskDescription):
            raise TypeError("RandomClassRotation works on loaded tasks: place it after LoadData")
        if isinstance(task, TaskBatch):
            labels = np.asarray(task.targets.tolist()).tolist()
            turns = self._draw(labels)
            label_array = np.asarray(labels)
            inputs = task.inputs
            pieces = []
            for label, turn in turns.items():
                positions = np.flatnonzero(label_array == label)
                pieces.append((positions, _rotate(inputs[positions], turn)))
            if isinstance(inputs, np.ndarray):
                out = np.empty_like(inputs)
            else:
                out = inputs.clone() if hasattr(inputs, "clone") else inputs
            for positions, rotated in pieces:
                if hasattr(out, "at"):  # jax arrays are immutable
                    out = out.at[positions].set(rotated)
                else:
                    out[positions] = rotated
            return TaskBatch(out, task.targets, task.indices)
        pairs = list(task)
        turns = self._draw([getattr(y, "item", lambda y=y: y)() for _, y in pairs])
        return [(_rotate(x, turns[getattr(y, "item", lambda y=y: y)()]), y) for x, y in pairs]

    def __repr__(self) -> str:
        return f"RandomClassRotation(degrees={self.degrees})"
