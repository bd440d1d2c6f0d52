"""Per-dataset normalisation and the usual few-shot augmentations, on float32 NCHW batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...data import task_rng
from ...data._task import TaskBatch

AUGMENTATIONS = (None, "normal", "lee2019")

# Channel statistics used by the MetaOptNet code for mini-/tiered-ImageNet (0-255 scale), and the
# CIFAR-100 training-set statistics for CIFAR-FS / FC100.
IMAGENET_MEAN, IMAGENET_STD = (
    (120.39586422, 115.59361427, 104.54012653),
    (70.68188272, 68.27635443, 72.54505529),
)
CIFAR_MEAN, CIFAR_STD = (129.30416561, 124.0699627, 112.43405006), (68.1702429, 65.39180804, 70.41837019)


def normalizer(mean: tuple, std: tuple) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``convert(uint8 [n, H, W, C], indices) -> float32 [n, C, H, W]``, standardised per channel.

    Example:
        >>> convert = normalizer((128.0,), (64.0,))
        >>> convert(np.full((1, 2, 2, 1), 192, np.uint8), None)[0, 0].tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    scale = 1.0 / np.asarray(std, np.float32).reshape(1, -1, 1, 1)

    def convert(images: np.ndarray, indices) -> np.ndarray:
        return (images.transpose(0, 3, 1, 2).astype(np.float32) - mean) * scale

    return convert


def augmenter(kind: str, padding: int) -> Callable[[TaskBatch], TaskBatch]:
    """A task transform (place it after ``LoadData``) that augments every image of the task.

    "normal": random crop after zero padding by ``padding`` and a random horizontal flip;
    "lee2019": the same plus brightness and contrast jitter of +-40% (MetaOptNet's recipe, which
    also jitters saturation). Draws from ``task_rng()``, so seeded task streams stay reproducible.
    """
    if kind not in AUGMENTATIONS[1:]:
        raise ValueError(f"data_augmentation={kind!r} is not one of {AUGMENTATIONS}")

    def augment(task: TaskBatch) -> TaskBatch:
        rng = task_rng()
        images = np.asarray(task.inputs)
        n, _, height, width = images.shape
        padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        tops = rng.integers(0, 2 * padding + 1, n)
        lefts = rng.integers(0, 2 * padding + 1, n)
        out = np.stack(
            [padded[i, :, t : t + height, s : s + width] for i, (t, s) in enumerate(zip(tops, lefts))]
        )
        flips = rng.random(n) < 0.5
        out[flips] = out[flips, :, :, ::-1]
        if kind == "lee2019":
            brightness = rng.uniform(-0.4, 0.4, (n, 1, 1, 1)).astype(np.float32)
            contrast = rng.uniform(0.6, 1.4, (n, 1, 1, 1)).astype(np.float32)
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            out = (out - mean) * contrast + mean + brightness
        return TaskBatch(np.ascontiguousarray(out, dtype=np.float32), task.targets, task.indices)

    return augment
